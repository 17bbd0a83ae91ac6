using System.Net;
using HybridHypervisor.Domains;
using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>
/// The fleet: every guest on this host, one lifecycle. The agent maps HTTP onto these calls and holds no
/// virtualization logic of its own.
/// </summary>
public sealed partial class Fleet : IDisposable
{
    private readonly FleetOptions _options;
    private readonly Action<string> _log;
    private readonly GuestStore _store;
    private readonly Dictionary<string, GuestRuntime> _guests = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BrokenGuest> _broken = new(StringComparer.Ordinal);
    private readonly Lock _fleetLock = new();
    /// <summary>Serialises changes of who is on the host: names, addresses and ids are allocated under it.</summary>
    private readonly SemaphoreSlim _membership = new(1, 1);
    /// <summary>Guests being provisioned, outside the membership lock: their names, addresses and ids are taken.</summary>
    private readonly Dictionary<string, GuestConfig> _creating = new(StringComparer.Ordinal);
    private readonly int _hostCpus = Environment.ProcessorCount;
    private readonly Lock _acceleratorLock = new();
    private Task<AcceleratorChoice>? _accelerator;

    public Fleet(FleetOptions options, Action<string> log)
    {
        _options = options;
        _log = log;
        _store = new GuestStore(options);
        Images = new ImageStore(options.ImagesRoot, options.RecipesRoot);
        Cgroups = CgroupHierarchy.Detect();
        Bridge = new HostBridge(options.BridgeName, options.Subnet);
        Vservers = new VserverDriver(options, Cgroups, Bridge, Images);
        Kernels = new KernelStore(options.KernelsRoot, options.RecipesRoot);
        Domains = new DomainDriver(options, Bridge, Images, Kernels);
    }

    public FleetOptions Options => _options;
    public ImageStore Images { get; }
    public ICgroupHierarchy Cgroups { get; }
    public HostBridge Bridge { get; }
    internal VserverDriver Vservers { get; }
    public KernelStore Kernels { get; }
    internal DomainDriver Domains { get; }

    /// <summary>What domains run on: probed once per host boot by booting the domain kernel under KVM (see
    /// <see cref="AcceleratorProbe"/>); null while no kernel is built to probe with.</summary>
    public Task<AcceleratorChoice>? AcceleratorAsync()
    {
        lock (_acceleratorLock)
        {
            if (_accelerator is { IsFaulted: false, IsCanceled: false }) return _accelerator;
            var kernel = Kernels.Find(DomainSettings.DefaultKernel) ?? (Kernels.List() is [var first, ..] ? first : null);
            if (kernel is null) return null;
            var qemu = DomainDriver.FindProgram(DomainDriver.QemuProgram) ?? DomainDriver.QemuProgram;
            _accelerator = Task.Run(async () =>
            {
                var choice = await AcceleratorProbe.ChooseAsync(qemu, kernel.Vmlinux, kernel.Initrd,
                    Path.Combine(_options.RunRoot, "accelerator.json"), AcceleratorProbe.DefaultTimeout);
                _log(choice.Kind == AcceleratorKind.Kvm ? "domains run under KVM" : $"WARNING: domains run emulated: {choice.Display}");
                return choice;
            });
            return _accelerator;
        }
    }

    /// <summary>The accelerator a domain starts with, or a refusal saying which kernel to build.</summary>
    private async Task<AcceleratorChoice> RequireAcceleratorAsync(string kernel) =>
        await (AcceleratorAsync() ?? throw FleetException.Conflict(Kernels.Missing(kernel)));

    /// <summary>Loads every guest, finishes or undoes work an earlier agent left half-done, adopts running guests,
    /// removes whatever no guest owns, applies restart policies to those that ended while no agent was watching, and
    /// after a host (re)boot starts the guests marked autostart.</summary>
    public void Initialize()
    {
        if (!File.Exists(_options.VsinitPath))
            throw new FileNotFoundException($"vsinit not found at {_options.VsinitPath}; build it with: make build (or set VSERVER_VSINIT)");
        var booted = HostBooted();
        Directory.CreateDirectory(_options.GuestsRoot);
        Directory.CreateDirectory(_options.RunGuestsRoot);
        Images.CleanStaging();
        Kernels.CleanStaging();
        Bridge.Ensure();
        LoadPoolSettings();

        var (configs, broken) = _store.LoadAll(_hostCpus);
        foreach (var b in broken)
        {
            _broken[b.Name] = b;
            _log($"guest {b.Name} is broken: {b.Problem}");
        }
        // Restarts wait until the sweep below has run: a guest started meanwhile would look half-made to it.
        var restarts = new List<GuestRuntime>();
        foreach (var config in configs)
        {
            try
            {
                LoadGuest(config, restarts);
            }
            catch (Exception e)
            {
                // One guest the agent cannot take over must not keep it from serving the others.
                var problem = $"taking it over after the last agent failed: {e.Message}; see vsctl host check, or remove it with: vsctl destroy --force {config.Name}";
                _guests.Remove(config.Name);
                _broken[config.Name] = new BrokenGuest(config.Name, problem);
                _log($"guest {config.Name} is broken: {problem}");
            }
        }
        RecoverInterruptedOperations();
        RestorePorts();
        var orphans = CheckHostLocked(_guests.Values.ToList(), _broken.Keys.ToHashSet(StringComparer.Ordinal), repair: true);
        if (orphans.Count > 0) _log($"removed {orphans.Count(o => o.Repaired)} of {orphans.Count} things no guest owned (see above)");
        foreach (var runtime in restarts) ScheduleRestart(runtime, TimeSpan.Zero);
        FinishInterruptedStops();
        // Find out what domains will run on now rather than at the first start (cached per host boot).
        _ = AcceleratorAsync();
        RecordBoot();
        if (booted) AutostartAfterBoot();
        StartSampler();
    }

