using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Domains.Qmp;
using HybridHypervisor.Guests;
using Vserver.Isolation.Processes;

namespace HybridHypervisor.Domains;

/// <summary>
/// A domain's QEMU as the agent holds it: the process (a child of the agent, or one adopted from an agent that died),
/// its QMP connection, and the guest agent connection opened at the first exec. Watches QMP events so that when QEMU
/// ends, <see cref="Ended"/> tells why: the guest powered off or rebooted, or QEMU died on its own (crashed).
/// </summary>
public sealed class RunningDomain : IGuestRun, IAsyncDisposable
{
    private readonly ProcessHandle _qemu;
    private readonly string _agentSocket;
    private readonly string _qemuLog;
    private readonly Lock _gate = new();
    private Task<GuestAgentClient>? _agent;
    private string? _shutdownReason;
    private bool _shutdownByGuest;
    private readonly Task _watchingEvents;

    internal RunningDomain(ProcessHandle qemu, QmpClient qmp, AcceleratorChoice accelerator, DateTimeOffset startedAt, string agentSocket,
        string qemuLog, bool paused)
    {
        Accelerator = accelerator;
        _qemu = qemu;
        Qmp = qmp;
        StartedAt = startedAt;
        _agentSocket = agentSocket;
        _qemuLog = qemuLog;
        Paused = paused;
        _watchingEvents = WatchEventsAsync();
        Ended = EndAsync();
    }

    public QmpClient Qmp { get; }
    public AcceleratorChoice Accelerator { get; }
    public int Pid => _qemu.Pid;
    public DateTimeOffset StartedAt { get; }
    public bool Paused { get; set; }
    /// <summary>The balloon target as last set (pressure may hold it below the configured one); null for a domain adopted
    /// from an earlier agent until QEMU is asked.</summary>
    public long? BalloonCurrent { get; set; }
    Task IGuestRun.Exited => Ended;
    /// <summary>Set before the agent itself ends QEMU (stop, destroy, save), so that end is not taken for a crash.</summary>
    public bool EndedByHost { get; set; }
    /// <summary>Set when the agent pressed the power button (a stop): QEMU ending cleanly after that is the guest
    /// powering off, even if its SHUTDOWN event was never read.</summary>
    public bool PowerdownRequested { get; set; }

    /// <summary>Completes once QEMU has exited, with why.</summary>
    public Task<GuestExit> Ended { get; }

    private async Task WatchEventsAsync()
    {
        await foreach (var e in Qmp.Events.ReadAllAsync())
        {
            if (e.Name != QmpEventNames.Shutdown) continue;
            lock (_gate)
            {
                _shutdownReason = e.DataString("reason");
                _shutdownByGuest = e.Data?["guest"]?.GetValue<bool>() ?? false;
            }
        }
    }

    private async Task<GuestExit> EndAsync()
    {
        var exit = await _qemu.Exited;
        // The SHUTDOWN event comes before QEMU closes the socket: wait until the watcher has taken every event (its loop
        // ends with the connection). Waiting for the connection's end alone raced the watcher, and on a saturated host a
        // clean power-off was taken for a crash.
        await Task.WhenAny(_watchingEvents, Task.Delay(TimeSpan.FromSeconds(10)));
        string? reason;
        bool byGuest;
        lock (_gate)
        {
            reason = _shutdownReason;
            byGuest = _shutdownByGuest;
        }
        var at = DateTimeOffset.UtcNow;
        var code = exit.Code;
        var signal = exit.Signal;
        return reason switch
        {
            "guest-shutdown" when byGuest => new GuestExit(code ?? 0, null, at, "the guest powered off", Reset: false),
            null when PowerdownRequested && code == 0 => new GuestExit(0, null, at, "the guest powered off", Reset: false),
            "guest-reset" when byGuest => new GuestExit(code ?? 0, null, at, "the guest rebooted", Reset: true),
            "guest-panic" => new GuestExit(code, signal, at, "the guest's kernel panicked", Crashed: true, Reset: false),
            not null when EndedByHost => new GuestExit(code ?? 0, null, at, "stopped by the agent", Reset: false),
            _ when EndedByHost => new GuestExit(code, signal, at, $"stopped by the agent (QEMU {Describe(code, signal)})", Reset: false),
            _ => new GuestExit(code, signal, at, $"crashed: QEMU {Describe(code, signal)}{LastComplaint()}", Crashed: true, Reset: false),
        };
    }

    private static string Describe(int? code, int? signal) =>
        code is { } c ? $"exited with code {c}" : signal is { } s ? $"was killed by signal {s}" : "ended (status unknown: it was not the agent's child)";

    private string LastComplaint()
    {
        var line = DomainDriver.LastLines(_qemuLog, 1);
        return line.Length > 0 ? $": {line}" : "";
    }

    /// <summary>Moves the balloon (the guest's memory target) and records where it is.</summary>
    public async Task SetBalloonAsync(long bytes, CancellationToken ct = default)
    {
        await Qmp.BalloonAsync(bytes, ct);
        BalloonCurrent = bytes;
    }

    /// <summary>The guest agent connection, opened once per run; waits until the agent inside answers.</summary>
    public Task<GuestAgentClient> AgentAsync(TimeSpan readyTimeout, CancellationToken ct)
    {
        lock (_gate)
        {
            if (_agent is null || _agent.IsFaulted || _agent.IsCanceled) _agent = ConnectAgentAsync(readyTimeout);
            return _agent.WaitAsync(ct);
        }
    }

    private async Task<GuestAgentClient> ConnectAgentAsync(TimeSpan readyTimeout)
    {
        using var deadline = new CancellationTokenSource(readyTimeout);
        var client = await GuestAgentClient.ConnectAsync(_agentSocket, deadline.Token);
        try
        {
            await client.WaitReadyAsync(readyTimeout, deadline.Token);
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    /// <summary>Ends QEMU at once (SIGKILL) and waits for it.</summary>
    public async Task KillAsync()
    {
        EndedByHost = true;
        _qemu.Signal(9);
        await Ended;
    }

    public async ValueTask DisposeAsync()
    {
        Task<GuestAgentClient>? agent;
        lock (_gate) agent = _agent;
        if (agent is { IsCompletedSuccessfully: true }) await agent.Result.DisposeAsync();
        await Qmp.DisposeAsync();
        _qemu.Dispose();
    }
}
