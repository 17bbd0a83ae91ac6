using System.Net;

namespace Vserver.Isolation.Network;

/// <summary>
/// How a guest holds its IPv4 address on eth0, decided once for vservers (<see cref="GuestNetwork.Create"/>) and domains
/// (the initramfs' vserver.ip and vserver.gw) alike. An address inside the guest subnet is A/PREFIX with the default
/// route via the bridge's gateway, as every neighbour on the bridge has it. An address outside it is a public address
/// the host routes to the guest (OpenVZ's venet): A/32, so the guest claims no neighbours it cannot reach, and the
/// gateway on-link, because the kernel refuses `default via GW` while no route says GW is on eth0.
/// </summary>
public sealed record GuestAddress(IPAddress Address, int PrefixLength, IPAddress Gateway)
{
    public static GuestAddress For(IPAddress address, Ipv4Subnet subnet) =>
        new(address, subnet.Contains(address) ? subnet.PrefixLength : 32, subnet.Gateway);

    /// <summary>Outside the subnet: the gateway is reached through a link route of its own. The subnet's prefix is at
    /// most /30 (<see cref="Ipv4Subnet.Parse"/>), so /32 means exactly this.</summary>
    public bool Routed => PrefixLength == 32;

    /// <summary>A.B.C.D/PREFIX, as `ip addr add` and the initramfs' vserver.ip take it.</summary>
    public string Cidr => $"{Address}/{PrefixLength}";

    /// <summary>eth0's routes, in the order the kernel needs them (the gateway's link route before the default route
    /// through it).</summary>
    public IReadOnlyList<GuestRoute> Routes() => Routed
        ? [new GuestRoute(Gateway, Via: null, OnEth0: true), new GuestRoute(null, Gateway, OnEth0: true, Source: Address)]
        : [new GuestRoute(null, Gateway, OnEth0: false)];

    /// <summary>eth0's address and routes as `ip -batch` lines: what <see cref="GuestNetwork.Create"/> sets through
    /// netlink, as an operator would type it.</summary>
    public IReadOnlyList<string> IpCommands() =>
        [$"addr add {Cidr} dev eth0", .. Routes().Select(r => $"route add {r}")];
}

/// <summary>A route of a guest's: to <paramref name="Destination"/> (a host; null is the default route), through
/// <paramref name="Via"/> or, when null, on-link; bound to eth0 or left to the kernel to find by the gateway;
/// <paramref name="Source"/> the address the guest sends from.</summary>
public sealed record GuestRoute(IPAddress? Destination, IPAddress? Via, bool OnEth0, IPAddress? Source = null)
{
    /// <summary>As `ip route` takes it: "default via 10.88.0.1", "10.88.0.1 dev eth0".</summary>
    public override string ToString() =>
        $"{Destination?.ToString() ?? "default"}{(Via is null ? "" : $" via {Via}")}{(OnEth0 ? " dev eth0" : "")}{(Source is null ? "" : $" src {Source}")}";
}
