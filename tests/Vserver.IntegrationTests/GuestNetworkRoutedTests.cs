using System.Net;
using System.Security.Cryptography;
using Vserver.Isolation.Network;

namespace Vserver.IntegrationTests;

/// <summary>
/// A vserver's network namespace (<see cref="GuestNetwork.Create"/>) on a bridge of its own, with an address inside the
/// subnet and with a public one outside it that the host routes to the guest (OpenVZ's venet): the latter is a /32 with
/// the gateway on-link, and both reach the gateway and are reached from the host. Everything made is removed even when
/// the test fails.
/// </summary>
public sealed class GuestNetworkRoutedTests
{
    private static CommandResult Inside(string netns, params string[] command) => TestHost.Run("nsenter", [$"--net={netns}", .. command]);

    [Fact]
    public void An_address_outside_the_subnet_is_a_32_on_eth0_with_a_link_route_to_the_gateway_and_answers_like_one_inside()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var prefix = $"10.{RandomNumberGenerator.GetInt32(200, 250)}.{RandomNumberGenerator.GetInt32(0, 256)}";
        var bridge = new HostBridge($"vst{id}", Ipv4Subnet.Parse($"{prefix}.0/24"));
        var gateway = bridge.Subnet.Gateway.ToString();
        // From the benchmarking range (198.18.0.0/15): no one's real address, routed nowhere on this host.
        var routed = IPAddress.Parse($"198.18.{RandomNumberGenerator.GetInt32(0, 256)}.{RandomNumberGenerator.GetInt32(1, 255)}");
        var inside = IPAddress.Parse($"{prefix}.9");
        var dir = Directory.CreateTempSubdirectory("vsrouted-").FullName;
        var (routedNetns, routedVeth) = (Path.Combine(dir, "routed.netns"), $"vrr{id}");
        var (insideNetns, insideVeth) = (Path.Combine(dir, "inside.netns"), $"vri{id}");
        try
        {
            bridge.Ensure();
            var vsinit = Path.Combine(Binaries.Dir, "vsinit");
            GuestNetwork.Create(vsinit, routedNetns, routedVeth, bridge, routed);
            GuestNetwork.Create(vsinit, insideNetns, insideVeth, bridge, inside);

            Inside(routedNetns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").ShouldSucceed().Stdout.ShouldContain($" inet {routed}/32 ");
            var routes = Inside(routedNetns, "ip", "-4", "route", "show").ShouldSucceed().Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(r => r.Trim()).ToList();
            routes.ShouldBe([$"default via {gateway} dev eth0 src {routed}", $"{gateway} dev eth0 scope link"], ignoreOrder: true);
            GuestNetwork.ReadAddress(routedNetns).ShouldBe(routed.ToString());

            // Inside the subnet: unchanged, its prefix and a plain default route.
            Inside(insideNetns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").ShouldSucceed().Stdout.ShouldContain($" inet {inside}/24 ");
            Inside(insideNetns, "ip", "-4", "route", "show", "default").ShouldSucceed().Stdout.Trim().ShouldBe($"default via {gateway} dev eth0");
            GuestNetwork.ReadAddress(insideNetns).ShouldBe(inside.ToString());

            // The host's half of a routed address (the fleet's job, done here by hand): a /32 route into the bridge.
            TestHost.Run("ip", "route", "add", $"{routed}/32", "dev", bridge.Name).ShouldSucceed();
            Inside(routedNetns, "busybox", "ping", "-c", "1", "-W", "5", gateway).ShouldSucceed();
            Inside(insideNetns, "busybox", "ping", "-c", "1", "-W", "5", gateway).ShouldSucceed();
            TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", routed.ToString()).ShouldSucceed();
            TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", inside.ToString()).ShouldSucceed();
        }
        finally
        {
            GuestNetwork.Destroy(routedNetns, routedVeth);
            GuestNetwork.Destroy(insideNetns, insideVeth);
            // The /32 route goes with the bridge.
            bridge.Delete();
            Directory.Delete(dir, recursive: true);
        }
    }
}
