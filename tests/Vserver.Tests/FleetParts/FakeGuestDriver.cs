using HybridHypervisor;
using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;

namespace Vserver.Tests.FleetParts;

/// <summary>
/// A stand-in for one kind's driver, for unit tests of the fleet's own logic: its "guests" are runs in memory that end
/// when the test says so. It outlives a fleet, as the host does an agent: a second fleet over the same roots adopts
/// what still runs. Every call is recorded.
/// </summary>
internal sealed class FakeGuestDriver(GuestKind kind) : IGuestDriver
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, FakeRun> _running = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GuestExit> _endedWhileAway = new(StringComparer.Ordinal);
    private readonly List<string> _calls = [];
    private int _nextPid = 1000;

    public GuestKind Kind { get; } = kind;

    /// <summary>Set by a test: the next start fails with it.</summary>
    public Exception? StartFailure { get; set; }

    public IReadOnlyList<string> Calls
    {
        get
        {
            lock (_gate) return _calls.ToList();
        }
    }

    public int Starts(string guest) => Calls.Count(c => c == $"start {guest}");

    public bool IsRunning(string guest)
    {
        lock (_gate) return _running.ContainsKey(guest);
    }

    private void Record(string call)
    {
        lock (_gate) _calls.Add(call);
    }

    /// <summary>The guest's process ends by itself (a crash, a power-off inside), as the kernel would report it.</summary>
    public void End(string guest, GuestExit exit)
    {
        FakeRun run;
        lock (_gate)
        {
            run = _running[guest];
            _running.Remove(guest);
        }
        run.End(exit);
    }

    /// <summary>The guest ends while no agent is running (between two fleets): the next fleet finds it ended.</summary>
    public void EndWhileAway(string guest, GuestExit exit)
    {
        lock (_gate)
        {
            _running.Remove(guest);
            _endedWhileAway[guest] = exit;
        }
    }

    public void Provision(GuestConfig config, GuestPaths paths)
    {
        Record($"provision {config.Name}");
        Directory.CreateDirectory(paths.Dir);
        Directory.CreateDirectory(paths.RunDir);
    }

    public Task<IGuestRun> StartAsync(GuestConfig config, GuestPaths paths, CancellationToken ct)
    {
        Record($"start {config.Name}");
        if (StartFailure is { } failure) throw failure;
        var run = new FakeRun(Interlocked.Increment(ref _nextPid), DateTimeOffset.UtcNow);
        lock (_gate) _running[config.Name] = run;
        return Task.FromResult<IGuestRun>(run);
    }

    public Task<IGuestRun?> AdoptAsync(GuestConfig config, GuestPaths paths)
    {
        Record($"adopt {config.Name}");
        lock (_gate) return Task.FromResult<IGuestRun?>(_running.GetValueOrDefault(config.Name));
    }

    public GuestExit? CollectUnwatchedEnd(GuestConfig config, GuestPaths paths)
    {
        lock (_gate)
        {
            if (!_endedWhileAway.Remove(config.Name, out var exit)) return null;
            Record($"collect {config.Name}");
            return exit;
        }
    }

    public Task StopAsync(IGuestRun run, TimeSpan timeout)
    {
        var fake = (FakeRun)run;
        string name;
        lock (_gate)
        {
            name = _running.Single(r => ReferenceEquals(r.Value, fake)).Key;
            _running.Remove(name);
        }
        Record($"stop {name} {timeout.TotalSeconds:0}s");
        fake.End(new GuestExit(null, 15, DateTimeOffset.UtcNow));
        return Task.CompletedTask;
    }

    public async Task<GuestExit> EndRunAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        Record($"end {config.Name}");
        return await ((FakeRun)run).Exit;
    }

    public Task SetPausedAsync(IGuestRun run, bool paused, CancellationToken ct)
    {
        ((FakeRun)run).Paused = paused;
        return Task.CompletedTask;
    }

    public Task ApplyLimitsAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        Record($"limits {config.Name} {config.Limits.MemoryBytes}");
        return Task.CompletedTask;
    }

    public Vserver.Api.GuestUsage? ReadUsage(IGuestRun run) => new() { Processes = 1, MemoryBytes = 1 << 20 };

    public Task<IGuestProcess> ExecAsync(GuestConfig config, GuestPaths paths, IGuestRun run, GuestCommand command, CancellationToken ct) =>
        throw new InvalidOperationException("the fake driver runs no commands");

    /// <summary>Set by a test: the address a guest's network on the "host" really has.</summary>
    public Dictionary<string, string> RealAddresses { get; } = new(StringComparer.Ordinal);

    public GuestClaims ReadHeld(string name, GuestPaths paths)
    {
        lock (_gate) return new GuestClaims(name) { NetnsAddress = RealAddresses.GetValueOrDefault(name) };
    }

    public void Teardown(GuestPaths paths) => Record($"teardown {Path.GetFileName(paths.Dir)}");

    private sealed class FakeRun(int pid, DateTimeOffset startedAt) : IGuestRun
    {
        private readonly TaskCompletionSource<GuestExit> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Pid { get; } = pid;
        public DateTimeOffset StartedAt { get; } = startedAt;
        public bool Paused { get; set; }
        public Task Exited => _exit.Task;
        public Task<GuestExit> Exit => _exit.Task;

        public void End(GuestExit exit) => _exit.TrySetResult(exit);
    }
}

/// <summary>The host network as a fleet in a unit test has it: nothing on the host, the calls recorded.</summary>
internal sealed class FakeHostNetwork(string bridge) : IHostNetwork
{
    public string BridgeName { get; } = bridge;
    public string PortTable => $"ip vserver_{BridgeName}";
    public int Ensured { get; private set; }
    public IReadOnlyList<PortForward> Forwards { get; private set; } = [];

    public void Ensure() => Ensured++;

    public bool Nat { get; private set; }
    public HostRules? Rules { get; private set; }
    /// <summary>What <see cref="RoutedProblem"/> answers (a test stands in for the host's refusals).</summary>
    public RoutedRefusal? RoutedRefusal { get; set; }

    public void Apply(HostRules rules)
    {
        Rules = rules;
        Forwards = rules.Forwards;
        Nat = rules.Nat;
    }

    public void RemoveProxies(string uplink, Ipv4Subnet range)
    {
    }

    public bool TornDown { get; private set; }

    public void Teardown(string? uplink, Ipv4Subnet? routed) => TornDown = true;

    public RoutedRefusal? RoutedProblem(Ipv4Subnet range, string uplink, Ipv4Subnet subnet) => RoutedRefusal;

    public Resolver? CreateResolver(ResolverConfig config, Action<string> log) => null;

    public string? ListForwards() => null;
}

/// <summary>A cgroup hierarchy with nothing in it, for a fleet whose drivers make no cgroups.</summary>
internal sealed class NoCgroups : ICgroupHierarchy
{
    public CgroupVersion Version => CgroupVersion.V2;
    public ICgroup Create(string path) => throw new InvalidOperationException($"a fleet of fakes made cgroup {path}");
    public ICgroup? Open(string path) => null;
    public bool Exists(string path) => false;
    public IReadOnlyList<string> Children(string path) => [];
}
