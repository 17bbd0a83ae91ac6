using Vserver.Api;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;
using static Vserver.Api.ErrorCodes;

namespace HybridHypervisor.Model;

/// <summary>What <see cref="GuestSpecValidator"/> needs to know of the host and the fleet beyond the spec itself.</summary>
public sealed record GuestSpecContext
{
    public required int HostCpus { get; init; }
    public required long HostMemoryBytes { get; init; }
    public required Ipv4Subnet Subnet { get; init; }
    /// <summary>The host's routed range of public addresses, if it has one.</summary>
    public Ipv4Subnet? Routed { get; init; }
    /// <summary>Whether a guest (or one being created, or a broken one) has this name.</summary>
    public required Func<string, bool> NameTaken { get; init; }
    /// <summary>The guest that has this address, or null.</summary>
    public required Func<string, string?> AddressOwner { get; init; }
    /// <summary>A built image's size in bytes (what its files take); null when no image of that name is built.</summary>
    public required Func<string, long?> ImageBytes { get; init; }
    /// <summary>Whether a kernel of that name is built.</summary>
    public required Func<string, bool> KernelBuilt { get; init; }
    /// <summary>The names of what is built, for the message when something is not: images, kernels.</summary>
    public required Func<IEnumerable<string>> BuiltImages { get; init; }
    public required Func<IEnumerable<string>> BuiltKernels { get; init; }
}

/// <summary>
/// The one validator of a create: a <see cref="GuestSpec"/> as it came over the wire, checked whole (name, kind and the
/// options each kind has, limits, address, image, kernel, disk quota against the image, name and address free) and
/// turned into the guest's config as it would be stored, without an address allocated or ids mapped yet. The first
/// problem is a <see cref="FleetException"/> with its code and fields. The fleet's create and its dry run both call
/// it; nothing here touches the host.
/// </summary>
public static class GuestSpecValidator
{
    public const string DefaultImage = "busybox";

    public static GuestConfig Validate(GuestSpec spec, GuestSpecContext host)
    {
        if (GuestConfigValidator.NameError(spec.Name) is { } nameError) throw FleetException.Invalid(nameError);
        var kind = ParseKind(spec.Kind);
        if (!RestartPolicies.TryParse(spec.Restart, out var restart))
            throw FleetException.Invalid(new SettingError(GuestSpec.Fields.Restart, spec.Restart, Reasons.Malformed, RestartPolicies.Invalid(spec.Restart)));
        var domain = kind == GuestKind.Domain ? DomainSettingsFor(spec, host) : null;
        if (domain is null && (spec.Vcpus is not null || spec.Kernel is not null))
            throw FleetException.OptionNotForKind(spec.Vcpus is not null ? GuestSpec.Fields.Vcpus : GuestSpec.Fields.Kernel, kind);
        var limits = new GuestLimits
        {
            MemoryBytes = domain?.MaxMemoryBytes ?? spec.MemoryBytes,
            MemoryMinBytes = spec.MemoryMinBytes,
            Cpus = spec.Cpus,
            Pids = spec.Pids,
            // A vserver's disk is its disk quota; a domain's is its root disk (in its domain settings).
            DiskBytes = domain is null ? spec.DiskBytes : null,
        };
        if (domain is null && GuestConfigValidator.LimitsError(limits, host.HostCpus, host.HostMemoryBytes) is { } limitsError) throw FleetException.Invalid(limitsError);
        if (GuestConfigValidator.Ipv4Error(spec.Ipv4, host.Subnet, host.Routed) is { } ipError) throw FleetException.Invalid(ipError);
        if (GuestConfigValidator.DnsError(spec.Dns) is { } dnsError) throw FleetException.Invalid(dnsError);
        if (GuestConfigValidator.AllowSyscallsError(spec.AllowSyscalls, spec.Privileged) is { } allowError) throw FleetException.Invalid(allowError);
        if (GuestConfigValidator.CommandError(spec.Command) is { } commandError) throw FleetException.Invalid(commandError);

        var image = spec.Image ?? DefaultImage;
        if (host.ImageBytes(image) is not { } imageBytes)
            throw FleetException.Invalid(NotBuilt(GuestSpec.Fields.Image, image, "image", host.BuiltImages()));
        if (domain is not null && !host.KernelBuilt(domain.Kernel))
            throw FleetException.Invalid(NotBuilt(GuestSpec.Fields.Kernel, domain.Kernel, "kernel", host.BuiltKernels()));
        if (limits.DiskBytes is { } quota && LayerImage.ImageFitMessage(quota, imageBytes, image) is { } fitError)
            throw FleetException.Invalid(new SettingError(GuestSpec.Fields.DiskBytes, Text(quota), Reasons.TooSmallForImage, fitError)
                .With("minimum", LayerImage.MinimumFor(imageBytes)));

        if (host.NameTaken(spec.Name)) throw FleetException.NameTaken(spec.Name);
        if (spec.Ipv4 is { } address && host.AddressOwner(address) is { } owner) throw FleetException.AddressTaken(address, owner);

        return new GuestConfig
        {
            Name = spec.Name,
            Kind = kind,
            Image = image,
            Limits = limits,
            Domain = domain,
            Network = new GuestNetworkConfig { Ipv4 = spec.Ipv4, Dns = spec.Dns },
            Restart = restart,
            Autostart = spec.Autostart,
            Command = spec.Command,
            Phase = GuestPhase.Creating,
            Security = new GuestSecurity
            {
                Privileged = spec.Privileged,
                AllowSyscalls = spec.AllowSyscalls?.Distinct().Order(StringComparer.Ordinal).ToList() ?? [],
            },
        };
    }

