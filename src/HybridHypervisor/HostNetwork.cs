using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>
/// The host's side of the guests' network that the fleet itself handles, beside what each driver plugs in: the bridge
/// every veth and tap joins, and the nftables table of published ports. One per fleet; a cluster's shared guest network
/// will plug in here. Unit tests give the fleet a stand-in, so a fleet runs there without root.
/// </summary>
public interface IHostNetwork
{
    string BridgeName { get; }

    /// <summary>The nftables table the published ports live in, as messages name it ("ip vserver_vsbr0").</summary>
    string PortTable { get; }

    /// <summary>The bridge exists, is up, and holds the gateway address.</summary>
    void Ensure();

    /// <summary>Replaces the agent's table with <paramref name="forwards"/> and, with <paramref name="nat"/>, the guest
    /// subnet's way out (masqueraded; IPv4 forwarding switched on); without it guests open nothing beyond the bridge.</summary>
    void ApplyForwards(Ipv4Subnet subnet, IReadOnlyList<PortForward> forwards, bool nat);

    /// <summary>The table as nftables lists it, or null when it does not exist.</summary>
    string? ListForwards();
}

/// <summary>The real one: <see cref="HostBridge"/> and <see cref="PortForwarding"/>.</summary>
public sealed class HostNetwork(HostBridge bridge) : IHostNetwork
{
    private readonly PortForwarding _ports = new(bridge);

    public HostBridge Bridge { get; } = bridge;
    public string BridgeName => Bridge.Name;
    public string PortTable => $"{PortForwarding.Family} {_ports.Table}";
    public void Ensure() => Bridge.Ensure();
    public void ApplyForwards(Ipv4Subnet subnet, IReadOnlyList<PortForward> forwards, bool nat) => _ports.Apply(subnet, forwards, nat);
    public string? ListForwards() => _ports.List();
}
