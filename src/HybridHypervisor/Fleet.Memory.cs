using System.Text.Json;
using HybridHypervisor.Model;
using QmpException = HybridHypervisor.Domains.Qmp.QmpException;
using SharedMemoryAccounting;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>The pool as a view: settings, what is promised, what is used right now.</summary>
public sealed record PoolView(Pool Pool, PoolSettings Settings, long Committed, long Limits, long Used, long Free, bool UnderPressure, KsmStatus Ksm);

/// <summary>`vsctl stat`: the pool's accounting and each guest's share of it.</summary>
public sealed record StatView(PoolUsage Usage, PoolView Pool, IReadOnlyList<string> Notes, IReadOnlyList<GuestStatView> Guests);

/// <summary>One guest's row: measured usage (null when it is not running), its promises, CPU and balloon.</summary>
public sealed record GuestStatView(string Name, GuestKind Kind, GuestState State, GuestUsage? Usage, long? Limit, long Guarantee,
    double CpuPercent, long? Balloon, long? BalloonTarget, long? KsmBytes);

// The shared memory pool: admission at create, start and set; a one-second sampler that keeps each vserver's own
// /proc/meminfo current, measures CPU, and acts on pressure; `stat` measuring fair shares on demand.
public sealed partial class Fleet
{
    private static readonly TimeSpan SampleInterval = TimeSpan.FromSeconds(1);
    private readonly ProcFs _proc = new();
    private readonly Lock _poolLock = new();
    private PoolSettings _poolSettings = new();
    /// <summary>Commitments of work in flight (a create provisioning, a start booting, a set applying), counted by
    /// admission beside the guests' configs so two of them cannot both take the last of the pool.</summary>
    private readonly Dictionary<string, Commitment> _reserved = new(StringComparer.Ordinal);
    private bool _underPressure;
    private IReadOnlyList<string> _pressureNotes = [];
    private readonly CancellationTokenSource _samplerStop = new();
    private Task? _sampler;

    private string PoolSettingsFile => Path.Combine(_options.StateRoot, "pool.json");

    public Pool Pool
    {
        get
        {
            lock (_poolLock) return _poolSettings.For(HostMemory.TotalBytes);
        }
    }

