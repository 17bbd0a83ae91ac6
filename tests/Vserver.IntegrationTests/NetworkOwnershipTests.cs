namespace Vserver.IntegrationTests;

/// <summary>
/// Who owns the guests' network on the host: an operator takes it off with vsctl host teardown (refused while guests
/// exist) and the next agent makes it again; a resolver and table whose agent and bridge are gone are named by another
/// agent's host check and removed by its repair; one agent's routed range is refused to another.
/// </summary>
public sealed class NetworkOwnershipTests
{
    private static List<int> Resolvers(TestHost host) =>
        TestHost.Processes().Where(p => p.CommandLine.Contains("dnsmasq", StringComparison.Ordinal)
                                        && p.CommandLine.Contains(Path.Combine(host.RunDir, "dns") + "/", StringComparison.Ordinal)).Select(p => p.Pid).ToList();

    private static bool TableExists(TestHost host) => TestHost.Run("nft", "list", "table", "ip", host.PortsTable).Code == 0;

    [Fact]
    public async Task Teardown_takes_the_rules_resolver_and_bridge_away_only_without_guests_and_the_next_agent_makes_them_again()
    {
        await using var host = await TestHost.StartAsync();
        Resolvers(host).Count.ShouldBe(1);
        TableExists(host).ShouldBeTrue();
        host.Vsctl("create", "td1").ShouldSucceed();
        host.Vsctl("host", "teardown").ShouldFailWith("the guests' network cannot go while guests exist (td1): each would lose its network; destroy them first");
        Resolvers(host).Count.ShouldBe(1, "nothing was taken away");
        host.Vsctl("destroy", "td1").ShouldSucceed();

        var done = host.Vsctl("host", "teardown").ShouldSucceed().Stdout;
        done.ShouldContain($"removed nftables table ip {host.PortsTable}");
        done.ShouldContain("the agent stopped");
        (await host.WaitForAgentExitAsync(TimeSpan.FromSeconds(10))).ShouldBe(0);
        Resolvers(host).ShouldBeEmpty();
        TableExists(host).ShouldBeFalse();
        Directory.Exists($"/sys/class/net/{host.Bridge}").ShouldBeFalse();

        await host.StartAgentAsync();
        Resolvers(host).Count.ShouldBe(1);
        TableExists(host).ShouldBeTrue();
        Directory.Exists($"/sys/class/net/{host.Bridge}").ShouldBeTrue();
        await host.ShouldHaveNothingOrphanedAsync();
    }

    [Fact]
    public async Task A_resolver_and_table_whose_agent_and_bridge_are_gone_are_named_by_another_agents_check_and_repaired()
    {
        await using var gone = await TestHost.StartAsync(buildImage: false);
        await using var other = await TestHost.StartAsync(buildImage: false);
        var leftover = Resolvers(gone).ShouldHaveSingleItem();
        // The first host's agent dies and its bridge goes (taken away by hand), its resolver and table stay behind.
        await gone.KillAgentAsync();
        TestHost.Run("ip", "link", "del", gone.Bridge).ShouldSucceed();

        var check = other.Vsctl("host", "check");
        check.Code.ShouldBe(1, check.Stdout);
        check.Stdout.ShouldContain($"dnsmasq pid {leftover}");
        check.Stdout.ShouldContain($"table ip {gone.PortsTable}");
        check.Stdout.ShouldContain("its bridge is gone and no agent of it runs");
        other.Vsctl("host", "check", "--repair").ShouldSucceed();
        Resolvers(gone).ShouldBeEmpty();
        TableExists(gone).ShouldBeFalse();
        other.Vsctl("host", "check").ShouldSucceed();
    }

    [Fact]
    public async Task A_routed_range_another_agent_routes_is_refused()
    {
        using var outside = new Outside();
        await using var first = await TestHost.StartAsync(buildImage: false);
        await using var second = await TestHost.StartAsync(buildImage: false);
        var range = $"198.19.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(0, 16) * 16}/28";
        first.Vsctl("host", "set", "--routed", range, "--uplink", outside.HostSide).ShouldSucceed();
        var inner = range.Replace("/28", "/30", StringComparison.Ordinal);
        second.Vsctl("host", "set", "--routed", inner, "--uplink", outside.HostSide)
            .ShouldFailWith($"cannot route {inner} to guests through {outside.HostSide}: it overlaps {range}, routed by the agent whose table is ip {first.PortsTable}");
        first.Vsctl("host", "set", "--routed", "none").ShouldSucceed();
        second.Vsctl("host", "set", "--routed", inner, "--uplink", outside.HostSide).ShouldSucceed();
        second.Vsctl("host", "set", "--routed", "none").ShouldSucceed();
    }
}