    public static GuestKind ParseKind(string? kind) => kind switch
    {
        null or "" or GuestKinds.Vserver => GuestKind.Vserver,
        GuestKinds.Domain => GuestKind.Domain,
        _ => throw FleetException.Invalid(new SettingError(GuestSpec.Fields.Kind, kind, Reasons.Malformed,
            $"invalid kind '{kind}': use vserver (shares the host's kernel) or domain (a VM with its own kernel)")),
    };

    /// <summary>A domain's settings from a spec, checked; the options only vservers have are refused by name.</summary>
    private static DomainSettings DomainSettingsFor(GuestSpec spec, GuestSpecContext host)
    {
        var vserverOnly = spec.Command is not null ? GuestSpec.Fields.Command
            : spec.Privileged ? GuestSpec.Fields.Privileged
            : spec.AllowSyscalls is { Count: > 0 } ? GuestSpec.Fields.AllowSyscalls
            : spec.Cpus is not null ? GuestSpec.Fields.Cpus
            : spec.Pids is not null ? GuestSpec.Fields.Pids
            : null;
        if (vserverOnly is not null) throw FleetException.OptionNotForKind(vserverOnly, GuestKind.Domain);
        var domain = new DomainSettings
        {
            Kernel = spec.Kernel ?? DomainSettings.DefaultKernel,
            Vcpus = spec.Vcpus ?? 1,
            MaxMemoryBytes = spec.MemoryBytes ?? DomainSettings.DefaultMemoryBytes,
            DiskBytes = spec.DiskBytes ?? DomainSettings.DefaultDiskBytes,
        };
        if ((GuestConfigValidator.DomainError(domain, null, host.HostCpus, host.HostMemoryBytes)
             ?? GuestConfigValidator.DomainGuaranteeError(domain, spec.MemoryMinBytes, null)) is { } error)
            throw FleetException.Invalid(error);
        return domain;
    }

    private static SettingError NotBuilt(string field, string name, string what, IEnumerable<string> built)
    {
        var list = string.Join(", ", built.Order(StringComparer.Ordinal));
        return new SettingError(field, name, Reasons.NotBuilt, $"unknown {what} '{name}'; built {what}s: {(list.Length > 0 ? list : "none")}")
            .With("built", list);
    }

    private static string Text(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
