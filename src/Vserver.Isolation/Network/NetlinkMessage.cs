using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Vserver.Isolation.Network;

/// <summary>rtnetlink's numbers, from linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h and veth.h.</summary>
internal static class Rtnl
{
    public const ushort NLMSG_ERROR = 2, NLMSG_DONE = 3;
    public const ushort NLM_F_REQUEST = 0x1, NLM_F_ACK = 0x4, NLM_F_DUMP_INTR = 0x10, NLM_F_DUMP = 0x300,
        NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
    // On an NLMSG_ERROR: the request is echoed without its payload; extended-ack attributes follow.
    public const ushort NLM_F_CAPPED = 0x100, NLM_F_ACK_TLVS = 0x200;
    public const ushort NLMSGERR_ATTR_MSG = 1;

    public const ushort RTM_NEWLINK = 16, RTM_DELLINK = 17, RTM_GETLINK = 18, RTM_NEWADDR = 20, RTM_GETADDR = 22, RTM_NEWROUTE = 24;

    public const ushort IFLA_ADDRESS = 1, IFLA_IFNAME = 3, IFLA_MASTER = 10, IFLA_LINKINFO = 18, IFLA_NET_NS_FD = 28;
    public const ushort IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, VETH_INFO_PEER = 1;
    public const ushort IFA_ADDRESS = 1, IFA_LOCAL = 2;
    public const ushort RTA_DST = 1, RTA_OIF = 4, RTA_GATEWAY = 5, RTA_PREFSRC = 7;

    public const byte AF_UNSPEC = 0, AF_INET = 2;
    public const uint IFF_UP = 0x1;
    public const byte RT_TABLE_MAIN = 254, RTPROT_BOOT = 3, RT_SCOPE_UNIVERSE = 0, RT_SCOPE_LINK = 253, RTN_UNICAST = 1;

    /// <summary>The attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.</summary>
    public const ushort NLA_TYPE_MASK = 0x3fff;

    public const int HeaderLength = 16, AttributeHeaderLength = 4;

    /// <summary>Messages and attributes start on 4-byte boundaries (NLMSG_ALIGN, NLA_ALIGN).</summary>
    public static int Align(int length) => (length + 3) & ~3;
}

/// <summary>
/// One request as the kernel reads it: struct nlmsghdr, the family's fixed header (ifinfomsg, ifaddrmsg, rtmsg), then
/// attributes, each a struct rtattr (length, type) and its value padded to 4 bytes; a nested attribute's value is
/// attributes again (IFLA_LINKINFO holds IFLA_INFO_KIND and IFLA_INFO_DATA; a veth's VETH_INFO_PEER an ifinfomsg and
/// the peer's attributes). Lengths count the header, not the padding after the value; a nest's covers its children's
/// padding, as iproute2 writes them. Numbers are in host order (little-endian here: the structs are x86-64's), addresses
/// in network order.
/// </summary>
internal sealed class NetlinkRequest
{
    private byte[] _bytes = new byte[256];
    private int _length;

