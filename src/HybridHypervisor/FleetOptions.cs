using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>Where the fleet keeps its state and which host resources it owns. Tests run isolated instances side by
/// side by giving each its own roots, bridge, subnet and cgroup parent.</summary>
public sealed record FleetOptions
{
    public required string StateRoot { get; init; }
    public required string RunRoot { get; init; }
    public required string BridgeName { get; init; }
    public required Ipv4Subnet Subnet { get; init; }
    public required string CgroupParent { get; init; }
    public required string VsinitPath { get; init; }
    public required string RecipesRoot { get; init; }
    public TimeSpan DefaultStopTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Host ids handed out to unprivileged guests.</summary>
    public HybridHypervisor.Model.HostIdRange IdRange { get; init; } = HybridHypervisor.Model.HostIdRange.Default;

    public string GuestsRoot => Path.Combine(StateRoot, "guests");
    public string ImagesRoot => Path.Combine(StateRoot, "images");
    public string KernelsRoot => Path.Combine(StateRoot, "kernels");
    public string RunGuestsRoot => Path.Combine(RunRoot, "guests");

    /// <summary>VSERVER_ROOT, VSERVER_RUN, VSERVER_BRIDGE, VSERVER_SUBNET, VSERVER_CGROUP_PARENT, VSERVER_IMAGES, VSERVER_IDMAP;
    /// vsinit and the image recipes are found next to the agent (bin/ and ../images) unless given.</summary>
    public static FleetOptions FromEnvironment(string baseDirectory)
    {
        static string Env(string name, string fallback) =>
            Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;
        var parent = Env("VSERVER_CGROUP_PARENT", "vserver");
        if (parent.Split('/').Any(p => p is "" or "." or ".."))
            throw new FormatException($"invalid VSERVER_CGROUP_PARENT '{parent}': use a relative path such as vserver or hosting/vserver");
        return new FleetOptions
        {
            StateRoot = Path.GetFullPath(Env("VSERVER_ROOT", "/var/lib/vserver")),
            RunRoot = Path.GetFullPath(Env("VSERVER_RUN", "/run/vserver")),
            BridgeName = HostBridge.ValidateName(Env("VSERVER_BRIDGE", "vsbr0")),
            Subnet = Ipv4Subnet.Parse(Env("VSERVER_SUBNET", "10.88.0.0/16")),
            CgroupParent = parent,
            VsinitPath = Env("VSERVER_VSINIT", Path.Combine(baseDirectory, "vsinit")),
            RecipesRoot = Path.GetFullPath(Env("VSERVER_IMAGES", Path.Combine(baseDirectory, "..", "images"))),
            IdRange = Environment.GetEnvironmentVariable("VSERVER_IDMAP") is { Length: > 0 } idmap
                ? HybridHypervisor.Model.HostIdRange.Parse(idmap) : HybridHypervisor.Model.HostIdRange.Default,
        };
    }
}
