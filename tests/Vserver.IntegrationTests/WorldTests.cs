using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>
/// Guests reach the world (issue 20), checked against an <see cref="Outside"/> of each test's own: outbound NAT for both
/// kinds (and none once it is off), the resolver on the bridge (upstream names, guests' names as NAME.vserver, kept up to
/// date), a guest's own resolv.conf kept with --dns none and never a planted symlink followed, and routed public
/// addresses reached and sending without NAT (through a route to the host, and through the host's proxy ARP on a shared
/// link). One agent for the class (it builds the domain kernel once); each test puts the host's settings back.
/// </summary>
public sealed class WorldTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private TestHost Host => shared.Host;

    private CommandResult Exec(string guest, params string[] command) => Host.Vsctl(["exec", guest, "--", .. command]);

    private CommandResult Fetch(string guest, string url) => Exec(guest, "timeout", "5", "wget", "-q", "-O", "-", url);

    /// <summary>The host's network settings as vsctl host -f json shows them.</summary>
    private string NetworkJson()
    {
        var host = JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement;
        return string.Join(", ", new[] { "nat", "routed", "uplink", "resolver" }.Select(p => host.TryGetProperty(p, out var v) ? $"{p}={v}" : $"{p}=-"));
    }

    private string GuestAddress(string name) =>
        JsonDocument.Parse(Host.Vsctl("status", name, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;

    private string Gateway => $"{Host.SubnetPrefix}.1";

    /// <summary>Polls until the condition holds; fails with what was last seen.</summary>
    private static void Eventually(Func<string> seen, Func<string, bool> condition, string what, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        string last;
        while (!condition(last = seen()))
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"{what}: not within {seconds}s; last seen:\n{last}");
            Thread.Sleep(200);
        }
    }

    /// <summary>The address busybox nslookup printed for <paramref name="name"/> (the last "Address" line), or "".</summary>
    private string Lookup(string guest, string name)
    {
        var r = Exec(guest, "nslookup", name);
        var lines = r.Stdout.Split('\n').Select(l => l.Trim()).ToList();
        var at = lines.FindIndex(l => l.StartsWith("Name:", StringComparison.Ordinal));
        return at < 0 ? "" : lines.Skip(at).Where(l => l.StartsWith("Address", StringComparison.Ordinal)).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Last()).LastOrDefault() ?? "";
    }

    [Fact]
    public async Task A_vserver_reaches_the_outside_with_the_hosts_address_and_not_once_nat_is_off()
    {
        using var outside = new Outside();
        try
        {
            Host.Vsctl("create", "out1").ShouldSucceed();
            Host.Vsctl("start", "out1").ShouldSucceed();
            Host.Vsctl("host").ShouldSucceed().Stdout.ShouldContain("NAT: guests reach beyond the host, masqueraded to its addresses (IPv4 forwarding on)");

            Fetch("out1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim()
                .ShouldBe(outside.HostAddress, "the outside sees the host's address on its link: masqueraded");
            Fetch("out1", $"http://{outside.Address}/index.html").Stdout.ShouldBe("the outside\n");

            Host.Vsctl("host", "set", "--nat", "off").ShouldSucceed().Stdout.ShouldContain("off: guests reach only the host and each other");
            Fetch("out1", $"http://{outside.Address}/cgi-bin/from").Code.ShouldNotBe(0, "with NAT off a guest opens nothing beyond the bridge");
            // The host still answers: its resolver on the gateway address, its own name for the guest.
            Lookup("out1", "out1.vserver").ShouldBe(GuestAddress("out1"), "with NAT off the host stays reachable");
            // Kept across an agent's restart, its rules rebuilt from the setting.
            await Host.KillAgentAsync();
            await Host.StartAgentAsync();
            Fetch("out1", $"http://{outside.Address}/cgi-bin/from").Code.ShouldNotBe(0);
            Host.Vsctl("host", "check").ShouldSucceed();

            Host.Vsctl("host", "set", "--nat", "on").ShouldSucceed();
            Fetch("out1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(outside.HostAddress);
            Host.Vsctl("host", "set", "--nat", "maybe").ShouldFailWith("--nat");
        }
        finally
        {
            Host.Vsctl("host", "set", "--nat", "on");
            Host.Vsctl("destroy", "--force", "out1");
        }
        Host.ShouldHaveNoTraceOf("out1");
    }

    [Fact]
    public void Guests_resolve_the_outside_through_the_bridge_resolver_and_each_other_by_name()
    {
        using var outside = new Outside();
        try
        {
            Host.Vsctl("host", "set", "--dns-upstream", outside.Address).ShouldSucceed().Stdout.ShouldContain($"upstream dns:   {outside.Address}");
            Host.Vsctl("create", "db1", "--ip", $"{Host.SubnetPrefix}.50").ShouldSucceed();
            Host.Vsctl("create", "web1").ShouldSucceed();
            Host.Vsctl("create", "dom1", "--kind", "domain", "--memory", "128M").ShouldSucceed();
            foreach (var g in new[] { "db1", "web1", "dom1" }) Host.Vsctl("start", g).ShouldSucceed();

            // The file the agent wrote, in both kinds.
            foreach (var g in new[] { "web1", "dom1" })
                Exec(g, "cat", "/etc/resolv.conf").ShouldSucceed().Stdout.ShouldContain($"nameserver {Gateway}\nsearch vserver\n");
            Lookup("web1", "www.outside.test").ShouldBe(outside.Address, "an outside name, through the resolver's upstream");
            Fetch("web1", "http://www.outside.test/index.html").ShouldSucceed().Stdout.ShouldBe("the outside\n");
            Lookup("web1", "db1.vserver").ShouldBe($"{Host.SubnetPrefix}.50");
            Lookup("dom1", "db1.vserver").ShouldBe($"{Host.SubnetPrefix}.50", "a domain asks the same resolver");
            Lookup("db1", "dom1.vserver").ShouldBe(GuestAddress("dom1"), "and is answered for by name too");
            Fetch("dom1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(outside.HostAddress, "a domain is masqueraded too");

            // db1 made again with another address: the name follows.
            Host.Vsctl("destroy", "--force", "db1").ShouldSucceed();
            Eventually(() => Exec("web1", "nslookup", "db1.vserver").Stdout, s => !s.Contains($"{Host.SubnetPrefix}.50", StringComparison.Ordinal), "db1's name gone");
            Host.Vsctl("create", "db1", "--ip", $"{Host.SubnetPrefix}.51").ShouldSucceed();
            Eventually(() => Lookup("web1", "db1.vserver"), s => s == $"{Host.SubnetPrefix}.51", "db1's new address");

            // Another suffix: names move under it, and a guest's next start searches it.
            Host.Vsctl("host", "set", "--dns-domain", "guests.test").ShouldSucceed();
            Eventually(() => Lookup("dom1", "db1.guests.test"), s => s == $"{Host.SubnetPrefix}.51", "db1 under the new suffix");
            Host.Vsctl("restart", "web1").ShouldSucceed();
            Exec("web1", "cat", "/etc/resolv.conf").Stdout.ShouldContain("search guests.test\n");
        }
        finally
        {
            Host.Vsctl("host", "set", "--dns-upstream", "host", "--dns-domain", "vserver");
            foreach (var g in new[] { "db1", "web1", "dom1" }) Host.Vsctl("destroy", "--force", g);
        }
        foreach (var g in new[] { "db1", "web1", "dom1" }) Host.ShouldHaveNoTraceOf(g);
    }

    [Fact]
    public void A_guest_keeps_its_own_resolver_file_with_dns_none_and_a_planted_symlink_is_replaced_not_followed()
    {
        try
        {
            Host.Vsctl("create", "own1", "--dns", "none").ShouldSucceed();
            Host.Vsctl("start", "own1").ShouldSucceed();
            Exec("own1", "sh", "-c", "echo 'nameserver 192.0.2.9' > /etc/resolv.conf").ShouldSucceed();
            Host.Vsctl("restart", "own1").ShouldSucceed();
            Exec("own1", "cat", "/etc/resolv.conf").ShouldSucceed().Stdout.ShouldBe("nameserver 192.0.2.9\n", "--dns none: the agent writes nothing");

            Host.Vsctl("create", "own2", "--dns", "192.0.2.53,192.0.2.54").ShouldSucceed();
            Host.Vsctl("start", "own2").ShouldSucceed();
            Exec("own2", "cat", "/etc/resolv.conf").Stdout.ShouldContain("nameserver 192.0.2.53\nnameserver 192.0.2.54\n");
            // The guest points its resolv.conf at another of its files: the next start replaces the link itself.
            Exec("own2", "sh", "-c", "echo keep > /etc/target && ln -sf /etc/target /etc/resolv.conf").ShouldSucceed();
            Host.Vsctl("restart", "own2").ShouldSucceed();
            Exec("own2", "cat", "/etc/target").Stdout.ShouldBe("keep\n", "the link's target is untouched");
            Exec("own2", "sh", "-c", "test -L /etc/resolv.conf && echo link || echo file").Stdout.Trim().ShouldBe("file");

            Host.Vsctl("create", "own3", "--dns", "resolver.example").ShouldFailWith("--dns: 'resolver.example' is not an IPv4 address; give A.B.C.D[,A.B.C.D] or none");
            Host.Vsctl("status", "own3").Code.ShouldNotBe(0, "nothing was made");
        }
        finally
        {
            foreach (var g in new[] { "own1", "own2" }) Host.Vsctl("destroy", "--force", g);
        }
    }

    [Fact]
    public async Task A_routed_guest_is_reached_on_its_own_address_and_sends_from_it()
    {
        using var outside = new Outside();
        var range = FreeRange();
        var net = range[..range.LastIndexOf('.')];
        var first = int.Parse(range[(range.LastIndexOf('.') + 1)..range.IndexOf('/')], System.Globalization.CultureInfo.InvariantCulture);
        var pub = $"{net}.{first + 1}";
        try
        {
            Host.Vsctl("create", "pub1", "--ip", pub).ShouldFailWith("outside this host's guest subnet");
            Host.Vsctl("host", "set", "--routed", range, "--uplink", outside.HostSide).ShouldSucceed()
                .Stdout.ShouldContain($"routed:         {range} on uplink {outside.HostSide}");
            Host.Vsctl("create", "pub1", "--ip", pub).ShouldSucceed();
            Host.Vsctl("start", "pub1").ShouldSucceed();
            Host.Vsctl("list").ShouldSucceed().Stdout.ShouldContain(pub);
            // A CGI that answers the address a request came from, as the outside's does.
            Exec("pub1", "sh", "-c", "mkdir -p /www/cgi-bin && cd /www/cgi-bin && echo '#!/bin/sh' > from && echo 'echo Content-Type: text/plain' >> from"
                + " && echo echo >> from && echo 'echo $REMOTE_ADDR' >> from && chmod 755 from && httpd -p 0.0.0.0:80 -h /www").ShouldSucceed();

            // The upstream routes the range to the host.
            outside.In("ip", "route", "add", range, "via", outside.HostAddress).ShouldSucceed();
            outside.In("timeout", "5", "busybox", "wget", "-q", "-O", "-", $"http://{pub}/cgi-bin/from").ShouldSucceed().Stdout.Trim()
                .ShouldBe(outside.Address, "reached directly: the guest sees the outside's own address");
            Fetch("pub1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim()
                .ShouldBe(pub, "a routed guest sends from its own address, never masqueraded");

            // The range shared on the uplink's link: the outside asks ARP for the address, the host answers for the guest.
            outside.In("ip", "route", "replace", range, "dev", "eth0").ShouldSucceed();
            TestHost.Run("ip", "neigh", "show", "proxy", "dev", outside.HostSide).Stdout.ShouldContain(pub);
            outside.In("timeout", "5", "busybox", "wget", "-q", "-O", "-", $"http://{pub}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(outside.Address);
            outside.In("ip", "neigh", "show", pub).Stdout.ShouldContain("lladdr", customMessage: "learned through ARP, answered by the host");

            // NAT off keeps subnet guests in, not routed ones.
            Host.Vsctl("host", "set", "--nat", "off").ShouldSucceed();
            Fetch("pub1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(pub);

            // Rebuilt from the configs by the next agent.
            await Host.KillAgentAsync();
            TestHost.Run("ip", "route", "del", $"{pub}/32", "dev", Host.Bridge).ShouldSucceed();
            TestHost.Run("ip", "neigh", "del", "proxy", pub, "dev", outside.HostSide).ShouldSucceed();
            await Host.StartAgentAsync();
            outside.In("timeout", "5", "busybox", "wget", "-q", "-O", "-", $"http://{pub}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(outside.Address);
            Host.Vsctl("host", "check").ShouldSucceed();

            // Promoted to a domain, it keeps its address, route and proxy entry: the outside still reaches it there.
            Host.Vsctl("promote", "pub1").ShouldSucceed().Stdout.ShouldContain("pub1 is now a domain (running)");
            Host.Vsctl("status", "pub1").ShouldSucceed().Stdout.ShouldContain($"{pub} (routed: its own public address, reached without NAT)");
            Eventually(() => outside.In("busybox", "ping", "-c", "1", "-W", "2", pub).Stdout, s => s.Contains("1 packets received", StringComparison.Ordinal), "the promoted domain answering on its routed address");
            Fetch("pub1", $"http://{outside.Address}/cgi-bin/from").ShouldSucceed().Stdout.Trim().ShouldBe(pub, "the domain sends from its own address too");

            // The range cannot go while a guest holds one of its addresses; once it is gone, so are its route and entry.
            Host.Vsctl("host", "set", "--routed", "none").ShouldFailWith("pub1 holds an address of the routed range");
            Host.Vsctl("destroy", "--force", "pub1").ShouldSucceed();
            TestHost.Run("ip", "route", "show", $"{pub}/32").Stdout.Trim().ShouldBeEmpty();
            TestHost.Run("ip", "neigh", "show", "proxy", "dev", outside.HostSide).Stdout.ShouldNotContain(pub);
            Host.Vsctl("host", "set", "--routed", "none").ShouldSucceed().Stdout.ShouldContain("routed:         none");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "pub1");
            Host.Vsctl("host", "set", "--routed", "none", "--nat", "on");
        }
        Host.ShouldHaveNoTraceOf("pub1");
    }

    [Fact]
    public void Bad_network_settings_are_refused_in_one_line_and_change_nothing()
    {
        using var outside = new Outside();
        var before = NetworkJson();
        var settings = Path.Combine(Host.Root, "network.json");
        var settingsBefore = File.Exists(settings) ? File.ReadAllText(settings) : null;
        var range = FreeRange();
        Host.Vsctl("host", "set", "--routed", range, "--uplink", "nosuch0").ShouldFailWith($"cannot route {range} to guests through nosuch0: no interface 'nosuch0' on this host");
        Host.Vsctl("host", "set", "--routed", range).ShouldFailWith("a routed range needs the uplink it arrives on");
        Host.Vsctl("host", "set", "--routed", Host.Subnet, "--uplink", outside.HostSide).ShouldFailWith($"it overlaps the guest subnet {Host.Subnet}");
        Host.Vsctl("host", "set", "--routed", $"{outside.HostAddress}/32", "--uplink", outside.HostSide).ShouldFailWith($"the host holds {outside.HostAddress}");
        Host.Vsctl("host", "set", "--routed", "203.0.113.17/28", "--uplink", outside.HostSide).ShouldFailWith("write 203.0.113.16/28");
        Host.Vsctl("host", "set", "--routed", "203.0.113.0/33", "--uplink", outside.HostSide).ShouldFailWith("invalid routed range");
        Host.Vsctl("host", "set", "--dns-upstream", "8.8.8").ShouldFailWith("--dns-upstream: '8.8.8' is not an IPv4 address");
        Host.Vsctl("host", "set", "--dns-domain", "Not_A.Name").ShouldFailWith("invalid name suffix");
        foreach (var r in new[] { Host.Vsctl("host", "set", "--uplink", "nosuch0", "--routed", range) })
            r.Stderr.Trim().Split('\n').Length.ShouldBe(1, r.Stderr);
        NetworkJson().ShouldBe(before, "nothing changed");
        (File.Exists(settings) ? File.ReadAllText(settings) : null).ShouldBe(settingsBefore, "the settings file as it was");
    }

    /// <summary>A /28 of 198.19.0.0/16 (the benchmarking range) that nothing on the host routes yet.</summary>
    private static string FreeRange()
    {
        while (true)
        {
            var range = $"198.19.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(0, 16) * 16}/28";
            if (TestHost.Run("ip", "route", "show", "match", range[..range.IndexOf('/')]).Stdout.Split('\n').All(l => !l.StartsWith("198.19.", StringComparison.Ordinal)))
                return range;
        }
    }
}