    public NetlinkRequest(ushort type, ushort flags)
    {
        var header = Reserve(Rtnl.HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], flags);
    }

    /// <summary>struct ifinfomsg: family, pad, type, index, flags, and which flags to change.</summary>
    public NetlinkRequest IfInfo(int index = 0, uint flags = 0, uint change = 0)
    {
        var s = Reserve(16);
        s[0] = Rtnl.AF_UNSPEC;
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], change);
        return this;
    }

    /// <summary>struct ifaddrmsg: family, prefix length, flags, scope, index.</summary>
    public NetlinkRequest IfAddr(byte family, byte prefixLength = 0, byte scope = Rtnl.RT_SCOPE_UNIVERSE, int index = 0)
    {
        var s = Reserve(8);
        s[0] = family;
        s[1] = prefixLength;
        s[3] = scope;
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], index);
        return this;
    }

    /// <summary>struct rtmsg: family, destination and source lengths, tos, table, protocol, scope, type, flags.</summary>
    public NetlinkRequest Rt(byte family, byte destinationLength, byte table, byte protocol, byte scope, byte type)
    {
        var s = Reserve(12);
        s[0] = family;
        s[1] = destinationLength;
        s[4] = table;
        s[5] = protocol;
        s[6] = scope;
        s[7] = type;
        return this;
    }

    public NetlinkRequest Attribute(ushort type, ReadOnlySpan<byte> value)
    {
        var s = Reserve(Rtnl.Align(Rtnl.AttributeHeaderLength + value.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)(Rtnl.AttributeHeaderLength + value.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(s[2..], type);
        value.CopyTo(s[Rtnl.AttributeHeaderLength..]);
        return this;
    }

    /// <summary>A string attribute: NUL-terminated, as the kernel's NLA_STRING and NLA_NUL_STRING policies take it.</summary>
    public NetlinkRequest Attribute(ushort type, string value)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(value) + 1];
        Encoding.UTF8.GetBytes(value, bytes);
        return Attribute(type, bytes);
    }

    public NetlinkRequest Attribute(ushort type, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return Attribute(type, bytes);
    }

    public NetlinkRequest Attribute(ushort type, IPAddress address) => Attribute(type, address.GetAddressBytes());

    /// <summary>An attribute whose value is what <paramref name="content"/> writes (attributes, or a fixed header and
    /// attributes); its length is set when the content is written.</summary>
    public NetlinkRequest Nested(ushort type, Action<NetlinkRequest> content)
    {
        var start = _length;
        var header = Reserve(Rtnl.AttributeHeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], type);
        content(this);
        BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan(start), (ushort)(_length - start));
        return this;
    }

    /// <summary>RTM_GETLINK of one link by name; the kernel answers with its RTM_NEWLINK, or ENODEV.</summary>
    public static NetlinkRequest GetLink(string name) =>
        new NetlinkRequest(Rtnl.RTM_GETLINK, Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_ACK).IfInfo().Attribute(Rtnl.IFLA_IFNAME, name);

    /// <summary>`ip link add NAME type veth peer name PEER [address MAC] netns NETNS`: the peer is described by an
    /// ifinfomsg and link attributes of its own, and made directly in the namespace open at <paramref name="peerNetnsFd"/>.</summary>
    public static NetlinkRequest NewVeth(string name, string peer, byte[]? peerMac, int peerNetnsFd) =>
        new NetlinkRequest(Rtnl.RTM_NEWLINK, Create)
            .IfInfo()
            .Attribute(Rtnl.IFLA_IFNAME, name)
            .Nested(Rtnl.IFLA_LINKINFO, info => info
                .Attribute(Rtnl.IFLA_INFO_KIND, Kind("veth"))
                .Nested(Rtnl.IFLA_INFO_DATA, data => data
                    .Nested(Rtnl.VETH_INFO_PEER, p =>
                    {
                        p.IfInfo();
                        if (peerMac is not null) p.Attribute(Rtnl.IFLA_ADDRESS, peerMac);
                        p.Attribute(Rtnl.IFLA_NET_NS_FD, (uint)peerNetnsFd).Attribute(Rtnl.IFLA_IFNAME, peer);
                    })));

    /// <summary>`ip link add NAME type bridge`.</summary>
    public static NetlinkRequest NewBridge(string name) =>
        new NetlinkRequest(Rtnl.RTM_NEWLINK, Create)
            .IfInfo()
            .Attribute(Rtnl.IFLA_IFNAME, name)
            .Nested(Rtnl.IFLA_LINKINFO, info => info.Attribute(Rtnl.IFLA_INFO_KIND, Kind("bridge")));

    /// <summary>`ip link set NAME [master MASTER] up`, the link named rather than indexed (the kernel takes either).</summary>
    public static NetlinkRequest SetUp(string name, int? masterIndex = null)
    {
        var request = new NetlinkRequest(Rtnl.RTM_NEWLINK, Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_ACK)
            .IfInfo(flags: Rtnl.IFF_UP, change: Rtnl.IFF_UP)
            .Attribute(Rtnl.IFLA_IFNAME, name);
        return masterIndex is { } master ? request.Attribute(Rtnl.IFLA_MASTER, (uint)master) : request;
    }

    /// <summary>`ip link set NAME address MAC`.</summary>
    public static NetlinkRequest SetAddress(string name, byte[] mac) =>
        new NetlinkRequest(Rtnl.RTM_NEWLINK, Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_ACK)
            .IfInfo()
            .Attribute(Rtnl.IFLA_IFNAME, name)
            .Attribute(Rtnl.IFLA_ADDRESS, mac);

    /// <summary>`ip link del NAME`.</summary>
    public static NetlinkRequest DeleteLink(string name) =>
        new NetlinkRequest(Rtnl.RTM_DELLINK, Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_ACK).IfInfo().Attribute(Rtnl.IFLA_IFNAME, name);

    /// <summary>Every IPv4 address of the namespace (the kernel filters a dump by family only, unless asked to be strict).</summary>
    public static NetlinkRequest DumpIpv4Addresses() =>
        new NetlinkRequest(Rtnl.RTM_GETADDR, Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_DUMP).IfAddr(Rtnl.AF_INET);

    /// <summary>`ip addr add ADDRESS/PREFIX dev INDEX`: scope global, no broadcast address, the local address and the
    /// prefix's address the same (no peer).</summary>
    public static NetlinkRequest NewAddress(int index, IPAddress address, int prefixLength) =>
        new NetlinkRequest(Rtnl.RTM_NEWADDR, Create)
            .IfAddr(Rtnl.AF_INET, (byte)prefixLength, Rtnl.RT_SCOPE_UNIVERSE, index)
            .Attribute(Rtnl.IFA_LOCAL, address)
            .Attribute(Rtnl.IFA_ADDRESS, address);

    /// <summary>`ip route add ROUTE` in the main table, as iproute2 makes it: protocol boot, scope link for a route with
    /// no gateway and universe otherwise; <paramref name="eth0"/>, the index of the guest's eth0, is the output device
    /// when <see cref="GuestRoute.OnEth0"/> says so.</summary>
    public static NetlinkRequest NewRoute(GuestRoute route, int eth0)
    {
        var request = new NetlinkRequest(Rtnl.RTM_NEWROUTE, Create)
            .Rt(Rtnl.AF_INET, (byte)(route.Destination is null ? 0 : 32), Rtnl.RT_TABLE_MAIN, Rtnl.RTPROT_BOOT,
                route.Via is null ? Rtnl.RT_SCOPE_LINK : Rtnl.RT_SCOPE_UNIVERSE, Rtnl.RTN_UNICAST);
        if (route.Destination is { } destination) request.Attribute(Rtnl.RTA_DST, destination);
        if (route.Via is { } via) request.Attribute(Rtnl.RTA_GATEWAY, via);
        if (route.Source is { } source) request.Attribute(Rtnl.RTA_PREFSRC, source);
        return route.OnEth0 ? request.Attribute(Rtnl.RTA_OIF, (uint)eth0) : request;
    }

    /// <summary>A link kind as iproute2 writes it, without the NUL (the kernel's NLA_STRING takes it either way).</summary>
    private static byte[] Kind(string kind) => Encoding.ASCII.GetBytes(kind);

    /// <summary>A request that makes something and fails with EEXIST if it is there (what `ip ... add` sends).</summary>
    private const ushort Create = Rtnl.NLM_F_REQUEST | Rtnl.NLM_F_ACK | Rtnl.NLM_F_CREATE | Rtnl.NLM_F_EXCL;

    /// <summary>The message with its length and sequence number filled in.</summary>
    public ReadOnlySpan<byte> Bytes(uint sequence)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_bytes, (uint)_length);
        BinaryPrimitives.WriteUInt32LittleEndian(_bytes.AsSpan(8), sequence);
        return _bytes.AsSpan(0, _length);
    }

    private Span<byte> Reserve(int count)
    {
        if (_length + count > _bytes.Length) Array.Resize(ref _bytes, Math.Max(_bytes.Length * 2, _length + count));
        var span = _bytes.AsSpan(_length, count);
        span.Clear();
        _length += count;
        return span;
    }
}