    /// <summary>One guest at start-up: torn down if an agent died creating or destroying it, else adopted if it runs,
    /// or its end while no agent watched recorded.</summary>
    private void LoadGuest(GuestConfig config, List<GuestRuntime> restarts)
    {
        var paths = _store.PathsFor(config.Name);
        if (config.Phase != GuestPhase.Ready)
        {
            // An agent died while creating or destroying this guest: nothing of it may stay behind.
            _log($"removing guest {config.Name}, left {config.Phase.ToString().ToLowerInvariant()} by an agent that died");
            Teardown(paths);
            return;
        }
        var runtime = new GuestRuntime(config);
        _guests[config.Name] = runtime;
        if (config.Kind == GuestKind.Domain)
        {
            AdoptDomain(runtime, paths, restarts);
            return;
        }
        // A promotion interrupted by the agent's death may have left a QEMU, virtiofsd, mount or tap of this name.
        if (DomainTap.Exists(paths.Tap) || Directory.Exists(paths.VirtiofsDir)) DomainDriver.Teardown(paths);
        var running = Vservers.Adopt(paths);
        if (running is not null)
        {
            runtime.Running = running;
            runtime.Paused = running.Cgroup.ReadStats().Frozen;
            runtime.StopRequested = File.Exists(paths.StoppingMarker);
            runtime.RunEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            WatchExit(runtime, running);
            ReattachLayer(config, paths);
            ReconcileLimits(runtime);
            _log($"adopted running guest {config.Name} (init pid {running.InitPid})");
        }
        else
        {
            // Not running: a disk quota's image mounted by an earlier agent (which died before the run's end) goes.
            ReleaseLayer(paths);
            if (File.Exists(paths.PidFile) || File.Exists(paths.ExitFile))
            {
                var stopRequested = File.Exists(paths.StoppingMarker);
                var exit = Vservers.CollectExit(paths);
                runtime.LastExit = exit;
                _log($"guest {config.Name} {exit.Description} while no agent was running");
                if (!stopRequested && ShouldRestart(config.Restart, exit)) restarts.Add(runtime);
            }
            AtomicFile.Delete(paths.StoppingMarker);
        }
    }

    private void AdoptDomain(GuestRuntime runtime, GuestPaths paths, List<GuestRuntime> restarts)
    {
        // QEMU outliving the agent means the host has not rebooted: the accelerator answer cached for this boot holds.
        var accelerator = AcceleratorAsync()?.GetAwaiter().GetResult()
            ?? new AcceleratorChoice(AcceleratorKind.Tcg, "no kernel to probe with", "");
        var running = Domains.AdoptAsync(paths, accelerator).GetAwaiter().GetResult();
        if (running is not null)
        {
            runtime.Domain = running;
            runtime.Paused = running.Paused;
            runtime.StopRequested = File.Exists(paths.StoppingMarker);
            runtime.RunEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            WatchDomainExit(runtime, running);
            ReattachLayer(runtime.Config, paths);
            ReconcileLimits(runtime);
            _log($"adopted running domain {runtime.Config.Name} (QEMU pid {running.Pid})");
        }
        else if (File.Exists(paths.PidFile))
        {
            var stopRequested = File.Exists(paths.StoppingMarker);
            DomainDriver.ReleaseRoot(paths);
            File.Delete(paths.PidFile);
            File.Delete(paths.StoppingMarker);
            runtime.LastExit = new GuestExit(null, null, DateTimeOffset.UtcNow, "ended while no agent was running (status unknown)", Reset: false);
            _log($"domain {runtime.Config.Name} {runtime.LastExit.Description}");
            if (!stopRequested && ShouldRestart(runtime.Config.Restart, runtime.LastExit)) restarts.Add(runtime);
        }
        if (runtime.Domain is null)
        {
            ReleaseLayer(paths);
            AtomicFile.Delete(paths.StoppingMarker);
        }
    }

    // ---- queries ----

    public IReadOnlyList<GuestView> List()
    {
        List<GuestRuntime> guests;
        List<BrokenGuest> broken;
        lock (_fleetLock)
        {
            guests = _guests.Values.ToList();
            broken = _broken.Values.ToList();
        }
        // Usage as the sampler last read it (at most a second old): reading eight cgroup files per running guest made a
        // list of 500 cost about 40 ms of the agent's CPU, in the kernel's path lookups. One guest's view reads them fresh.
        return guests.Select(g => View(g, sampledUsage: true)).Concat(broken.Select(BrokenView))
            .OrderBy(v => v.Name, StringComparer.Ordinal).ToList();
    }