    /// <summary>Reads the pool's settings (start-up); KSM is switched on again if the operator had it on.</summary>
    private void LoadPoolSettings()
    {
        byte[]? bytes;
        try
        {
            bytes = StateFile.TryReadAllBytes(_options.StateRoot, PoolSettingsFile);
        }
        catch (StateFileException e)
        {
            throw new InvalidOperationException($"{e.Message}; fix or remove it (the pool then takes its defaults)", e);
        }
        if (bytes is not null)
        {
            try
            {
                _poolSettings = JsonSerializer.Deserialize(bytes, ConfigJson.Default.PoolSettings) ?? new PoolSettings();
            }
            catch (JsonException e)
            {
                throw new InvalidOperationException($"{PoolSettingsFile}: {GuestStore.JsonProblem(e)}; fix or remove it (the pool then takes its defaults)", e);
            }
            if (_poolSettings.Error(HostMemory.TotalBytes) is { } error)
                throw new InvalidOperationException($"{PoolSettingsFile}: {error}; fix or remove it");
        }
        if (_poolSettings.Ksm)
        {
            try
            {
                _proc.SetKsm(true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log($"WARNING: cannot switch KSM on: {e.Message}");
            }
        }
    }

    private void StartSampler() => _sampler = Task.Run(() => SampleLoopAsync(_samplerStop.Token));

    private async Task StopSamplerAsync()
    {
        _samplerStop.Cancel();
        if (_sampler is { } sampler) await sampler.ConfigureAwait(false);
    }

    // ---- admission ----

    /// <summary>What a guest holds of the pool: a vserver its guarantee (default none) and limit (none = unbounded);
    /// a domain its balloon floor (default all of its memory, as Xen reserves a domain's memory) and its memory.</summary>
    public static Commitment CommitmentOf(GuestConfig config) => config.Kind == GuestKind.Domain
        ? new Commitment(config.Name, config.Limits.MemoryMinBytes ?? config.Domain!.MaxMemoryBytes, config.Domain!.MaxMemoryBytes)
        : new Commitment(config.Name, config.Limits.MemoryMinBytes ?? 0, config.Limits.MemoryBytes);

    /// <summary>
    /// Admits <paramref name="config"/> into the pool or throws a conflict with the numbers. The returned reservation
    /// holds its place until disposed (by then the config in the registry speaks for it, or the work failed).
    /// </summary>
    /// <param name="runningOnly">Start: only running (and starting) guests hold memory; else every guest's promise counts.</param>
    private Reservation Admit(GuestConfig config, string verb, bool runningOnly)
    {
        var asked = CommitmentOf(config);
        var pool = Pool;
        var guests = _registry.Guests();
        lock (_fleetLock)
        {
            var others = guests
                .Where(g => g.Config.Name != asked.Name && !_reserved.ContainsKey(g.Config.Name) && (!runningOnly || g.IsRunning))
                .Select(g => CommitmentOf(g.Config))
                .Concat(_reserved.Values.Where(r => r.Name != asked.Name))
                .ToList();
            if (Admission.Check(pool, others, asked, verb) is { } refusal) throw Refused(refusal);
            if (_reserved.ContainsKey(asked.Name)) return new Reservation(this, null);
            _reserved[asked.Name] = asked;
        }
        return new Reservation(this, asked.Name);
    }

    /// <summary>Admission for a change of a guest's promises: only a larger guarantee or limit needs room; giving
    /// memory back always succeeds (even on a pool that a smaller capacity has left overcommitted).</summary>
    private Reservation AdmitChange(GuestRuntime g, GuestConfig changed, string verb = "change the memory of")
    {
        var before = CommitmentOf(g.Config);
        var after = CommitmentOf(changed);
        var grows = after.Guarantee > before.Guarantee || (after.Limit ?? 0) > (before.Limit ?? 0);
        return grows ? Admit(changed, verb, runningOnly: false) : new Reservation(this, null);
    }

    /// <summary>The pool's refusal with its numbers as fields: <see cref="Vserver.Api.ErrorCodes.PoolFull"/> for a
    /// guest, <see cref="Vserver.Api.ErrorCodes.PoolTooSmall"/> for new settings.</summary>
    internal static FleetException Refused(PoolRefusal refusal)
    {
        static string Bytes(long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var bound = refusal.Bound == PoolBound.Guarantees ? "guarantees" : "limits";
        return refusal is { Guest: { } guest, Asked: { } asked }
            ? FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.PoolFull, refusal.Message, ("guest", guest), ("bound", bound),
                ("asked", Bytes(asked)), ("committed", Bytes(refusal.Committed)), ("available", Bytes(refusal.Available)))
            : FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.PoolTooSmall, refusal.Message, ("bound", bound),
                ("committed", Bytes(refusal.Committed)), ("available", Bytes(refusal.Available)));
    }

    private sealed class Reservation(Fleet fleet, string? name) : IDisposable
    {
        public void Dispose()
        {
            if (name is null) return;
            lock (fleet._fleetLock) fleet._reserved.Remove(name);
        }
    }

    // ---- host settings ----

    public PoolView PoolInfo()
    {
        var now = _proc.ReadMemInfo();
        PoolSettings settings;
        bool pressure;
        lock (_poolLock)
        {
            settings = _poolSettings;
            pressure = _underPressure;
        }
        var pool = settings.For(now.TotalBytes);
        Commitments held;
        held = Commitments.Of(_registry.Guests().Select(g => CommitmentOf(g.Config)));
        return new PoolView(pool, settings, held.Guarantees, held.Limits, now.TotalBytes - now.AvailableBytes,
            pool.Free(now), pressure, _proc.ReadKsm());
    }

