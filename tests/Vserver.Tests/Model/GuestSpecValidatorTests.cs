using HybridHypervisor;
using HybridHypervisor.Model;
using Shouldly;
using Vserver.Api;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Model;

/// <summary>The one validator of a create, without a host: a spec in, a draft config or a coded refusal out.</summary>
public sealed class GuestSpecValidatorTests
{
    private const long M = 1L << 20;

    private static GuestSpecContext Host(string? taken = null, string? takenAddress = null) => new()
    {
        HostCpus = 2,
        HostMemoryBytes = 4L << 30,
        Subnet = Ipv4Subnet.Parse("10.88.0.0/16"),
        NameTaken = name => name == taken,
        AddressOwner = address => address == takenAddress ? taken : null,
        ImageBytes = name => name switch { "busybox" => 2 * M, "debian" => 200 * M, _ => null },
        BuiltImages = () => ["busybox", "debian"],
        KernelBuilt = name => name == "default",
        BuiltKernels = () => ["default"],
    };

    private static FleetException Refused(GuestSpec spec, GuestSpecContext? host = null) =>
        Should.Throw<FleetException>(() => GuestSpecValidator.Validate(spec, host ?? Host()));

    [Fact]
    public void A_vserver_spec_becomes_its_config_with_the_defaults_filled_in()
    {
        var config = GuestSpecValidator.Validate(new GuestSpec
        {
            Name = "web1", MemoryBytes = 256 * M, MemoryMinBytes = 64 * M, Cpus = 0.5, Pids = 100, DiskBytes = 64 * M,
            Ipv4 = "10.88.0.9", Restart = "on-failure", AllowSyscalls = ["keyctl", "keyctl"], Autostart = true,
        }, Host());

        config.Name.ShouldBe("web1");
        config.Kind.ShouldBe(GuestKind.Vserver);
        config.Image.ShouldBe("busybox");
        config.Limits.ShouldBe(new GuestLimits { MemoryBytes = 256 * M, MemoryMinBytes = 64 * M, Cpus = 0.5, Pids = 100, DiskBytes = 64 * M });
        config.Network.Ipv4.ShouldBe("10.88.0.9");
        config.Restart.ShouldBe(RestartPolicy.OnFailure);
        config.Autostart.ShouldBeTrue();
        config.Security.AllowSyscalls.ShouldBe(["keyctl"]);
        config.Domain.ShouldBeNull();
        config.Phase.ShouldBe(GuestPhase.Creating);
    }

    [Fact]
    public void A_domain_spec_gets_its_domain_settings_and_its_memory_as_the_limit()
    {
        var config = GuestSpecValidator.Validate(new GuestSpec { Name = "vm1", Kind = "domain", Vcpus = 2, MemoryBytes = 512 * M, DiskBytes = 4L << 30 }, Host());
        config.Kind.ShouldBe(GuestKind.Domain);
        config.Domain.ShouldBe(new DomainSettings { Kernel = "default", Vcpus = 2, MaxMemoryBytes = 512 * M, DiskBytes = 4L << 30 });
        config.Limits.MemoryBytes.ShouldBe(512 * M);
        config.Limits.DiskBytes.ShouldBeNull();
    }

    [Theory]
    [InlineData(null, "vcpus", "vserver")]
    [InlineData("vserver", "kernel", "vserver")]
    [InlineData("domain", "cpus", "domain")]
    [InlineData("domain", "pids", "domain")]
    [InlineData("domain", "command", "domain")]
    [InlineData("domain", "privileged", "domain")]
    [InlineData("domain", "allowSyscalls", "domain")]
    public void An_option_of_the_other_kind_is_refused_by_its_field(string? kind, string option, string kindField)
    {
        var spec = new GuestSpec { Name = "g1", Kind = kind } with { };
        spec = option switch
        {
            "vcpus" => spec with { Vcpus = 2 },
            "kernel" => spec with { Kernel = "default" },
            "cpus" => spec with { Cpus = 1 },
            "pids" => spec with { Pids = 10 },
            "command" => spec with { Command = ["/bin/sh"] },
            "privileged" => spec with { Privileged = true },
            _ => spec with { AllowSyscalls = ["keyctl"] },
        };
        var e = Refused(spec);
        e.Kind.ShouldBe(FleetError.Invalid);
        e.Code.ShouldBe(ErrorCodes.OptionNotForKind);
        e.Fields.ShouldBe(new Dictionary<string, string> { ["option"] = option, ["kind"] = kindField });
        e.Message.ShouldNotContain("--");
    }

