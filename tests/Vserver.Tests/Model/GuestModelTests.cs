using HybridHypervisor.Guests;
using HybridHypervisor;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Shouldly;
using Vserver.Api;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Model;

public sealed class GuestModelTests
{
    [Theory]
    [InlineData("256M", 256L << 20)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("4096", 4096L)]
    [InlineData("64k", 64L << 10)]
    [InlineData("2GiB", 2L << 30)]
    public void Sizes_parse_with_binary_suffixes(string text, long bytes) => ByteSize.Parse(text).ShouldBe(bytes);

    [Theory]
    [InlineData("12Q", "invalid size")]
    [InlineData("-5M", "negative")]
    [InlineData("", "invalid size")]
    [InlineData("M", "invalid size")]
    [InlineData("79228162514264337593543950335T", "too large")]
    public void Bad_sizes_are_refused_with_a_reason(string text, string reason)
    {
        ByteSize.TryParse(text, out _, out var error).ShouldBeFalse();
        error.ShouldContain(reason);
    }

    [Theory]
    [InlineData(256L << 20, "256M")]
    [InlineData(3L << 29, "1.5G")]
    [InlineData(100L, "100")]
    public void Sizes_format_as_operators_write_them(long bytes, string text) => ByteSize.Format(bytes).ShouldBe(text);

    [Fact]
    public void A_subnet_gives_the_gateway_to_the_bridge_and_the_rest_to_guests()
    {
        var subnet = Ipv4Subnet.Parse("10.88.0.0/24");
        subnet.Gateway.ToString().ShouldBe("10.88.0.1");
        subnet.FirstFree([]).ShouldNotBeNull().ToString().ShouldBe("10.88.0.2");
        subnet.FirstFree([System.Net.IPAddress.Parse("10.88.0.2")])!.ToString().ShouldBe("10.88.0.3");
        subnet.IsGuestAddress(System.Net.IPAddress.Parse("10.88.0.255")).ShouldBeFalse();
        subnet.IsGuestAddress(System.Net.IPAddress.Parse("10.88.0.1")).ShouldBeFalse();
        subnet.Contains(System.Net.IPAddress.Parse("10.89.0.5")).ShouldBeFalse();
        Should.Throw<FormatException>(() => Ipv4Subnet.Parse("10.88.0.0")).Message.ShouldContain("A.B.C.D/N");
        // IPAddress.Parse would read these as 10.0.0.88, 8.88.0.0 and 10.88.0.0: not what was written.
        Should.Throw<FormatException>(() => Ipv4Subnet.Parse("10.88/16"));
        Should.Throw<FormatException>(() => Ipv4Subnet.Parse("010.88.0.0/16"));
        Should.Throw<FormatException>(() => Ipv4Subnet.Parse("167772160/8"));
    }

    [Fact]
    public void A_full_subnet_has_no_free_address()
    {
        var subnet = Ipv4Subnet.Parse("10.1.2.0/30");
        subnet.FirstFree([System.Net.IPAddress.Parse("10.1.2.2")]).ShouldBeNull();
    }

    [Theory]
    [InlineData("web1", true)]
    [InlineData("a", true)]
    [InlineData("Web1", false)]
    [InlineData("-a", false)]
    [InlineData("a-", false)]
    [InlineData("a_b", false)]
    [InlineData("", false)]
    public void Guest_names_are_dns_labels(string name, bool valid) => (GuestConfigValidator.NameError(name) is null).ShouldBe(valid);

    [Fact]
    public void Limits_below_the_floor_are_refused()
    {
        GuestConfigValidator.LimitsError(new GuestLimits { MemoryBytes = 3L << 20 }, 2).ShouldNotBeNull().Message.ShouldContain("4M");
        GuestConfigValidator.LimitsError(new GuestLimits { Cpus = 3 }, 2).ShouldNotBeNull().Message.ShouldContain("2 CPUs");
        GuestConfigValidator.LimitsError(new GuestLimits { Pids = 0 }, 2).ShouldNotBeNull();
        GuestConfigValidator.LimitsError(new GuestLimits { MemoryBytes = 4L << 20, Cpus = 0.5, Pids = 1 }, 2).ShouldBeNull();
    }

    [Theory]
    [InlineData("exited 3", 3, null)]
    [InlineData("signaled 9", null, 9)]
    public void The_monitors_exit_file_parses(string text, int? code, int? signal)
    {
        var exit = GuestExit.Parse(text, DateTimeOffset.UnixEpoch).ShouldNotBeNull();
        exit.Code.ShouldBe(code);
        exit.Signal.ShouldBe(signal);
    }

    [Fact]
    public void A_reboot_inside_the_guest_ends_its_init_with_sighup()
    {
        GuestExit.Parse("signaled 1", DateTimeOffset.UnixEpoch)!.RebootRequested.ShouldBeTrue();
        GuestExit.Parse("exited 0", DateTimeOffset.UnixEpoch)!.Failed.ShouldBeFalse();
        GuestExit.Parse("garbage", DateTimeOffset.UnixEpoch).ShouldBeNull();
    }

    [Fact]
    public void A_config_that_does_not_parse_is_reported_with_path_and_position()
    {
        var root = Directory.CreateTempSubdirectory("vsmodel-").FullName;
        try
        {
            var options = new FleetOptions
            {
                StateRoot = root, RunRoot = Path.Combine(root, "run"), BridgeName = "vsx", Subnet = Ipv4Subnet.Parse("10.9.0.0/24"),
                CgroupParent = "x", VsinitPath = "/nonexistent", RecipesRoot = root,
            };
            var store = new GuestStore(options);
            var dir = Path.Combine(root, "guests", "bad");
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "guest.json"), "{\n  \"name\": \"bad\",\n  \"image\": busybox\n}");
            var (guests, broken) = store.LoadAll(2);
            guests.ShouldBeEmpty();
            broken.Single().Problem.ShouldContain(Path.Combine(dir, "guest.json"));
            broken.Single().Problem.ShouldContain("line 3");
            store.HostVethName("bad").Length.ShouldBeLessThanOrEqualTo(15);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
