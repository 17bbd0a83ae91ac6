using System.Runtime.InteropServices;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Processes;

/// <summary>How a process ended. For processes we did not spawn (adopted after an agent restart) only the fact is known.</summary>
public readonly record struct ProcessExit(int? Code, int? Signal)
{
    /// <summary>The shell convention: the code, or 128 + signal.</summary>
    public int ShellCode => Code ?? (Signal is { } s ? 128 + s : 255);

    public override string ToString() => Code is { } c ? $"exited with code {c}" : Signal is { } s ? $"killed by signal {s}" : "ended";
}

/// <summary>A process held by a pidfd, so a recycled pid can never be signalled by mistake.</summary>
public sealed class ProcessHandle : IDisposable
{
    private readonly int _pidfd;
    private readonly bool _isChild;
    private Task<ProcessExit>? _exited;
    private int _disposed;

    private ProcessHandle(int pid, int pidfd, bool isChild)
    {
        Pid = pid;
        _pidfd = pidfd;
        _isChild = isChild;
    }

    public int Pid { get; }

    internal static ProcessHandle ForChild(int pid)
    {
        var fd = Libc.PidfdOpen(pid);
        if (fd < 0) throw SystemCallException.FromLastError($"pidfd_open {pid}");
        return new ProcessHandle(pid, fd, isChild: true);
    }

    /// <summary>A process this agent did not start (or started in an earlier life); null if it is gone.</summary>
    public static ProcessHandle? TryOpen(int pid)
    {
        var fd = Libc.PidfdOpen(pid);
        return fd < 0 ? null : new ProcessHandle(pid, fd, isChild: false);
    }

    /// <summary>Completes when the process ends; children are reaped and report their status.</summary>
    public Task<ProcessExit> Exited => LazyInitializer.EnsureInitialized(ref _exited, () => ExitWatcher.Shared.Watch(_pidfd, _isChild));

    public bool HasExited => Exited.IsCompleted;

    /// <summary>Sends a signal; false if the process is already gone.</summary>
    public bool Signal(int signal)
    {
        if (Libc.PidfdSendSignal(_pidfd, signal) == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.ESRCH) return false;
        throw new SystemCallException($"pidfd_send_signal {Pid} signal {signal}", errno);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // epoll still holds a watched pidfd: close it once the process has ended.
        if (_exited is null || _exited.IsCompleted) Libc.Close(_pidfd);
        else _exited.ContinueWith(_ => Libc.Close(_pidfd), TaskScheduler.Default);
    }
}

/// <summary>One thread waits for every watched process with epoll over pidfds: a host runs hundreds of guests.</summary>
internal sealed class ExitWatcher
{
    public static readonly ExitWatcher Shared = new();

    private readonly int _epoll;
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, (int Pidfd, bool IsChild, TaskCompletionSource<ProcessExit> Done)> _watched = [];
    private ulong _next;

    private ExitWatcher()
    {
        _epoll = Libc.EpollCreate1(Libc.O_CLOEXEC);
        if (_epoll < 0) throw SystemCallException.FromLastError("epoll_create1");
        new Thread(Loop) { IsBackground = true, Name = "exit-watcher" }.Start();
    }

    public unsafe Task<ProcessExit> Watch(int pidfd, bool isChild)
    {
        var done = new TaskCompletionSource<ProcessExit>(TaskCreationOptions.RunContinuationsAsynchronously);
        ulong id;
        lock (_lock)
        {
            id = ++_next;
            _watched[id] = (pidfd, isChild, done);
        }
        var ev = new Libc.EpollEvent { Events = Libc.EPOLLIN, Data = id };
        if (Libc.EpollCtl(_epoll, Libc.EPOLL_CTL_ADD, pidfd, &ev) != 0)
        {
            var error = SystemCallException.FromLastError("epoll_ctl add pidfd");
            lock (_lock) _watched.Remove(id);
            done.SetException(error);
        }
        return done.Task;
    }

    private unsafe void Loop()
    {
        const int max = 64;
        var events = stackalloc Libc.EpollEvent[max];
        while (true)
        {
            var n = Libc.EpollWait(_epoll, events, max, -1);
            if (n < 0) continue; // EINTR
            for (var i = 0; i < n; i++)
            {
                (int Pidfd, bool IsChild, TaskCompletionSource<ProcessExit> Done) entry;
                lock (_lock)
                {
                    if (!_watched.Remove(events[i].Data, out entry)) continue;
                }
                Libc.EpollCtl(_epoll, Libc.EPOLL_CTL_DEL, entry.Pidfd, null);
                entry.Done.SetResult(entry.IsChild ? Reap(entry.Pidfd) : default);
            }
        }
    }

    private static unsafe ProcessExit Reap(int pidfd)
    {
        Libc.SigInfo info = default;
        if (Libc.Waitid(Libc.P_PIDFD, pidfd, &info, Libc.WEXITED) != 0) return default;
        return info.Code == Libc.CLD_EXITED ? new ProcessExit(info.Status, null) : new ProcessExit(null, info.Status);
    }
}