    [Theory]
    [InlineData("Web1", null, null, null, "name", ErrorCodes.Reasons.Malformed)]
    [InlineData("g1", 3L << 20, null, null, "memoryBytes", ErrorCodes.Reasons.BelowMinimum)]
    [InlineData("g1", null, 8L << 20, null, "diskBytes", ErrorCodes.Reasons.BelowMinimum)]
    [InlineData("g1", null, 100_000_000L, null, "diskBytes", ErrorCodes.Reasons.NotWholeMib)]
    [InlineData("g1", null, 64L << 20, "debian", "diskBytes", ErrorCodes.Reasons.TooSmallForImage)]
    [InlineData("g1", null, null, "nosuch", "image", ErrorCodes.Reasons.NotBuilt)]
    public void A_bad_value_names_its_field_and_reason(string name, long? memory, long? disk, string? image, string field, string reason)
    {
        var e = Refused(new GuestSpec { Name = name, MemoryBytes = memory, DiskBytes = disk, Image = image });
        e.Code.ShouldBe(ErrorCodes.InvalidValue);
        e.Fields["field"].ShouldBe(field);
        e.Fields["reason"].ShouldBe(reason);
        e.Message.ShouldNotContain("--", customMessage: "advice in flags is vsctl's");
    }

    [Fact]
    public void Addresses_cpus_restart_kind_and_kernel_are_checked()
    {
        Refused(new GuestSpec { Name = "g1", Ipv4 = "192.0.2.1" }).Fields["reason"].ShouldBe(ErrorCodes.Reasons.OutsideSubnet);
        Refused(new GuestSpec { Name = "g1", Ipv4 = "10.88.0.1" }).Fields["reason"].ShouldBe(ErrorCodes.Reasons.ReservedAddress);
        Refused(new GuestSpec { Name = "g1", Ipv4 = "10.88.1" }).Fields["reason"].ShouldBe(ErrorCodes.Reasons.Malformed);
        Refused(new GuestSpec { Name = "g1", Cpus = 3 }).Fields["field"].ShouldBe("cpus");
        Refused(new GuestSpec { Name = "g1", Restart = "sometimes" }).Fields["field"].ShouldBe("restart");
        Refused(new GuestSpec { Name = "g1", Kind = "vm" }).Fields["field"].ShouldBe("kind");
        Refused(new GuestSpec { Name = "g1", Command = [] }).Fields["reason"].ShouldBe(ErrorCodes.Reasons.Empty);
        var kernel = Refused(new GuestSpec { Name = "vm1", Kind = "domain", Kernel = "lts" });
        (kernel.Fields["field"], kernel.Fields["reason"], kernel.Fields["built"]).ShouldBe(("kernel", ErrorCodes.Reasons.NotBuilt, "default"));
        Refused(new GuestSpec { Name = "vm1", Kind = "domain", Vcpus = 3 }).Fields["field"].ShouldBe("vcpus");
    }

    [Fact]
    public void A_taken_name_or_address_is_a_conflict_naming_it_after_the_values_pass()
    {
        var name = Refused(new GuestSpec { Name = "web1" }, Host(taken: "web1"));
        (name.Kind, name.Code, name.Fields["name"]).ShouldBe((FleetError.Conflict, ErrorCodes.NameTaken, "web1"));

        var address = Refused(new GuestSpec { Name = "web2", Ipv4 = "10.88.0.9" }, Host(taken: "web1", takenAddress: "10.88.0.9"));
        address.Code.ShouldBe(ErrorCodes.AddressTaken);
        address.Fields.ShouldBe(new Dictionary<string, string> { ["address"] = "10.88.0.9", ["owner"] = "web1" });

        // A bad value is reported before a taken name: fixing the name would not make the create succeed.
        Refused(new GuestSpec { Name = "web1", MemoryBytes = 1 }, Host(taken: "web1")).Code.ShouldBe(ErrorCodes.InvalidValue);
    }
}
