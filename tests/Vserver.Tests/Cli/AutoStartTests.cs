using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Xunit;

namespace Vserver.Tests.Cli;

public class AutoStartTests
{
    private static readonly GuestList Empty = new() { Guests = [] };

    [Fact]
    public async Task Without_vserverd_it_says_where_it_looked()
    {
        var socket = FakeAgent.NewSocketPath();
        var cli = new CliHarness
        {
            AutoStartFor = _ => new AutoStart { LogPath = "/tmp/x.log", FindAgent = () => null, Launch = (_, _) => throw new InvalidOperationException() },
        };

        (await cli.RunAsync(socket, "list")).ShouldBe(1);

        cli.ErrLines.ShouldBe([$"vsctl: no agent answers on {socket} and vserverd was not found next to vsctl; start it with bin/vserverd"]);
    }

    [Fact]
    public async Task It_starts_the_agent_waits_for_it_and_retries_the_request_once()
    {
        var socket = FakeAgent.NewSocketPath();
        FakeAgent? started = null;
        string? launched = null;
        var cli = new CliHarness
        {
            AutoStartFor = path => new AutoStart
            {
                LogPath = "/run/test/vserverd.log",
                FindAgent = () => "/opt/vserver/bin/vserverd",
                Launch = (agent, log) =>
                {
                    launched = $"{agent} > {log}";
                    // comes up a little later, like a real agent
                    _ = Task.Delay(300).ContinueWith(_ =>
                    {
                        started = FakeAgent.Start(socket);
                        started.Handler = r => r.Path == "/v1/host"
                            ? FakeResponse.Json(new HostInfo { Version = "1", CgroupVersion = "2", Bridge = "b", Subnet = "s", StateRoot = "/s", RunRoot = "/r" }, ApiJson.Default.HostInfo)
                            : FakeResponse.Json(Empty, ApiJson.Default.GuestList);
                    }, TaskScheduler.Default);
                },
                PollInterval = TimeSpan.FromMilliseconds(20),
            },
        };
        try
        {
            (await cli.RunAsync(socket, "list")).ShouldBe(0);

            launched.ShouldBe("/opt/vserver/bin/vserverd > /run/test/vserverd.log");
            cli.ErrLines.ShouldBe(["vsctl: no agent was running; started vserverd (log: /run/test/vserverd.log)"]);
            cli.OutLines.ShouldBe(["NAME   TYPE   STATE   ACCEL   IPV4   MEMORY   CPUS   IMAGE   PRIVILEGED"]);
            started.ShouldNotBeNull().Requests.Count(r => r.Path == "/v1/guests").ShouldBe(1);
        }
        finally
        {
            if (started is not null) await started.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_agent_that_never_answers_is_reported_with_its_log()
    {
        var cli = new CliHarness
        {
            AutoStartFor = _ => new AutoStart
            {
                LogPath = "/run/test/vserverd.log",
                FindAgent = () => "/bin/true",
                Launch = (_, _) => { },
                Timeout = TimeSpan.FromMilliseconds(300),
                PollInterval = TimeSpan.FromMilliseconds(50),
            },
        };

        (await cli.RunAsync(FakeAgent.NewSocketPath(), "start", "web1")).ShouldBe(1);

        cli.ErrLines.ShouldBe([
            "vsctl: no agent was running; started vserverd (log: /run/test/vserverd.log)",
            "vsctl: started vserverd but it did not answer within 0.3 s; see /run/test/vserverd.log",
        ]);
    }

    [Fact]
    public void Only_the_default_socket_is_auto_started()
    {
        AutoStart.FromEnvironment("/somewhere/else.sock").ShouldBeNull();
        if (Environment.GetEnvironmentVariable("VSCTL_NO_AUTOSTART") is not "1")
        {
            var start = AutoStart.FromEnvironment(AgentClient.DefaultSocketPath).ShouldNotBeNull();
            start.LogPath.ShouldBe(Path.Combine(Path.GetDirectoryName(AgentClient.DefaultSocketPath)!, "vserverd.log"));
        }
    }

    [Fact]
    public async Task The_detached_launch_appends_output_to_the_log_and_returns_at_once()
    {
        var dir = Directory.CreateTempSubdirectory("vsctl-launch-");
        try
        {
            var fake = Path.Combine(dir.FullName, "vserverd");
            await File.WriteAllTextAsync(fake, "#!/bin/sh\necho \"agent up in session $(ps -o sid= -p $$ 2>/dev/null || echo ?) stdin=$(readlink /proc/self/fd/0)\"\nsleep 0.2\necho bye >&2\n",
                TestContext.Current.CancellationToken);
            File.SetUnixFileMode(fake, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var log = Path.Combine(dir.FullName, "run", "vserverd.log");
            await File.WriteAllTextAsync(Path.Combine(dir.FullName, "marker"), "", TestContext.Current.CancellationToken);

            var watch = System.Diagnostics.Stopwatch.StartNew();
            AutoStart.LaunchDetached(fake, log);
            watch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));

            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (DateTime.UtcNow < deadline && !(File.Exists(log) && (await File.ReadAllTextAsync(log, TestContext.Current.CancellationToken)).Contains("bye", StringComparison.Ordinal)))
                await Task.Delay(50, TestContext.Current.CancellationToken);
            var text = await File.ReadAllTextAsync(log, TestContext.Current.CancellationToken);
            text.ShouldContain("agent up");
            text.ShouldContain("stdin=/dev/null");
            text.ShouldContain("bye");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
