using System.Net;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;

namespace HybridHypervisor;

/// <summary>
/// The host check's look at the guests' way out: the routes and proxy ARP entries of routed addresses against the
/// guests that hold them, and the resolvers and nftables tables of vserver agents: a second resolver on this agent's
/// bridge, or a resolver or table whose bridge is gone, belongs to no agent.
/// </summary>
public sealed partial class Fleet
{
    private List<(HostOrphan Orphan, Action Repair)> NetworkOrphans(bool othersToo)
    {
        var found = new List<(HostOrphan, Action)>();
        var rules = ExpectedRules(quiet: true);
        var want = (rules.RoutedGuests ?? []).Select(a => a.ToString()).ToHashSet(StringComparer.Ordinal);
        void Reapply()
        {
            lock (_portsLock) ApplyPortsLocked();
        }
        if (Network is HostNetwork host)
        {
            var routes = RoutedAddresses.HostRoutes(host.Bridge);
            foreach (var extra in routes.Except(want))
                found.Add((new HostOrphan("route", $"{extra}/32 dev {host.BridgeName}", "no guest holds this routed address"), Reapply));
            foreach (var missing in want.Except(routes))
                found.Add((new HostOrphan("route", $"{missing}/32 dev {host.BridgeName}", "a guest holds this routed address, but the host has no route to it"), Reapply));
            if (rules is { Uplink: { } uplink, Routed: { } range } && Directory.Exists($"/sys/class/net/{uplink}"))
            {
                var proxies = RoutedAddresses.ProxyEntries(uplink, range);
                foreach (var extra in proxies.Except(want))
                    found.Add((new HostOrphan("proxy arp", $"{extra} on {uplink}", "no guest holds this routed address"), Reapply));
                foreach (var missing in want.Except(proxies))
                    found.Add((new HostOrphan("proxy arp", $"{missing} on {uplink}", "a guest holds this routed address, but the host does not answer ARP for it"), Reapply));
            }
        }

        int? ours;
        lock (_namesLock) ours = _resolver?.Pid;
        foreach (var r in Resolver.FindAll().Where(r => r.Bridge == Network.BridgeName && r.Pid != ours))
            found.Add((new HostOrphan("resolver", $"dnsmasq pid {r.Pid} ({r.PidFile})",
                $"a second resolver on this agent's bridge (the agent's own is {(ours is { } p ? $"pid {p}" : "not running")})"), () => KillOrphan(r.Pid, r.PidFile)));

        // Other agents' leftovers: a resolver or table whose bridge is gone and whose agent no longer runs. Judged twice, half
        // a second apart, so that an agent being taken down (its bridge goes a moment before its table) is not judged midway.
        var gone = othersToo ? Unowned() : [];
        if (gone.Count > 0)
        {
            Thread.Sleep(500);
            gone = gone.Intersect(Unowned()).ToList();
        }
        foreach (var (kind, what, pid, pidFile) in gone)
            found.Add(kind == "resolver"
                ? (new HostOrphan("resolver", what, "its bridge is gone and no agent of it runs"), () => KillOrphan(pid, pidFile))
                : (new HostOrphan("nftables", what, "its bridge is gone and no agent of it runs"), () => PortForwarding.Delete(what.Split(' ')[^1])));
        return found;
    }

    /// <summary>Resolvers and tables of bridges that do not exist and that no running vserverd serves.</summary>
    private static List<(string Kind, string What, int Pid, string PidFile)> Unowned()
    {
        var agents = AgentBridges();
        bool Unowned(string bridge) => !Directory.Exists($"/sys/class/net/{bridge}") && !agents.Contains(bridge);
        return Resolver.FindAll().Where(r => Unowned(r.Bridge)).Select(r => ("resolver", $"dnsmasq pid {r.Pid} ({r.PidFile})", r.Pid, r.PidFile))
            .Concat(PortForwarding.AgentTables().Where(t => Unowned(t["vserver_".Length..])).Select(t => ("nftables", $"table {PortForwarding.Family} {t}", 0, "")))
            .ToList();
    }

    /// <summary>The bridges of the vserverd processes running on the host (VSERVER_BRIDGE in each one's environment).</summary>
    private static HashSet<string> AgentBridges()
    {
        var bridges = new HashSet<string>(StringComparer.Ordinal);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (!cmdline.Split('\0').Take(2).Any(a => Path.GetFileName(a) is "vserverd" or "vserverd.dll")) continue;
                var env = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                bridges.Add(env.FirstOrDefault(e => e.StartsWith("VSERVER_BRIDGE=", StringComparison.Ordinal))?["VSERVER_BRIDGE=".Length..] is { Length: > 0 } b ? b : "vsbr0");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return bridges;
    }
}
