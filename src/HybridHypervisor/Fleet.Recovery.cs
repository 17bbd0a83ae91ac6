using HybridHypervisor.Guests;
using HybridHypervisor.Domains;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>
/// What an agent does at start-up about the agent before it: operations it left half-done are finished or rolled back
/// (by the config's phase, the stopping marker, or the intent journal of <see cref="GuestIntent"/>), a running guest's
/// live limits are made what its config says again, and after a host boot the guests marked autostart start.
/// </summary>
public sealed partial class Fleet
{
    /// <summary>The run root is emptied by a reboot (tmpfs /run) and holds the boot id the last agent saw: no file, or
    /// another id, means the host has started since.</summary>
    private string BootMarker => Path.Combine(_options.RunRoot, "boot-id");

    private static string CurrentBootId()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private bool HostBooted()
    {
        try
        {
            return StateFile.TryReadAllText(_options.RunRoot, BootMarker)?.Trim() != CurrentBootId();
        }
        catch (StateFileException)
        {
            return true; // not a record the agent wrote: RecordBoot replaces it
        }
    }

    private void RecordBoot()
    {
        Directory.CreateDirectory(_options.RunRoot);
        AtomicFile.WriteAllText(BootMarker, CurrentBootId() + "\n", beneath: _options.RunRoot);
    }

