using System.Diagnostics;
using Vserver.Api;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>What an operator sees when something outside the agent kills a guest: a domain's QEMU or a vserver's init.</summary>
internal static class GuestDeath
{
    /// <summary>How fast the agent must notice a guest that died.</summary>
    public static readonly TimeSpan SeenWithin = TimeSpan.FromSeconds(1);

    public static async Task<GuestInfo> StatusAsync(TestHost host, string name)
    {
        using var client = host.Client();
        return await client.GetAsync(name);
    }

    /// <summary>A measurement, for the test's output.</summary>
    public static void Note(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    public static int RunningPid(GuestInfo g) =>
        g.State == "running" && g.InitPid is { } pid ? pid : throw new ShouldAssertException($"{g.Name} is {g.State}, not running with a pid");

    /// <summary>SIGKILLs <paramref name="pid"/> from outside, as the OOM killer or a careless operator would, and polls
    /// the agent until its status records an exit newer than <paramref name="before"/>: returns that status and how long
    /// after the kill it appeared.</summary>
    public static async Task<(GuestInfo Seen, TimeSpan After)> KillAndWatchAsync(TestHost host, string name, int pid, GuestInfo before)
    {
        using var client = host.Client();
        using (var victim = Process.GetProcessById(pid)) victim.Kill();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var g = await client.GetAsync(name);
            if (g.LastExit is { } exit && (before.LastExit is null || exit.At > before.LastExit.At))
            {
                Note($"{name}: the kill of pid {pid} showed in the status after {clock.Elapsed.TotalMilliseconds:0} ms");
                return (g, clock.Elapsed);
            }
            if (clock.Elapsed > TimeSpan.FromSeconds(10))
                throw new ShouldAssertException($"10 s after pid {pid} of {name} was killed the agent still shows: state {g.State}, " +
                    $"pid {g.InitPid}, last exit {g.LastExit?.Description ?? "none"}");
            await Task.Delay(5);
        }
    }

    /// <summary>Polls until the guest runs again with a pid other than <paramref name="oldPid"/>.</summary>
    public static async Task<GuestInfo> RunningAgainAsync(TestHost host, string name, int oldPid, TimeSpan within)
    {
        using var client = host.Client();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var g = await client.GetAsync(name);
            if (g.State == "running" && g.InitPid is { } pid && pid != oldPid) return g;
            if (clock.Elapsed > within)
                throw new ShouldAssertException($"{name} was not running again within {within.TotalSeconds} s: state {g.State}, " +
                    $"pid {g.InitPid}, last exit {g.LastExit?.Description ?? "none"}, restarts {g.RestartCount}");
            await Task.Delay(5);
        }
    }

    /// <summary>Holds for <paramref name="period"/> that the guest stays down (no restart), and returns its last status.</summary>
    public static async Task<GuestInfo> StaysDownAsync(TestHost host, string name, TimeSpan period)
    {
        using var client = host.Client();
        var clock = Stopwatch.StartNew();
        GuestInfo g;
        do
        {
            g = await client.GetAsync(name);
            g.State.ShouldNotBe("running", $"{name} was started again {clock.Elapsed.TotalSeconds:0.0} s into a period it should have stayed down");
            g.InitPid.ShouldBeNull();
            await Task.Delay(50);
        }
        while (clock.Elapsed < period);
        return g;
    }
}

