using System.Net;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Network;

/// <summary>
/// A vserver's network: a persistent network namespace bound to a file (like `ip netns add`, at our own path), a veth
/// pair with eth0 inside and the host end on the bridge, the guest's address and default route (<see cref="GuestAddress"/>:
/// an address outside the subnet, routed to the guest by the host, is a /32 with the gateway on-link). It lives from create
/// to destroy, so starting a vserver costs no network work and the address never changes. All of it is made in-process,
/// through rtnetlink (<see cref="Netlink"/>) and the system calls themselves, as runc and crun do: no host tool runs.
/// </summary>
public static class GuestNetwork
{
    /// <summary>The sysctls every guest's namespace gets. The namespace belongs to the host's user namespace, so a
    /// user-namespaced guest's root holds no NET_BIND_SERVICE or NET_RAW in it: let any id bind low ports and send ICMP
    /// echo (per namespace only).</summary>
    private static readonly (string Key, string Value)[] Sysctls =
        [("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ping_group_range", "0 2147483647")];

    /// <param name="vsinitPath">Unused since the namespace is made in-process (<see cref="NetNamespace.Create"/>); kept
    /// so callers need not change.</param>
    /// <param name="mac">eth0's MAC (kept when a vserver becomes a domain and back); null lets the kernel pick one.</param>
    public static void Create(string vsinitPath, string netnsPath, string hostVeth, HostBridge bridge, IPAddress address, string? mac = null)
    {
        var guest = GuestAddress.For(address, bridge.Subnet);
        try
        {
            var peerMac = mac is null ? null : LinkMessage.ParseMac(mac);
            NetNamespace.Create(netnsPath);
            using (var host = Netlink.Open())
            using (var netns = NetNamespace.Open(netnsPath))
            {
                host.AddVeth(hostVeth, "eth0", peerMac, netns, netnsPath);
                host.SetUp(hostVeth, master: bridge.Name);
            }
            NetNamespace.Run(netnsPath, () =>
            {
                using var inside = Netlink.Open(netnsPath);
                inside.SetUp("lo");
                var eth0 = inside.LinkIndex("eth0");
                inside.SetUp("eth0");
                inside.AddAddress(eth0, "eth0", guest.Address, guest.PrefixLength);
                foreach (var route in guest.Routes()) inside.AddRoute(route, eth0);
                foreach (var (key, value) in Sysctls) NetNamespace.WriteSysctl(netnsPath, key, value);
                return 0;
            });
        }
        catch
        {
            Destroy(netnsPath, hostVeth);
            throw;
        }
    }

    /// <summary>eth0's MAC inside the namespace, or null if it cannot be read.</summary>
    public static string? ReadMac(string netnsPath) => ReadEth0(netnsPath, (_, eth0) => eth0.Mac);

    /// <summary>The IPv4 address eth0 really has inside the network namespace, or null when there is none to read.</summary>
    public static string? ReadAddress(string netnsPath) =>
        ReadEth0(netnsPath, (netlink, eth0) => netlink.Ipv4Addresses(eth0.Index, "eth0").Select(a => a.Local?.ToString()).FirstOrDefault(a => a is not null));

    /// <summary>What <paramref name="read"/> finds on eth0 inside the namespace; null when there is no namespace, no
    /// eth0, or it cannot be read.</summary>
    private static string? ReadEth0(string netnsPath, Func<Netlink, LinkMessage, string?> read)
    {
        if (!File.Exists(netnsPath)) return null;
        try
        {
            return NetNamespace.Run(netnsPath, () =>
            {
                using var netlink = Netlink.Open(netnsPath);
                return netlink.FindLink("eth0") is { } eth0 ? read(netlink, eth0) : null;
            });
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            // Not a namespace (a file a failed create left), or one going away under us.
            return null;
        }
    }

    public static bool Exists(string netnsPath, string hostVeth) =>
        File.Exists(netnsPath) && Directory.Exists($"/sys/class/net/{hostVeth}");

    /// <summary>Removes whatever part exists; safe on a half-made network.</summary>
    public static void Destroy(string netnsPath, string hostVeth)
    {
        // eth0, its peer, goes with it.
        if (Directory.Exists($"/sys/class/net/{hostVeth}")) Netlink.TryDeleteLink(hostVeth);
        if (File.Exists(netnsPath))
        {
            // Several binds may be stacked if an earlier create was retried; unmount until the file is plain again.
            for (var i = 0; i < 8 && Libc.Umount2(netnsPath, Libc.MNT_DETACH) == 0; i++) { }
            File.Delete(netnsPath);
        }
    }
}