    public IReadOnlyList<string> Warnings()
    {
        lock (_fleetLock) return _broken.Values.Select(b => $"guest '{b.Name}' is broken: {b.Problem}").ToList();
    }

    public GuestView Get(string name)
    {
        lock (_fleetLock)
        {
            if (_broken.TryGetValue(name, out var b)) return BrokenView(b);
        }
        return View(Find(name));
    }

    private static GuestView BrokenView(BrokenGuest b) => new(b.Name, GuestState.Broken, null, null, null, null, 0, null, b.Problem);

    private GuestView View(GuestRuntime g, bool sampledUsage = false)
    {
        if (g.Config.Kind == GuestKind.Domain)
        {
            var domain = g.Domain;
            // A view only reads what the probe found; starting (or restarting) the probe is start-up's and start's job.
            Task<AcceleratorChoice>? probe;
            lock (_acceleratorLock) probe = _accelerator;
            var accel = domain?.Accelerator ?? (probe is { IsCompletedSuccessfully: true } ? probe.Result : null);
            return new GuestView(g.Config.Name, g.State, g.Config, domain?.Pid, domain?.StartedAt, g.LastExit, g.RestartCount, null, null)
            {
                Accelerator = accel?.Display,
                Disk = DiskViewOf(g.Config),
            };
        }
        var running = g.Running;
        CgroupStats? usage = null;
        try
        {
            usage = sampledUsage && g.LastSample is { } sample && ReferenceEquals(sample.Run, running)
                ? sample.Stats
                : running?.Cgroup.ReadStats();
        }
        catch (CgroupException)
        {
            // The guest ended between the check and the read: no usage to show.
        }
        return new GuestView(g.Config.Name, g.State, g.Config, running?.InitPid, running?.StartedAt, g.LastExit, g.RestartCount, usage, null)
        {
            Disk = DiskViewOf(g.Config),
        };
    }

    // ---- create / destroy ----

    /// <summary>Creates a guest as <paramref name="spec"/> says, stopped. With <paramref name="dryRun"/>, only checks it
    /// (everything a create checks, in the same order, refused with the same error) and answers the guest it would make,
    /// with the address it would get; nothing is made or claimed.</summary>
    public async Task<GuestView> CreateAsync(Vserver.Api.GuestSpec spec, bool dryRun = false, CancellationToken ct = default)
    {
        var draft = GuestSpecValidator.Validate(spec, new GuestSpecContext
        {
            HostCpus = _hostCpus,
            HostMemoryBytes = HostMemory.TotalBytes,
            Subnet = _options.Subnet,
            NameTaken = name =>
            {
                lock (_fleetLock) return _guests.ContainsKey(name) || _broken.ContainsKey(name) || _creating.ContainsKey(name);
            },
            AddressOwner = address =>
            {
                lock (_fleetLock)
                    return _guests.Values.Select(g => g.Config).Concat(_creating.Values).FirstOrDefault(c => c.Network.Ipv4 == address)?.Name;
            },
            ImageBytes = name => Images.Find(name)?.SizeBytes,
            BuiltImages = () => Images.List().Select(i => i.Name),
            KernelBuilt = name => Kernels.Find(name) is not null,
            BuiltKernels = () => Kernels.List().Select(k => k.Name),
        });
        if (draft.Limits.DiskBytes is { } quota) StateDisk.EnsureRoomForQuota(draft.Name, quota, _options.StateRoot);
        if (dryRun)
        {
            var would = draft with
            {
                Network = draft.Network with { Ipv4 = AllocateAddress(draft.Network.Ipv4).ToString() },
                Phase = GuestPhase.Ready,
            };
            // Admission as create does it; the reservation goes at once.
            using (Admit(would, "create", runningOnly: false)) return new GuestView(would.Name, GuestState.Stopped, would, null, null, null, 0, null, null);
        }

        GuestConfig config;
        GuestPaths paths;
        Reservation reservation;
        await _membership.WaitAsync(ct);
        try
        {
            lock (_fleetLock)
            {
                if (_guests.ContainsKey(draft.Name) || _broken.ContainsKey(draft.Name) || _creating.ContainsKey(draft.Name))
                    throw FleetException.Conflict($"a guest named '{draft.Name}' already exists; pick another name or destroy it first");
            }
            paths = _store.PathsFor(draft.Name);
            if (Directory.Exists(paths.Dir))
                throw FleetException.Conflict($"{paths.Dir} already exists but is no guest this agent knows; remove it or pick another name");
            var address = AllocateAddress(draft.Network.Ipv4);
            config = draft with
            {
                Network = draft.Network with
                {
                    Ipv4 = address.ToString(),
                    Mac = HybridHypervisor.Domains.DomainTap.MacFor($"{_options.StateRoot}\0{draft.Name}"),
                },
                Security = draft.Security with { IdMap = draft.Security.Privileged || draft.Domain is not null ? null : AllocateIds() },
                Created = DateTimeOffset.UtcNow,
            };
            reservation = Admit(config, "create", runningOnly: false);
            lock (_fleetLock) _creating[config.Name] = config;
        }
        finally
        {
            _membership.Release();
        }
        // The rest (the config written with two fsyncs, storage, the network: five host commands) runs outside the
        // membership lock: with it inside, 16 clients' creates and destroys queued behind each other for half a second
        // each (tests/Faults/LoadTests). The name, address and ids stay claimed in _creating meanwhile.
        GuestRuntime runtime;
        using (reservation)
        {
            try
            {
                _store.Save(config);
                Failpoints.Hit("create.after-config");
                if (draft.Domain is null) Vservers.Provision(config, paths);
                else Domains.Provision(config, paths);
                Failpoints.Hit("create.after-network");
                config = config with { Phase = GuestPhase.Ready };
                _store.Save(config);
                Failpoints.Hit("create.after-ready");
            }
            catch (Exception e)
            {
                Teardown(paths);
                lock (_fleetLock) _creating.Remove(config.Name);
                throw StateDisk.Refusal(e, paths.Dir, _options.StateRoot)
                    ?? new FleetException(FleetError.Failed, $"creating {draft.Name} failed: {e.Message}", e);
            }
            runtime = new GuestRuntime(config);
            lock (_fleetLock)
            {
                _creating.Remove(config.Name);
                _guests[config.Name] = runtime;
            }
        }
        _log($"created guest {config.Name} ({config.Network.Ipv4})");
        return View(runtime);
    }