    /// <summary>Changes the pool's settings; null members stay. Refused when the guests' promises would no longer fit.</summary>
    public PoolView SetPool(long? reserveBytes, double? overcommit, long? minFreeBytes, bool? ksm)
    {
        lock (_poolLock)
        {
            var next = CheckedPoolSettings(reserveBytes, overcommit, minFreeBytes, ksm);
            if (ksm is { } on && on != _poolSettings.Ksm)
            {
                try
                {
                    _proc.SetKsm(on);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new FleetException(FleetError.Failed, $"cannot switch KSM {(on ? "on" : "off")}: {e.Message}", e);
                }
                _log($"KSM switched {(on ? "on" : "off")}");
            }
            AtomicFile.WriteAllText(PoolSettingsFile, JsonSerializer.Serialize(next, ConfigJson.Default.PoolSettings) + "\n", beneath: _options.StateRoot);
            _poolSettings = next;
        }
        return PoolInfo();
    }

    /// <summary>The pool's settings a change would make, or the refusal of it; nothing is changed (a request that also
    /// changes the network is checked whole before either part is made).</summary>
    public PoolSettings CheckedPoolSettings(long? reserveBytes, double? overcommit, long? minFreeBytes, bool? ksm)
    {
        lock (_poolLock)
        {
            var next = _poolSettings with
            {
                ReserveBytes = reserveBytes ?? _poolSettings.ReserveBytes,
                Overcommit = overcommit ?? _poolSettings.Overcommit,
                MinFreeBytes = minFreeBytes ?? _poolSettings.MinFreeBytes,
                Ksm = ksm ?? _poolSettings.Ksm,
            };
            if (next.Error(HostMemory.TotalBytes) is { } error)
                throw FleetException.Invalid(new SettingError(error.Field, error.Value, Vserver.Api.ErrorCodes.Reasons.OutOfRange, error.Message)
                    .With("minimum", error.Minimum).With("maximum", error.Maximum));
            Commitments held;
            var guests = _registry.Guests();
            lock (_fleetLock) held = Commitments.Of(guests.Select(g => CommitmentOf(g.Config)).Concat(_reserved.Values));
            if (Admission.CheckSettings(next.For(HostMemory.TotalBytes), held) is { } refusal) throw Refused(refusal);
            return next;
        }
    }

    // ---- the sampler ----

    private async Task SampleLoopAsync(CancellationToken ct)
    {
        string? lastError = null;
        using var timer = new PeriodicTimer(SampleInterval);
        do
        {
            try
            {
                await SampleAsync();
                lastError = null;
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                // Never let one bad reading stop the sampler, a QMP call that timed out included (only the fleet's end
                // stops it); say so once, not every second.
                if (e.Message != lastError) _log($"memory sampler: {e.Message}");
                lastError = e.Message;
            }
        }
        while (await WaitTickAsync(timer, ct));
    }

