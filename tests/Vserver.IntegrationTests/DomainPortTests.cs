using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>Published ports of domains (booted for real, TCG here) and of a vserver that becomes one.</summary>
public sealed class DomainPortTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private TestHost Host => shared.Host;

    private string Address(string guest) =>
        JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;

    [Fact]
    public void A_domains_published_port_answers_on_loopback_goes_with_a_save_and_comes_back_with_the_restore()
    {
        const string name = "dpt-web";
        Host.Vsctl("create", name, "--kind", "domain", "--memory", "128M").ShouldSucceed();
        var hostPort = Ports.Free();
        var url = $"http://127.0.0.1:{hostPort}/";
        // Published while the domain is stopped: the rule is there, nothing answers yet.
        Host.Vsctl("port", "add", name, $"{hostPort}:80").ShouldSucceed();
        Ports.Table(Host).ShouldNotBeNull().ShouldContain($"tcp dport {hostPort} dnat to {Address(name)}:80");
        Host.Vsctl("start", name).ShouldSucceed();
        // exec waits for the guest agent, so the first one also waits for the boot.
        Host.Vsctl("exec", name, "--", "sh", "-c", $"mkdir -p /srv/www && echo 'page of {name}' > /srv/www/index.html && httpd -p 80 -h /srv/www")
            .ShouldSucceed();
        Ports.Page(url, TimeSpan.FromSeconds(30)).ShouldBe($"page of {name}\n");
        Host.Vsctl("status", name).ShouldSucceed().Stdout.ShouldMatch($@"(?m)^ports:\s+{hostPort}->80/tcp$");

        var file = Path.Combine(Host.Dir, "dpt-web.state");
        Host.Vsctl("save", name, file).ShouldSucceed();
        (Ports.Table(Host) ?? "").ShouldNotContain($"dport {hostPort} ");
        Ports.Page(url, TimeSpan.Zero).ShouldBeNull();

        Host.Vsctl("restore", file).ShouldSucceed();
        Ports.Page(url, TimeSpan.FromSeconds(30)).ShouldBe($"page of {name}\n");
        Host.Vsctl("port", "list", name).ShouldSucceed().Stdout.ShouldContain($"{hostPort}");

        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        (Ports.Table(Host) ?? "").ShouldNotContain($"dport {hostPort} ");
        Host.ShouldHaveNoTraceOf(name);
    }

    [Fact]
    public void A_vserver_promoted_to_a_domain_keeps_its_published_port()
    {
        const string name = "dpt-pro";
        // 128M: the domain it becomes gets the vserver's memory limit as its RAM.
        var ip = Ports.WebServer(Host, name, "128M");
        // The domain's own init starts httpd again (busybox init runs /etc/rc.local).
        Host.Vsctl("exec", name, "--", "sh", "-c", "printf '#!/bin/sh\\nhttpd -p 80 -h /srv/www\\n' > /etc/rc.local && chmod 755 /etc/rc.local")
            .ShouldSucceed();
        var hostPort = Ports.Free();
        var url = $"http://127.0.0.1:{hostPort}/";
        Host.Vsctl("port", "add", name, $"{hostPort}:80").ShouldSucceed();
        Ports.Page(url, TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");

        Host.Vsctl("promote", name).ShouldSucceed();

        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+domain\s+running");
        Address(name).ShouldBe(ip);
        Ports.Page(url, TimeSpan.FromSeconds(30)).ShouldBe($"page of {name}\n");
        Host.Vsctl("port", "list", name).ShouldSucceed().Stdout.ShouldContain($"{hostPort}");
        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        (Ports.Table(Host) ?? "").ShouldNotContain($"dport {hostPort} ");
    }
}
