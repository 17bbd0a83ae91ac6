using HybridHypervisor;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using Xunit;

namespace Vserver.Tests.FleetParts;

/// <summary>The restart policy and back-off of both kinds of guest, driven by a fake clock and a fake start: no root,
/// no waiting for real seconds.</summary>
public sealed class GuestSupervisorTests
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.Parse("2026-12-07T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private readonly List<string> _log = [];
    private readonly List<(string Guest, DateTimeOffset At)> _starts = [];
    private Exception? _startFailure;

    private GuestSupervisor Supervisor() => new(_clock, line => { lock (_log) _log.Add(line); }, g =>
    {
        lock (_starts) _starts.Add((g.Config.Name, _clock.GetUtcNow()));
        if (_startFailure is { } e) throw e;
        g.Run = new FakeRun(_clock.GetUtcNow());
        return Task.CompletedTask;
    });

    private static GuestRuntime Guest(RestartPolicy policy) =>
        new(new GuestConfig { Name = "web1", Image = "busybox", Restart = policy }) { RunEnded = new TaskCompletionSource() };

    private GuestExit Crash(int code = 1) => new(code, null, _clock.GetUtcNow());

    private int Starts
    {
        get
        {
            lock (_starts) return _starts.Count;
        }
    }

    /// <summary>Moves the clock; when <paramref name="expectStarts"/> is given, waits (on the real clock, at most 5 s) for
    /// the restart the timer released to run on the thread pool; else gives a restart that should not come the moment a
    /// real one takes.</summary>
    private async Task AdvanceAsync(TimeSpan by, int? expectStarts = null)
    {
        _clock.Advance(by);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        if (expectStarts is not { } n)
        {
            await Task.Delay(30);
            return;
        }
        while (Starts < n && waited.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(5);
        // Until the start has returned: the restart records the answered exit after it.
        await Task.Delay(10);
    }

    /// <summary>The guest dies as soon as it was restarted: the run ends and the supervisor hears of it.</summary>
    private void DiesAgain(GuestSupervisor supervisor, GuestRuntime g)
    {
        var run = g.Run!;
        g.Run = null;
        g.RunEnded = new TaskCompletionSource();
        supervisor.RunEnded(g, Crash(), run.StartedAt, stopRequested: false);
    }

    [Fact]
    public async Task A_guest_that_keeps_dying_is_restarted_ever_more_slowly_up_to_ten_seconds()
    {
        var supervisor = Supervisor();
        var g = Guest(RestartPolicy.Always);
        supervisor.RunEnded(g, Crash(), _clock.GetUtcNow(), stopRequested: false);
        g.RestartPending.ShouldBeTrue();

        var expected = new[] { 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000 };
        for (var i = 0; i < expected.Length; i++)
        {
            await AdvanceAsync(TimeSpan.FromMilliseconds(expected[i] - 1));
            Starts.ShouldBe(i, $"restart {i + 1} came before its {expected[i]} ms");
            await AdvanceAsync(TimeSpan.FromMilliseconds(1), expectStarts: i + 1);
            Starts.ShouldBe(i + 1, $"restart {i + 1} did not come after {expected[i]} ms");
            g.IsRunning.ShouldBeTrue();
            g.RestartCount.ShouldBe(i + 1);
            DiesAgain(supervisor, g);
        }
        _log.ShouldContain("restarted guest web1 (restart policy always)");
    }

    [Fact]
    public async Task A_run_of_more_than_ten_seconds_starts_the_back_off_again()
    {
        var supervisor = Supervisor();
        var g = Guest(RestartPolicy.OnFailure);
        g.RestartCount = 6;
        var startedAt = _clock.GetUtcNow();
        _clock.Advance(TimeSpan.FromSeconds(11));
        supervisor.RunEnded(g, Crash(), startedAt, stopRequested: false);

        await AdvanceAsync(TimeSpan.FromMilliseconds(100), expectStarts: 1);
        Starts.ShouldBe(1);
        g.RestartCount.ShouldBe(1);
    }

    [Theory]
    [InlineData(RestartPolicy.No, 1, null, false)]
    [InlineData(RestartPolicy.OnFailure, 0, null, false)]
    [InlineData(RestartPolicy.OnFailure, 3, null, true)]
    [InlineData(RestartPolicy.Always, 0, null, true)]
    // reboot(2) inside a vserver ends its init with SIGHUP: restarted whatever the policy.
    [InlineData(RestartPolicy.No, null, 1, true)]
    public void The_policy_decides_which_ends_are_restarted(RestartPolicy policy, int? code, int? signal, bool restarted)
    {
        var g = Guest(policy);
        Supervisor().RunEnded(g, new GuestExit(code, signal, _clock.GetUtcNow()), _clock.GetUtcNow(), stopRequested: false);
        g.RestartPending.ShouldBe(restarted);
    }

    [Fact]
    public async Task A_stop_is_never_answered_with_a_restart_and_a_stop_between_runs_cancels_the_pending_one()
    {
        var supervisor = Supervisor();
        var stopped = Guest(RestartPolicy.Always);
        supervisor.RunEnded(stopped, Crash(), _clock.GetUtcNow(), stopRequested: true);
        stopped.RestartPending.ShouldBeFalse();

        var crashing = Guest(RestartPolicy.Always);
        supervisor.RunEnded(crashing, Crash(), _clock.GetUtcNow(), stopRequested: false);
        crashing.RestartPending = false; // what `vsctl stop` does between two runs
        await AdvanceAsync(TimeSpan.FromSeconds(1));
        Starts.ShouldBe(0);
    }

    [Fact]
    public async Task A_restart_that_fails_says_why_and_is_tried_again_with_the_back_off()
    {
        var supervisor = Supervisor();
        var g = Guest(RestartPolicy.Always);
        _startFailure = new FleetException(FleetError.Conflict, "image 'busybox' of guest 'web1' is gone");
        var exit = Crash(7);
        supervisor.RunEnded(g, exit, _clock.GetUtcNow(), stopRequested: false);

        await AdvanceAsync(TimeSpan.FromMilliseconds(100), expectStarts: 1);
        Starts.ShouldBe(1);
        g.IsRunning.ShouldBeFalse();
        g.LastExit.ShouldNotBeNull().Description.ShouldBe(
            "exited with code 7; restarting it failed: image 'busybox' of guest 'web1' is gone (tried again with back-off until it starts or is stopped)");
        g.RestartPending.ShouldBeTrue();

        _startFailure = null;
        await AdvanceAsync(TimeSpan.FromMilliseconds(200), expectStarts: 2);
        Starts.ShouldBe(2);
        g.IsRunning.ShouldBeTrue();
        g.LastExit!.Code.ShouldBe(7);
    }

    [Fact]
    public async Task A_restart_for_a_run_that_a_later_start_replaced_does_not_fire()
    {
        var supervisor = Supervisor();
        var g = Guest(RestartPolicy.Always);
        supervisor.RunEnded(g, Crash(), _clock.GetUtcNow(), stopRequested: false);
        // An operator started it meanwhile, and that run ended too: a new RunEnded.
        g.RunEnded = new TaskCompletionSource();
        await AdvanceAsync(TimeSpan.FromSeconds(1));
        Starts.ShouldBe(0);
    }

    private sealed class FakeRun(DateTimeOffset startedAt) : IGuestRun
    {
        public int Pid => 4242;
        public DateTimeOffset StartedAt { get; } = startedAt;
        public bool Paused => false;
        public Task Exited { get; } = new TaskCompletionSource().Task;
    }
}
