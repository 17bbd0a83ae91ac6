using System.Net;
using Shouldly;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Network;

/// <summary>One decision for vservers and domains: an address inside the guest subnet is held on its prefix, one outside
/// it (a public address the host routes to the guest) as a /32 with the gateway on-link.</summary>
public sealed class GuestAddressTests
{
    private static readonly Ipv4Subnet Subnet = Ipv4Subnet.Parse("10.88.0.0/16");

    [Fact]
    public void An_address_inside_the_subnet_keeps_its_prefix_and_a_plain_default_route()
    {
        var a = GuestAddress.For(IPAddress.Parse("10.88.3.7"), Subnet);

        a.Cidr.ShouldBe("10.88.3.7/16");
        a.Gateway.ShouldBe(IPAddress.Parse("10.88.0.1"));
        a.Routed.ShouldBeFalse();
        a.IpCommands().ShouldBe(["addr add 10.88.3.7/16 dev eth0", "route add default via 10.88.0.1"]);
    }

    [Theory]
    [InlineData("198.51.100.7")]
    [InlineData("10.89.0.5")]
    [InlineData("10.87.255.254")]
    public void An_address_outside_the_subnet_is_a_32_with_a_link_route_to_the_gateway_before_the_default_route(string address)
    {
        var a = GuestAddress.For(IPAddress.Parse(address), Subnet);

        a.Cidr.ShouldBe($"{address}/32");
        a.Routed.ShouldBeTrue();
        a.IpCommands().ShouldBe([
            $"addr add {address}/32 dev eth0",
            "route add 10.88.0.1 dev eth0",
            $"route add default via 10.88.0.1 dev eth0 src {address}",
        ]);
    }

    [Fact]
    public void The_subnets_edges_are_inside()
    {
        var small = Ipv4Subnet.Parse("192.168.7.0/30");
        GuestAddress.For(IPAddress.Parse("192.168.7.2"), small).Cidr.ShouldBe("192.168.7.2/30");
        GuestAddress.For(IPAddress.Parse("192.168.7.4"), small).Cidr.ShouldBe("192.168.7.4/32");
        GuestAddress.For(IPAddress.Parse("192.168.6.255"), small).Cidr.ShouldBe("192.168.6.255/32");
    }
}
