using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>
/// The host's side of the guests' network that the fleet itself handles, beside what each driver plugs in: the bridge
/// every veth and tap joins, the agent's nftables table (published ports, outbound NAT, the routed range) and the routes
/// and proxy entries of routed addresses. One per fleet; a cluster's shared guest network will plug in here. Unit tests
/// give the fleet a stand-in, so a fleet runs there without root.
/// </summary>
public interface IHostNetwork
{
    string BridgeName { get; }

    /// <summary>The agent's nftables table, as messages name it ("ip vserver_vsbr0").</summary>
    string PortTable { get; }

    /// <summary>The bridge exists, is up, and holds the gateway address.</summary>
    void Ensure();

    /// <summary>Makes the table, routes and proxy entries what <paramref name="rules"/> say (the table in one nft
    /// transaction; IPv4 forwarding switched on when anything needs routing).</summary>
    void Apply(HostRules rules);

    /// <summary>Takes the proxy entries of <paramref name="range"/> off <paramref name="uplink"/> (either changed).</summary>
    void RemoveProxies(string uplink, Ipv4Subnet range);

    /// <summary>The table as nftables lists it, or null when it does not exist.</summary>
    string? ListForwards();

    /// <summary>Why <paramref name="range"/> on <paramref name="uplink"/> cannot be this agent's routed range (the uplink
    /// missing, the range overlapping the guest subnet, another agent's range, or what the host holds), or null.</summary>
    RoutedRefusal? RoutedProblem(Ipv4Subnet range, string uplink, Ipv4Subnet subnet);

    /// <summary>Removes the table, the proxy entries of <paramref name="routed"/> on <paramref name="uplink"/>, the routes
    /// on the bridge and the bridge itself.</summary>
    void Teardown(string? uplink, Ipv4Subnet? routed);

    /// <summary>The guests' resolver for <paramref name="config"/> (not started yet), or null where there is none (a
    /// fleet of stand-ins).</summary>
    Resolver? CreateResolver(ResolverConfig config, Action<string> log);
}

/// <summary>Why a routed range cannot be had: <paramref name="Why"/> in words; <paramref name="OfUplink"/> when the uplink
/// is what is wrong (it does not exist, or cannot carry the range), else the range (it overlaps something).</summary>
public sealed record RoutedRefusal(string Why, bool OfUplink = false);

public sealed class HostNetwork(HostBridge bridge) : IHostNetwork
{
    private readonly PortForwarding _ports = new(bridge);

    public HostBridge Bridge { get; } = bridge;
    public string BridgeName => Bridge.Name;
    public string PortTable => $"{PortForwarding.Family} {_ports.Table}";
    public void Ensure() => Bridge.Ensure();

    public void Apply(HostRules rules)
    {
        _ports.Apply(rules);
        Failpoints.Hit("network.after-table");
        RoutedAddresses.Apply(Bridge, rules.Routed, rules.Uplink, rules.RoutedGuests ?? []);
    }

    public void RemoveProxies(string uplink, Ipv4Subnet range) => RoutedAddresses.RemoveProxies(uplink, range);

    public void Teardown(string? uplink, Ipv4Subnet? routed)
    {
        _ports.Remove();
        if (uplink is not null && routed is not null) RoutedAddresses.RemoveProxies(uplink, routed);
        RoutedAddresses.Apply(Bridge, null, null, []);
        Bridge.Delete();
    }
    public Resolver? CreateResolver(ResolverConfig config, Action<string> log) => new(config, log);
    public string? ListForwards() => _ports.List();

    public RoutedRefusal? RoutedProblem(Ipv4Subnet range, string uplink, Ipv4Subnet subnet)
    {
        if (RoutedAddresses.UplinkProblem(uplink, BridgeName) is { } bad) return new RoutedRefusal(bad, OfUplink: true);
        if (RoutedAddresses.Overlap(range, subnet)) return new RoutedRefusal($"it overlaps the guest subnet {subnet}");
        if (PortForwarding.OtherAgentsRouted(BridgeName).FirstOrDefault(o => RoutedAddresses.Overlap(range, Ipv4Subnet.Parse(o.Range, 1, 32))) is ({ } table, { } other))
            return new RoutedRefusal($"it overlaps {other}, routed by the agent whose table is ip {table}");
        return RoutedAddresses.HostOverlap(range, uplink, BridgeName) is { } held ? new RoutedRefusal(held) : null;
    }
}
