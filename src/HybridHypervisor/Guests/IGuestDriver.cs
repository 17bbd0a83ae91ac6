using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Model;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Guests;

/// <summary>
/// One kind of guest on this host: everything the fleet does to a guest that differs by kind. The vserver driver
/// (<see cref="Vservers.VserverDriver"/>: writable layer, cgroup, network namespace, vsinit) and the domain driver
/// (<see cref="Domains.DomainDriver"/>: QEMU, QMP, the guest agent, disks, taps) implement it, as Incus's driver_lxc and
/// driver_qemu implement its Instance interface. The fleet keeps what is common (names, registry, locks, journal,
/// admission, restart policy) and asks the driver for the rest. Every method is called under the guest's lock.
/// </summary>
public interface IGuestDriver
{
    GuestKind Kind { get; }

    /// <summary>Makes what a new guest owns on the host (storage, network); on failure the fleet tears it down.</summary>
    void Provision(GuestConfig config, GuestPaths paths);

    /// <summary>Starts a run with the config's limits; on failure nothing of the run is left.</summary>
    Task<IGuestRun> StartAsync(GuestConfig config, GuestPaths paths, CancellationToken ct);

    /// <summary>After an agent restart: the run an earlier agent left going, taken over with its recorded limits; null
    /// when none runs.</summary>
    Task<IGuestRun?> AdoptAsync(GuestConfig config, GuestPaths paths);

    /// <summary>After an agent restart with nothing to adopt: how a run that ended while no agent watched ended (null when
    /// there was none), with what that run left on the host released.</summary>
    GuestExit? CollectUnwatchedEnd(GuestConfig config, GuestPaths paths);

    /// <summary>Asks the guest to shut down, gives it <paramref name="timeout"/>, then ends it; returns once the run's
    /// process is gone. Zero: ends it at once.</summary>
    Task StopAsync(IGuestRun run, TimeSpan timeout);

    /// <summary>Once <see cref="IGuestRun.Exited"/> has completed: how the run ended, with what the run held on the host
    /// (cgroup, QEMU's connections, a shared root) released. The one end-of-run path for both kinds.</summary>
    Task<GuestExit> EndRunAsync(GuestConfig config, GuestPaths paths, IGuestRun run);

    /// <summary>Freezes (vserver: the cgroup freezer) or stops the vcpus (domain: QMP stop), and back.</summary>
    Task SetPausedAsync(IGuestRun run, bool paused, CancellationToken ct);

    /// <summary>Applies the config's limits to a running guest (cgroup limits; a domain's balloon target).</summary>
    Task ApplyLimitsAsync(GuestConfig config, GuestPaths paths, IGuestRun run);

    /// <summary>What a running guest uses now (memory, processes, CPU time), or null where the kind has no such reading.</summary>
    Vserver.Api.GuestUsage? ReadUsage(IGuestRun run);

    /// <summary>Runs a command inside a running guest.</summary>
    Task<IGuestProcess> ExecAsync(GuestConfig config, GuestPaths paths, IGuestRun run, GuestCommand command, CancellationToken ct);

    /// <summary>What a guest of this kind really holds on the host, whatever its config says (or when it cannot be read):
    /// a vserver's network namespace's address, the host id range that owns its files. Only what can be read is set.</summary>
    GuestClaims ReadHeld(string name, GuestPaths paths);

    /// <summary>Removes whatever a guest of this kind leaves on the host; safe on a half-made or half-removed guest and
    /// on one of the other kind (a conversion may have left parts of both).</summary>
    void Teardown(GuestPaths paths);
}

/// <summary>One run of a guest: started by this agent, or adopted from an earlier one.</summary>
public interface IGuestRun
{
    /// <summary>The process the run is: a vserver's init, a domain's QEMU.</summary>
    int Pid { get; }

    DateTimeOffset StartedAt { get; }

    bool Paused { get; }

    /// <summary>The "ended" notification: completes once the run's process has exited (then
    /// <see cref="IGuestDriver.EndRunAsync"/> says how).</summary>
    Task Exited { get; }
}