/// <summary>One message the kernel sent: its nlmsghdr's type, flags and sequence number, and what follows the header.</summary>
internal sealed record NetlinkMessage(ushort Type, ushort Flags, uint Sequence, byte[] Payload)
{
    /// <summary>The messages of one datagram; one whose length runs past the datagram, or is shorter than a header, is
    /// refused (<see cref="InvalidDataException"/>).</summary>
    public static List<NetlinkMessage> Split(ReadOnlySpan<byte> datagram)
    {
        var messages = new List<NetlinkMessage>();
        while (datagram.Length >= Rtnl.HeaderLength)
        {
            var length = BinaryPrimitives.ReadUInt32LittleEndian(datagram);
            if (length < Rtnl.HeaderLength || length > datagram.Length)
                throw new InvalidDataException($"a netlink message of {length} bytes in the {datagram.Length} left of a datagram");
            messages.Add(new NetlinkMessage(BinaryPrimitives.ReadUInt16LittleEndian(datagram[4..]), BinaryPrimitives.ReadUInt16LittleEndian(datagram[6..]),
                BinaryPrimitives.ReadUInt32LittleEndian(datagram[8..]), datagram[Rtnl.HeaderLength..(int)length].ToArray()));
            datagram = datagram[Math.Min(Rtnl.Align((int)length), datagram.Length)..];
        }
        return messages;
    }

    /// <summary>What an NLMSG_ERROR (or a dump's NLMSG_DONE) says: 0 for an ack, else the errno, with the kernel's own
    /// words when it gave some (the extended ack's NLMSGERR_ATTR_MSG, which follows the echoed request).</summary>
    public (int Errno, string? KernelMessage) Error()
    {
        if (Payload.Length < 4) return (0, null);
        var errno = -BinaryPrimitives.ReadInt32LittleEndian(Payload);
        if (Type != Rtnl.NLMSG_ERROR || (Flags & Rtnl.NLM_F_ACK_TLVS) == 0 || Payload.Length < 4 + Rtnl.HeaderLength) return (errno, null);
        // struct nlmsgerr: the error, then the request's header, then (unless capped) the request's payload.
        var echoed = (Flags & Rtnl.NLM_F_CAPPED) != 0
            ? Rtnl.HeaderLength
            : Rtnl.Align((int)BinaryPrimitives.ReadUInt32LittleEndian(Payload.AsSpan(4)));
        var start = 4 + echoed;
        if (start > Payload.Length) return (errno, null);
        var attributes = NetlinkAttributes.Parse(Payload.AsSpan(start));
        return (errno, attributes.TryGetValue(Rtnl.NLMSGERR_ATTR_MSG, out var text) ? NetlinkAttributes.String(text) : null);
    }
}

