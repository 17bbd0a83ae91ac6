using HybridHypervisor.Domains;
using HybridHypervisor.Guests;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>
/// What a fleet is made of: a driver per kind of guest and one for converting between them, the host network it handles itself, the cgroup hierarchy its host
/// check reads, the image and kernel stores, and a clock. The agent's fleet gets the host's (<see cref="ForHost"/>); unit
/// tests give it stand-ins, so a fleet is made and driven there without root and without touching the host's cgroups.
/// </summary>
public sealed class FleetParts
{
    public required IGuestDriver Vservers { get; init; }
    public required IGuestDriver Domains { get; init; }
    /// <summary>What promotion and demotion do on the host beyond the drivers' start and stop.</summary>
    public required IConversionDriver Conversion { get; init; }
    public required IHostNetwork Network { get; init; }
    public required ICgroupHierarchy Cgroups { get; init; }
    public required ImageStore Images { get; init; }
    public required KernelStore Kernels { get; init; }
    public TimeProvider Clock { get; init; } = TimeProvider.System;
    /// <summary>What each guest's /etc/resolv.conf says at its start: the drivers ask it, the fleet answers it (it is set
    /// when the fleet is made, since the answer depends on its settings).</summary>
    public GuestResolvConf ResolvConf { get; init; } = new();

    public static FleetParts ForHost(FleetOptions options, Action<string> log)
    {
        var images = new ImageStore(options.ImagesRoot, options.RecipesRoot);
        var kernels = new KernelStore(options.KernelsRoot, options.RecipesRoot);
        var cgroups = CgroupHierarchy.Detect();
        var bridge = new HostBridge(options.BridgeName, options.Subnet);
        var resolv = new GuestResolvConf();
        var vservers = new VserverDriver(options, cgroups, bridge, images, c => resolv.For(c), log);
        var domains = new DomainDriver(options, bridge, images, kernels, c => resolv.For(c), log);
        return new FleetParts
        {
            Vservers = vservers,
            Domains = domains,
            Conversion = new ConversionDriver(vservers, domains, log),
            Network = new HostNetwork(bridge),
            Cgroups = cgroups,
            Images = images,
            Kernels = kernels,
            ResolvConf = resolv,
        };
    }
}

/// <summary>The question every driver asks at a guest's start, answered by the fleet (<see cref="Fleet.ResolvFor"/>).</summary>
public sealed class GuestResolvConf
{
    public Func<Model.GuestConfig, ResolvConf?> For { get; set; } = _ => null;
}
