using Vserver.Isolation.Interop;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Guests;

public sealed class GuestStartException(string message) : Exception(message);

/// <summary>The guest's monitor (vsinit start) and the host pid of the guest's init.</summary>
public sealed record StartedGuest(ProcessHandle Monitor, int InitPid);

/// <summary>Parent side of vsinit: spawns it with a spec and reads its one-line answer.</summary>
public static class Vsinit
{
    /// <summary>Starts a guest: vsinit becomes its monitor, outliving this agent, and answers `started PID` once
    /// the guest's init has exec'd, or `error ...` with nothing left running.</summary>
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
        throw new GuestStartException(line is not null && line.StartsWith("error ", StringComparison.Ordinal)
            ? line[6..]
            : $"vsinit {exit} without reporting the guest's start ({line ?? "no output"})");
    }

    /// <summary>Runs a command inside a running guest: vsinit exec joins its namespaces and cgroups.</summary>
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

}

/// <summary>A command running inside a guest: its stdio and its exit.</summary>
public sealed class ExecProcess(ProcessHandle process, Stream stdin, Stream stdout, Stream? stderr, PtyPair? pty) : IGuestProcess
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
