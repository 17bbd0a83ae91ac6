using System.Buffers.Binary;
using System.Net;
using System.Text;
using Shouldly;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Network;

/// <summary>rtnetlink messages as bytes, without a socket: requests byte for byte as iproute2 6.1 sends them (taken with
/// strace from `ip link add`, `ip addr add`, `ip route add`), and the kernel's answers (acks, errors with the extended
/// ack's text, links and addresses) read back.</summary>
public sealed class NetlinkMessageTests
{
    private static byte[] Bytes(params object[] parts)
    {
        var bytes = new List<byte>();
        foreach (var part in parts)
            bytes.AddRange(part switch
            {
                byte[] b => b,
                string s => Encoding.ASCII.GetBytes(s),
                int i => [(byte)i],
                byte b => [b],
                _ => throw new ArgumentException($"not a byte part: {part}"),
            });
        return [.. bytes];
    }

    private static byte[] U16(int value) => [(byte)value, (byte)(value >> 8)];

    private static byte[] U32(uint value) => [(byte)value, (byte)(value >> 8), (byte)(value >> 16), (byte)(value >> 24)];

    private static byte[] Zeros(int count) => new byte[count];

    /// <summary>nlmsghdr: length, type, flags, sequence, port id.</summary>
    private static byte[] Header(int length, int type, int flags, uint sequence) =>
        Bytes(U32((uint)length), U16(type), U16(flags), U32(sequence), U32(0));

    private const int CreateFlags = 0x605; // NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE

    [Fact]
    public void A_veth_whose_peer_is_made_in_a_namespace_is_what_ip_link_add_sends()
    {
        // ip link add vstnl5f20b5 type veth peer name eth0 address 52:54:00:aa:bb:cc netns PATH (the namespace open as fd 4)
        var expected = Bytes(
            Header(116, 16, CreateFlags, 7),
            Zeros(16),
            U16(16), U16(3), "vstnl5f20b5", Zeros(1),
            U16(68), U16(18),
            /**/ U16(8), U16(1), "veth",
            /**/ U16(56), U16(2),
            /*    */ U16(52), U16(1), Zeros(16),
            /*        */ U16(10), U16(1), new byte[] { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc }, Zeros(2),
            /*        */ U16(8), U16(28), U32(4),
            /*        */ U16(9), U16(3), "eth0", Zeros(4));

        var request = NetlinkRequest.NewVeth("vstnl5f20b5", "eth0", LinkMessage.ParseMac("52:54:00:aa:bb:cc"), 4);

        request.Bytes(7).ToArray().ShouldBe(expected);
    }

    [Fact]
    public void Without_a_mac_the_peer_has_no_address_attribute_and_the_nest_lengths_shrink_with_it()
    {
        var bytes = NetlinkRequest.NewVeth("vs-web1", "eth0", null, 9).Bytes(1).ToArray();

        BinaryPrimitives.ReadUInt32LittleEndian(bytes).ShouldBe((uint)bytes.Length);
        var link = NetlinkAttributes.Parse(bytes.AsSpan(32));
        NetlinkAttributes.String(link[3]).ShouldBe("vs-web1");
        var info = NetlinkAttributes.Parse(link[18]);
        Encoding.ASCII.GetString(info[1]).ShouldBe("veth");
        // The peer's value starts with its ifinfomsg.
        var peerAttributes = NetlinkAttributes.Parse(NetlinkAttributes.Parse(info[2])[1].AsSpan(16));
        peerAttributes.Keys.Order().ShouldBe([(ushort)3, (ushort)28]);
        BinaryPrimitives.ReadUInt32LittleEndian(peerAttributes[28]).ShouldBe(9u);
    }

    [Fact]
    public void A_bridge_is_what_ip_link_add_type_bridge_sends()
    {
        var expected = Bytes(
            Header(68, 16, CreateFlags, 3),
            Zeros(16),
            U16(17), U16(3), "vstnl5f20b5b", Zeros(1), Zeros(3),
            U16(16), U16(18),
            /**/ U16(10), U16(1), "bridge", Zeros(2));

        NetlinkRequest.NewBridge("vstnl5f20b5b").Bytes(3).ToArray().ShouldBe(expected);
    }

    [Fact]
    public void An_address_is_what_ip_addr_add_sends()
    {
        // ip addr add 10.251.77.9/24 dev lo (index 1)
        var expected = Bytes(Header(40, 20, CreateFlags, 2),
            2, 24, 0, 0, U32(1),
            U16(8), U16(2), new byte[] { 10, 251, 77, 9 },
            U16(8), U16(1), new byte[] { 10, 251, 77, 9 });

        NetlinkRequest.NewAddress(1, IPAddress.Parse("10.251.77.9"), 24).Bytes(2).ToArray().ShouldBe(expected);
    }

