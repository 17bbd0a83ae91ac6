using System.Runtime.InteropServices;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>
/// An exclusive flock(2) on a lock file, waited for and held until disposed. open(2) + flock(2) directly: a .NET
/// FileStream takes a non-blocking flock of its own (LOCK_SH unless FileShare.None), which fails instead of waiting
/// while another holder has the lock.
/// </summary>
public sealed class FileLock : IDisposable
{
    private int _fd;

    private FileLock(int fd) => _fd = fd;

    /// <summary>Waits for the lock on <paramref name="path"/> (created 0600 if missing).</summary>
    public static FileLock Acquire(string path)
    {
        var fd = Libc.Open(path, Libc.O_RDWR | Libc.O_CREAT | Libc.O_CLOEXEC, 0b110_000_000);
        if (fd < 0) throw SystemCallException.FromLastError($"open {path}");
        while (Libc.Flock(fd, Libc.LOCK_EX) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.EINTR) continue;
            Libc.Close(fd);
            throw new SystemCallException($"flock {path}", errno);
        }
        return new FileLock(fd);
    }

    public void Dispose()
    {
        // Closing the fd drops the lock.
        if (Interlocked.Exchange(ref _fd, -1) is >= 0 and var fd) Libc.Close(fd);
    }
}
