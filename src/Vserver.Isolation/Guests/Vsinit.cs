using System.Globalization;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Guests;

/// <summary>The guest's monitor (vsinit start) and the host pid of the guest's init.</summary>
public sealed record StartedGuest(ProcessHandle Monitor, int InitPid);

/// <summary>
/// The parent side of vsinit (src/Vserver.Isolation/native, whose vsinit.c lists the subcommands): every run of it goes
/// through here, one method per subcommand, which builds the command line, runs it and turns a failure into a
/// <see cref="VsinitException"/> naming the subcommand, its path, vsinit's report, the errno and the exit code.
/// </summary>
public static class Vsinit
{
    /// <summary>Starts a guest: vsinit becomes its monitor, outliving this agent, and answers `started PID` once
    /// the guest's init has exec'd, or `error ...` with nothing left running (<see cref="GuestStartException"/>).</summary>
    public static StartedGuest Start(string vsinitPath, string specPath)
    {
        using var answer = new NativePipe();
        var devNull = ChildProcess.OpenDevNull();
        ProcessHandle monitor;
        try
        {
            monitor = ChildProcess.Spawn(vsinitPath, ["vsinit", "start", specPath], null, devNull, answer.WriteFd, 2);
        }
        finally
        {
            Libc.Close(devNull);
            answer.CloseWrite();
        }
        string? line;
        using (var reader = new StreamReader(answer.TakeReader()))
            line = reader.ReadLine();
        if (line is not null && line.StartsWith("started ", StringComparison.Ordinal) && int.TryParse(line.AsSpan(8), out var pid))
            return new StartedGuest(monitor, pid);
        var exit = monitor.Exited.GetAwaiter().GetResult();
        monitor.Dispose();
        throw new GuestStartException(specPath, line is not null && line.StartsWith("error ", StringComparison.Ordinal)
            ? line[6..]
            : $"vsinit {exit} without reporting the guest's start ({line ?? "no output"})", exit.ShellCode);
    }

    /// <summary>Runs a command inside a running guest: vsinit exec joins its namespaces and cgroups. Its failures are
    /// the command's: on its stderr, with exit code 125 (vsinit could not enter), 126 or 127 (no command to run).</summary>
    public static ExecProcess Exec(string vsinitPath, string specPath, PtyPair? pty)
    {
        if (pty is not null)
        {
            var handle = ChildProcess.Spawn(vsinitPath, ["vsinit", "exec", specPath], null, pty.SlaveFd, pty.SlaveFd, pty.SlaveFd);
            pty.CloseSlave();
            return new ExecProcess(handle, pty.TakeMasterWriter(), pty.TakeMasterReader(), null, pty);
        }
        using var stdin = new NativePipe();
        using var stdout = new NativePipe();
        using var stderr = new NativePipe();
        var process = ChildProcess.Spawn(vsinitPath, ["vsinit", "exec", specPath], null, stdin.ReadFd, stdout.WriteFd, stderr.WriteFd);
        stdin.CloseRead();
        stdout.CloseWrite();
        stderr.CloseWrite();
        return new ExecProcess(process, stdin.TakeWriter(), stdout.TakeReader(), stderr.TakeReader(), null);
    }

    /// <summary>vsinit mount-root: the overlay of the spec (rootfs, lower, upper, work; the image idmapped when it has
    /// an id map) attached at its rootfs in this mount namespace. The caller unmounts it.</summary>
    public static void MountRoot(string vsinitPath, string specPath) => Run(vsinitPath, "mount-root", specPath, [specPath]);

    /// <summary>vsinit grab-root: a clone of the root mount of process <paramref name="pid"/>'s mount namespace (a
    /// running vserver's init) attached at <paramref name="target"/> in this one.</summary>
    public static void GrabRoot(string vsinitPath, int pid, string target) =>
        Run(vsinitPath, "grab-root", target, [pid.ToString(CultureInfo.InvariantCulture), target]);

    /// <summary>vsinit userns-exec, to completion: the spec's command as root of a new user namespace with the spec's
    /// id map (after its binds and detaches); a failure of vsinit's or of the command's.</summary>
    public static void UsernsExec(string vsinitPath, string specPath, TimeSpan? timeout = null) =>
        Run(vsinitPath, "userns-exec", specPath, [specPath], timeout);

    /// <summary>vsinit userns-exec for a daemon: started in a session of its own, stdout and stderr into
    /// <paramref name="logPath"/>; vsinit becomes the daemon (same pid), so its failures are in the log and its exit.</summary>
    public static ProcessHandle SpawnUsernsExec(string vsinitPath, string specPath, string logPath) =>
        ChildProcess.SpawnLogged(vsinitPath, [vsinitPath, "userns-exec", specPath], logPath);

    /// <summary>A subcommand run to completion with its arguments; <paramref name="path"/> (the spec, or the path it
    /// acts on) names the run in a failure.</summary>
    private static void Run(string vsinitPath, string subcommand, string path, IReadOnlyList<string> args, TimeSpan? timeout = null)
    {
        int code;
        string stderr;
        try
        {
            (code, _, stderr) = HostProgram.TryRun(vsinitPath, [subcommand, .. args], timeout: timeout);
        }
        catch (HostProgramException e)
        {
            // It timed out (and was killed) or could not start: what HostProgram says after the command line.
            throw new VsinitException(subcommand, path, e.Message[(e.Message.LastIndexOf(": ", StringComparison.Ordinal) + 2)..],
                e.ExitCode, e.Stderr);
        }
        if (code == 0) return;
        throw new VsinitException(subcommand, path, Reason(stderr) ?? $"exit code {code}", code, stderr);
    }