    [Fact]
    public void A_guest_in_the_subnet_gets_the_default_route_ip_route_add_default_via_sends()
    {
        var routes = GuestAddress.For(IPAddress.Parse("10.251.77.9"), Ipv4Subnet.Parse("10.251.77.0/24")).Routes();

        routes.Count.ShouldBe(1);
        NetlinkRequest.NewRoute(routes[0], 3).Bytes(5).ToArray().ShouldBe(Bytes(Header(36, 24, CreateFlags, 5),
            2, 0, 0, 0, 254, 3, 0, 1, U32(0),
            U16(8), U16(5), new byte[] { 10, 251, 77, 1 }));
    }

    [Fact]
    public void A_routed_guest_gets_the_link_route_to_the_gateway_then_the_default_route_from_its_address_as_ip_sends_them()
    {
        var routes = GuestAddress.For(IPAddress.Parse("198.18.3.4"), Ipv4Subnet.Parse("10.251.77.0/24")).Routes();

        routes.Select(r => r.ToString()).ShouldBe(["10.251.77.1 dev eth0", "default via 10.251.77.1 dev eth0 src 198.18.3.4"]);
        // ip route add 10.251.77.1 dev eth0: a /32, scope link, the device's index as RTA_OIF
        NetlinkRequest.NewRoute(routes[0], 3).Bytes(5).ToArray().ShouldBe(Bytes(Header(44, 24, CreateFlags, 5),
            2, 32, 0, 0, 254, 3, 253, 1, U32(0),
            U16(8), U16(1), new byte[] { 10, 251, 77, 1 },
            U16(8), U16(4), U32(3)));
        // ip route add default via 10.251.77.1 dev eth0 src 198.18.3.4
        NetlinkRequest.NewRoute(routes[1], 3).Bytes(6).ToArray().ShouldBe(Bytes(Header(52, 24, CreateFlags, 6),
            2, 0, 0, 0, 254, 3, 0, 1, U32(0),
            U16(8), U16(5), new byte[] { 10, 251, 77, 1 },
            U16(8), U16(7), new byte[] { 198, 18, 3, 4 },
            U16(8), U16(4), U32(3)));
    }

    [Fact]
    public void Setting_a_link_up_on_a_bridge_changes_only_the_up_flag_and_names_the_link()
    {
        var bytes = NetlinkRequest.SetUp("vs-web1", masterIndex: 42).Bytes(1).ToArray();

        bytes.ShouldBe(Bytes(Header(52, 16, 0x5, 1),
            0, 0, U16(0), U32(0), U32(1), U32(1),
            U16(12), U16(3), "vs-web1", Zeros(1),
            U16(8), U16(10), U32(42)));
        NetlinkRequest.SetUp("lo").Bytes(1).Length.ShouldBe(40, "no IFLA_MASTER without a master");
    }

    [Fact]
    public void An_attribute_is_padded_to_four_bytes_but_its_length_counts_only_header_and_value()
    {
        var request = new NetlinkRequest(18, 1).IfInfo();
        request.Attribute(3, "a").Attribute(3, "abcd").Attribute(1, new byte[] { 1, 2, 3, 4 });
        var bytes = request.Bytes(1).ToArray();

        // 16 + 16, then "a\0" (6, padded to 8), "abcd\0" (9, padded to 12), four bytes (8).
        bytes.Length.ShouldBe(32 + 8 + 12 + 8);
        bytes[32..40].ShouldBe(Bytes(U16(6), U16(3), "a", Zeros(3)));
        bytes[40..52].ShouldBe(Bytes(U16(9), U16(3), "abcd", Zeros(4)));
        bytes[52..60].ShouldBe(Bytes(U16(8), U16(1), new byte[] { 1, 2, 3, 4 }));
    }

    [Fact]
    public void An_ack_is_errno_zero()
    {
        var ack = NetlinkMessage.Split(Bytes(Header(36, 2, 0x100, 9), U32(0), Header(32, 16, 0x605, 9)));

        ack.ShouldHaveSingleItem().Sequence.ShouldBe(9u);
        ack[0].Error().ShouldBe((0, (string?)null));
    }

    [Fact]
    public void An_error_carries_the_errno_and_the_kernels_words_after_a_capped_echo()
    {
        // NLM_F_CAPPED | NLM_F_ACK_TLVS: the request's header only, then NLMSGERR_ATTR_MSG.
        var text = "Device or resource busy, kernel says";
        var tlv = Bytes(U16(4 + text.Length + 1), U16(1), text, Zeros(1));
        tlv = [.. tlv, .. Zeros((4 - tlv.Length % 4) % 4)];
        var datagram = Bytes(Header(16 + 4 + 16 + tlv.Length, 2, 0x300, 4), U32(unchecked((uint)-17)), Header(116, 16, 0x605, 4), tlv);

        NetlinkMessage.Split(datagram).ShouldHaveSingleItem().Error().ShouldBe((17, text));
    }

