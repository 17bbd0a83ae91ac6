using System.Net;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Network;

/// <summary>
/// An rtnetlink socket (NETLINK_ROUTE): what `ip` speaks to the kernel, in-process. It acts on the links, addresses and
/// routes of the network namespace it was opened in, which is its thread's (<see cref="NetNamespace.Run"/> opens one in
/// a guest's). Every request waits for the kernel's answer; a refusal is a <see cref="SystemCallException"/> that names
/// the request and what it was on, with the errno and the kernel's own words when it gives some (extended ack):
/// <c>netlink RTM_NEWLINK veth vs-web1 (peer eth0 in /run/vserver/guests/web1/netns): EEXIST (File exists)</c>.
/// </summary>
public sealed class Netlink : IDisposable
{
    private const int EPROTO = 71;

    private readonly SafeFileHandle _socket;
    private readonly string _where;
    private readonly byte[] _receive = new byte[64 * 1024];
    private uint _sequence;

    private Netlink(SafeFileHandle socket, string where)
    {
        _socket = socket;
        _where = where;
    }

    /// <summary>A socket in the calling thread's network namespace; <paramref name="netns"/> names that namespace in
    /// failures when it is not the host's.</summary>
    public static Netlink Open(string? netns = null)
    {
        var where = netns is null ? "" : $" in {netns}";
        var fd = Libc.Socket(Libc.AF_NETLINK, Libc.SOCK_RAW | Libc.SOCK_CLOEXEC, Libc.NETLINK_ROUTE);
        if (fd < 0) throw SystemCallException.FromLastError($"socket AF_NETLINK NETLINK_ROUTE{where}");
        var socket = new SafeFileHandle(fd, ownsHandle: true);
        unsafe
        {
            // The kernel's reason for a refusal as text, and errors that echo only the request's header. Both are
            // optional: without them an error is its errno alone.
            var on = 1;
            Libc.Setsockopt(fd, Libc.SOL_NETLINK, Libc.NETLINK_EXT_ACK, &on, sizeof(int));
            Libc.Setsockopt(fd, Libc.SOL_NETLINK, Libc.NETLINK_CAP_ACK, &on, sizeof(int));
            var local = new Libc.SockaddrNl { Family = Libc.AF_NETLINK };
            if (Libc.Bind(fd, &local, sizeof(Libc.SockaddrNl)) != 0)
            {
                var e = SystemCallException.FromLastError($"bind netlink socket{where}");
                socket.Dispose();
                throw e;
            }
        }
        return new Netlink(socket, where);
    }

    public void Dispose() => _socket.Dispose();

    /// <summary>The link called <paramref name="name"/>, or null when there is none (ENODEV).</summary>
    internal LinkMessage? FindLink(string name)
    {
        try
        {
            var replies = Exchange(NetlinkRequest.GetLink(name), $"netlink RTM_GETLINK {name}{_where}");
            return replies.Count > 0 ? LinkMessage.Parse(replies[0].Payload) : null;
        }
        catch (SystemCallException e) when (e.Errno == Errno.ENODEV)
        {
            return null;
        }
    }

    internal int LinkIndex(string name) =>
        FindLink(name)?.Index ?? throw new SystemCallException($"netlink RTM_GETLINK {name}{_where}", Errno.ENODEV);

    /// <summary>A veth pair: <paramref name="name"/> here, down; <paramref name="peer"/> with <paramref name="peerMac"/>
    /// (null: the kernel picks one) made directly in the namespace <paramref name="peerNetns"/>, opened from
    /// <paramref name="peerNetnsPath"/>.</summary>
    internal void AddVeth(string name, string peer, byte[]? peerMac, SafeFileHandle peerNetns, string peerNetnsPath) =>
        Exchange(NetlinkRequest.NewVeth(name, peer, peerMac, (int)peerNetns.DangerousGetHandle()),
            $"netlink RTM_NEWLINK veth {name} (peer {peer} in {peerNetnsPath}){_where}");

    /// <summary>A bridge, down and without addresses.</summary>
    internal void AddBridge(string name) => Exchange(NetlinkRequest.NewBridge(name), $"netlink RTM_NEWLINK bridge {name}{_where}");

    /// <summary>Plugs link <paramref name="name"/> into bridge <paramref name="master"/> (when given) and sets it up.</summary>
    public void SetUp(string name, string? master = null) =>
        Exchange(NetlinkRequest.SetUp(name, master is null ? null : LinkIndex(master)),
            $"netlink RTM_NEWLINK {name}{(master is null ? "" : $" master {master}")} up{_where}");

    /// <summary>Gives link <paramref name="name"/> the MAC <paramref name="mac"/> ("02:ab:...").</summary>
    public void SetMac(string name, string mac) =>
        Exchange(NetlinkRequest.SetAddress(name, LinkMessage.ParseMac(mac)), $"netlink RTM_NEWLINK {name} address {mac}{_where}");

    /// <summary>Deletes link <paramref name="name"/>; a veth's peer goes with it.</summary>
    internal void DeleteLink(string name) => Exchange(NetlinkRequest.DeleteLink(name), $"netlink RTM_DELLINK {name}{_where}");

    /// <summary>Deletes link <paramref name="name"/> of the calling thread's namespace if it can, as a teardown does
    /// (`ip link del` with its failure ignored); false when it could not (already gone, or refused).</summary>
    public static bool TryDeleteLink(string name)
    {
        try
        {
            using var netlink = Open();
            netlink.DeleteLink(name);
            return true;
        }
        catch (SystemCallException)
        {
            return false;
        }
    }