    /// <summary>vsinit's own report ("vsinit: ..."), else (a tool run by userns-exec) the last line on stderr.</summary>
    private static string? Reason(string stderr)
    {
        var lines = stderr.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        var own = lines.LastOrDefault(l => l.StartsWith("vsinit: ", StringComparison.Ordinal));
        return own is not null ? own["vsinit: ".Length..] : lines.LastOrDefault();
    }
}

/// <summary>A command running inside a guest: its stdio and its exit.</summary>
public sealed class ExecProcess(ProcessHandle process, Stream stdin, Stream stdout, Stream? stderr, PtyPair? pty) : IDisposable
{
    public ProcessHandle Process { get; } = process;
    private Task<int>? _exitCode;

    public Task<int> ExitCode => LazyInitializer.EnsureInitialized(ref _exitCode, async () => (await Process.Exited).ShellCode);

    public void Hangup()
    {
        if (!Process.HasExited) Process.Signal(1);
    }
    public Stream Stdin { get; } = stdin;
    public Stream Stdout { get; } = stdout;
    /// <summary>Null with a terminal: stdout and stderr are both the pty.</summary>
    public Stream? Stderr { get; } = stderr;

    public void Resize(int rows, int cols) => pty?.Resize(rows, cols);

    public void Dispose()
    {
        Stdin.Dispose();
        Stdout.Dispose();
        Stderr?.Dispose();
        pty?.Dispose();
        Process.Dispose();
    }
}

/// <summary>A pseudo-terminal from the guest's own devpts instance, so `tty` inside names a device the guest sees.</summary>
public sealed class PtyPair : IDisposable
{
    private int _master;

    public int SlaveFd { get; private set; }

    private PtyPair(int master, int slave)
    {
        _master = master;
        SlaveFd = slave;
    }

    /// <summary>A pty from the guest's own devpts; owner (uid, gid as host ids) is who the slave should belong to, e.g.
    /// the guest's root and tty group seen from the host, so that it does not show up as nobody's inside.</summary>
    public static unsafe PtyPair OpenInGuest(int initPid, int rows, int cols, (uint Uid, uint Gid)? owner = null)
    {
        var ptmx = $"/proc/{initPid}/root/dev/pts/ptmx";
        var master = OpenInGuestRoot(initPid, "dev/pts/ptmx", Libc.O_RDWR | Libc.O_NOCTTY | Libc.O_CLOEXEC);
        if (master < 0) throw SystemCallException.FromLastError($"open {ptmx}");
        var unlock = 0;
        if (Libc.Ioctl(master, Libc.TIOCSPTLCK, &unlock) != 0)
        {
            var e = SystemCallException.FromLastError($"ioctl TIOCSPTLCK {ptmx}");
            Libc.Close(master);
            throw e;
        }
        // TIOCGPTPEER opens the slave through the master, without a path lookup in the guest's /dev/pts.
        var slave = Libc.Ioctl(master, Libc.TIOCGPTPEER, (void*)(nint)(Libc.O_RDWR | Libc.O_NOCTTY));
        if (slave < 0)
        {
            var e = SystemCallException.FromLastError($"ioctl TIOCGPTPEER {ptmx}");
            Libc.Close(master);
            throw e;
        }
        var pair = new PtyPair(master, slave);
        if (owner is var (uid, gid) && Libc.Fchown(slave, uid, gid) != 0)
        {
            var e = SystemCallException.FromLastError($"fchown pty of {ptmx} to {uid}:{gid}");
            pair.Dispose();
            throw e;
        }
        if (rows > 0 && cols > 0) pair.Resize(rows, cols);
        return pair;
    }

    /// <summary>
    /// Opens a path inside a guest as the agent (host root) without letting the guest redirect it: the guest owns its
    /// tree and may have put a symlink there, which a plain open through /proc/PID/root would resolve against the
    /// agent's own root. Resolution stays below the guest's root and follows no links at all.
    /// </summary>
    private static int OpenInGuestRoot(int initPid, string relativePath, int flags)
    {
        var root = Libc.Open($"/proc/{initPid}/root", Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (root < 0) return -1;
        try
        {
            return Libc.Openat2(root, relativePath, new Libc.OpenHow
            {
                Flags = (ulong)flags,
                Resolve = Libc.RESOLVE_IN_ROOT | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS,
            });
        }
        finally
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            Libc.Close(root);
            System.Runtime.InteropServices.Marshal.SetLastPInvokeError(errno);
        }
    }

    public unsafe void Resize(int rows, int cols)
    {
        var size = new Libc.WinSize { Rows = (ushort)rows, Cols = (ushort)cols };
        if (_master >= 0) _ = Libc.Ioctl(_master, Libc.TIOCSWINSZ, &size);
    }

    public void CloseSlave()
    {
        if (SlaveFd >= 0) Libc.Close(SlaveFd);
        SlaveFd = -1;
    }

    internal Stream TakeMasterReader()
    {
        var dup = Dup(_master);
        return new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(dup, ownsHandle: true), FileAccess.Read, 1);
    }

    internal Stream TakeMasterWriter()
    {
        var dup = Dup(_master);
        return new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(dup, ownsHandle: true), FileAccess.Write, 1);
    }

    private static int Dup(int fd)
    {
        var copy = Libc.Fcntl(fd, Libc.F_DUPFD_CLOEXEC, 3);
        return copy >= 0 ? copy : throw SystemCallException.FromLastError("fcntl F_DUPFD_CLOEXEC");
    }

    public void Dispose()
    {
        CloseSlave();
        if (_master >= 0) Libc.Close(_master);
        _master = -1;
    }
}