    private static async Task<bool> WaitTickAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            return await timer.WaitForNextTickAsync(ct);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One look: every vserver's meminfo rewritten, CPU sampled, pressure decided and acted on.</summary>
    private async Task SampleAsync()
    {
        var host = _proc.ReadMemInfo();
        List<GuestRuntime> running;
        running = _registry.Guests().Where(g => g.IsRunning).ToList();
        var now = DateTimeOffset.UtcNow;
        var domains = new List<(GuestRuntime G, BalloonedDomain D)>();
        var vservers = new List<VserverCharge>();
        foreach (var g in running)
        {
            if (g.Vserver is { } vserver)
            {
                try
                {
                    var stats = WriteMeminfo(g, vserver, host);
                    g.LastSample = new UsageSample(vserver, stats);
                    g.RecordCpu(now, stats.CpuUsage);
                    vservers.Add(new VserverCharge(g.Config.Name, stats.MemoryBytes, g.Config.Limits.MemoryMinBytes ?? 0));
                }
                catch (Exception e) when (e is CgroupException or IOException or UnauthorizedAccessException)
                {
                    // The guest ended between the listing and the read.
                }
            }
            else if (g.Domain is { } domain)
            {
                if (_proc.CpuTime(domain.Pid) is { } cpu) g.RecordCpu(now, cpu);
                // A domain adopted from an earlier agent may still be held low by that agent's pressure: ask QEMU.
                if (domain.BalloonCurrent is null)
                {
                    try
                    {
                        using var answer = new CancellationTokenSource(QmpAnswerTimeout);
                        domain.BalloonCurrent = await domain.Qmp.QueryBalloonAsync(answer.Token);
                    }
                    catch (Exception e) when (e is QmpException or IOException or ObjectDisposedException or OperationCanceledException)
                    {
                        continue;
                    }
                }
                var commitment = CommitmentOf(g.Config);
                var target = g.Config.Limits.MemoryBytes ?? g.Config.Domain!.MaxMemoryBytes;
                domains.Add((g, new BalloonedDomain(g.Config.Name, commitment.Guarantee, target, domain.BalloonCurrent ?? target)));
            }
        }

        Pool pool;
        lock (_poolLock) pool = _poolSettings.For(host.TotalBytes);
        var decision = Pressure.Decide(pool.Free(host), pool.MinFree, domains.Select(d => d.D).ToList(), vservers);
        foreach (var (g, d) in domains)
        {
            var size = decision.Balloons[d.Name];
            if (size == d.Current) continue;
            await SetBalloonAsync(g, size);
        }
        bool changed;
        lock (_poolLock)
        {
            changed = decision.UnderPressure != _underPressure;
            _underPressure = decision.UnderPressure;
            _pressureNotes = decision.Notes;
        }
        // The log gets what changes: entering or leaving pressure and every balloon moved; how things stand is in stat.
        if (changed) _log(decision.UnderPressure ? decision.Notes[0] : "the pool is no longer under pressure");
        foreach (var action in decision.Actions) _log(action);
    }

    /// <summary>A vserver's cgroup counters and its memory breakdown, read together (throws CgroupException once it is gone).</summary>
    /// <summary>Rewrites a running vserver's own /proc/meminfo from its cgroup and limit; returns the cgroup's stats.</summary>
    private CgroupStats WriteMeminfo(GuestRuntime g, Vservers.RunningVserver vserver, MemInfo host)
    {
        var (stats, memory) = ReadMemory(vserver);
        WriteInPlace(_store.PathsFor(g.Config.Name).Meminfo, GuestMeminfo.Render(host, memory, g.Config.Limits.MemoryBytes));
        return stats;
    }

    /// <summary>After a change of its limit: the vserver's /proc/meminfo says so at once, not at the next sample.</summary>
    private void RefreshMeminfo(GuestRuntime g)
    {
        if (g.Vserver is not { } vserver) return;
        try
        {
            WriteMeminfo(g, vserver, _proc.ReadMemInfo());
        }
        catch (Exception e) when (e is CgroupException or IOException or UnauthorizedAccessException)
        {
            // The sampler writes it within a second anyway.
        }
    }

    private static (CgroupStats Stats, CgroupMemory Memory) ReadMemory(Vservers.RunningVserver vserver)
    {
        var stats = vserver.Cgroup.ReadStats();
        return (stats, CgroupMemory.FromStat(vserver.Cgroup.ReadMemoryStat(), stats.MemoryBytes, stats.MemoryLimitBytes));
    }

    /// <summary>Moves a running domain's balloon (under its lock, so it cannot race a stop or `vsctl set`).</summary>
    /// <summary>How long the sampler waits for QEMU to answer: one QEMU that does not must not stop the pool's pressure
    /// handling for every other guest.</summary>
    private static readonly TimeSpan QmpAnswerTimeout = TimeSpan.FromSeconds(5);