    /// <summary>Every guest marked autostart, all at once (no order among them: none depends on another), in the
    /// background: the agent answers meanwhile. A guest that fails to start is logged and listed stopped.</summary>
    private void AutostartAfterBoot()
    {
        List<GuestRuntime> guests;
        guests = _registry.Guests().Where(g => g.Config.Autostart && !g.IsRunning).ToList();
        if (guests.Count == 0) return;
        _log($"the host has started: starting {guests.Count} guest{(guests.Count == 1 ? "" : "s")} marked autostart: " +
             string.Join(", ", guests.Select(g => g.Config.Name)));
        _ = Task.Run(() => Parallel.ForEachAsync(guests, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(4, _hostCpus * 2) },
            async (g, ct) =>
            {
                await g.Lock.WaitAsync(ct);
                try
                {
                    if (g.Removed || g.IsRunning) return;
                    await StartLockedAsync(g, ct);
                    _log($"autostarted guest {g.Config.Name}");
                }
                catch (Exception e)
                {
                    _log($"autostarting guest {g.Config.Name} failed: {e.Message}");
                }
                finally
                {
                    g.Lock.Release();
                }
            }));
    }

    /// <summary>A stop the agent died in (its marker is still there and the guest still runs) is carried out.</summary>
    private void FinishInterruptedStops()
    {
        List<GuestRuntime> stopping;
        stopping = _registry.Guests().Where(g => g.StopRequested && g.IsRunning).ToList();
        foreach (var g in stopping)
        {
            _log($"finishing the stop of {g.Config.Name} that an earlier agent began");
            _ = Task.Run(async () =>
            {
                try
                {
                    await StopAsync(g.Config.Name);
                }
                catch (FleetException e)
                {
                    _log($"finishing the stop of {g.Config.Name} failed: {e.Message}");
                }
            });
        }
    }

    /// <summary>Each guest's intent journal, if an agent died with one open: finish or roll back what it names.</summary>
    private void RecoverInterruptedOperations()
    {
        foreach (var g in _registry.Guests())
        {
            if (_store.ReadIntent(g.Config.Name) is not { } intent) continue;
            var paths = _store.PathsFor(g.Config.Name);
            string outcome;
            try
            {
                outcome = intent.Operation switch
                {
                    "promote" => RecoverPromotion(g, intent, paths),
                    "demote" => RecoverDemotion(g, intent, paths),
                    "save" => RecoverSave(g, intent, paths),
                    _ => $"unknown operation '{intent.Operation}' ignored",
                };
                _store.EndIntent(g.Config.Name);
            }
            catch (Exception e)
            {
                outcome = $"recovering failed ({e.Message}); a host check with repair removes what it left";
            }
            _log($"{intent.Operation} of {g.Config.Name} was interrupted by the agent's death: {outcome}");
        }
    }

    /// <summary>The config says which side of "record the domain" the agent died on: before, the vserver is restored
    /// (running again if it ran); after, the domain is finished (the copy's source layers go, it runs if the vserver did).</summary>
    private string RecoverPromotion(GuestRuntime g, GuestIntent intent, GuestPaths paths)
    {
        if (g.Config.Kind == GuestKind.Vserver)
        {
            // The steps the journal says were begun are undone, as a failed promotion undoes them (the domain's QEMU, with
            // no RunningDomain here, found by its pid file).
            ForgetInterruptedStop(g, paths);
            var run = new PromotionRun(g.Config, g.Config, intent.WasRunning, intent.Beside, intent.Copy, DefaultBootTimeout);
            return PromotionSteps(g, paths, run).RollBackAsync(intent.Begun).GetAwaiter().GetResult();
        }
        if (intent.Copy) DiscardLayers(paths);
        _conversion.RemoveVserverNetwork(paths);
        _conversion.ReleaseVserverCgroup(paths);
        _conversion.EnsureTap(paths);
        if (intent.WasRunning && !g.IsRunning) StartLockedAsync(g).GetAwaiter().GetResult();
        return $"finished: it is a domain{(intent.WasRunning ? ", running" : "")}";
    }

    /// <summary>A conversion stops the guest on its way: a rollback means it runs on, so that stop is not finished.</summary>
    private static void ForgetInterruptedStop(GuestRuntime g, GuestPaths paths)
    {
        g.StopRequested = false;
        AtomicFile.Delete(paths.StoppingMarker);
    }

    /// <summary>Like <see cref="RecoverPromotion"/> the other way: before "record the vserver" the domain is restored
    /// (a copied-out layer goes), after it the vserver is finished (the domain's disk goes).</summary>
    private string RecoverDemotion(GuestRuntime g, GuestIntent intent, GuestPaths paths)
    {
        if (g.Config.Kind == GuestKind.Domain)
        {
            ForgetInterruptedStop(g, paths);
            return DemotionSteps(g, paths, g.Config, vserver: null, intent.WasRunning).RollBackAsync(intent.Begun).GetAwaiter().GetResult();
        }
        _conversion.RemoveDomainLeftovers(paths);
        File.Delete(paths.Ext4Disk);
        File.Delete(paths.Disk);
        _conversion.EnsureVserverNetwork(g.Config, paths);
        if (intent.WasRunning && !g.IsRunning) StartLockedAsync(g).GetAwaiter().GetResult();
        return $"finished: it is a vserver{(intent.WasRunning ? ", running" : "")}";
    }

    /// <summary>A save whose file was renamed into place is finished (the domain lives in the file now and goes from
    /// here); otherwise the part file goes and the domain goes on: resumed if QEMU still runs, stopped with its disk
    /// intact if QEMU had already ended.</summary>
    private string RecoverSave(GuestRuntime g, GuestIntent intent, GuestPaths paths)
    {
        if (intent.File is { } file && File.Exists(file))
        {
            if (g.Domain is { } running)
            {
                running.EndedByHost = true;
                running.KillAsync().GetAwaiter().GetResult();
                EndRunLockedAsync(g, running).GetAwaiter().GetResult();
            }
            _store.Save(g.Config with { Phase = GuestPhase.Destroying });
            Teardown(paths);
            g.Removed = true;
            _registry.Remove(g.Config.Name);
            return $"finished: it is saved in {file} and gone from this host";
        }
        if (intent.PartFile is { } part) File.Delete(part);
        if (g.Domain is { } domain)
        {
            if (!intent.WasPaused && domain.Paused)
            {
                domain.Qmp.ContAsync(CancellationToken.None).GetAwaiter().GetResult();
                domain.Paused = false;
            }
            return "rolled back: it runs on, nothing saved";
        }
        g.LastExit = new GuestExit(null, null, DateTimeOffset.UtcNow, "its save was interrupted by the agent's death after QEMU ended; the disk is intact", Reset: false);
        return $"rolled back: nothing saved; it is stopped with its disk intact";
    }
}
