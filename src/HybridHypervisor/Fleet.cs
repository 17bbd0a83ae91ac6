using HybridHypervisor.Guests;
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
    /// <summary>Who is on the host and what each guest holds (see <see cref="GuestRegistry"/>).</summary>
    private readonly GuestRegistry _registry = new();
    private readonly Lock _fleetLock = new();
    /// <summary>Serialises changes of who is on the host: names, addresses and ids are allocated under it.</summary>
    private readonly SemaphoreSlim _membership = new(1, 1);
    private readonly int _hostCpus = Environment.ProcessorCount;
    private readonly GuestSupervisor _supervisor;

    public Fleet(FleetOptions options, Action<string> log) : this(options, log, FleetParts.ForHost(options, log))
    {
    }

    public Fleet(FleetOptions options, Action<string> log, FleetParts parts)
    {
        _options = options;
        _log = log;
        _store = new GuestStore(options, () => RoutedRange);
        Images = parts.Images;
        Kernels = parts.Kernels;
        Cgroups = parts.Cgroups;
        Network = parts.Network;
        _vserverDriver = parts.Vservers;
        _domainDriver = parts.Domains;
        _conversion = parts.Conversion;
        _supervisor = new GuestSupervisor(parts.Clock, log, g => StartLockedAsync(g));
        parts.ResolvConf.For = ResolvFor;
    }

    private readonly IGuestDriver _vserverDriver;
    private readonly IGuestDriver _domainDriver;
    private readonly IConversionDriver _conversion;

    public FleetOptions Options => _options;
    internal ImageStore Images { get; }
    internal ICgroupHierarchy Cgroups { get; }
    /// <summary>The cgroup interface guests get here: "V1" or "V2".</summary>
    public string CgroupVersion => Cgroups.Version.ToString();
    public IHostNetwork Network { get; }
    public KernelStore Kernels { get; }

    /// <summary>For what only the host's domain driver does (save, restore, console).</summary>
    internal DomainDriver Domains => _domainDriver as DomainDriver
        ?? throw new InvalidOperationException("this fleet's domain driver is a stand-in: no save, restore or console here");

    /// <summary>What domains run on (see <see cref="DomainDriver.AcceleratorAsync"/>); null while no kernel is built to
    /// probe with (or no host domain driver is in this fleet).</summary>
    public Task<AcceleratorChoice>? AcceleratorAsync() => (_domainDriver as DomainDriver)?.AcceleratorAsync();

    /// <summary>The driver of a guest's kind.</summary>
    private IGuestDriver DriverFor(GuestConfig config) => config.Kind == GuestKind.Domain ? _domainDriver : _vserverDriver;

    /// <summary>Both drivers, the domain's first: a guest's teardown removes a QEMU (which holds the guest's files)
    /// before the vserver's layers.</summary>
    private IEnumerable<IGuestDriver> Drivers => [_domainDriver, _vserverDriver];

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
        Network.Ensure();
        LoadPoolSettings();
        LoadNetworkSettings();

        var (configs, broken) = _store.LoadAll(_hostCpus);
        foreach (var b in broken) MarkBroken(b with { Claims = WithHeldOnHost(b.Claims) });
        // Restarts wait until the sweep below has run: a guest started meanwhile would look half-made to it.
        var restarts = new List<GuestRuntime>();
        // Oldest first: of two guests that claim one thing, the one created later is the one in the wrong.
        foreach (var config in configs.OrderBy(c => c.Created).ThenBy(c => c.Name, StringComparer.Ordinal))
        {
            try
            {
                if (config.Phase == GuestPhase.Ready && ClaimProblem(config) is { } claimed)
                {
                    MarkBroken(claimed);
                    continue;
                }
                LoadGuest(config, restarts);
            }
            catch (Exception e)
            {
                // One guest the agent cannot take over must not keep it from serving the others.
                MarkBroken(new BrokenGuest(config.Name, $"taking it over after the last agent failed: {e.Message}") { Claims = GuestClaims.Of(config) });
            }
        }
        RecoverInterruptedOperations();
        RestorePorts();
        StartResolver();
        var orphans = CheckHostLocked(_registry.Guests(), _registry.Broken().Select(b => b.Name).ToHashSet(StringComparer.Ordinal), repair: true, othersToo: false);
        if (orphans.Count > 0) _log($"removed {orphans.Count(o => o.Repaired)} of {orphans.Count} things no guest owned (see above)");
        foreach (var runtime in restarts) _supervisor.Schedule(runtime, TimeSpan.Zero);
        FinishInterruptedStops();
        // Find out what domains will run on now rather than at the first start (cached per host boot).
        _ = AcceleratorAsync();
        RecordBoot();
        if (booted) AutostartAfterBoot();
        StartSampler();
    }

    /// <summary>A broken guest's claims with what it really holds on the host where its config could not say (an
    /// unreadable config still leaves its namespace's address and its files' owner).</summary>
    private GuestClaims WithHeldOnHost(GuestClaims claims)
    {
        var held = _vserverDriver.ReadHeld(claims.Name, _store.PathsFor(claims.Name));
        return claims with { NetnsAddress = held.NetnsAddress, Ids = claims.Ids ?? held.Ids };
    }

    private void MarkBroken(BrokenGuest broken)
    {
        _registry.AddBroken(broken);
        _log($"guest {broken.Name} is broken: {broken.Problem}");
    }

    /// <summary>A guest that claims what another holds, or whose config no longer says what its network namespace really
    /// has (an edited address): broken, with what it claims kept claimed (the namespace's address included), so nothing
    /// of it is handed out again and it is not started. Null when its claims are its own.</summary>
    private BrokenGuest? ClaimProblem(GuestConfig config)
    {
        var paths = _store.PathsFor(config.Name);
        var claims = GuestClaims.Of(config) with { NetnsAddress = DriverFor(config).ReadHeld(config.Name, paths).NetnsAddress };
        string? problem = null;
        if (claims.NetnsAddress is { } real && real != config.Network.Ipv4)
            problem = $"its config says address {config.Network.Ipv4}, but its network namespace has {real}; put {real} back in its config, or destroy it";
        else if (_registry.Clash(claims) is { } clash)
            problem = $"{clash}; give it what is its own in its config, or destroy it";
        return problem is null ? null : new BrokenGuest(config.Name, problem) { Claims = claims };
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
        _registry.Add(runtime);
        // A promotion interrupted by the agent's death may have left a QEMU, virtiofsd, mount or tap of this name.
        if (config.Kind == GuestKind.Vserver && (DomainTap.Exists(paths.Tap) || Directory.Exists(paths.VirtiofsDir))) _domainDriver.Teardown(paths);
        var driver = DriverFor(config);
        var stopRequested = File.Exists(paths.StoppingMarker);
        if (driver.AdoptAsync(config, paths).GetAwaiter().GetResult() is { } run)
        {
            BeginRun(runtime, run);
            runtime.StopRequested = stopRequested;
            _log($"adopted running {KindName(config)} {config.Name} (pid {run.Pid})");
            return;
        }
        if (driver.CollectUnwatchedEnd(config, paths) is { } exit)
        {
            runtime.LastExit = exit;
            _log($"{KindName(config)} {config.Name} {exit.Description} while no agent was running");
            if (!stopRequested && GuestSupervisor.ShouldRestart(config.Restart, exit)) restarts.Add(runtime);
        }
        AtomicFile.Delete(paths.StoppingMarker);
    }

    // ---- queries ----

    public IReadOnlyList<GuestView> List()
    {
        var guests = _registry.Guests();
        var broken = _registry.Broken();
        // Usage as the sampler last read it (at most a second old): reading eight cgroup files per running guest made a
        // list of 500 cost about 40 ms of the agent's CPU, in the kernel's path lookups. One guest's view reads them fresh.
        return guests.Select(g => View(g, sampledUsage: true)).Concat(broken.Select(BrokenView))
            .OrderBy(v => v.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>Whether <paramref name="name"/> is exactly the name of a guest directory the fleet lists as broken (which
    /// may be no valid guest name: then only destroy accepts it).</summary>
    public bool IsBroken(string name) => _registry.FindBroken(name) is not null;

    public IReadOnlyList<string> Warnings()
    {
        return _registry.Broken().Select(b => $"guest '{b.Name}' is broken: {b.Problem}").ToList();
    }

    public GuestView Get(string name)
    {
        return _registry.FindBroken(name) is { } b ? BrokenView(b) : View(Find(name));
    }

    private static GuestView BrokenView(BrokenGuest b) => new(b.Name, GuestState.Broken, null, null, null, null, 0, null, b.Problem);

    private GuestView View(GuestRuntime g, bool sampledUsage = false)
    {
        var run = g.Run;
        // Domains: what they run (or would run) on; a view only reads what the probe found.
        var accelerator = g.Config.Kind == GuestKind.Domain ? g.Domain?.Accelerator ?? (_domainDriver as DomainDriver)?.ProbedAccelerator() : null;
        return new GuestView(g.Config.Name, g.State, g.Config, run?.Pid, run?.StartedAt, g.LastExit, g.RestartCount, UsageOf(g, sampledUsage), null)
        {
            Accelerator = accelerator?.Display,
            Disk = DiskViewOf(g.Config),
            Routed = IsRouted(g.Config.Network.Ipv4),
        };
    }

    /// <summary>What the guest's driver reads of its run, or (<paramref name="sampled"/>, for a list) what the sampler last
    /// read of a vserver's cgroup.</summary>
    private Vserver.Api.GuestUsage? UsageOf(GuestRuntime g, bool sampled)
    {
        if (g.Run is not { } run) return null;
        if (sampled && g.LastSample is { } sample && ReferenceEquals(sample.Run, run)) return VserverDriver.UsageOf(sample.Stats);
        return DriverFor(g.Config).ReadUsage(run);
    }

    // ---- create / destroy ----

    /// <summary>Creates a guest as <paramref name="spec"/> says, stopped. With <paramref name="dryRun"/>, only checks it
    /// (everything a create checks, in the same order, refused with the same error) and answers the guest it would make,
    /// with the address it would get; nothing is made or claimed.</summary>
    public async Task<GuestView> CreateAsync(Vserver.Api.GuestSpec spec, bool dryRun = false, CancellationToken ct = default)
    {
        var draft = Draft(spec, []);
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
            if (_registry.NameTaken(draft.Name)) throw FleetException.NameTaken(draft.Name);
            paths = _store.PathsFor(draft.Name);
            if (Directory.Exists(paths.Dir))
                throw FleetException.Conflict($"{paths.Dir} already exists but is no guest this agent knows; remove it or pick another name");
            var address = AllocateAddress(draft.Network.Ipv4);
            config = draft with
            {
                Network = draft.Network with
                {
                    Ipv4 = address.ToString(),
                    Mac = GuestAllocator.Mac(_options.StateRoot, draft.Name),
                },
                Security = draft.Security with { IdMap = draft.Security.Privileged || draft.Domain is not null ? null : AllocateIds() },
                Created = DateTimeOffset.UtcNow,
            };
            reservation = Admit(config, "create", runningOnly: false);
            _registry.BeginCreate(config);
        }
        finally
        {
            _membership.Release();
        }
        // The rest (the config written with two fsyncs, storage, the network: five host commands) runs outside the
        // membership lock: with it inside, 16 clients' creates and destroys queued behind each other for half a second
        // each (tests/Faults/LoadTests). The name, address and ids stay claimed in the registry meanwhile.
        GuestRuntime runtime;
        using (reservation)
        {
            try
            {
                _store.Save(config);
                Failpoints.Hit("create.after-config");
                DriverFor(config).Provision(config, paths);
                Failpoints.Hit("create.after-network");
                config = config with { Phase = GuestPhase.Ready };
                _store.Save(config);
                Failpoints.Hit("create.after-ready");
            }
            catch (Exception e)
            {
                Teardown(paths);
                _registry.AbandonCreate(config.Name);
                throw StateDiskSpace.Refusal(e, paths.Dir, _options.StateRoot)
                    ?? new FleetException(FleetError.Failed, $"creating {draft.Name} failed: {e.Message}", e);
            }
            runtime = new GuestRuntime(config);
            _registry.Add(runtime);
        }
        GuestCame(config);
        _log($"created guest {config.Name} ({config.Network.Ipv4}{(IsRouted(config.Network.Ipv4) ? ", routed" : "")})");
        return View(runtime);
    }

    /// <summary>A create's whole check of <paramref name="spec"/> (every rule, names and addresses free, images and kernels
    /// built, room for a quota), as the draft config it would make. <paramref name="planned"/>: what guests planned
    /// beside it (a plan checked whole) hold as well.</summary>
    private GuestConfig Draft(Vserver.Api.GuestSpec spec, IReadOnlyList<GuestClaims> planned)
    {
        var draft = GuestSpecValidator.Validate(spec, new GuestSpecContext
        {
            HostCpus = _hostCpus,
            HostMemoryBytes = HostMemory.TotalBytes,
            Subnet = _options.Subnet,
            Routed = RoutedRange,
            NameTaken = name => _registry.NameTaken(name) || planned.Any(p => p.Name == name),
            AddressOwner = address => _registry.AddressOwner(address)
                ?? planned.FirstOrDefault(p => p.Addresses.Contains(address, StringComparer.Ordinal))?.Name,
            ImageBytes = name => Images.Find(name)?.SizeBytes,
            BuiltImages = () => Images.List().Select(i => i.Name),
            KernelBuilt = name => Kernels.Find(name) is not null,
            BuiltKernels = () => Kernels.List().Select(k => k.Name),
        });
        if (draft.Limits.DiskBytes is { } quota) StateDiskSpace.EnsureRoomForQuota(draft.Name, quota, _options.StateRoot);
        return draft;
    }

    /// <summary>Removes whatever a guest of either kind left on the host (QEMU, tap, cgroup, veth, layers), then its
    /// directories.</summary>
    private void Teardown(GuestPaths paths)
    {
        foreach (var driver in Drivers) driver.Teardown(paths);
        if (Directory.Exists(paths.RunDir)) Directory.Delete(paths.RunDir, recursive: true);
        // Renamed first: a crash mid-delete must not leave a directory that looks like a guest.
        if (Directory.Exists(paths.Dir)) AtomicFile.DeleteDirectory(paths.Dir, "destroying");
    }

    /// <summary>A host id range no guest holds, broken ones included. Called under the membership lock.</summary>
    private IdMap AllocateIds()
    {
        return GuestAllocator.Ids(_registry.Claims().Select(c => c.Ids).OfType<IdMap>(), _options.IdRange);
    }

    /// <summary>An address for a new guest (the one asked for, if free). Called under the membership lock.
    /// <paramref name="planned"/>: what guests planned beside it hold as well.</summary>
    private IPAddress AllocateAddress(string? requested, IReadOnlyList<GuestClaims>? planned = null)
    {
        return GuestAllocator.Address(requested, _registry.Claims().Concat(planned ?? []), _options.Subnet);
    }

    public async Task DestroyAsync(string name, bool force, CancellationToken ct = default)
    {
        if (_registry.FindBroken(name) is not null)
        {
            await DestroyBrokenAsync(name, force, ct);
            return;
        }
        // Under the guest's lock only: the teardown (cgroup, veth, directories) need not hold up creates and destroys of
        // other guests. The guest stays in the registry, its name and address taken, until it is gone from the host.
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.IsRunning)
            {
                if (!force)
                    throw FleetException.AlreadyRunning(name, g.State.ToString().ToLowerInvariant(), "destroy");
                await StopLockedAsync(g, TimeSpan.Zero);
            }
            var paths = _store.PathsFor(name);
            try
            {
                _store.Save(g.Config with { Phase = GuestPhase.Destroying });
            }
            catch (FleetException e) when (e.InnerException is { } io && StateDiskSpace.IsFull(io))
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
        _registry.Remove(g.Config.Name);
        GuestLeft(g.Config);
    }

    private async Task DestroyBrokenAsync(string name, bool force, CancellationToken ct)
    {
        await _membership.WaitAsync(ct);
        try
        {
            var broken = _registry.FindBroken(name);
            if (broken is null) throw FleetException.GuestNotFound(name);
            if (!force)
                throw FleetException.Broken(name, broken.Problem);
            Teardown(_store.PathsFor(name));
            _registry.Remove(name);
            RefreshNames();
            _log($"destroyed broken guest {name}");
        }
        finally
        {
            _membership.Release();
        }
    }

    // ---- images ----

    public IReadOnlyList<Vserver.Api.ImageInfo> ListImages() => Images.List().Select(ImageInfoOf).ToList();

    public Vserver.Api.ImageInfo BuildImage(string name)
    {
        try
        {
            return ImageInfoOf(Images.Build(name));
        }
        catch (ImageException e)
        {
            throw ImageRefusal(e);
        }
    }

    public void RemoveImage(string name)
    {
        if (Vserver.Isolation.Naming.DnsLabel.Error(name, "image") is { } invalid) throw FleetException.Invalid(invalid);
        var users = _registry.Configs().Where(c => c.Image == name).Select(c => c.Name).ToList();
        if (users.Count > 0)
            throw FleetException.Conflict($"image '{name}' is the lower layer of {string.Join(", ", users)}; destroy those guests first");
        try
        {
            Images.Remove(name);
        }
        catch (ImageException e)
        {
            throw ImageRefusal(e);
        }
    }

    /// <summary>Running guests are left running: a new agent adopts them.</summary>
    public void Dispose()
    {
        StopSamplerAsync().Wait(TimeSpan.FromSeconds(5));
        _samplerStop.Dispose();
        // The resolver keeps serving the guests (they run on without an agent); only its supervision ends here.
        _resolver?.Dispose();
        _membership.Dispose();
    }

    private GuestRuntime Find(string name)
    {
        if (_registry.Find(name) is { } g) return g;
        if (_registry.FindBroken(name) is { } b) throw FleetException.Broken(name, b.Problem);
        throw FleetException.GuestNotFound(name);
    }

    /// <summary>Finds a guest and takes its lock. A guest destroyed (or saved away) while the caller waited is gone: acting
    /// on it would rebuild its network, cgroup or files for nobody (a start racing a destroy left its veth and netns).</summary>
    private async Task<GuestRuntime> LockGuestAsync(string name, CancellationToken ct)
    {
        var g = Find(name);
        await g.Lock.WaitAsync(ct);
        if (!g.Removed) return g;
        g.Lock.Release();
        throw FleetException.GuestNotFound(name);
    }
}
