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
    private List<(HostOrphan Orphan, Action Repair)> NetworkOrphans()
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
        foreach (var r in Resolver.FindAll())
        {
            string? why = null;
            if (!Directory.Exists($"/sys/class/net/{r.Bridge}")) why = $"its bridge {r.Bridge} is gone: no agent owns it";
            else if (r.Bridge == Network.BridgeName && r.Pid != ours) why = $"a second resolver on this agent's bridge (the agent's own is {(ours is { } p ? $"pid {p}" : "not running")})";
            if (why is null) continue;
            var pid = r.Pid;
            found.Add((new HostOrphan("resolver", $"dnsmasq pid {pid} ({r.PidFile})", why), () => KillOrphan(pid, r.PidFile)));
        }
        foreach (var table in PortForwarding.AgentTables())
        {
            var bridge = table["vserver_".Length..];
            if (Directory.Exists($"/sys/class/net/{bridge}")) continue;
            found.Add((new HostOrphan("nftables", $"table {PortForwarding.Family} {table}", $"its bridge {bridge} is gone: no agent owns it"),
                () => PortForwarding.Delete(table)));
        }
        return found;
    }
}