/// <summary>A vserver whose init is killed from outside: seen within a second, recorded with its signal, restarted by
/// its policy with a back-off that grows while it keeps dying. Each test has its own agent.</summary>
public sealed class GuestDeathTests
{
    [Fact]
    public async Task A_killed_init_is_seen_within_a_second_with_its_signal_and_the_policy_starts_it_again()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "dies", "--restart", "on-failure").ShouldSucceed();
        host.Vsctl("start", "dies").ShouldSucceed();
        var before = await GuestDeath.StatusAsync(host, "dies");
        var pid = GuestDeath.RunningPid(before);

        var (seen, after) = await GuestDeath.KillAndWatchAsync(host, "dies", pid, before);
        after.ShouldBeLessThan(GuestDeath.SeenWithin, $"the kill of init {pid} showed in the status only after {after.TotalMilliseconds:0} ms");
        seen.LastExit!.Signal.ShouldBe(9);
        seen.LastExit.Code.ShouldBeNull();
        seen.LastExit.Description.ShouldContain("SIGKILL");
        host.Vsctl("status", "dies").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^last exit:\s+killed by signal 9 \(SIGKILL\)");

        var again = await GuestDeath.RunningAgainAsync(host, "dies", pid, TimeSpan.FromSeconds(5));
        again.RestartCount.ShouldBe(1);
        again.LastExit!.Signal.ShouldBe(9, "the restart keeps the record of the exit that caused it");
        Directory.Exists($"/proc/{pid}").ShouldBeFalse();
        Directory.Exists($"/proc/{again.InitPid}").ShouldBeTrue();
        // Restarted for real: a new init that runs the guest's services, not just a new number in the status.
        host.Vsctl("exec", "dies", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("dies");
        host.Vsctl("exec", "dies", "--", "cat", "/proc/1/comm").ShouldSucceed().Stdout.Trim().ShouldBe("init");
        host.Vsctl("stop", "dies").ShouldSucceed();
        (await GuestDeath.StaysDownAsync(host, "dies", TimeSpan.FromSeconds(0.5))).State.ShouldBe("stopped");
    }

    [Fact]
    public async Task Quick_kills_back_off_the_restarts_and_a_stop_cancels_the_pending_one()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "flaky", "--restart", "always").ShouldSucceed();
        host.Vsctl("start", "flaky").ShouldSucceed();
        var status = await GuestDeath.StatusAsync(host, "flaky");

        // Six kills, each as soon as the guest is back: the agent's own clock says how long it waited before each restart.
        var delays = new List<TimeSpan>();
        for (var kill = 1; kill <= 6; kill++)
        {
            var pid = GuestDeath.RunningPid(status);
            var (seen, after) = await GuestDeath.KillAndWatchAsync(host, "flaky", pid, status);
            after.ShouldBeLessThan(GuestDeath.SeenWithin, $"kill {kill} showed only after {after.TotalMilliseconds:0} ms");
            seen.LastExit!.Signal.ShouldBe(9);
            status = await GuestDeath.RunningAgainAsync(host, "flaky", pid, TimeSpan.FromSeconds(15));
            status.RestartCount.ShouldBe(kill);
            delays.Add(status.StartedAt!.Value - status.LastExit!.At);
        }
        var shown = string.Join(", ", delays.Select(d => $"{d.TotalMilliseconds:0} ms"));
        GuestDeath.Note($"delays before restarts 1-6: {shown}");
        // The schedule is 100 ms doubling per quick death (to 10 s); each delay also holds the start itself (0.1 s idle,
        // a few tenths on a busy host), so the schedule is a lower bound and the growth is checked as a difference.
        for (var i = 0; i < delays.Count; i++)
            delays[i].ShouldBeGreaterThanOrEqualTo(TimeSpan.FromMilliseconds(100 << i), $"restart {i + 1} came before its back-off: {shown}");
        delays[0].ShouldBeLessThan(TimeSpan.FromSeconds(2), $"the first restart of a crash should be quick: {shown}");
        (delays[5] - delays[0]).ShouldBeGreaterThan(TimeSpan.FromSeconds(2.5), $"the sixth quick death was restarted about as fast as the first: {shown}");

        // A seventh death: the restart now waits twice as long, and a stop in that wait cancels it for good.
        var last = GuestDeath.RunningPid(status);
        var (dead, _) = await GuestDeath.KillAndWatchAsync(host, "flaky", last, status);
        dead.State.ShouldNotBe("running");
        host.Vsctl("stop", "flaky").ShouldSucceed();
        var due = delays[5] * 2;
        var after7 = await GuestDeath.StaysDownAsync(host, "flaky", due + TimeSpan.FromSeconds(1));
        after7.State.ShouldBe("stopped");
        after7.LastExit!.Signal.ShouldBe(9);
        host.Vsctl("stop", "flaky").ShouldFailWith("not running");
        // An operator's start afterwards works as ever.
        host.Vsctl("start", "flaky").ShouldSucceed();
        GuestDeath.RunningPid(await GuestDeath.StatusAsync(host, "flaky"));
    }

    [Fact]
    public async Task A_restart_that_fails_is_tried_again_with_back_off_and_the_status_says_why_it_is_down()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "retry", "--restart", "always").ShouldSucceed();
        host.Vsctl("start", "retry").ShouldSucceed();
        var before = await GuestDeath.StatusAsync(host, "retry");
        var pid = GuestDeath.RunningPid(before);

        // Its image goes away (moved aside from outside) just before it dies: the restart cannot start it.
        var image = Path.Combine(host.Root, "images", "busybox");
        var aside = Path.Combine(host.Root, "images", ".busybox-aside");
        Directory.Move(image, aside);
        try
        {
            await GuestDeath.KillAndWatchAsync(host, "retry", pid, before);
            using var client = host.Client();
            var clock = Stopwatch.StartNew();
            GuestInfo down;
            do
            {
                await Task.Delay(50, TestContext.Current.CancellationToken);
                down = await client.GetAsync("retry", TestContext.Current.CancellationToken);
                down.State.ShouldNotBe("running");
                clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), $"not three failed restarts: {down.LastExit?.Description}, restarts {down.RestartCount}");
            }
            while (down.RestartCount < 4);
            // Three tries failed and a fourth is due: 0.1 + 0.2 + 0.4 s of back-off went by, not a storm of tries.
            clock.Elapsed.ShouldBeGreaterThan(TimeSpan.FromSeconds(0.6));
            down.LastExit!.Signal.ShouldBe(9);
            host.Vsctl("status", "retry").ShouldSucceed().Stdout.ShouldMatch(
                @"(?m)^last exit:\s+killed by signal 9 \(SIGKILL\); restarting it failed: image 'busybox' of guest 'retry' is gone \(tried again with back-off until it starts or is stopped\)");
        }
        finally
        {
            Directory.Move(aside, image);
        }
        // With the image back, a later try starts it, and the status shows the exit that caused it, nothing stale.
        var again = await GuestDeath.RunningAgainAsync(host, "retry", pid, TimeSpan.FromSeconds(15));
        again.LastExit!.Description.ShouldBe("killed by signal 9 (SIGKILL)");
        host.Vsctl("exec", "retry", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("retry");
    }

    [Fact]
    public async Task Without_a_restart_policy_a_killed_init_stays_stopped_and_an_init_that_exits_leaves_its_code()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "once").ShouldSucceed();
        host.Vsctl("start", "once").ShouldSucceed();
        var before = await GuestDeath.StatusAsync(host, "once");
        before.Restart.ShouldBe("no");
        var pid = GuestDeath.RunningPid(before);

        var (seen, after) = await GuestDeath.KillAndWatchAsync(host, "once", pid, before);
        after.ShouldBeLessThan(GuestDeath.SeenWithin);
        seen.LastExit!.Signal.ShouldBe(9);
        var down = await GuestDeath.StaysDownAsync(host, "once", TimeSpan.FromSeconds(1.5));
        down.State.ShouldBe("stopped");
        down.RestartCount.ShouldBe(0);
        var text = host.Vsctl("status", "once").ShouldSucceed().Stdout;
        text.ShouldMatch(@"(?m)^state:\s+stopped$");
        text.ShouldMatch(@"(?m)^last exit:\s+killed by signal 9 \(SIGKILL\)");
        host.CgroupExists("once").ShouldBeFalse("the cgroup of a dead vserver is released");

        // An init that ends by itself: its exit code, not a signal.
        host.Vsctl("create", "three", "--cmd", "sh -c 'exit 3'").ShouldSucceed();
        host.Vsctl("start", "three").ShouldSucceed();
        using var client = host.Client();
        var ended = await client.WaitAsync("three", TestContext.Current.CancellationToken);
        ended.State.ShouldBe("stopped");
        ended.LastExit!.Code.ShouldBe(3);
        ended.LastExit.Signal.ShouldBeNull();
        host.Vsctl("status", "three").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^last exit:\s+exited with code 3 ");
        (await GuestDeath.StaysDownAsync(host, "three", TimeSpan.FromSeconds(0.5))).RestartCount.ShouldBe(0);

        // on-failure leaves a clean exit alone.
        host.Vsctl("create", "clean", "--restart", "on-failure", "--cmd", "true").ShouldSucceed();
        host.Vsctl("start", "clean").ShouldSucceed();
        (await client.WaitAsync("clean", TestContext.Current.CancellationToken)).LastExit!.Code.ShouldBe(0);
        (await GuestDeath.StaysDownAsync(host, "clean", TimeSpan.FromSeconds(0.5))).RestartCount.ShouldBe(0);
    }
}