    /// <summary>Removes whatever a guest of either kind left on the host: QEMU, tap, cgroup, veth, directories.</summary>
    private void Teardown(GuestPaths paths)
    {
        DomainDriver.Teardown(paths);
        Vservers.Teardown(paths);
    }

    /// <summary>A host id range no guest holds, broken ones included (their files are owned by it), so no two guests
    /// ever share ids. Called under the membership lock.</summary>
    private IdMap AllocateIds()
    {
        List<IdMap> taken;
        lock (_fleetLock)
        {
            taken = _guests.Values.Select(g => g.Config).Concat(_creating.Values).Select(c => c.Security.IdMap).OfType<IdMap>().ToList();
            taken.AddRange(_broken.Keys.Select(name => _store.TryReadIdMap(name)).OfType<IdMap>());
        }
        try
        {
            return _options.IdRange.Allocate(taken);
        }
        catch (InvalidOperationException e)
        {
            throw FleetException.Conflict(e.Message);
        }
    }

    private IPAddress AllocateAddress(string? requested)
    {
        List<IPAddress> taken;
        lock (_fleetLock)
        {
            taken = _guests.Values.Select(g => g.Config).Concat(_creating.Values).Select(c => c.Network.Ipv4).OfType<string>()
                .Select(IPAddress.Parse).ToList();
        }
        if (requested is not null)
        {
            var address = IPAddress.Parse(requested);
            lock (_fleetLock)
            {
                var owner = _guests.Values.Select(g => g.Config).Concat(_creating.Values).FirstOrDefault(c => c.Network.Ipv4 == address.ToString());
                if (owner is not null)
                    throw FleetException.Conflict($"address {requested} is already taken by guest '{owner.Name}'; pick another or leave --ip out");
            }
            return address;
        }
        return _options.Subnet.FirstFree(taken)
            ?? throw FleetException.Conflict($"the guest subnet {_options.Subnet} is full; destroy a guest or configure a larger VSERVER_SUBNET");
    }

