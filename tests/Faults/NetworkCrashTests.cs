using System.Text.Json;
using Vserver.IntegrationTests;
using Xunit.Sdk;

namespace Vserver.FaultTests;

/// <summary>
/// The agent killed at every crash point of a change of the guests' network (outbound NAT, the routed range, the
/// resolver's suffix and upstream: rules rewritten, routes and proxy entries made, the resolver restarted) and by SIGKILL
/// from outside at random moments of one: after each restart the host's settings are one whole state (the old or the
/// new), the guests' traffic works as that state says (an outside page through NAT, names through the resolver), and
/// nothing is orphaned (no rule, route, proxy entry or resolver left that no agent owns).
/// </summary>
public sealed class NetworkCrashTests(VserverTortureHost shared, ITestOutputHelper output) : IClassFixture<VserverTortureHost>
{
    private TestHost Host => shared.Host;

    [Fact(Timeout = 900_000)]
    public async Task Agent_killed_while_it_rewrites_the_rules_or_restarts_the_resolver_leaves_the_guests_traffic_working()
    {
        using var outside = new Outside();
        var t = new Torture(Host);
        const string g = "nx";
        Host.Vsctl("create", g).ShouldSucceed();
        Host.Vsctl("start", g).ShouldSucceed();
        Host.Vsctl("host", "set", "--dns-upstream", outside.Address).ShouldSucceed();
        var range = $"198.19.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(0, 16) * 16}/28";

        await t.EveryPointAsync("host set --nat off", () => SetAsync("--nat", "on"), () => Host.Vsctl("host", "set", "--nat", "off"), () => TrafficAsMeantAsync(g, outside));
        await t.EveryPointAsync("host set --nat on", () => SetAsync("--nat", "off"), () => Host.Vsctl("host", "set", "--nat", "on"), () => TrafficAsMeantAsync(g, outside));
        await t.EveryPointAsync("host set --dns-domain", () => SetAsync("--dns-domain", "vserver"), () => Host.Vsctl("host", "set", "--dns-domain", "other.test"),
            () => TrafficAsMeantAsync(g, outside));
        await t.EveryPointAsync("host set --routed", () => SetAsync("--routed", "none"), () => Host.Vsctl("host", "set", "--routed", range, "--uplink", outside.HostSide),
            () => TrafficAsMeantAsync(g, outside));
        var random = new Random(20);
        for (var i = 0; i < 6; i++)
        {
            var domain = i % 2 == 0 ? "a.test" : "b.test";
            await t.AtRandomAsync(random, c => c.SetHostAsync(new Vserver.Api.HostSettingsRequest { DnsDomain = domain, Nat = i % 3 != 0 }), 300,
                () => TrafficAsMeantAsync(g, outside));
        }
        output.WriteLine(string.Join("\n", t.Log.Append($"{t.Kills} kills")));
        Host.Vsctl("host", "set", "--routed", "none", "--nat", "on", "--dns-domain", "vserver", "--dns-upstream", "host").ShouldSucceed();
        Host.Vsctl("destroy", "--force", g).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(g);
    }

    private Task SetAsync(string option, string value)
    {
        Host.Vsctl("host", "set", option, value).ShouldSucceed();
        return Task.CompletedTask;
    }

    /// <summary>What the agent says the settings are, the guest's traffic does: the outside reached through NAT exactly when
    /// it is on, the resolver answering the guest's own name under the suffix in force and an outside name.</summary>
    private async Task TrafficAsMeantAsync(string guest, Outside outside)
    {
        var host = JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement;
        var nat = host.GetProperty("nat").GetBoolean();
        var domain = host.GetProperty("resolver").GetProperty("domain").GetString();
        var fetch = Host.Vsctl("exec", guest, "--", "timeout", "3", "wget", "-q", "-O", "-", $"http://{outside.Address}/cgi-bin/from");
        if (nat) fetch.ShouldSucceed().Stdout.Trim().ShouldBe(outside.HostAddress, "NAT on: the outside is reached, masqueraded");
        else fetch.Code.ShouldNotBe(0, "NAT off: the guest reaches nothing beyond the bridge");
        // The resolver may be a moment from serving after the agent's restart (it is started before the API answers).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var own = Host.Vsctl("exec", guest, "--", "nslookup", $"{guest}.{domain}");
            var far = Host.Vsctl("exec", guest, "--", "nslookup", "www.outside.test");
            // busybox nslookup also asks AAAA, which the stand-in refuses (it knows A records only): the answer is what counts.
            if (own.Stdout.Contains($"Name:\t{guest}.{domain}", StringComparison.Ordinal) && far.Stdout.Contains(outside.Address, StringComparison.Ordinal)) break;
            if (DateTime.UtcNow > deadline)
                throw new XunitException($"the resolver does not answer {guest}.{domain} and www.outside.test:\n{own.Stdout}{own.Stderr}\n{far.Stdout}{far.Stderr}");
            await Task.Delay(200);
        }
    }
}
