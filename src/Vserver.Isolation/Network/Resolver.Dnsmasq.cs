using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Naming;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

/// <summary>How the resolver's dnsmasq is run, recognised on the host and ended, and the files it reads.</summary>
public sealed partial class Resolver
{
    public const string DnsmasqPath = "/usr/sbin/dnsmasq";

    /// <summary>Who dnsmasq runs as once it has bound port 53: the user Debian's dnsmasq-base creates, with the group
    /// that owns nothing (nogroup, that user's primary group), not the compiled-in nobody:dip.</summary>
    public const string DnsmasqUser = "dnsmasq", DnsmasqGroup = "nogroup";

    /// <summary>The pid file's name marks a dnsmasq as a vserver agent's and names its bridge:
    /// <c>DIR/vserver-resolver-BRIDGE.pid</c>.</summary>
    private const string PidFilePrefix = "vserver-resolver-", PidFileSuffix = ".pid";
    private const string HostsFileName = "guests";
    private const UnixFileMode ReadableDirectory = (UnixFileMode)0x1ED; // 0755
    private const UnixFileMode ReadableFile = (UnixFileMode)0x1A4; // 0644
    private const int SIGTERM = 15, SIGKILL = 9;

    public static string PidFile(ResolverConfig config) => Path.Combine(DirOf(config), PidFilePrefix + config.BridgeName + PidFileSuffix);
    public static string HostsDir(ResolverConfig config) => Path.Combine(DirOf(config), "hosts");
    public static string HostsFile(ResolverConfig config) => Path.Combine(HostsDir(config), HostsFileName);
    public static string LogFile(ResolverConfig config) => Path.Combine(DirOf(config), "dnsmasq.log");

    /// <summary>
    /// dnsmasq's arguments (after the program), the same for the same config: an agent adopts a running dnsmasq only
    /// when its command line is exactly this.
    /// </summary>
    /// <remarks>
    /// <list type="bullet">
    /// <item><c>--conf-file=/dev/null</c>: nothing from /etc/dnsmasq.conf (or the conf-dir it may name) applies.</item>
    /// <item><c>--pid-file</c>: written before dnsmasq's first process exits; its name is how <see cref="FindAll"/>
    /// knows an agent's dnsmasq. <c>--log-facility</c>: a file in DIR (hosts have no syslog in every container), for the
    /// reasons dnsmasq gives after it started (an unreadable hosts file, no upstream servers).</item>
    /// <item><c>--user</c>, <c>--group</c>: see <see cref="DnsmasqUser"/>.</item>
    /// <item><c>--bind-interfaces --listen-address=GW</c>: a socket on GW:53 (UDP and TCP) only, not the wildcard, so
    /// another agent's dnsmasq (or the host's own resolver) can hold port 53 on its addresses. With only
    /// --listen-address dnsmasq does not add loopback (man dnsmasq), so no --except-interface=lo is needed. The socket
    /// stays bound when the bridge loses its address or is made again: queries are answered once the address is back
    /// (measured).</item>
    /// <item><c>--no-hosts --hostsdir=DIR/hosts</c>: the guests' names and nothing of the host's /etc/hosts; dnsmasq
    /// watches the directory with inotify and re-reads a file renamed into it, dropping its old names (2.88 and later),
    /// and ignores dot-files.</item>
    /// <item><c>--local=/DOMAIN/</c>: names under DOMAIN are answered here only, an unknown one NXDOMAIN, never asked
    /// upstream. <c>--domain-needed</c>: a bare name that is no guest's is not sent upstream either.</item>
    /// <item>Upstream: <c>--resolv-file=/etc/resolv.conf</c>, which dnsmasq watches and re-reads; or <c>--no-resolv</c>
    /// and one <c>--server</c> per address.</item>
    /// </list>
    /// Left out: DHCP (no range is given, so dnsmasq serves none); <c>--domain</c>, which only DHCP and --expand-hosts
    /// use (the hosts file already holds NAME.DOMAIN); <c>--bogus-priv</c>, which would answer NXDOMAIN to every reverse
    /// lookup of a private address, the host LAN's names that the upstream knows included.
    /// </remarks>
    public static IReadOnlyList<string> Arguments(ResolverConfig config)
    {
        Validate(config);
        List<string> arguments =
        [
            "--conf-file=/dev/null",
            $"--pid-file={PidFile(config)}",
            $"--log-facility={LogFile(config)}",
            $"--user={DnsmasqUser}",
            $"--group={DnsmasqGroup}",
            "--bind-interfaces",
            $"--listen-address={config.ListenAddress}",
            "--no-hosts",
            $"--hostsdir={HostsDir(config)}",
            $"--local=/{config.Domain}/",
            "--domain-needed",
        ];
        if (config.Upstream is null)
        {
            arguments.Add("--resolv-file=/etc/resolv.conf");
        }
        else
        {
            arguments.Add("--no-resolv");
            foreach (var server in config.Upstream) arguments.Add($"--server={server}");
        }
        return arguments;
    }

