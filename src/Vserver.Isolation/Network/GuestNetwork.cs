using System.Net;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

/// <summary>
/// A vserver's network: a persistent network namespace bound to a file (like `ip netns add`, at our own path), a veth
/// pair with eth0 inside and the host end on the bridge, the guest's address and default route (<see cref="GuestAddress"/>:
/// an address outside the subnet, routed to the guest by the host, is a /32 with the gateway on-link). It lives from create
/// to destroy, so starting a vserver costs no network work and the address never changes.
/// </summary>
public static class GuestNetwork
{
    /// <param name="mac">eth0's MAC (kept when a vserver becomes a domain and back); null lets the kernel pick one.</param>
    public static void Create(string vsinitPath, string netnsPath, string hostVeth, HostBridge bridge, IPAddress address, string? mac = null)
    {
        try
        {
            Vsinit.Netns(vsinitPath, netnsPath);
            HostProgram.Run("ip", ["link", "add", hostVeth, "type", "veth", "peer", "name", "eth0",
                .. (mac is null ? Array.Empty<string>() : ["address", mac]), "netns", netnsPath]);
            HostProgram.Run("ip", ["link", "set", hostVeth, "master", bridge.Name, "up"]);
            HostProgram.Run("nsenter", [$"--net={netnsPath}", "ip", "-batch", "-"], stdin: string.Join('\n',
                ["link set lo up", "link set eth0 up", .. GuestAddress.For(address, bridge.Subnet).IpCommands()]) + "\n");
            // The namespace belongs to the host's user namespace, so a user-namespaced guest's root holds no
            // NET_BIND_SERVICE or NET_RAW in it: let any id bind low ports and send ICMP echo (per namespace only).
            HostProgram.Run("nsenter", [$"--net={netnsPath}", "sysctl", "-q", "-w", "net.ipv4.ip_unprivileged_port_start=0",
                "net.ipv4.ping_group_range=0 2147483647"]);
        }
        catch
        {
            Destroy(netnsPath, hostVeth);
            throw;
        }
    }

    /// <summary>eth0's MAC inside the namespace, or null if it cannot be read.</summary>
    public static string? ReadMac(string netnsPath)
    {
        if (!File.Exists(netnsPath)) return null;
        var (code, stdout, _) = HostProgram.TryRun("nsenter", [$"--net={netnsPath}", "cat", "/sys/class/net/eth0/address"]);
        return code == 0 && stdout.Trim() is { Length: 17 } mac ? mac : null;
    }

    /// <summary>The IPv4 address eth0 really has inside the network namespace, or null when there is none to read.</summary>
    public static string? ReadAddress(string netnsPath)
    {
        if (!File.Exists(netnsPath)) return null;
        var (code, stdout, _) = HostProgram.TryRun("nsenter", [$"--net={netnsPath}", "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        if (code != 0) return null;
        // "2: eth0    inet 10.88.0.2/24 brd 10.88.0.255 scope global eth0\ ..." (a routed address: "inet 198.51.100.7/32 scope global eth0")
        var words = stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var inet = Array.IndexOf(words, "inet");
        return inet >= 0 && inet + 1 < words.Length ? words[inet + 1].Split('/')[0] : null;
    }

    public static bool Exists(string netnsPath, string hostVeth) =>
        File.Exists(netnsPath) && Directory.Exists($"/sys/class/net/{hostVeth}");

    /// <summary>Removes whatever part exists; safe on a half-made network.</summary>
    public static void Destroy(string netnsPath, string hostVeth)
    {
        if (Directory.Exists($"/sys/class/net/{hostVeth}")) HostProgram.TryRun("ip", ["link", "del", hostVeth]);
        if (File.Exists(netnsPath))
        {
            // Several binds may be stacked if an earlier create was retried; unmount until the file is plain again.
            for (var i = 0; i < 8 && Libc.Umount2(netnsPath, Libc.MNT_DETACH) == 0; i++) { }
            File.Delete(netnsPath);
        }
    }
}
