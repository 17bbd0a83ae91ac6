using System.Text.Json;

namespace Vserver.IntegrationTests;

public sealed class NetworkTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    private string Address(string guest) =>
        JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;

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

        Host.Vsctl("exec", "net-a", "--", "ping", "-c", "1", "-W", "5", b).ShouldSucceed();
        Host.Vsctl("exec", "net-b", "--", "ping", "-c", "1", "-W", "5", a).ShouldSucceed();
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", a).ShouldSucceed();
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", b).ShouldSucceed();
        // The address is the vserver's for its life: a restart keeps it.
        Host.Vsctl("restart", "net-a").ShouldSucceed();
        Address("net-a").ShouldBe(a);
        Host.Vsctl("exec", "net-a", "--", "ip", "-4", "-o", "addr", "show", "eth0").ShouldSucceed().Stdout.ShouldContain(a + "/24");
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
