using System.Text.Json;

namespace Vserver.IntegrationTests;

public sealed class NetworkTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    private string Address(string guest) =>
        JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;

    /// <summary>A server started in the background may need a moment to listen.</summary>
    private static CommandResult Eventually(Func<CommandResult> attempt)
    {
        for (var i = 0; ; i++)
        {
            var result = attempt();
            if ((result.Code == 0 && result.Stdout.Length > 0) || i == 20) return result.ShouldSucceed();
            Thread.Sleep(100);
        }
    }

    [Fact]
    public void Two_vservers_reach_each_other_and_the_host_reaches_both()
    {
        Host.Vsctl("create", "net-a").ShouldSucceed();
        Host.Vsctl("create", "net-b", "--ip", $"{Host.SubnetPrefix}.77").ShouldSucceed();
        Host.Vsctl("start", "net-a").ShouldSucceed();
        Host.Vsctl("start", "net-b").ShouldSucceed();
        var a = Address("net-a");
        var b = Address("net-b");
        b.ShouldBe($"{Host.SubnetPrefix}.77");

        // Each serves on port 80: root in a user-namespaced guest may bind low ports of its own network namespace.
        foreach (var g in new[] { "net-a", "net-b" })
            Host.Vsctl("exec", g, "--", "sh", "-c", $"nc -ll -p 80 -e echo hello-from-{g} </dev/null >/dev/null 2>&1 &").ShouldSucceed();
        Eventually(() => Host.Vsctl("exec", "net-a", "--", "nc", "-w", "5", b, "80")).Stdout.Trim().ShouldBe("hello-from-net-b");
        Eventually(() => Host.Vsctl("exec", "net-b", "--", "nc", "-w", "5", a, "80")).Stdout.Trim().ShouldBe("hello-from-net-a");
        TestHost.Run("busybox", "nc", "-w", "5", a, "80").ShouldSucceed().Stdout.Trim().ShouldBe("hello-from-net-a");
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", a).ShouldSucceed();
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", b).ShouldSucceed();
        // The address is the vserver's for its life: a restart keeps it.
        Host.Vsctl("restart", "net-a").ShouldSucceed();
        Address("net-a").ShouldBe(a);
        Host.Vsctl("exec", "net-a", "--", "ip", "-4", "-o", "addr", "show", "eth0").ShouldSucceed().Stdout.ShouldContain(a + "/24");
    }

    [Fact]
    public void The_gateway_keeps_its_mac_while_guests_come_and_go_so_guests_reach_it_at_once()
    {
        string[] guests = ["net-m1", "net-m2", "net-m3", "net-m4"];
        try
        {
            foreach (var g in guests)
            {
                Host.Vsctl("create", g).ShouldSucceed();
                Host.Vsctl("start", g).ShouldSucceed();
            }
            var bridgeMac = File.ReadAllText($"/sys/class/net/{Host.Bridge}/address").Trim();
            File.ReadAllText($"/sys/class/net/{Host.Bridge}/addr_assign_type").Trim().ShouldBe("3", "the bridge's MAC is set, not taken from a port");
            // The guest whose port has the lowest MAC: a bridge without its own would take that one and lose it with it.
            var lowest = guests.OrderBy(g => File.ReadAllText($"/sys/class/net/{Host.HostVeth(g)}/address").Trim(), StringComparer.Ordinal).First();
            var watcher = guests.First(g => g != lowest);
            Host.Vsctl("exec", watcher, "--", "nslookup", $"{watcher}.vserver").ShouldSucceed();
            Host.Vsctl("destroy", "--force", lowest).ShouldSucceed();
            File.ReadAllText($"/sys/class/net/{Host.Bridge}/address").Trim().ShouldBe(bridgeMac);
            // The gateway's resolver answers at the MAC the guest knows, at once.
            Host.Vsctl("exec", watcher, "--", "timeout", "3", "nslookup", $"{watcher}.vserver").ShouldSucceed();
        }
        finally
        {
            foreach (var g in guests) Host.Vsctl("destroy", "--force", g);
        }
    }

    [Fact]
    public void A_vserver_cannot_take_another_address()
    {
        Host.Vsctl("create", "net-c").ShouldSucceed();
        Host.Vsctl("start", "net-c").ShouldSucceed();
        var r = Host.Vsctl("exec", "net-c", "--", "ip", "addr", "add", $"{Host.SubnetPrefix}.200/24", "dev", "eth0");
        r.Code.ShouldNotBe(0, "NET_ADMIN is not in a vserver's bounding set");
    }
}