    /// <summary>Every dnsmasq on this host that a vserver agent started, from /proc: the host check names those no agent
    /// owns.</summary>
    public static IReadOnlyList<RunningResolver> FindAll()
    {
        var found = new List<RunningResolver>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (ReadArguments(pid) is { } argv && Recognise(pid, argv) is { } resolver) found.Add(resolver);
        }
        return found;
    }

    /// <summary>A process's argv (program first) as a vserver agent's dnsmasq, or null when it is none: a program named
    /// dnsmasq whose <c>--pid-file</c> is named <c>vserver-resolver-BRIDGE.pid</c>.</summary>
    public static RunningResolver? Recognise(int pid, IReadOnlyList<string> argv)
    {
        if (argv.Count < 2 || Path.GetFileName(argv[0]) != "dnsmasq") return null;
        foreach (var argument in argv.Skip(1))
        {
            if (!argument.StartsWith("--pid-file=", StringComparison.Ordinal)) continue;
            var pidFile = argument["--pid-file=".Length..];
            var name = Path.GetFileName(pidFile);
            if (name.Length > PidFilePrefix.Length + PidFileSuffix.Length
                && name.StartsWith(PidFilePrefix, StringComparison.Ordinal) && name.EndsWith(PidFileSuffix, StringComparison.Ordinal))
                return new RunningResolver(pid, name[PidFilePrefix.Length..^PidFileSuffix.Length], pidFile, argv.Skip(1).ToArray());
        }
        return null;
    }

    /// <summary>/proc/PID/cmdline as arguments; null when the process is gone or has none (a zombie, a kernel thread).</summary>
    internal static IReadOnlyList<string>? ReadArguments(int pid)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes($"/proc/{pid}/cmdline");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        if (bytes.Length == 0) return null;
        var text = Encoding.UTF8.GetString(bytes);
        if (text.EndsWith('\0')) text = text[..^1];
        return text.Split('\0');
    }

    /// <summary>A pidfd on <paramref name="pid"/> and its arguments, read after the pidfd was opened, when it is a
    /// dnsmasq with <paramref name="pidFile"/>: what the pidfd holds cannot be another process that got the pid since.</summary>
    private static (ProcessHandle Handle, IReadOnlyList<string> Arguments)? OpenOurs(int pid, string pidFile)
    {
        var handle = ProcessHandle.TryOpen(pid);
        if (handle is null) return null;
        if (ReadArguments(pid) is { } argv && Recognise(pid, argv) is { } resolver && resolver.PidFile == pidFile)
            return (handle, resolver.Arguments);
        handle.Dispose();
        return null;
    }

    /// <summary>Ends one dnsmasq of ours: SIGTERM, then SIGKILL; only through a pidfd opened while its command line
    /// named <paramref name="pidFile"/>.</summary>
    private static void End(int pid, string pidFile)
    {
        if (OpenOurs(pid, pidFile) is not { } opened) return;
        using var process = opened.Handle;
        if (!process.Signal(SIGTERM) || process.Exited.Wait(TimeSpan.FromSeconds(3))) return;
        if (!process.Signal(SIGKILL) || process.Exited.Wait(TimeSpan.FromSeconds(3))) return;
        throw new ResolverException($"end dnsmasq pid {pid} ({pidFile}): still running 3 s after SIGKILL");
    }

    /// <summary>Ends every dnsmasq that carries the pid file of <paramref name="config"/>.</summary>
    private static void EndOurs(ResolverConfig config)
    {
        var pidFile = PidFile(config);
        foreach (var running in FindAll().Where(r => r.PidFile == pidFile)) End(running.Pid, pidFile);
    }

    /// <summary>
    /// Starts dnsmasq and returns a pidfd on the daemon. dnsmasq binds the address, forks into a session of its own,
    /// writes the pid file, and only then lets its first process exit: with 0, or with its reason on stderr (the address
    /// taken, not on this host). So that exit is the moment it listens: 15-20 ms after the start here. Start as a whole (the /proc scan, 2 ms, and the
    /// directory checks included) took 20-65 ms in the integration test, once 214 ms on this loaded 2-core machine; a
    /// killed dnsmasq ran again 25-115 ms after the kill.
    /// </summary>
    private static ProcessHandle StartDnsmasq(ResolverConfig config, IReadOnlyList<string> arguments)
    {
        var what = $"start the DNS resolver of bridge {config.BridgeName} on {config.ListenAddress} port 53 (dnsmasq)";
        if (!File.Exists(DnsmasqPath)) throw new ResolverException($"{what}: {DnsmasqPath} is missing; install dnsmasq-base");
        var pidFile = PidFile(config);
        File.Delete(pidFile); // one left by an earlier dnsmasq must not name a pid
        int code;
        string stderr;
        try
        {
            (code, _, stderr) = HostProgram.TryRun(DnsmasqPath, arguments, timeout: TimeSpan.FromSeconds(30));
        }
        catch (HostProgramException e)
        {
            throw new ResolverException($"{what}: {e.Message}", e);
        }
        if (code != 0)
        {
            // "dnsmasq: failed to create listening socket for 10.88.0.1: Address already in use"
            var reason = LastLine(stderr) is { } line ? StripPrefix(line) : $"exit code {code}";
            var hint = reason.Contains("Address already in use", StringComparison.Ordinal)
                ? $"; another program holds port 53 on {config.ListenAddress} (ss -lunp 'sport = :53' names it)"
                : reason.Contains("Cannot assign requested address", StringComparison.Ordinal)
                    ? $"; {config.ListenAddress} is no address of this host (is bridge {config.BridgeName} up with it?)"
                    : "";
            throw new ResolverException($"{what}: {reason}{hint}");
        }
        var pid = ReadPid(pidFile);
        if (pid is { } p && OpenOurs(p, pidFile) is { } opened) return opened.Handle;
        var log = LastLine(ReadTail(LogFile(config))) ?? "nothing";
        throw new ResolverException(pid is null
            ? $"{what}: dnsmasq exited 0 but wrote no pid to {pidFile}; its log {LogFile(config)} ends with: {log}"
            : $"{what}: dnsmasq (pid {pid}) ended right after it started; its log {LogFile(config)} ends with: {log}");
    }

    private static int? ReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string? LastLine(string text) =>
        text.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.Length > 0);

    private static string StripPrefix(string line) =>
        line.StartsWith("dnsmasq: ", StringComparison.Ordinal) ? line["dnsmasq: ".Length..] : line;

    private static string ReadTail(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            stream.Position = Math.Max(0, stream.Length - 4096);
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    private static void PrepareDirectories(ResolverConfig config)
    {
        foreach (var dir in new[] { DirOf(config), HostsDir(config) })
        {
            try
            {
                Directory.CreateDirectory(dir);
                File.SetUnixFileMode(dir, ReadableDirectory); // root's, readable by all: dnsmasq only reads here
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ResolverException($"prepare the resolver's directory {dir}: {e.Message}", e);
            }
        }
    }

    /// <summary>
    /// dnsmasq reads the hosts directory as <see cref="DnsmasqUser"/>, after it dropped root: at start and at each
    /// change. If any directory above it denies that user search permission, dnsmasq starts all the same and answers
    /// no guest's name, with only "bad dynamic directory ...: Permission denied" in its log. So each directory on the way
    /// is checked first, with the owner, group and mode bits as the kernel applies them (a link on the way is checked
    /// where it leads; ACLs are not read).
    /// </summary>
    private static void CheckReachable(ResolverConfig config)
    {
        var (uid, gid) = DnsmasqIdentity();
        var hostsDir = HostsDir(config);
        for (var dir = hostsDir; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            var want = dir == hostsDir ? 5u : 1u; // r-x for the hosts directory, --x above it
            var stat = StatPath(dir);
            if (!Permits(stat.Mode, stat.Uid, stat.Gid, uid, gid, want))
                throw new ResolverException($"dnsmasq runs as user {DnsmasqUser} (uid {uid}) and cannot reach its hosts directory " +
                    $"{hostsDir}: {dir} is mode {Convert.ToString(stat.Mode & 0xFFF, 8).PadLeft(4, '0')} owned by uid {stat.Uid} gid {stat.Gid}; " +
                    $"let others search it (chmod o+x {dir}) or give the agent a run directory every user can reach");
        }
    }

    /// <summary>Whether a file of <paramref name="mode"/> owned by <paramref name="ownerUid"/>:<paramref name="ownerGid"/>
    /// grants <paramref name="want"/> (rwx as 4, 2, 1) to <paramref name="uid"/>:<paramref name="gid"/>, a process
    /// without supplementary groups or capabilities: owner bits if it owns the file, else group bits if in its group,
    /// else the other bits, each excluding the next.</summary>
    internal static bool Permits(uint mode, uint ownerUid, uint ownerGid, uint uid, uint gid, uint want)
    {
        var bits = ownerUid == uid ? (mode >> 6) & 7 : ownerGid == gid ? (mode >> 3) & 7 : mode & 7;
        return (bits & want) == want;
    }

    private static Libc.Stat StatPath(string path)
    {
        var fd = Libc.Open(path, Libc.O_PATH | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw new ResolverException($"check that dnsmasq can reach its hosts directory: {SystemCallException.Format($"open {path}", Marshal.GetLastPInvokeError())}");
        try
        {
            if (Libc.Fstat(fd, out var stat) != 0)
                throw new ResolverException($"check that dnsmasq can reach its hosts directory: {SystemCallException.Format($"fstat {path}", Marshal.GetLastPInvokeError())}");
            return stat;
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    private static (uint Uid, uint Gid) DnsmasqIdentity()
    {
        var uid = UserDatabase.LookupUser(DnsmasqUser);
        var gid = UserDatabase.LookupGroup(DnsmasqGroup);
        if (uid is null || gid is null)
            throw new ResolverException($"dnsmasq runs as {DnsmasqUser}:{DnsmasqGroup}, and this host has no {(uid is null ? "user " + DnsmasqUser : "group " + DnsmasqGroup)}; " +
                "installing dnsmasq-base creates the user");
        return (uid.Value, gid.Value);
    }

    private static void Validate(ResolverConfig config)
    {
        HostBridge.ValidateName(config.BridgeName);
        if (config.ListenAddress is null || config.ListenAddress.Equals(IPAddress.Any) || config.ListenAddress.Equals(IPAddress.IPv6Any))
            throw new FormatException($"resolver listen address '{config.ListenAddress}': give the bridge's own address, not a wildcard");
        ValidateDomain(config.Domain);
        if (config.Upstream is { } upstream && upstream.Any(a => a is null || a.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any)))
            throw new FormatException("resolver upstream: every server needs an address of its own (no wildcard)");
        if (string.IsNullOrEmpty(config.Dir) || !Path.IsPathFullyQualified(config.Dir))
            throw new FormatException($"resolver directory '{config.Dir}': give an absolute path (the agent's RUNROOT/dns)");
    }

    private static void ValidateDomain(string domain)
    {
        if (domain is null || domain.Length is 0 or > 253 || !domain.Split('.').All(DnsLabel.IsValid))
            throw new FormatException($"invalid resolver domain '{DnsLabel.Shown(domain)}': write DNS labels (lowercase letters, digits and '-') " +
                "joined by dots, e.g. vserver or guests.example.org");
    }

    /// <summary>The directory as dnsmasq's arguments name it: absolute, no trailing slash, no "." or "..".</summary>
    private static string DirOf(ResolverConfig config) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(config.Dir));
}