/// <summary>A domain whose QEMU is killed from outside: seen within a second as a crash, restarted by its policy, or
/// left down with nothing of its run (QEMU, virtiofsd, the shared root's mount) behind.</summary>
public sealed class DomainDeathTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private TestHost Host => shared.Host;

    [Fact]
    public async Task A_killed_QEMU_is_seen_as_a_crash_within_a_second_and_the_policy_boots_it_again()
    {
        try
        {
            Host.Vsctl("create", "qdies", "--kind", "domain", "--memory", "128M", "--restart", "on-failure").ShouldSucceed();
            Host.Vsctl("start", "qdies").ShouldSucceed();
            var before = await GuestDeath.StatusAsync(Host, "qdies");
            var pid = GuestDeath.RunningPid(before);
            Host.QemuPids("qdies").ShouldBe([pid]);

            var (seen, after) = await GuestDeath.KillAndWatchAsync(Host, "qdies", pid, before);
            after.ShouldBeLessThan(GuestDeath.SeenWithin, $"the kill of QEMU {pid} showed only after {after.TotalMilliseconds:0} ms");
            seen.LastExit!.Signal.ShouldBe(9);
            seen.LastExit.Description.ShouldStartWith("crashed: QEMU was killed by signal 9");
            Host.Vsctl("status", "qdies").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^last exit:\s+crashed: QEMU was killed by signal 9");

            var again = await GuestDeath.RunningAgainAsync(Host, "qdies", pid, TimeSpan.FromSeconds(10));
            again.RestartCount.ShouldBe(1);
            Host.QemuPids("qdies").ShouldBe([again.InitPid!.Value], "one QEMU, the new one");
            // The new QEMU boots the guest for real: its agent answers.
            Host.Vsctl("exec", "qdies", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("qdies");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "qdies");
        }
        Host.ShouldHaveNoTraceOf("qdies");
    }

    [Fact]
    public async Task Without_a_policy_a_killed_QEMU_leaves_the_domain_crashed_with_no_QEMU_or_virtiofsd_and_it_starts_again()
    {
        try
        {
            // A promoted vserver: a domain sharing its files through virtiofsd, the most a domain's run holds on the host.
            Host.Vsctl("create", "vfsdies").ShouldSucceed();
            Host.Vsctl("start", "vfsdies").ShouldSucceed();
            Host.Vsctl("promote", "vfsdies").ShouldSucceed();
            var before = await GuestDeath.StatusAsync(Host, "vfsdies");
            before.Root.ShouldBe("virtiofs");
            before.Restart.ShouldBe("no");
            var pid = GuestDeath.RunningPid(before);
            Host.VirtiofsdPids("vfsdies").ShouldNotBeEmpty();

            var (seen, after) = await GuestDeath.KillAndWatchAsync(Host, "vfsdies", pid, before);
            after.ShouldBeLessThan(GuestDeath.SeenWithin, $"the kill of QEMU {pid} showed only after {after.TotalMilliseconds:0} ms");
            seen.State.ShouldBe("crashed");
            seen.LastExit!.Signal.ShouldBe(9);
            var down = await GuestDeath.StaysDownAsync(Host, "vfsdies", TimeSpan.FromSeconds(1.5));
            down.State.ShouldBe("crashed");
            down.RestartCount.ShouldBe(0);
            Host.Vsctl("status", "vfsdies").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^state:\s+crashed$");
            Host.QemuPids("vfsdies").ShouldBeEmpty();
            Host.VirtiofsdPids("vfsdies").ShouldBeEmpty("virtiofsd of a crashed domain left running");
            File.ReadAllText("/proc/self/mountinfo").ShouldNotContain(Path.Combine(Host.RunDir, "guests", "vfsdies") + "/",
                customMessage: "the shared root of a crashed domain left mounted");

            // Nothing of the dead run is in the way of the next one.
            Host.Vsctl("start", "vfsdies").ShouldSucceed();
            var back = await GuestDeath.StatusAsync(Host, "vfsdies");
            GuestDeath.RunningPid(back).ShouldNotBe(pid);
            Host.VirtiofsdPids("vfsdies").ShouldNotBeEmpty();
            Host.Vsctl("exec", "vfsdies", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("vfsdies");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "vfsdies");
        }
        Host.ShouldHaveNoTraceOf("vfsdies");
    }
}
