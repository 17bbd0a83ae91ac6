using HybridHypervisor.Domains;
using System.Security.Cryptography;
using Vserver.Isolation.Network;

namespace Vserver.IntegrationTests;

/// <summary>A domain's tap device on a bridge of its own, removed even when the test fails.</summary>
public sealed class DomainTapTests
{
    [Fact]
    public void A_tap_is_plugged_into_the_bridge_and_removed_without_a_trace()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var bridge = new HostBridge($"vst{id}", Ipv4Subnet.Parse($"10.{RandomNumberGenerator.GetInt32(200, 250)}.{RandomNumberGenerator.GetInt32(0, 256)}.0/24"));
        var tap = $"vtt{id}";
        try
        {
            bridge.Ensure();
            DomainTap.Create(tap, bridge);

            DomainTap.Exists(tap).ShouldBeTrue();
            Path.GetFileName(new DirectoryInfo($"/sys/class/net/{tap}/master").LinkTarget).ShouldBe(bridge.Name);
            File.ReadAllText($"/sys/class/net/{tap}/tun_flags").Trim().ShouldBe("0x5802", "a persistent tap with vnet headers (IFF_TAP|IFF_PERSIST|IFF_NO_PI|IFF_VNET_HDR)");

            DomainTap.Destroy(tap);
            DomainTap.Exists(tap).ShouldBeFalse();
            DomainTap.Destroy(tap);
        }
        finally
        {
            DomainTap.Destroy(tap);
            bridge.Delete();
        }
    }

    [Fact]
    public void A_name_that_is_no_interface_name_is_refused_before_anything_is_made()
    {
        Should.Throw<FormatException>(() => DomainTap.Create("../../etc", new HostBridge("vsbr-unused", Ipv4Subnet.Parse("10.250.0.0/24"))))
            .Message.ShouldContain("invalid");
        Directory.Exists("/sys/class/net/vsbr-unused").ShouldBeFalse();
    }

    [Fact]
    public void The_mac_is_stable_per_identity_and_locally_administered()
    {
        var a = DomainTap.MacFor("/var/lib/vserver\0web1");
        a.ShouldBe(DomainTap.MacFor("/var/lib/vserver\0web1"));
        a.ShouldNotBe(DomainTap.MacFor("/var/lib/vserver\0web2"));
        a.ShouldMatch("^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$");
    }
}