internal static class NetlinkAttributes
{
    /// <summary>The attributes in <paramref name="span"/> by type (flags masked off); the first of a repeated type wins.
    /// A truncated attribute ends the list, as the kernel's nla_for_each_attr does.</summary>
    public static Dictionary<ushort, byte[]> Parse(ReadOnlySpan<byte> span)
    {
        var attributes = new Dictionary<ushort, byte[]>();
        while (span.Length >= Rtnl.AttributeHeaderLength)
        {
            var length = BinaryPrimitives.ReadUInt16LittleEndian(span);
            if (length < Rtnl.AttributeHeaderLength || length > span.Length) break;
            var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(span[2..]) & Rtnl.NLA_TYPE_MASK);
            attributes.TryAdd(type, span[Rtnl.AttributeHeaderLength..length].ToArray());
            span = span[Math.Min(Rtnl.Align(length), span.Length)..];
        }
        return attributes;
    }

    /// <summary>A string attribute's text, without the NUL the kernel ends it with.</summary>
    public static string String(ReadOnlySpan<byte> value)
    {
        var end = value.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end >= 0 ? value[..end] : value);
    }
}

/// <summary>A link as RTM_NEWLINK describes it (a reply to RTM_GETLINK): its index, name, flags (IFF_UP...), hardware
/// address, the index of its master (a bridge) and its kind (IFLA_INFO_KIND: veth, bridge, tun).</summary>
internal sealed record LinkMessage(int Index, string? Name, uint Flags, byte[]? Address, int? Master, string? Kind)
{
    public static LinkMessage Parse(byte[] payload)
    {
        if (payload.Length < 16) throw new InvalidDataException($"an RTM_NEWLINK of {payload.Length} bytes, shorter than its ifinfomsg");
        var attributes = NetlinkAttributes.Parse(payload.AsSpan(16));
        string? kind = null;
        if (attributes.TryGetValue(Rtnl.IFLA_LINKINFO, out var info) && NetlinkAttributes.Parse(info).TryGetValue(Rtnl.IFLA_INFO_KIND, out var k))
            kind = NetlinkAttributes.String(k);
        return new LinkMessage(BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(4)),
            attributes.TryGetValue(Rtnl.IFLA_IFNAME, out var name) ? NetlinkAttributes.String(name) : null,
            BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(8)),
            attributes.GetValueOrDefault(Rtnl.IFLA_ADDRESS),
            attributes.TryGetValue(Rtnl.IFLA_MASTER, out var master) && master.Length == 4 ? BinaryPrimitives.ReadInt32LittleEndian(master) : null,
            kind);
    }

    /// <summary>An Ethernet address as sysfs and `ip link` print it (52:54:00:12:34:56), or null for another kind.</summary>
    public string? Mac => Address is { Length: 6 } a ? string.Join(':', a.Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture))) : null;

    /// <summary>The six bytes of an address written as six hex pairs (52:54:00:12:34:56).</summary>
    public static byte[] ParseMac(string mac)
    {
        var parts = mac.Split(':');
        if (parts.Length != 6 || parts.Any(p => p.Length != 2 || !p.All(char.IsAsciiHexDigit)))
            throw new FormatException($"invalid MAC address '{mac}': write six hex pairs like 52:54:00:12:34:56");
        return parts.Select(p => Convert.ToByte(p, 16)).ToArray();
    }
}

/// <summary>An address as RTM_NEWADDR describes it (a dump of RTM_GETADDR): family, prefix length, the link's index, and
/// the address itself (IFA_LOCAL; IFA_ADDRESS is the peer's on a point-to-point link, and the same otherwise).</summary>
internal sealed record AddressMessage(byte Family, byte PrefixLength, int Index, IPAddress? Local)
{
    public static AddressMessage Parse(byte[] payload)
    {
        if (payload.Length < 8) throw new InvalidDataException($"an RTM_NEWADDR of {payload.Length} bytes, shorter than its ifaddrmsg");
        var attributes = NetlinkAttributes.Parse(payload.AsSpan(8));
        var local = attributes.GetValueOrDefault(Rtnl.IFA_LOCAL) ?? attributes.GetValueOrDefault(Rtnl.IFA_ADDRESS);
        return new AddressMessage(payload[0], payload[1], BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(4)),
            local is { Length: 4 or 16 } ? new IPAddress(local) : null);
    }
}
