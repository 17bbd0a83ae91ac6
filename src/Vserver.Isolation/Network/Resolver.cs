using System.Net;
using System.Text;
using Vserver.Isolation.Naming;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

/// <summary>
/// How one agent's resolver runs. <paramref name="Upstream"/> null forwards to the name servers of the host's own
/// /etc/resolv.conf (dnsmasq re-reads it when it changes); a list forwards to those addresses only, and an empty list to
/// none (names outside <paramref name="Domain"/> then get REFUSED). <paramref name="Dir"/> is the agent's RUNROOT/dns:
/// the pid file, dnsmasq's log and the hosts directory live there, so agents with their own run roots and bridges never
/// meet.
/// </summary>
public sealed record ResolverConfig(string BridgeName, IPAddress ListenAddress, string Domain, IReadOnlyList<IPAddress>? Upstream, string Dir);

/// <summary>A dnsmasq some vserver agent started, as <see cref="Resolver.FindAll"/> finds it: <see cref="Arguments"/>
/// are its argv after the program.</summary>
public sealed record RunningResolver(int Pid, string Bridge, string PidFile, IReadOnlyList<string> Arguments);

/// <summary>The resolver could not be started, adopted or ended; the message names the address or path and says why
/// (dnsmasq's own words when it gave any).</summary>
public sealed class ResolverException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The DNS resolver guests use, on the bridge's address: a dnsmasq that answers <c>NAME.DOMAIN</c> (and the bare
/// <c>NAME</c>) with a guest's address and forwards every other name upstream. One per agent, keyed by bridge and run
/// directory: it binds only the bridge address, so several agents on one host each run their own.
/// </summary>
/// <remarks>
/// <para>The guests' names are a hosts file in a directory dnsmasq watches (<c>--hostsdir</c>, inotify): a change is a
/// rename into that directory and dnsmasq drops the file's old names and reads the new ones, without a restart or a
/// signal. How long until a change is answered: measured by the integration test (30 changes in a row), the first query
/// sent after <see cref="WriteHosts"/> returns already gets the new answer, 30 of 30, in 0.25 ms (median; 3 ms at most,
/// the query's own round trip). The rename queues the inotify event before WriteHosts returns, and dnsmasq handles it
/// before a query that arrives after it; the test still allows 2 s. Answers from the hosts file carry TTL 0, so no cache
/// in a guest keeps an old address.</para>
/// <para>dnsmasq daemonizes (its own session, reparented to init), so it outlives the agent: guests keep their DNS across
/// an agent's restart, and the next agent adopts the dnsmasq that runs with exactly its arguments. While an agent runs,
/// it supervises its dnsmasq through a pidfd: a dnsmasq that dies is started again at once (at most once a second, so a
/// dnsmasq that cannot stay up is not restarted in a busy loop), and that is logged. <see cref="Dispose"/> ends the
/// supervision only; <see cref="Stop"/> ends dnsmasq.</para>
/// </remarks>
public sealed partial class Resolver : IDisposable
{
    private static readonly TimeSpan SupervisePeriod = TimeSpan.FromSeconds(1);
    private const long RestartIntervalMs = 1000;

    // Two locks, always taken in this order: _lock for dnsmasq's life (start, restart, stop, supervision), which may wait
    // seconds for a dnsmasq to end; _hostsLock for the names, so WriteHosts never waits for a dnsmasq to start.
    private readonly Lock _lock = new();
    private readonly Lock _hostsLock = new();
    private readonly Action<string> _log;
    private volatile ResolverConfig _config;
    private volatile ProcessHandle? _process;
    private Timer? _timer;
    private long _launchedAt = long.MinValue / 2;
    private string? _lastFailure;
    private bool _stopped;
    private volatile bool _disposed;

    // Under _hostsLock: the last names given, the domain the hosts file is written for, and whether it is written at all
    // (not after Stop: the directory is gone).
    private List<(string Name, IPAddress Address)>? _guests;
    private string _hostsDomain;
    private bool _writeHosts = true;

    public Resolver(ResolverConfig config, Action<string> log)
    {
        Validate(config);
        _config = config;
        _hostsDomain = config.Domain;
        _log = log;
    }

    public ResolverConfig Config => _config;

