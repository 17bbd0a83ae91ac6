using System.Diagnostics;
using System.Text.Json;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>
/// A host restart, simulated as a power cut would leave it (every guest process killed, mounts, loop devices, cgroups,
/// interfaces, the bridge and the port rules gone, the run root emptied), then a fresh agent: the guests marked
/// autostart come back with their addresses, limits, published ports and files; the others are listed stopped.
/// </summary>
public sealed class HostRestartTests : IAsyncLifetime
{
    private TestHost _host = null!;

    public async ValueTask InitializeAsync() => _host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync() => await _host.DisposeAsync();

    private JsonElement Status(string guest) => JsonDocument.Parse(_host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    [Fact(Timeout = 300_000)]
    public async Task After_a_host_restart_autostart_guests_come_back_with_address_limits_ports_and_files_and_the_others_stay_stopped()
    {
        var port = 20000 + Random.Shared.Next(0, 20000);
        _host.Vsctl("create", "web", "--autostart", "--memory", "96M", "--disk", "32M", "--cmd", "sh -c 'mkdir -p /srv/www && exec httpd -f -p 80 -h /srv/www'").ShouldSucceed();
        _host.Vsctl("port", "add", "web", $"{port}:80").ShouldSucceed();
        _host.Vsctl("start", "web").ShouldSucceed();
        _host.Vsctl("exec", "web", "--", "sh", "-c", "mkdir -p /srv/www && echo 'page of web' > /srv/www/index.html").ShouldSucceed();
        _host.Vsctl("create", "mail", "--memory", "64M", "--cpus", "0.5").ShouldSucceed();
        _host.Vsctl("set", "mail", "--autostart", "on").ShouldSucceed();
        _host.Vsctl("start", "mail").ShouldSucceed();
        _host.Vsctl("create", "idle").ShouldSucceed();
        _host.Vsctl("start", "idle").ShouldSucceed();
        var address = Status("web").GetProperty("ipv4").GetString()!;
        (await FetchAsync(port)).ShouldContain("page of web");

        await _host.SimulateHostRestartAsync();
        // The power cut is real: nothing of the guests runs, the bridge and the run root are gone.
        Directory.Exists($"/sys/class/net/{_host.Bridge}").ShouldBeFalse();
        Directory.Exists(_host.RunDir).ShouldBeFalse();
        _host.CgroupExists("web").ShouldBeFalse();

        var clock = Stopwatch.StartNew();
        await _host.StartAgentAsync();
        await WaitUntilAsync(() => Status("web").GetProperty("state").GetString() == "running" && Status("mail").GetProperty("state").GetString() == "running",
            "web and mail running again");
        var back = clock.Elapsed;
        _host.AgentLog.ShouldContain("the host has started: starting 2 guests marked autostart: mail, web", customMessage: _host.AgentLog);

        // Not marked: listed, stopped, its files kept.
        Status("idle").GetProperty("state").GetString().ShouldBe("stopped");
        Status("idle").TryGetProperty("autostart", out _).ShouldBeFalse();
        Status("web").GetProperty("autostart").GetBoolean().ShouldBeTrue();
        // The same address, answering; the published port and the files in the writable layer (a quota image) back.
        Status("web").GetProperty("ipv4").GetString().ShouldBe(address);
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", address).ShouldSucceed();
        await WaitUntilAsync(async () => (await FetchAsync(port)).Contains("page of web", StringComparison.Ordinal), $"127.0.0.1:{port} serving the page");
        // The limits: in the cgroup and as the guest sees its memory.
        File.ReadAllText($"/sys/fs/cgroup/memory/{_host.CgroupParent}/web/memory.limit_in_bytes").Trim().ShouldBe($"{96L << 20}");
        _host.Vsctl("exec", "web", "--", "grep", "MemTotal", "/proc/meminfo").ShouldSucceed().Stdout.ShouldContain($"{96 * 1024} kB");
        File.ReadAllText($"/sys/fs/cgroup/cpu/{_host.CgroupParent}/mail/cpu.cfs_quota_us").Trim().ShouldBe("50000");
        await _host.ShouldHaveNothingOrphanedAsync();
        _host.Vsctl("host", "check").ShouldSucceed();

        // An agent restart is not a host restart: the idle guest stays stopped, the running ones are adopted as they run.
        var webPid = Status("web").GetProperty("initPid").GetInt32();
        await _host.KillAgentAsync();
        await _host.StartAgentAsync();
        Status("web").GetProperty("initPid").GetInt32().ShouldBe(webPid);
        Status("idle").GetProperty("state").GetString().ShouldBe("stopped");
        TestContext.Current.TestOutputHelper?.WriteLine($"autostart guests running {back.TotalSeconds:0.00} s after the agent was started on the restarted host");
    }

    private static async Task<string> FetchAsync(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        try
        {
            return await http.GetStringAsync($"http://127.0.0.1:{port}/");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return $"(no answer: {e.Message})";
        }
    }

    private async Task WaitUntilAsync(Func<bool> condition, string what) => await WaitUntilAsync(() => Task.FromResult(condition()), what);

    private async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new ShouldAssertException($"not {what} after 30 s\n{_host.AgentLog}");
            await Task.Delay(100);
        }
    }
}