    /// <summary>The IPv4 addresses of link <paramref name="index"/> (<paramref name="name"/>), in the kernel's order:
    /// what `ip -4 addr show dev NAME` lists.</summary>
    internal List<AddressMessage> Ipv4Addresses(int index, string name) =>
        Dump(NetlinkRequest.DumpIpv4Addresses(), $"netlink RTM_GETADDR dev {name}{_where}")
            .Select(m => AddressMessage.Parse(m.Payload))
            .Where(a => a.Family == Rtnl.AF_INET && a.Index == index)
            .ToList();

    internal void AddAddress(int index, string name, IPAddress address, int prefixLength) =>
        Exchange(NetlinkRequest.NewAddress(index, address, prefixLength), $"netlink RTM_NEWADDR {address}/{prefixLength} dev {name}{_where}");

    /// <summary>One of a guest's routes; <paramref name="eth0"/> is the index of its eth0.</summary>
    internal void AddRoute(GuestRoute route, int eth0) => Exchange(NetlinkRequest.NewRoute(route, eth0), $"netlink RTM_NEWROUTE {route}{_where}");

    /// <summary>A persistent tap <paramref name="name"/> owned by root, with virtio-net headers, down (`ip tuntap add dev
    /// NAME mode tap vnet_hdr`). Not through netlink: the tun driver makes its devices only when named on an open
    /// /dev/net/tun (its RTM_NEWLINK answers EOPNOTSUPP); TUNSETPERSIST keeps it after the descriptor is closed. An
    /// existing tap of that name is taken over with these flags, as by `ip tuntap add`; another kind of link is EINVAL.</summary>
    public static void AddTap(string name)
    {
        if (name.Length is 0 or >= Libc.IFNAMSIZ) throw new FormatException($"invalid interface name '{name}': 1 to 15 characters");
        var fd = Libc.Open("/dev/net/tun", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw SystemCallException.FromLastError($"open /dev/net/tun for tap {name}", "is the tun module loaded (modprobe tun)?");
        try
        {
            unsafe
            {
                var request = new Libc.IfReq { Flags = Libc.IFF_TAP | Libc.IFF_NO_PI | Libc.IFF_VNET_HDR };
                System.Text.Encoding.ASCII.GetBytes(name, new Span<byte>(request.Name, Libc.IFNAMSIZ - 1));
                if (Libc.Ioctl(fd, Libc.TUNSETIFF, &request) != 0)
                    throw SystemCallException.FromLastError($"ioctl TUNSETIFF tap {name} (no_pi, vnet_hdr) on /dev/net/tun");
                if (Libc.Ioctl(fd, Libc.TUNSETPERSIST, (void*)1) != 0) throw SystemCallException.FromLastError($"ioctl TUNSETPERSIST tap {name}");
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>A dump's messages; a dump the kernel marks interrupted (the table changed under it) is asked again.</summary>
    private List<NetlinkMessage> Dump(NetlinkRequest request, string operation)
    {
        for (var attempt = 1; ; attempt++)
        {
            var messages = Exchange(request, operation);
            if (attempt == 3 || !messages.Any(m => (m.Flags & Rtnl.NLM_F_DUMP_INTR) != 0)) return messages;
        }
    }

    /// <summary>Sends <paramref name="request"/> and reads until its end: the ack (an NLMSG_ERROR with errno 0) of a
    /// request, NLMSG_DONE of a dump. Returns the messages before it; a refusal throws.</summary>
    private List<NetlinkMessage> Exchange(NetlinkRequest request, string operation)
    {
        var sequence = ++_sequence;
        var fd = (int)_socket.DangerousGetHandle();
        var kernel = new Libc.SockaddrNl { Family = Libc.AF_NETLINK };
        var bytes = request.Bytes(sequence);
        unsafe
        {
            fixed (byte* b = bytes)
                while (Libc.Sendto(fd, b, bytes.Length, 0, &kernel, sizeof(Libc.SockaddrNl)) < 0)
                    if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.EINTR) throw SystemCallException.FromLastError($"{operation}: send");
        }
        var replies = new List<NetlinkMessage>();
        while (true)
        {
            nint received;
            unsafe
            {
                fixed (byte* b = _receive)
                    received = Libc.Recv(fd, b, _receive.Length, Libc.MSG_TRUNC);
            }
            if (received < 0)
            {
                if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                throw SystemCallException.FromLastError($"{operation}: receive");
            }
            if (received > _receive.Length) throw new SystemCallException(operation, EPROTO, $"a reply of {received} bytes, more than {_receive.Length}");
            List<NetlinkMessage> messages;
            try
            {
                messages = NetlinkMessage.Split(_receive.AsSpan(0, (int)received));
            }
            catch (InvalidDataException e)
            {
                throw new SystemCallException(operation, EPROTO, e.Message);
            }
            foreach (var message in messages)
            {
                // A late answer to an earlier request that gave up (none do today) is not this one's.
                if (message.Sequence != sequence) continue;
                if (message.Type is Rtnl.NLMSG_ERROR or Rtnl.NLMSG_DONE)
                {
                    var (errno, said) = message.Error();
                    if (errno != 0) throw new SystemCallException(operation, errno, said is null ? null : $"the kernel says: {said}");
                    return replies;
                }
                replies.Add(message);
            }
        }
    }
}
