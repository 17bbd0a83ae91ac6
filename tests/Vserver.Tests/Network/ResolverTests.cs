using System.Net;
using Shouldly;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Network;

/// <summary>The guests' resolver: dnsmasq's command line, the hosts file, and how an agent's dnsmasq is recognised.</summary>
public sealed class ResolverTests
{
    private static ResolverConfig Config(IReadOnlyList<IPAddress>? upstream = null, string domain = "vserver", string dir = "/run/vserver/dns") =>
        new("vsbr0", IPAddress.Parse("10.88.0.1"), domain, upstream, dir);

    [Fact]
    public void By_default_dnsmasq_forwards_to_the_hosts_resolv_conf_and_answers_the_domain_from_the_hosts_directory_only()
    {
        Resolver.Arguments(Config()).ShouldBe(
        [
            "--conf-file=/dev/null",
            "--pid-file=/run/vserver/dns/vserver-resolver-vsbr0.pid",
            "--log-facility=/run/vserver/dns/dnsmasq.log",
            "--user=dnsmasq",
            "--group=nogroup",
            "--bind-interfaces",
            "--listen-address=10.88.0.1",
            "--no-hosts",
            "--hostsdir=/run/vserver/dns/hosts",
            "--local=/vserver/",
            "--domain-needed",
            "--resolv-file=/etc/resolv.conf",
        ]);
    }

    [Fact]
    public void Given_upstream_servers_replace_resolv_conf_and_none_at_all_forwards_nowhere()
    {
        var given = Resolver.Arguments(Config([IPAddress.Parse("192.0.2.53"), IPAddress.Parse("2001:db8::53")], domain: "guests.example.org"));
        given.ShouldContain("--local=/guests.example.org/");
        given.ShouldNotContain("--resolv-file=/etc/resolv.conf");
        given.TakeLast(3).ShouldBe(["--no-resolv", "--server=192.0.2.53", "--server=2001:db8::53"]);

        var none = Resolver.Arguments(Config([]));
        none[^1].ShouldBe("--no-resolv");
        none.ShouldNotContain(a => a.StartsWith("--server", StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_directory_written_differently_gives_the_same_command_line_so_a_restarted_agent_adopts_its_dnsmasq()
    {
        Resolver.Arguments(Config(dir: "/run/vserver/./dns/")).ShouldBe(Resolver.Arguments(Config()));
    }

    [Theory]
    [InlineData("Vserver")]
    [InlineData("a..b")]
    [InlineData("-x")]
    [InlineData("")]
    [InlineData("a/b")]
    public void A_domain_that_is_no_dns_name_is_refused_with_the_rule(string domain)
    {
        Should.Throw<FormatException>(() => Resolver.Arguments(Config(domain: domain))).Message.ShouldContain("DNS labels");
    }

    [Fact]
    public void A_relative_directory_or_a_wildcard_address_is_refused()
    {
        Should.Throw<FormatException>(() => Resolver.Arguments(Config(dir: "run/dns"))).Message.ShouldContain("absolute path");
        Should.Throw<FormatException>(() => Resolver.Arguments(Config() with { ListenAddress = IPAddress.Any })).Message.ShouldContain("wildcard");
        Should.Throw<FormatException>(() => new Resolver(Config() with { BridgeName = "a bridge" }, _ => { })).Message.ShouldContain("bridge name");
    }

    [Fact]
    public void The_hosts_file_names_each_guest_with_and_without_the_domain_sorted_by_name()
    {
        Resolver.HostsText([("web1", IPAddress.Parse("10.88.0.3")), ("db1", IPAddress.Parse("10.88.0.2")), ("app", IPAddress.Parse("10.88.0.10"))], "vserver")
            .ShouldBe("10.88.0.10\tapp.vserver app\n10.88.0.2\tdb1.vserver db1\n10.88.0.3\tweb1.vserver web1\n");
        Resolver.HostsText([], "vserver").ShouldBe("");
        Should.Throw<FormatException>(() => Resolver.HostsText([("Bad Name", IPAddress.Parse("10.88.0.2"))], "vserver"))
            .Message.ShouldContain("'Bad Name'");
    }

    [Fact]
    public void An_agents_dnsmasq_is_recognised_by_its_pid_file_with_the_bridge_in_its_name()
    {
        var arguments = Resolver.Arguments(Config() with { BridgeName = "vs-br.0" });
        var found = Resolver.Recognise(4242, ["/usr/sbin/dnsmasq", .. arguments]).ShouldNotBeNull();
        found.Pid.ShouldBe(4242);
        found.Bridge.ShouldBe("vs-br.0");
        found.PidFile.ShouldBe("/run/vserver/dns/vserver-resolver-vs-br.0.pid");
        found.Arguments.ShouldBe(arguments);

        Resolver.Recognise(1, ["/usr/sbin/dnsmasq", "--conf-file=/etc/dnsmasq.conf", "--pid-file=/run/dnsmasq/dnsmasq.pid"]).ShouldBeNull("the host's own");
        Resolver.Recognise(1, ["/usr/sbin/dnsmasq", "-k", "--pid-file=/run/vserver-resolver-.pid"]).ShouldBeNull("no bridge in the name");
        Resolver.Recognise(1, ["/bin/sleep", .. arguments]).ShouldBeNull("not dnsmasq");
        Resolver.Recognise(1, ["dnsmasq"]).ShouldBeNull();
    }

    [Fact]
    public void Permission_bits_apply_as_the_kernel_applies_them_owner_then_group_then_others()
    {
        const uint dnsmasq = 999, nogroup = 65534, search = 1;
        Resolver.Permits(0x1C1 /* 0701 */, 0, 0, dnsmasq, nogroup, search).ShouldBeTrue("others may search");
        Resolver.Permits(0x1C0 /* 0700 */, 0, 0, dnsmasq, nogroup, search).ShouldBeFalse("a test's 0700 temp dir");
        Resolver.Permits(0x1C1 /* 0701 */, 0, nogroup, dnsmasq, nogroup, search).ShouldBeFalse("in the group, whose bits deny, the others' bits do not count");
        Resolver.Permits(0x140 /* 0500 */, dnsmasq, 0, dnsmasq, nogroup, 5).ShouldBeTrue("the owner's r-x");
        Resolver.Permits(0x1ED /* 0755 */, 0, 0, dnsmasq, nogroup, 5).ShouldBeTrue();
    }

    [Fact]
    public void Dnsmasqs_log_is_cut_to_its_last_whole_lines_once_it_passes_a_mebibyte()
    {
        var dir = Directory.CreateTempSubdirectory("vsresolver-").FullName;
        try
        {
            var log = Path.Combine(dir, "dnsmasq.log");
            var lines = Enumerable.Range(0, 30000).Select(i => $"Dec  7 22:34:18 dnsmasq[20840]: read /run/vserver/dns/hosts/guests - {i} names").ToList();
            File.WriteAllLines(log, lines);
            new FileInfo(log).Length.ShouldBeGreaterThan(1 << 20);

            Resolver.TrimLog(log);

            var kept = File.ReadAllLines(log);
            new FileInfo(log).Length.ShouldBeLessThanOrEqualTo((64 << 10) + 64);
            kept[0].ShouldBe("(older lines dropped by vserverd)");
            kept.Skip(1).ShouldBe(lines.TakeLast(kept.Length - 1), "whole lines, the newest");
            Resolver.TrimLog(log);
            File.ReadAllLines(log).ShouldBe(kept, "under the limit nothing changes");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