    private async Task SetBalloonAsync(GuestRuntime g, long bytes)
    {
        // A guest busy with a long operation (a promotion's boot, a save) is left to the next look.
        if (!await g.Lock.WaitAsync(QmpAnswerTimeout)) return;
        try
        {
            if (g.Domain is not { } domain) return;
            using var answer = new CancellationTokenSource(QmpAnswerTimeout);
            await domain.SetBalloonAsync(bytes, answer.Token);
        }
        catch (Exception e) when (e is QmpException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            _log($"domain {g.Config.Name}: setting the balloon to {Vserver.Api.ByteSize.FormatRounded(bytes)} failed: {e.Message}");
        }
        finally
        {
            g.Lock.Release();
        }
    }

    /// <summary>
    /// Rewrites a file without replacing it: a bind mount holds the inode, so a rename would leave the guest reading
    /// the old one. The rendered text has a constant length, so readers never see it shrink under them.
    /// </summary>
    internal static void WriteInPlace(string path, string content)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(content);
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        RandomAccess.Write(handle, bytes, 0);
        if (RandomAccess.GetLength(handle) != bytes.Length) RandomAccess.SetLength(handle, bytes.Length);
    }

    // ---- stat ----

    /// <summary>Measures who uses what now; <paramref name="names"/> empty = every guest.</summary>
    public async Task<StatView> StatAsync(IReadOnlyList<string> names, CancellationToken ct = default)
    {
        foreach (var name in names)
        {
            if (_registry.Find(name) is null) throw FleetException.GuestNotFound(name);
        }
        // Every running guest is measured (the host's share is what the guests do not use); rows are the asked ones.
        var guests = _registry.Guests().OrderBy(g => g.Config.Name, StringComparer.Ordinal).ToList();
        var samples = new List<GuestSample>();
        var cpu = new Dictionary<string, double>(StringComparer.Ordinal);
        var now = DateTimeOffset.UtcNow;
        foreach (var g in guests)
        {
            if (g.Vserver is { } vserver)
            {
                try
                {
                    var (stats, memory) = ReadMemory(vserver);
                    samples.Add(new GuestSample(g.Config.Name, vserver.Cgroup.Pids(), memory));
                    cpu[g.Config.Name] = g.CpuPercent(now, stats.CpuUsage);
                }
                catch (CgroupException)
                {
                    // It ended while we looked: shown as it is now, without usage.
                }
            }
            else if (g.Domain is { } domain)
            {
                samples.Add(new GuestSample(g.Config.Name, [domain.Pid], null));
                cpu[g.Config.Name] = _proc.CpuTime(domain.Pid) is { } t ? g.CpuPercent(now, t) : 0;
            }
        }
        var usage = Accounting.Measure(_proc, samples);
        var byName = usage.PerGuest.ToDictionary(u => u.Name, StringComparer.Ordinal);
        var rows = new List<GuestStatView>();
        foreach (var g in guests.Where(g => names.Count == 0 || names.Contains(g.Config.Name, StringComparer.Ordinal)))
        {
            var commitment = CommitmentOf(g.Config);
            long? balloon = null, target = null, ksm = null;
            if (g.Domain is { } domain)
            {
                target = domain.BalloonCurrent ?? g.Config.Limits.MemoryBytes;
                try
                {
                    balloon = await domain.Qmp.QueryBalloonAsync(ct);
                }
                catch (Exception e) when (e is QmpException or IOException or ObjectDisposedException)
                {
                    // Stopping right now: no balloon to show.
                }
                ksm = _proc.KsmMergingPages(domain.Pid) * Environment.SystemPageSize;
            }
            rows.Add(new GuestStatView(g.Config.Name, g.Config.Kind, g.State, byName.GetValueOrDefault(g.Config.Name), commitment.Limit,
                commitment.Guarantee, cpu.GetValueOrDefault(g.Config.Name), balloon, target, ksm));
        }
        IReadOnlyList<string> notes;
        lock (_poolLock) notes = _pressureNotes;
        return new StatView(usage, PoolInfo(), notes, rows);
    }
}
