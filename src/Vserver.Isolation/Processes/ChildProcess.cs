using System.Runtime.InteropServices;
using System.Text;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Processes;

/// <summary>Starts programs with exactly the fds we choose as 0, 1 and 2 (pipes, a pty slave, a log file), which
/// <see cref="System.Diagnostics.Process"/> cannot do. The child is reaped by <see cref="ExitWatcher"/>.</summary>
public static class ChildProcess
{
    public static unsafe ProcessHandle Spawn(string path, IReadOnlyList<string> argv, IReadOnlyList<string>? env,
        int stdinFd, int stdoutFd, int stderrFd, bool newSession = false)
    {
        var actions = NativeMemory.AllocZeroed(256);
        var attr = NativeMemory.AllocZeroed(512);
        var sigset = NativeMemory.AllocZeroed(128);
        var strings = new List<nint>();
        try
        {
            Check(Libc.PosixSpawnFileActionsInit(actions), "PosixSpawnFileActionsInit");
            Check(Libc.PosixSpawnFileActionsAddDup2(actions, stdinFd, 0), "PosixSpawnFileActionsAddDup2");
            Check(Libc.PosixSpawnFileActionsAddDup2(actions, stdoutFd, 1), "PosixSpawnFileActionsAddDup2");
            Check(Libc.PosixSpawnFileActionsAddDup2(actions, stderrFd, 2), "PosixSpawnFileActionsAddDup2");
            Check(Libc.PosixSpawnAttrInit(attr), "PosixSpawnAttrInit");
            // The runtime's threads block or handle signals in ways a new program must not inherit.
            Check(Libc.SigEmptySet(sigset), "SigEmptySet");
            Check(Libc.PosixSpawnAttrSetSigMask(attr, sigset), "PosixSpawnAttrSetSigMask");
            Check(Libc.SigFillSet(sigset), "SigFillSet");
            Check(Libc.PosixSpawnAttrSetSigDefault(attr, sigset), "PosixSpawnAttrSetSigDefault");
            var flags = (short)(Libc.POSIX_SPAWN_SETSIGMASK | Libc.POSIX_SPAWN_SETSIGDEF | (newSession ? Libc.POSIX_SPAWN_SETSID : 0));
            Check(Libc.PosixSpawnAttrSetFlags(attr, flags), "PosixSpawnAttrSetFlags");

            var argvPtr = ToNativeArray(argv, strings);
            var envPtr = ToNativeArray(env ?? DefaultEnvironment(), strings);
            var rc = Libc.PosixSpawn(out var pid, path, actions, attr, (byte**)argvPtr, (byte**)envPtr);
            if (rc != 0) throw new SystemCallException($"posix_spawn {path}", rc);
            return ProcessHandle.ForChild(pid);
        }
        finally
        {
            _ = Libc.PosixSpawnFileActionsDestroy(actions);
            _ = Libc.PosixSpawnAttrDestroy(attr);
            foreach (var p in strings) NativeMemory.Free((void*)p);
            NativeMemory.Free(actions);
            NativeMemory.Free(attr);
            NativeMemory.Free(sigset);
        }
    }

    /// <summary>Starts a long-running program in a session of its own (so it outlives its parent's session), stdin
    /// /dev/null and stdout and stderr into <paramref name="logPath"/> (created or truncated, 0600).</summary>
    public static ProcessHandle SpawnLogged(string path, IReadOnlyList<string> argv, string logPath)
    {
        var devNull = OpenDevNull();
        var log = Libc.Open(logPath, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_TRUNC | Libc.O_CLOEXEC, 0x180);
        try
        {
            if (log < 0) throw SystemCallException.FromLastError($"open {logPath}");
            return Spawn(path, argv, null, devNull, log, log, newSession: true);
        }
        finally
        {
            if (log >= 0) Libc.Close(log);
            Libc.Close(devNull);
        }
    }

    /// <summary>A close-on-exec fd of /dev/null, for a child's stdin or unused output.</summary>
    internal static int OpenDevNull()
    {
        var fd = Libc.Open("/dev/null", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        return fd >= 0 ? fd : throw SystemCallException.FromLastError("open /dev/null");
    }

    private static void Check(int rc, string operation)
    {
        if (rc != 0) throw new SystemCallException(operation, rc);
    }

    private static IReadOnlyList<string> DefaultEnvironment() =>
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"];

    private static unsafe nint ToNativeArray(IReadOnlyList<string> items, List<nint> owned)
    {
        var array = (nint*)NativeMemory.AllocZeroed((nuint)(items.Count + 1), (nuint)sizeof(nint));
        owned.Add((nint)array);
        for (var i = 0; i < items.Count; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(items[i]);
            var s = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
            bytes.CopyTo(new Span<byte>(s, bytes.Length));
            s[bytes.Length] = 0;
            owned.Add((nint)s);
            array[i] = (nint)s;
        }
        return (nint)array;
    }
}

/// <summary>A pipe whose ends are plain fds: the parent's end is close-on-exec, the child's end is dup'ed into place.</summary>
public sealed class NativePipe : IDisposable
{
    public int ReadFd { get; private set; } = -1;
    public int WriteFd { get; private set; } = -1;

    public unsafe NativePipe()
    {
        var fds = stackalloc int[2];
        if (Libc.Pipe2(fds, Libc.O_CLOEXEC) != 0) throw SystemCallException.FromLastError("pipe2");
        ReadFd = fds[0];
        WriteFd = fds[1];
    }

    /// <summary>Takes ownership of the read end as a stream (for the parent).</summary>
    public Stream TakeReader()
    {
        var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(ReadFd, ownsHandle: true), FileAccess.Read, 1);
        ReadFd = -1;
        return stream;
    }

    public Stream TakeWriter()
    {
        var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(WriteFd, ownsHandle: true), FileAccess.Write, 1);
        WriteFd = -1;
        return stream;
    }

    public void CloseRead()
    {
        if (ReadFd >= 0) Libc.Close(ReadFd);
        ReadFd = -1;
    }

    public void CloseWrite()
    {
        if (WriteFd >= 0) Libc.Close(WriteFd);
        WriteFd = -1;
    }

    public void Dispose()
    {
        CloseRead();
        CloseWrite();
    }
}