    public async Task DestroyAsync(string name, bool force, CancellationToken ct = default)
    {
        bool broken;
        lock (_fleetLock) broken = _broken.ContainsKey(name);
        if (broken)
        {
            await DestroyBrokenAsync(name, force, ct);
            return;
        }
        // Under the guest's lock only: the teardown (cgroup, veth, directories) need not hold up creates and destroys of
        // other guests. The guest stays in _guests, its name and address taken, until it is gone from the host.
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.IsRunning)
            {
                if (!force)
                    throw FleetException.Conflict($"guest '{name}' is {g.State.ToString().ToLowerInvariant()}; stop it first or use: vsctl destroy --force {name}");
                await StopLockedAsync(g, TimeSpan.Zero);
            }
            var paths = _store.PathsFor(name);
            try
            {
                _store.Save(g.Config with { Phase = GuestPhase.Destroying });
            }
            catch (FleetException e) when (e.InnerException is { } io && StateDisk.IsFull(io))
            {
                // Destroying is how an operator frees a full state disk: go on without the crash-safety mark.
                _log($"destroying guest {name} without marking it first: {e.Message}");
            }
            Failpoints.Hit("destroy.after-mark");
            Teardown(paths);
            ForgetTornDown(g);
            _log($"destroyed guest {name}");
        }
        finally
        {
            g.Lock.Release();
        }
    }

    /// <summary>After a guest's teardown (destroy, or a save that moved it into a file): it leaves the fleet, whoever
    /// waits for its lock is told there is no such guest, and its published ports leave the table.</summary>
    private void ForgetTornDown(GuestRuntime g)
    {
        g.Removed = true;
        lock (_fleetLock) _guests.Remove(g.Config.Name);
        ForgetPorts(g.Config);
    }

    private async Task DestroyBrokenAsync(string name, bool force, CancellationToken ct)
    {
        await _membership.WaitAsync(ct);
        try
        {
            BrokenGuest? broken;
            lock (_fleetLock) _broken.TryGetValue(name, out broken);
            if (broken is null) throw FleetException.NotFound($"no guest named '{name}' (see: vsctl list)");
            if (!force)
                throw FleetException.Conflict($"guest '{name}' is broken ({broken.Problem}); remove it with: vsctl destroy --force {name}");
            Teardown(_store.PathsFor(name));
            lock (_fleetLock) _broken.Remove(name);
            _log($"destroyed broken guest {name}");
        }
        finally
        {
            _membership.Release();
        }
    }

    // ---- lifecycle ----

    public async Task<GuestView> StartAsync(string name, bool wait = false, CancellationToken ct = default)
    {
        Task ended;
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.IsRunning)
                throw FleetException.Conflict($"guest '{name}' is already {g.State.ToString().ToLowerInvariant()}; stop it first, or use: vsctl restart {name}");
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

    private async Task StartLockedAsync(GuestRuntime g, CancellationToken ct = default)
    {
        using var reservation = Admit(g.Config, "start", runningOnly: true);
        var paths = _store.PathsFor(g.Config.Name);
        if (g.Config.Kind == GuestKind.Domain)
        {
            var accelerator = await RequireAcceleratorAsync(g.Config.Domain!.Kernel);
            RunningDomain domain;
            try
            {
                domain = await Domains.StartAsync(g.Config, paths, accelerator, ct: ct);
            }
            catch
            {
                // A shared root's start may have mounted the vserver's layer image before it failed.
                ReleaseLayer(paths);
                throw;
            }
            await BeginDomainRunAsync(g, domain);
            return;
        }
        var running = Vservers.Start(g.Config, paths);
        g.RestartPending = false;
        g.Running = running;
        g.Paused = false;
        g.StopRequested = false;
        g.RunEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        WatchExit(g, running);
    }

    /// <summary>Records a started domain (under the guest's lock) and sets its balloon to the configured target.</summary>
    private async Task BeginDomainRunAsync(GuestRuntime g, RunningDomain domain)
    {
        File.Delete(_store.PathsFor(g.Config.Name).StoppingMarker);
        g.RestartPending = false;
        g.Domain = domain;
        g.Paused = domain.Paused;
        g.StopRequested = false;
        g.RunEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        WatchDomainExit(g, domain);
        g.BalloonCurrent = g.Config.Limits.MemoryBytes ?? g.Config.Domain!.MaxMemoryBytes;
        if (g.Config.Limits.MemoryBytes is { } target && target < g.Config.Domain!.MaxMemoryBytes)
        {
            try
            {
                await domain.Qmp.BalloonAsync(target);
            }
            catch (Domains.Qmp.QmpException e)
            {
                _log($"domain {g.Config.Name}: setting the balloon to {target >> 20}M failed: {e.Message}");
            }
        }
    }

    private void WatchDomainExit(GuestRuntime g, RunningDomain domain) =>
        domain.Ended.ContinueWith(_ => OnDomainEndedAsync(g, domain), TaskScheduler.Default);

    private async Task OnDomainEndedAsync(GuestRuntime g, RunningDomain domain)
    {
        await g.Lock.WaitAsync();
        try
        {
            if (!ReferenceEquals(g.Domain, domain) || g.Removed) return;
            var (exit, stopRequested) = await EndDomainRunLockedAsync(g, domain);
            _log($"domain {g.Config.Name}: {exit.Description}");
            if (!stopRequested && ShouldRestart(g.Config.Restart, exit)) ScheduleBackedOffRestart(g, exit, domain.StartedAt);
        }
        catch (Exception e)
        {
            _log($"domain {g.Config.Name}: handling its end failed: {e.Message}");
        }
        finally
        {
            g.Lock.Release();
        }
    }

    /// <summary>Records the end of a domain's run (under the guest's lock), like <see cref="EndRunLocked"/> for vservers.</summary>
    private async Task<(GuestExit Exit, bool StopRequested)> EndDomainRunLockedAsync(GuestRuntime g, RunningDomain domain)
    {
        var paths = _store.PathsFor(g.Config.Name);
        var exit = await domain.Ended;
        var stopRequested = g.StopRequested || File.Exists(paths.StoppingMarker);
        File.Delete(paths.StoppingMarker);
        File.Delete(paths.PidFile);
        await domain.DisposeAsync();
        if (g.Config.Domain?.Root == DomainRoot.Virtiofs)
        {
            DomainDriver.ReleaseRoot(paths);
            ReleaseLayer(paths);
        }
        g.Domain = null;
        g.Paused = false;
        g.ConsoleAttached = false;
        g.LastExit = exit;
        g.RunEnded.TrySetResult();
        return (exit, stopRequested);
    }

    private void WatchExit(GuestRuntime g, RunningVserver running) =>
        running.Monitor.Exited.ContinueWith(_ => OnExitedAsync(g, running), TaskScheduler.Default);

    private async Task OnExitedAsync(GuestRuntime g, RunningVserver running)
    {
        await g.Lock.WaitAsync();
        try
        {
            if (!ReferenceEquals(g.Running, running) || g.Removed) return;
            var (exit, stopRequested) = EndRunLocked(g, running);
            _log($"guest {g.Config.Name} {exit.Description}");
            if (!stopRequested && ShouldRestart(g.Config.Restart, exit)) ScheduleBackedOffRestart(g, exit, running.StartedAt);
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

    /// <summary>Back off like a supervisor should: a guest that keeps crashing is retried ever more slowly.</summary>
    private void ScheduleBackedOffRestart(GuestRuntime g, GuestExit exit, DateTimeOffset startedAt)
    {
        var stableRun = exit.At - startedAt > TimeSpan.FromSeconds(10);
        if (stableRun) g.RestartCount = 0;
        var delay = TimeSpan.FromMilliseconds(Math.Min(100 * Math.Pow(2, Math.Min(g.RestartCount, 10)), 10_000));
        g.RestartCount++;
        ScheduleRestart(g, delay, exit);
    }

    private static bool ShouldRestart(RestartPolicy policy, GuestExit exit) =>
        exit.RebootRequested || policy switch
        {
            RestartPolicy.Always => true,
            RestartPolicy.OnFailure => exit.Failed,
            _ => false,
        };

    /// <summary>Starts the guest again after <paramref name="delay"/>, unless it was stopped, started or removed
    /// meanwhile. A restart that fails (its image gone, a full disk, QEMU refusing) is tried again with the back-off,
    /// and the status says why it is still down: <paramref name="cause"/> (the exit being answered) with the failure.</summary>
    private void ScheduleRestart(GuestRuntime g, TimeSpan delay, GuestExit? cause = null)
    {
        g.RestartPending = true;
        // A run started after this one ended (start, then another death) makes this restart stale, even if a new
        // restart is pending by the time it wakes: that one keeps its own back-off.
        var ended = g.RunEnded;
        _ = Task.Run(async () =>
        {
            await Task.Delay(delay);
            await g.Lock.WaitAsync();
            try
            {
                if (g.Removed || g.IsRunning || !g.RestartPending || !ReferenceEquals(g.RunEnded, ended)) return;
                g.RestartPending = false;
                await StartLockedAsync(g);
                if (cause is not null) g.LastExit = cause;
                _log($"restarted guest {g.Config.Name} (restart policy {RestartPolicies.Format(g.Config.Restart)})");
            }
            catch (Exception e)
            {
                _log($"restarting guest {g.Config.Name} failed: {e.Message}");
                var answered = cause ?? g.LastExit;
                if (g.Removed || g.IsRunning || answered is null) return;
                g.LastExit = answered with
                {
                    Reason = $"{answered.Description}; restarting it failed: {e.Message} (tried again with back-off until it starts or is stopped)",
                };
                ScheduleBackedOffRestart(g, answered, answered.At);
            }
            finally
            {
                g.Lock.Release();
            }
        });
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

    /// <summary>SIGTERM to init (ACPI power-down for a domain), SIGKILL after the timeout; returns once the exit is collected.</summary>
    private async Task StopLockedAsync(GuestRuntime g, TimeSpan timeout)
    {
        if (g.Domain is { } domain)
        {
            g.StopRequested = true;
            File.WriteAllText(_store.PathsFor(g.Config.Name).StoppingMarker, "");
            Failpoints.Hit("stop.after-marker");
            await DomainDriver.StopAsync(domain, timeout);
            Failpoints.Hit("stop.after-exit");
            var (domainExit, _) = await EndDomainRunLockedAsync(g, domain);
            _log($"stopped domain {g.Config.Name}: {domainExit.Description}");
            return;
        }
        var running = g.Running!;
        var paths = _store.PathsFor(g.Config.Name);
        g.StopRequested = true;
        File.WriteAllText(paths.StoppingMarker, "");
        Failpoints.Hit("stop.after-marker");
        // Frozen tasks cannot act on any signal, not even SIGKILL, until thawed.
        if (g.Paused) running.Cgroup.Thaw();
        var ended = running.Monitor.Exited;
        var servicesDone = false;
        if (timeout > TimeSpan.Zero && running.Init?.Signal(15) == true)
            servicesDone = await InitLeftAloneAsync(running, ended, timeout);
        Failpoints.Hit("stop.after-term");
        if (!ended.IsCompleted)
        {
            if (running.Init is null || !running.Init.Signal(9)) running.Cgroup.Destroy();
            await Task.WhenAny(ended, Task.Delay(TimeSpan.FromSeconds(10)));
        }
        Failpoints.Hit("stop.after-exit");
        // The exit handler needs the lock we hold: collect the exit here instead.
        var (exit, _) = EndRunLocked(g, running);
        if (servicesDone && exit.Signal == 9)
            g.LastExit = exit = exit with { Reason = "stopped: its services had exited, then the agent ended its init (all that was left)" };
        _log($"stopped guest {g.Config.Name}: {exit.Description}");
    }

    /// <summary>How long init must have been the only process left before a stop ends it.</summary>
    private static readonly TimeSpan InitAloneQuiet = TimeSpan.FromMilliseconds(150);

    /// <summary>
    /// Waits, after the stop signal, until init ends by itself (false) or until it has been the only process in the
    /// vserver for <see cref="InitAloneQuiet"/> (true): every service has exited, with all the time the stop allows, and
    /// what an init does after that is wait to kill processes that are gone (busybox: 1 s after SIGTERM to all, 1 s after
    /// SIGKILL), which the caller saves with a SIGKILL of its own. Also false when the timeout passes first.
    /// </summary>
    private static async Task<bool> InitLeftAloneAsync(RunningVserver running, Task ended, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? aloneSince = null;
        while (clock.Elapsed < timeout)
        {
            if (await Task.WhenAny(ended, Task.Delay(20)) == ended) return false;
            IReadOnlyList<int> pids;
            try
            {
                pids = running.Cgroup.Pids();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            var alone = pids.All(p => p == running.InitPid || p == running.Monitor.Pid);
            if (!alone) aloneSince = null;
            else if (aloneSince is null) aloneSince = clock.Elapsed;
            else if (clock.Elapsed - aloneSince >= InitAloneQuiet) return true;
        }
        return false;
    }

    /// <summary>Records the end of a run (under the guest's lock): the exit, whether an operator asked for it, waiters told.</summary>
    private (GuestExit Exit, bool StopRequested) EndRunLocked(GuestRuntime g, RunningVserver running)
    {
        var paths = _store.PathsFor(g.Config.Name);
        var exit = Vservers.ReadExit(paths);
        var stopRequested = g.StopRequested || File.Exists(paths.StoppingMarker);
        File.Delete(paths.StoppingMarker);
        running.Dispose();
        g.Running = null;
        g.Paused = false;
        g.LastExit = exit;
        // Waiters learn of the exit now; the cgroup is released before the lock lets anyone start the guest again.
        g.RunEnded.TrySetResult();
        Vservers.ReleaseCgroup(paths);
        ReleaseLayer(paths);
        return (exit, stopRequested);
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
            if (g.Domain is { } domain)
            {
                // xl pause/unpause: the vcpus stop; memory, devices and the console stay.
                if (freeze) await domain.Qmp.StopAsync(ct);
                else await domain.Qmp.ContAsync(ct);
                domain.Paused = freeze;
            }
            else if (freeze) g.Running!.Cgroup.Freeze();
            else g.Running!.Cgroup.Thaw();
            g.Paused = freeze;
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
            if (GuestConfigValidator.LimitsError(limits, _hostCpus) is { } error) throw FleetException.Invalid(error);
            using var reservation = AdmitChange(g, g.Config with { Limits = limits });
            // The disk first: it is the change most likely to fail (host tools), and it persists itself.
            if (changes.DiskBytes is { } disk)
            {
                GrowDiskLocked(g, disk);
                limits = limits with { DiskBytes = g.Config.Limits.DiskBytes };
                Failpoints.Hit("set.after-disk");
            }
            if (g.Running is not null && changes with { DiskBytes = null } != new GuestLimits())
            {
                try
                {
                    Vservers.Apply(g.Running, limits);
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
            catch (FleetException) when (g.Running is { } running)
            {
                // Not recorded (a full state disk): the guest keeps the limits its config still holds.
                TryApplyLimits(name, running, g.Config.Limits);
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

    private void TryApplyLimits(string name, RunningVserver running, GuestLimits limits)
    {
        try
        {
            Vservers.Apply(running, limits);
        }
        catch (CgroupException e)
        {
            _log($"guest {name}: putting back its recorded limits failed: {e.Message}");
        }
    }

    /// <summary>A domain's memory: live, a balloon target within its maximum and not below its guarantee; stopped, the
    /// maximum (and target) of its next boot. The guarantee (balloon floor) can change either way. Persisted.</summary>
    private async Task SetDomainMemoryLockedAsync(GuestRuntime g, GuestLimits changes)
    {
        var name = g.Config.Name;
        if (changes.Cpus is not null || changes.Pids is not null)
            throw FleetException.Invalid($"'{name}' is a domain: it has vcpus (set at create) and no process limit; only --memory and --memory-min can be set");
        if (changes.MemoryBytes is null && changes.MemoryMinBytes is null) return;
        var domain = g.Config.Domain!;
        var min = changes.MemoryMinBytes ?? g.Config.Limits.MemoryMinBytes;
        var running = g.Domain;
        if (running is not null && changes.MemoryBytes is { } asked && asked > domain.MaxMemoryBytes)
            throw FleetException.Invalid($"memory {asked >> 20}M is above domain '{name}''s maximum of {domain.MaxMemoryBytes >> 20}M; " +
                $"stop it and set --memory {asked >> 20}M to raise the maximum");
        // Running: --memory moves the balloon target; stopped: it is the new maximum (and target) of the next boot.
        var next = running is null && changes.MemoryBytes is { } max ? domain with { MaxMemoryBytes = max } : domain;
        var target = changes.MemoryBytes ?? g.Config.Limits.MemoryBytes;
        if (running is null && changes.MemoryBytes is null && target > next.MaxMemoryBytes) target = next.MaxMemoryBytes;
        if ((GuestConfigValidator.DomainError(next, target, _hostCpus, HostMemory.TotalBytes)
             ?? GuestConfigValidator.DomainGuaranteeError(next, min, target)) is { } error)
            throw FleetException.Invalid(error);
        var changed = g.Config with { Domain = next, Limits = g.Config.Limits with { MemoryBytes = target, MemoryMinBytes = min } };
        using var reservation = AdmitChange(g, changed);
        if (running is not null && target is { } size && size != g.BalloonCurrent)
        {
            await running.Qmp.BalloonAsync(size);
            g.BalloonCurrent = size;
            Failpoints.Hit("set.after-live");
        }
        _store.Save(changed);
        g.Config = changed;
    }

    /// <summary>How long an exec waits for a freshly started domain's guest agent (a TCG boot takes a few seconds).</summary>
    private static readonly TimeSpan GuestAgentReadyTimeout = TimeSpan.FromSeconds(60);

    public async Task<IGuestProcess> ExecAsync(string name, IReadOnlyList<string> command, bool tty, int rows, int cols,
        IReadOnlyDictionary<string, string>? env, string? cwd, CancellationToken ct = default)
    {
        if (command.Count == 0 || string.IsNullOrEmpty(command[0])) throw FleetException.Invalid("no command given: vsctl exec NAME -- CMD ARGS...");
        var g = Find(name);
        if (!g.IsRunning) throw FleetException.Conflict($"guest '{name}' is not running; start it with: vsctl start {name}");
        if (g.Paused) throw FleetException.Conflict($"guest '{name}' is paused; resume it with: vsctl resume {name}");
        if (g.Domain is { } domain)
        {
            GuestAgentClient agent;
            try
            {
                agent = await domain.AgentAsync(GuestAgentReadyTimeout, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                throw FleetException.Conflict($"the guest agent of domain '{name}' does not answer ({e.Message}); " +
                    $"see its console with: vsctl console {name}");
            }
            try
            {
                return await agent.StartAsync(new GuestCommand(command, env, cwd, tty, rows, cols), ct);
            }
            catch (GuestCommandException e)
            {
                return new RefusedGuestProcess(e.Message, e.ExitCode);
            }
            catch (GuestAgentException e)
            {
                throw FleetException.Conflict($"exec in domain '{name}' failed: {e.Message}");
            }
        }
        return Vservers.Exec(g.Config, _store.PathsFor(name), g.Running!, command, tty, rows, cols, env, cwd);
    }

    // ---- images ----

    public ImageRecord BuildImage(string name)
    {
        try
        {
            return Images.Build(name);
        }
        catch (ImageException e)
        {
            throw FleetException.Invalid(e.Message);
        }
    }

    public void RemoveImage(string name)
    {
        if (Vserver.Isolation.Naming.DnsLabel.Error(name, "image") is { } invalid) throw FleetException.Invalid(invalid);
        List<string> users;
        lock (_fleetLock)
            users = _guests.Values.Select(g => g.Config).Concat(_creating.Values).Where(c => c.Image == name).Select(c => c.Name).ToList();
        if (users.Count > 0)
            throw FleetException.Conflict($"image '{name}' is the lower layer of {string.Join(", ", users)}; destroy those guests first");
        try
        {
            Images.Remove(name);
        }
        catch (ImageException e)
        {
            throw FleetException.NotFound(e.Message);
        }
    }

    /// <summary>Running guests are left running: a new agent adopts them.</summary>
    public void Dispose()
    {
        StopSamplerAsync().Wait(TimeSpan.FromSeconds(5));
        _samplerStop.Dispose();
        _membership.Dispose();
    }

    private GuestRuntime Find(string name)
    {
        lock (_fleetLock)
        {
            if (_guests.TryGetValue(name, out var g)) return g;
            if (_broken.TryGetValue(name, out var b))
                throw FleetException.Conflict($"guest '{name}' is broken: {b.Problem}");
        }
        throw FleetException.NotFound($"no guest named '{name}' (see: vsctl list)");
    }

    /// <summary>Finds a guest and takes its lock. A guest destroyed (or saved away) while the caller waited is gone: acting
    /// on it would rebuild its network, cgroup or files for nobody (a start racing a destroy left its veth and netns).</summary>
    private async Task<GuestRuntime> LockGuestAsync(string name, CancellationToken ct)
    {
        var g = Find(name);
        await g.Lock.WaitAsync(ct);
        if (!g.Removed) return g;
        g.Lock.Release();
        throw FleetException.NotFound($"no guest named '{name}' (see: vsctl list)");
    }
}
