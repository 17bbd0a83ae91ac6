using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>A guest's runs, the same for both kinds: start, the one exit-watching and end-of-run path, stop, restart,
/// pause, limits and exec. What differs by kind is the guest's driver's (<see cref="IGuestDriver"/>); what happens after
/// an end is the supervisor's (<see cref="GuestSupervisor"/>).</summary>
public sealed partial class Fleet
{
    public async Task<GuestView> StartAsync(string name, bool wait = false, CancellationToken ct = default)
    {
        Task ended;
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.IsRunning)
                throw FleetException.AlreadyRunning(name, g.State.ToString().ToLowerInvariant(), "start");
            await StartLockedAsync(g, ct);
            ended = g.RunEnded.Task;
        }
        finally
        {
            g.Lock.Release();
        }
        if (wait) await ended.WaitAsync(ct);
        return View(g);
    }

    /// <summary>Starts a run of either kind (under the guest's lock), admitted by the pool first.</summary>
    private async Task StartLockedAsync(GuestRuntime g, CancellationToken ct = default)
    {
        using var reservation = Admit(g.Config, "start", runningOnly: true);
        var paths = _store.PathsFor(g.Config.Name);
        var run = await DriverFor(g.Config).StartAsync(g.Config, paths, ct);
        // After the start: the run directory may not have existed before it (a host boot empties the run root).
        File.Delete(paths.StoppingMarker);
        BeginRun(g, run);
    }

    /// <summary>Records a run (started, adopted, or made by a restore or promotion) under the guest's lock, and watches
    /// for its end.</summary>
    private void BeginRun(GuestRuntime g, IGuestRun run)
    {
        g.RestartPending = false;
        g.Run = run;
        g.StopRequested = false;
        g.RunEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        run.Exited.ContinueWith(_ => OnRunExitedAsync(g, run), TaskScheduler.Default);
    }

    /// <summary>The one exit-watching path: a run that ends by itself (not by a stop, which collects its own end) is
    /// recorded, and the supervisor decides about a restart.</summary>
    private async Task OnRunExitedAsync(GuestRuntime g, IGuestRun run)
    {
        await g.Lock.WaitAsync();
        try
        {
            if (!ReferenceEquals(g.Run, run) || g.Removed) return;
            var (exit, stopRequested) = await EndRunLockedAsync(g, run);
            _log($"{KindName(g.Config)} {g.Config.Name} {exit.Description}");
            _supervisor.RunEnded(g, exit, run.StartedAt, stopRequested);
        }
        catch (Exception e)
        {
            _log($"guest {g.Config.Name}: handling its exit failed: {e.Message}");
        }
        finally
        {
            g.Lock.Release();
        }
    }

    private static string KindName(GuestConfig config) => config.Kind.ToString().ToLowerInvariant();

    /// <summary>The one end-of-run path (under the guest's lock): the driver says how the run ended and releases what it
    /// held; the exit is recorded with whether an operator asked for it, and waiters are told.</summary>
    private async Task<(GuestExit Exit, bool StopRequested)> EndRunLockedAsync(GuestRuntime g, IGuestRun run)
    {
        var paths = _store.PathsFor(g.Config.Name);
        var stopRequested = g.StopRequested || File.Exists(paths.StoppingMarker);
        AtomicFile.Delete(paths.StoppingMarker);
        GuestExit exit;
        try
        {
            exit = await DriverFor(g.Config).EndRunAsync(g.Config, paths, run);
        }
        finally
        {
            g.Run = null;
            g.ConsoleAttached = false;
        }
        g.LastExit = exit;
        g.RunEnded.TrySetResult();
        return (exit, stopRequested);
    }

    public async Task<GuestView> StopAsync(string name, TimeSpan? timeout = null, CancellationToken ct = default)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (!g.IsRunning)
            {
                // Between two runs of a crashing guest, a stop just cancels the pending restart.
                if (!g.RestartPending) throw FleetException.Conflict($"guest '{name}' is not running");
                g.RestartPending = false;
            }
            else
            {
                await StopLockedAsync(g, timeout ?? _options.DefaultStopTimeout);
            }
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    /// <summary>The driver's stop (a vserver: SIGTERM to init, SIGKILL once its services are gone or the timeout passes;
    /// a domain: ACPI power-down, then quit, then SIGKILL); returns once the exit is collected. The stopping marker tells
    /// an agent that dies meanwhile to finish the stop.</summary>
    private async Task StopLockedAsync(GuestRuntime g, TimeSpan timeout)
    {
        var run = g.Run!;
        g.StopRequested = true;
        File.WriteAllText(_store.PathsFor(g.Config.Name).StoppingMarker, "");
        Failpoints.Hit("stop.after-marker");
        await DriverFor(g.Config).StopAsync(run, timeout);
        Failpoints.Hit("stop.after-exit");
        // The exit handler needs the lock we hold: collect the exit here instead.
        var (exit, _) = await EndRunLockedAsync(g, run);
        _log($"stopped {KindName(g.Config)} {g.Config.Name}: {exit.Description}");
    }

    public async Task<GuestView> RestartAsync(string name, CancellationToken ct = default)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.IsRunning) await StopLockedAsync(g, _options.DefaultStopTimeout);
            await StartLockedAsync(g, ct);
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    public Task<GuestView> PauseAsync(string name, CancellationToken ct = default) => FreezeAsync(name, freeze: true, ct);

    public Task<GuestView> ResumeAsync(string name, CancellationToken ct = default) => FreezeAsync(name, freeze: false, ct);

    private async Task<GuestView> FreezeAsync(string name, bool freeze, CancellationToken ct)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (!g.IsRunning) throw FleetException.Conflict($"guest '{name}' is not running");
            if (g.Paused == freeze) throw FleetException.Conflict($"guest '{name}' is already {(freeze ? "paused" : "running")}");
            await DriverFor(g.Config).SetPausedAsync(g.Run!, freeze, ct);
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    /// <summary>Waits until the guest's current run ends (returns at once for a stopped guest).</summary>
    public async Task<GuestView> WaitAsync(string name, CancellationToken ct = default)
    {
        var g = Find(name);
        await g.RunEnded.Task.WaitAsync(ct);
        return View(g);
    }

    /// <summary>Changes a guest's limits (live where it runs; the kernel may refuse, e.g. memory below current use) and,
    /// if given, its restart policy and autostart; persisted.</summary>
    public async Task<GuestView> SetLimitsAsync(string name, GuestLimits changes, RestartPolicy? restart = null, bool? autostart = null,
        CancellationToken ct = default)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.Config.Kind == GuestKind.Domain)
            {
                if (changes.DiskBytes is { } domainDisk) GrowDiskLocked(g, domainDisk);
                await SetDomainMemoryLockedAsync(g, changes);
                SetRestartLocked(g, restart, autostart);
                return View(g);
            }
            var limits = g.Config.Limits with
            {
                MemoryBytes = changes.MemoryBytes ?? g.Config.Limits.MemoryBytes,
                MemoryMinBytes = changes.MemoryMinBytes ?? g.Config.Limits.MemoryMinBytes,
                Cpus = changes.Cpus ?? g.Config.Limits.Cpus,
                Pids = changes.Pids ?? g.Config.Limits.Pids,
            };
            if (GuestConfigValidator.LimitsError(limits, _hostCpus, HostMemory.TotalBytes) is { } error) throw FleetException.Invalid(error);
            using var reservation = AdmitChange(g, g.Config with { Limits = limits });
            // The disk first: it is the change most likely to fail (host tools), and it persists itself.
            if (changes.DiskBytes is { } disk)
            {
                GrowDiskLocked(g, disk);
                limits = limits with { DiskBytes = g.Config.Limits.DiskBytes };
                Failpoints.Hit("set.after-disk");
            }
            if (g.Run is { } run && changes with { DiskBytes = null } != new GuestLimits())
            {
                try
                {
                    await _vserverDriver.ApplyLimitsAsync(g.Config with { Limits = limits }, _store.PathsFor(name), run);
                    Failpoints.Hit("set.after-live");
                }
                catch (CgroupException e)
                {
                    throw new FleetException(FleetError.Conflict, $"cannot apply the new limits to running guest '{name}': {e.Message}", e);
                }
            }
            // One write for limits, restart policy and autostart: a full state disk refuses the whole set, never half.
            var changed = g.Config with { Limits = limits, Restart = restart ?? g.Config.Restart, Autostart = autostart ?? g.Config.Autostart };
            try
            {
                _store.Save(changed);
            }
            catch (FleetException) when (g.Run is { } running)
            {
                // Not recorded (a full state disk): the guest keeps the limits its config still holds.
                await TryApplyLimitsAsync(g.Config, running);
                throw;
            }
            g.Config = changed;
            Failpoints.Hit("set.after-save");
            RefreshMeminfo(g);
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    /// <summary>What happens to the guest when it ends or the host boots: its restart policy and autostart.</summary>
    private void SetRestartLocked(GuestRuntime g, RestartPolicy? restart, bool? autostart)
    {
        var changed = g.Config with { Restart = restart ?? g.Config.Restart, Autostart = autostart ?? g.Config.Autostart };
        if (changed == g.Config) return;
        _store.Save(changed);
        g.Config = changed;
    }

    private async Task TryApplyLimitsAsync(GuestConfig config, IGuestRun run)
    {
        try
        {
            await DriverFor(config).ApplyLimitsAsync(config, _store.PathsFor(config.Name), run);
        }
        catch (CgroupException e)
        {
            _log($"guest {config.Name}: putting back its recorded limits failed: {e.Message}");
        }
    }

    /// <summary>A domain's memory: live, a balloon target within its maximum and not below its guarantee; stopped, the
    /// maximum (and target) of its next boot. The guarantee (balloon floor) can change either way. Persisted.</summary>
    private async Task SetDomainMemoryLockedAsync(GuestRuntime g, GuestLimits changes)
    {
        var name = g.Config.Name;
        if (changes.Cpus is not null) throw FleetException.OptionNotForKind(Vserver.Api.GuestSpec.Fields.Cpus, GuestKind.Domain);
        if (changes.Pids is not null) throw FleetException.OptionNotForKind(Vserver.Api.GuestSpec.Fields.Pids, GuestKind.Domain);
        if (changes.MemoryBytes is null && changes.MemoryMinBytes is null) return;
        var domain = g.Config.Domain!;
        var min = changes.MemoryMinBytes ?? g.Config.Limits.MemoryMinBytes;
        var running = g.Domain;
        if (running is not null && changes.MemoryBytes is { } asked && asked > domain.MaxMemoryBytes)
            throw FleetException.Invalid(new SettingError(Vserver.Api.GuestSpec.Fields.MemoryBytes, asked.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Vserver.Api.ErrorCodes.Reasons.AboveBootMaximum,
                    $"memory {asked >> 20}M is above domain '{name}''s maximum of {domain.MaxMemoryBytes >> 20}M, fixed while it runs")
                .With("maximum", domain.MaxMemoryBytes).With("guest", name));
        // Running: --memory moves the balloon target; stopped: it is the new maximum (and target) of the next boot.
        var next = running is null && changes.MemoryBytes is { } max ? domain with { MaxMemoryBytes = max } : domain;
        var target = changes.MemoryBytes ?? g.Config.Limits.MemoryBytes;
        if (running is null && changes.MemoryBytes is null && target > next.MaxMemoryBytes) target = next.MaxMemoryBytes;
        if ((GuestConfigValidator.DomainError(next, target, _hostCpus, HostMemory.TotalBytes)
             ?? GuestConfigValidator.DomainGuaranteeError(next, min, target)) is { } error)
            throw FleetException.Invalid(error);
        var changed = g.Config with { Domain = next, Limits = g.Config.Limits with { MemoryBytes = target, MemoryMinBytes = min } };
        using var reservation = AdmitChange(g, changed);
        if (running is not null && target is { } size && size != running.BalloonCurrent)
        {
            await _domainDriver.ApplyLimitsAsync(changed, _store.PathsFor(name), running);
            Failpoints.Hit("set.after-live");
        }
        _store.Save(changed);
        g.Config = changed;
    }

    public async Task<IGuestProcess> ExecAsync(string name, IReadOnlyList<string> command, bool tty, int rows, int cols,
        IReadOnlyDictionary<string, string>? env, string? cwd, CancellationToken ct = default)
    {
        if (GuestConfigValidator.ExecError(command, env, cwd) is { } invalid) throw FleetException.Invalid(invalid);
        var g = Find(name);
        if (g.Run is not { } run) throw FleetException.NotRunning(name);
        if (g.Paused) throw FleetException.Paused(name);
        return await DriverFor(g.Config).ExecAsync(g.Config, _store.PathsFor(name), run, new GuestCommand(command, env, cwd, tty, rows, cols), ct);
    }
}