    [Fact]
    public void An_error_that_echoes_the_whole_request_has_its_words_after_the_request()
    {
        var request = NetlinkRequest.DeleteLink("vs-web1").Bytes(4).ToArray();
        var tlv = Bytes(U16(8), U16(1), "odd", Zeros(1));
        var datagram = Bytes(Header(16 + 4 + request.Length + tlv.Length, 2, 0x200, 4), U32(unchecked((uint)-19)), request, tlv);

        NetlinkMessage.Split(datagram).ShouldHaveSingleItem().Error().ShouldBe((19, "odd"));
        // Without NLM_F_ACK_TLVS there are no words to read.
        NetlinkMessage.Split(Bytes(Header(16 + 4 + 16, 2, 0x100, 4), U32(unchecked((uint)-1)), Header(32, 17, 5, 4)))
            .ShouldHaveSingleItem().Error().ShouldBe((1, (string?)null));
    }

    [Fact]
    public void A_link_is_read_with_its_name_mac_master_and_nested_kind()
    {
        var payload = Bytes(0, 0, U16(1), U32(7), U32(0x1043), U32(0),
            U16(9), U16(3), "eth0", Zeros(4),
            U16(10), U16(1), new byte[] { 0x52, 0x54, 0x00, 0x0a, 0xbb, 0xcc }, Zeros(2),
            U16(8), U16(10), U32(3),
            // IFLA_LINKINFO with NLA_F_NESTED set, as the kernel may send it.
            U16(12), U16(18 | 0x8000),
            /**/ U16(8), U16(1), "veth");

        var link = LinkMessage.Parse(payload);

        link.Index.ShouldBe(7);
        link.Name.ShouldBe("eth0");
        (link.Flags & 1).ShouldBe(1u);
        link.Mac.ShouldBe("52:54:00:0a:bb:cc");
        link.Master.ShouldBe(3);
        link.Kind.ShouldBe("veth");
    }

    [Fact]
    public void A_dump_of_addresses_is_split_into_its_messages_up_to_done()
    {
        byte[] Address(int index, byte prefix, byte[] local)
        {
            var payload = Bytes(2, prefix, 0x80, 0, U32((uint)index), U16(8), U16(1), local, U16(8), U16(2), local);
            return Bytes(Header(16 + payload.Length, 20, 2, 11), payload);
        }
        var datagram = Bytes(Address(1, 8, [127, 0, 0, 1]), Address(5, 24, [10, 251, 9, 2]), Header(20, 3, 2, 11), U32(0));

        var messages = NetlinkMessage.Split(datagram);

        messages.Select(m => m.Type).ShouldBe([(ushort)20, (ushort)20, (ushort)3]);
        var addresses = messages.Where(m => m.Type == 20).Select(m => AddressMessage.Parse(m.Payload)).ToList();
        addresses.Select(a => (a.Index, a.PrefixLength, a.Local?.ToString())).ShouldBe([(1, (byte)8, "127.0.0.1"), (5, (byte)24, "10.251.9.2")]);
        messages[2].Error().ShouldBe((0, (string?)null));
    }

    [Fact]
    public void A_message_that_runs_past_its_datagram_is_refused_and_a_cut_attribute_ends_the_list()
    {
        Should.Throw<InvalidDataException>(() => NetlinkMessage.Split(Bytes(Header(64, 20, 2, 1), Zeros(8))));
        Should.Throw<InvalidDataException>(() => NetlinkMessage.Split(Bytes(Header(8, 20, 2, 1))));

        var attributes = NetlinkAttributes.Parse(Bytes(U16(8), U16(2), U32(1), U16(8), U16(2), U32(2), U16(40), U16(3), "cut"));
        attributes.Keys.ShouldBe([(ushort)2]);
        BinaryPrimitives.ReadUInt32LittleEndian(attributes[2]).ShouldBe(1u, "the first of a repeated attribute counts");
    }

    [Theory]
    [InlineData("52:54:00:12:34:5")]
    [InlineData("52:54:00:12:34:56:78")]
    [InlineData("52-54-00-12-34-56")]
    [InlineData("52:54:00:12:34:zz")]
    public void A_mac_that_is_not_six_hex_pairs_is_refused(string mac) =>
        Should.Throw<FormatException>(() => LinkMessage.ParseMac(mac)).Message.ShouldContain(mac);
}