    /// <summary>The pid of the dnsmasq this object supervises while it runs; null before <see cref="Start"/>, after
    /// <see cref="Stop"/> and while a dead one waits to be started again.</summary>
    public int? Pid => _process is { HasExited: false } process ? process.Pid : null;

    /// <summary>
    /// Makes sure our dnsmasq runs and supervises it. One that already runs with exactly <see cref="Arguments"/> (left by
    /// an agent that was killed) is adopted; one that carries our pid file with other arguments is ended (by pid, after
    /// its command line showed that pid file), and a new one is started. Returns once dnsmasq has bound the address.
    /// </summary>
    /// <exception cref="ResolverException">dnsmasq cannot run: port 53 on the address taken, the address not on this
    /// host, the hosts directory out of reach of the user dnsmasq runs as.</exception>
    public void Start()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            StartLocked();
        }
    }

    /// <summary>
    /// New settings (domain, upstream, listen address): ends the running dnsmasq and starts one with
    /// <paramref name="next"/>, the hosts file rewritten for a new domain. If the new one cannot start, the previous
    /// settings are started again and the exception says so. The bridge and the directory are what identify a resolver:
    /// they cannot change here.
    /// </summary>
    public void Restart(ResolverConfig next)
    {
        Validate(next);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var previous = _config;
            if (PidFile(next) != PidFile(previous))
                throw new ArgumentException($"a resolver keeps its bridge and directory ({previous.BridgeName}, {previous.Dir}); " +
                    $"asked for {next.BridgeName}, {next.Dir}: stop this one and make another", nameof(next));
            if (Arguments(next).SequenceEqual(Arguments(previous)) && _process is { HasExited: false })
            {
                _config = next;
                return;
            }
            EndOurs(previous);
            _config = next;
            try
            {
                StartLocked();
            }
            catch (Exception e) when (e is ResolverException or IOException or UnauthorizedAccessException)
            {
                _config = previous;
                try
                {
                    StartLocked();
                }
                catch (Exception again) when (again is ResolverException or IOException or UnauthorizedAccessException)
                {
                    throw new ResolverException($"{e.Message}; starting it again with the previous settings failed too: {again.Message}", e);
                }
                throw new ResolverException($"{e.Message}; it runs on with the previous settings", e);
            }
        }
    }

    /// <summary>Ends our dnsmasq and removes <see cref="ResolverConfig.Dir"/>: the host network is being torn down. Names
    /// given to <see cref="WriteHosts"/> afterwards are kept for a later <see cref="Start"/>, not written.</summary>
    public void Stop()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _stopped = true;
            lock (_hostsLock) _writeHosts = false;
            EndOurs(_config);
            _process?.Dispose();
            _process = null;
            var dir = DirOf(_config);
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Replaces the guests' names with <paramref name="guests"/> (all of them, not a change): written whole to a
    /// file beside the hosts directory and renamed into it, so dnsmasq never reads half a file.</summary>
    public void WriteHosts(IEnumerable<(string Name, IPAddress Address)> guests)
    {
        var list = guests.ToList();
        lock (_hostsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var text = HostsText(list, _hostsDomain);
            _guests = list;
            if (!_writeHosts) return;
            var config = _config;
            PrepareDirectories(config);
            WriteHostsFile(config, text);
            TrimLog(LogFile(config));
        }
    }

    /// <summary>The hosts file: "ADDRESS\tNAME.DOMAIN NAME" per guest, sorted by name.</summary>
    public static string HostsText(IEnumerable<(string Name, IPAddress Address)> guests, string domain)
    {
        ValidateDomain(domain);
        var text = new StringBuilder();
        foreach (var (name, address) in guests.OrderBy(g => g.Name, StringComparer.Ordinal).ThenBy(g => g.Address.ToString(), StringComparer.Ordinal))
        {
            if (!DnsLabel.IsValid(name)) throw new FormatException($"guest name '{DnsLabel.Shown(name)}' is no DNS label; it cannot be a name in the resolver");
            text.Append(address).Append('\t').Append(name).Append('.').Append(domain).Append(' ').Append(name).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Stops supervising; dnsmasq runs on, so an agent that shuts down leaves its guests their DNS.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _timer?.Dispose();
            _timer = null;
            _process?.Dispose();
            _process = null;
        }
    }

    private void StartLocked()
    {
        var config = _config;
        lock (_hostsLock)
        {
            PrepareDirectories(config);
            CheckReachable(config);
            _hostsDomain = config.Domain;
            _writeHosts = true;
            if (_guests is not null) WriteHostsFile(config, HostsText(_guests, config.Domain));
            else if (!File.Exists(HostsFile(config))) WriteHostsFile(config, "");
        }

        var wanted = Arguments(config);
        var pidFile = PidFile(config);
        ProcessHandle? adopted = null;
        foreach (var running in FindAll().Where(r => r.PidFile == pidFile))
        {
            if (adopted is null && running.Arguments.SequenceEqual(wanted) && OpenOurs(running.Pid, pidFile) is { } opened)
            {
                // Read again through the pidfd we now hold: the pid cannot have passed to another process meanwhile.
                if (opened.Arguments.SequenceEqual(wanted))
                {
                    adopted = opened.Handle;
                    continue;
                }
                opened.Handle.Dispose();
            }
            End(running.Pid, pidFile);
        }
        var process = adopted ?? Launch(config, wanted);
        _process?.Dispose();
        _process = process;
        process.Exited.ContinueWith(_ => Supervise(), TaskScheduler.Default);
        _stopped = false;
        _timer ??= new Timer(_ => Supervise(), null, SupervisePeriod, SupervisePeriod);
    }

    private ProcessHandle Launch(ResolverConfig config, IReadOnlyList<string> arguments)
    {
        _launchedAt = Environment.TickCount64;
        return StartDnsmasq(config, arguments);
    }

    /// <summary>Called by the timer and when our dnsmasq ends: starts a dead one again.</summary>
    private void Supervise()
    {
        // Busy means someone else is starting or ending dnsmasq right now: the next tick looks again. Not waiting keeps
        // timer and exit callbacks from piling up on the thread pool behind a restart.
        if (!_lock.TryEnter()) return;
        try
        {
            try
            {
                if (_disposed || _stopped || _process is not { HasExited: true } dead) return;
                // A dnsmasq that dies at once is started again by the timer, at most once a second.
                if (Environment.TickCount64 - _launchedAt < RestartIntervalMs) return;
                var what = $"resolver on {_config.ListenAddress} (dnsmasq pid {dead.Pid}) died";
                try
                {
                    StartLocked();
                    _log($"{what}; started again (pid {_process.Pid})");
                    _lastFailure = null;
                }
                catch (Exception e)
                {
                    // Logged once per new reason: the timer tries again every second.
                    if (e.Message != _lastFailure) _log($"{what}; starting it again failed: {e.Message} (trying again every second)");
                    _lastFailure = e.Message;
                }
            }
            catch (Exception e)
            {
                // A timer callback must not throw: that would end the agent.
                try
                {
                    _log($"resolver supervision: {e.Message}");
                }
                catch (Exception)
                {
                }
            }
        }
        finally
        {
            _lock.Exit();
        }
    }

    private static void WriteHostsFile(ResolverConfig config, string text)
    {
        var target = HostsFile(config);
        try
        {
            if (File.Exists(target) && File.ReadAllText(target) == text) return; // dnsmasq would log a re-read for nothing
            // Beside the hosts directory, not in it: dnsmasq would read a temp file in there as one more hosts file.
            var temp = Path.Combine(DirOf(config), HostsFileName + ".new");
            File.WriteAllText(temp, text);
            File.SetUnixFileMode(temp, ReadableFile); // the agent's umask may be 077; dnsmasq reads it as its own user
            File.Move(temp, target, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ResolverException($"write the resolver's hosts file {target}: {e.Message}", e);
        }
    }

    /// <summary>Keeps dnsmasq's log under 1 MiB: it writes three lines for each change of the hosts file. The last 64 KiB
    /// are kept in place (dnsmasq appends with O_APPEND, so it writes on at the new end); a line it writes during the
    /// copy may be lost.</summary>
    internal static void TrimLog(string path)
    {
        const long limit = 1 << 20, keep = 64 << 10;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length <= limit) return;
            using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            var tail = new byte[keep];
            stream.Position = stream.Length - keep;
            stream.ReadExactly(tail);
            var start = Array.IndexOf(tail, (byte)'\n') + 1;
            stream.SetLength(0);
            stream.Position = 0;
            stream.Write("(older lines dropped by vserverd)\n"u8);
            stream.Write(tail.AsSpan(start));
        }
        catch (IOException)
        {
        }
    }
}
