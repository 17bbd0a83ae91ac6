using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>The agent is the one authority, but guests do not depend on its process staying alive.</summary>
public sealed class AgentLifecycleTests
{
    private static int InitPid(TestHost host, string guest) =>
        JsonDocument.Parse(host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("initPid").GetInt32();

    [Fact]
    public async Task Killing_the_agent_leaves_vservers_running_and_a_new_agent_adopts_them()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "survivor").ShouldSucceed();
        host.Vsctl("start", "survivor").ShouldSucceed();
        var pid = InitPid(host, "survivor");

        await host.KillAgentAsync();
        Directory.Exists($"/proc/{pid}").ShouldBeTrue("the vserver must outlive its agent");
        host.Vsctl("list").Code.ShouldNotBe(0, "no agent answers now");

        await host.StartAgentAsync();
        host.Vsctl("list").ShouldSucceed().Stdout.Split('\n').Single(l => l.StartsWith("survivor ", StringComparison.Ordinal)).ShouldContain("running");
        InitPid(host, "survivor").ShouldBe(pid);
        host.Vsctl("exec", "survivor", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("survivor");
        // The adopted guest is fully managed: its exit is seen and it stops cleanly.
        host.Vsctl("stop", "survivor").ShouldSucceed();
        Directory.Exists($"/proc/{pid}").ShouldBeFalse();
    }

    [Fact]
    public async Task An_exit_while_no_agent_runs_is_seen_by_the_next_agent()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "shortlived", "--cmd", "sh -c 'sleep 1; exit 4'").ShouldSucceed();
        host.Vsctl("start", "shortlived").ShouldSucceed();
        await host.KillAgentAsync();
        await Task.Delay(2000, TestContext.Current.CancellationToken);

        await host.StartAgentAsync();
        var status = JsonDocument.Parse(host.Vsctl("status", "shortlived", "-f", "json").ShouldSucceed().Stdout).RootElement;
        status.GetProperty("state").GetString().ShouldBe("stopped");
        status.GetProperty("lastExit").GetProperty("code").GetInt32().ShouldBe(4);
        host.CgroupExists("shortlived").ShouldBeFalse();
    }

    [Fact]
    public async Task An_agent_that_dies_mid_create_leaves_nothing_once_restarted()
    {
        await using var host = await TestHost.StartAsync();
        await host.KillAgentAsync();
        await host.StartAgentAsync(new Dictionary<string, string> { ["VSERVER_FAILPOINTS"] = "create.after-network" });

        var create = host.Vsctl("create", "halfmade");
        create.Code.ShouldNotBe(0);
        (await host.WaitForAgentExitAsync(TimeSpan.FromSeconds(10))).ShouldNotBe(0);
        Directory.Exists($"/sys/class/net/{host.HostVeth("halfmade")}").ShouldBeTrue("the failpoint fires after the network was made");

        await host.StartAgentAsync();
        host.ShouldHaveNoTraceOf("halfmade");
        host.Vsctl("list").ShouldSucceed().Stdout.ShouldNotContain("halfmade");
        host.Vsctl("create", "halfmade").ShouldSucceed();
    }

    [Fact]
    public async Task Restart_policy_on_failure_restarts_a_failing_init_but_not_a_clean_exit()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "crashy", "--restart", "on-failure", "--cmd", "sh -c 'sleep 0.3; exit 3'").ShouldSucceed();
        host.Vsctl("create", "clean", "--restart", "on-failure", "--cmd", "true").ShouldSucceed();
        host.Vsctl("start", "crashy").ShouldSucceed();
        host.Vsctl("start", "clean").ShouldSucceed();

        var deadline = DateTime.UtcNow.AddSeconds(20);
        JsonElement crashy;
        do
        {
            await Task.Delay(200, TestContext.Current.CancellationToken);
            crashy = JsonDocument.Parse(host.Vsctl("status", "crashy", "-f", "json").Stdout).RootElement;
        } while (crashy.GetProperty("restartCount").GetInt32() < 2 && DateTime.UtcNow < deadline);
        crashy.GetProperty("restartCount").GetInt32().ShouldBeGreaterThanOrEqualTo(2);
        crashy.GetProperty("lastExit").GetProperty("code").GetInt32().ShouldBe(3);

        var clean = JsonDocument.Parse(host.Vsctl("status", "clean", "-f", "json").Stdout).RootElement;
        clean.GetProperty("state").GetString().ShouldBe("stopped");
        clean.GetProperty("restartCount").GetInt32().ShouldBe(0);
        clean.GetProperty("lastExit").GetProperty("code").GetInt32().ShouldBe(0);

        // An operator's stop is never undone by the policy.
        host.Vsctl("stop", "crashy").ShouldSucceed();
        await Task.Delay(1500, TestContext.Current.CancellationToken);
        JsonDocument.Parse(host.Vsctl("status", "crashy", "-f", "json").Stdout).RootElement.GetProperty("state").GetString().ShouldBe("stopped");
    }

    [Fact]
    public async Task Vsctl_starts_an_agent_when_none_runs_and_says_so()
    {
        await using var host = TestHost.CreateWithoutAgent();
        var env = new Dictionary<string, string>(host.Env);
        var result = TestHost.RunWith(env, null, Binaries.Vsctl, "list");
        try
        {
            result.ShouldSucceed();
            result.Stderr.ShouldContain("started vserverd");
            File.Exists(host.Socket).ShouldBeTrue();
        }
        finally
        {
            // The agent was started by vsctl, detached: find it by its lock file and end it.
            var lockFile = Path.Combine(host.RunDir, "agent.lock");
            // The agent holds an exclusive lock on the file; .NET's own readers would refuse it, cat does not.
            if (File.Exists(lockFile) && int.TryParse(TestHost.Run("cat", lockFile).Stdout.Trim(), out var pid))
            {
                TestHost.Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
                for (var i = 0; i < 50 && Directory.Exists($"/proc/{pid}"); i++) await Task.Delay(50, TestContext.Current.CancellationToken);
            }
        }
    }

    [Fact]
    public async Task A_config_edited_into_invalid_json_is_reported_and_other_guests_still_load()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "good").ShouldSucceed();
        host.Vsctl("create", "mangled").ShouldSucceed();
        await host.KillAgentAsync();
        var config = Path.Combine(host.GuestDir("mangled"), "guest.json");
        File.WriteAllText(config, "{\n  \"name\": \"mangled\",\n  \"image\": busybox\n}\n");

        await host.StartAgentAsync();
        var list = host.Vsctl("list");
        list.ShouldSucceed();
        list.Stdout.ShouldContain("good");
        list.Stderr.ShouldContain(config);
        list.Stderr.ShouldContain("line 3");
        host.Vsctl("start", "good").ShouldSucceed();
        host.Vsctl("start", "mangled").ShouldFailWith(config);
        host.Vsctl("destroy", "mangled", "--force").ShouldSucceed();
        host.ShouldHaveNoTraceOf("mangled");
    }
}
