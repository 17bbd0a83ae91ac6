using HybridHypervisor.Model;

namespace HybridHypervisor.Guests;

/// <summary>
/// What happens when a guest's run ends, for both kinds: the restart policy decides whether it starts again, and a
/// guest that keeps dying is started ever more slowly (100 ms doubling to 10 s; a run of more than 10 s starts the count
/// again). A restart that fails (its image gone, a full disk, QEMU refusing) is tried again with the back-off, and the
/// guest's last exit says why it is still down. Time comes from a <see cref="TimeProvider"/>, so tests drive it.
/// </summary>
internal sealed class GuestSupervisor(TimeProvider clock, Action<string> log, Func<GuestRuntime, Task> startLocked)
{
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(10);
    /// <summary>A run at least this long was a good one: the back-off starts from the beginning after it.</summary>
    public static readonly TimeSpan StableRun = TimeSpan.FromSeconds(10);

    public static bool ShouldRestart(RestartPolicy policy, GuestExit exit) =>
        exit.RebootRequested || policy switch
        {
            RestartPolicy.Always => true,
            RestartPolicy.OnFailure => exit.Failed,
            _ => false,
        };

    /// <summary>The wait before restart number <paramref name="restartCount"/> (0 = the first) of a guest that keeps dying.</summary>
    public static TimeSpan BackOff(int restartCount) =>
        TimeSpan.FromMilliseconds(Math.Min(FirstDelay.TotalMilliseconds * Math.Pow(2, Math.Min(restartCount, 10)), MaxDelay.TotalMilliseconds));

    /// <summary>A run ended (under the guest's lock): restarts it with the back-off if its policy (or its own reboot)
    /// asks for that and nobody asked it to stop.</summary>
    public void RunEnded(GuestRuntime g, GuestExit exit, DateTimeOffset startedAt, bool stopRequested)
    {
        if (!stopRequested && ShouldRestart(g.Config.Restart, exit)) ScheduleBackedOff(g, exit, startedAt);
    }

    private void ScheduleBackedOff(GuestRuntime g, GuestExit exit, DateTimeOffset startedAt)
    {
        if (exit.At - startedAt > StableRun) g.RestartCount = 0;
        var delay = BackOff(g.RestartCount);
        g.RestartCount++;
        Schedule(g, delay, exit);
    }

    /// <summary>Starts the guest again after <paramref name="delay"/>, unless it was stopped, started or removed
    /// meanwhile; <paramref name="cause"/> is the exit being answered (null: a run that ended while no agent watched).</summary>
    public void Schedule(GuestRuntime g, TimeSpan delay, GuestExit? cause = null)
    {
        g.RestartPending = true;
        // A run started after this one ended (start, then another death) makes this restart stale, even if a new
        // restart is pending by the time it wakes: that one keeps its own back-off.
        var ended = g.RunEnded;
        // The timer starts now, not when the thread pool gets to the task below.
        var waited = Task.Delay(delay, clock);
        _ = Task.Run(async () =>
        {
            await waited;
            await g.Lock.WaitAsync();
            try
            {
                if (g.Removed || g.IsRunning || !g.RestartPending || !ReferenceEquals(g.RunEnded, ended)) return;
                g.RestartPending = false;
                await startLocked(g);
                if (cause is not null) g.LastExit = cause;
                log($"restarted guest {g.Config.Name} (restart policy {RestartPolicies.Format(g.Config.Restart)})");
            }
            catch (Exception e)
            {
                log($"restarting guest {g.Config.Name} failed: {e.Message}");
                var answered = cause ?? g.LastExit;
                if (g.Removed || g.IsRunning || answered is null) return;
                g.LastExit = answered with
                {
                    Reason = $"{answered.Description}; restarting it failed: {e.Message} (tried again with back-off until it starts or is stopped)",
                };
                ScheduleBackedOff(g, answered, answered.At);
            }
            finally
            {
                g.Lock.Release();
            }
        });
    }
}
