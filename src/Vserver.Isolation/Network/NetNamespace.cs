using System.Runtime.ExceptionServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Network;

/// <summary>
/// A network namespace bound to a file (as `ip netns add` makes one, at a path of our own), and work done inside it. A
/// socket belongs to the namespace of the thread that made it, and a /proc/sys/net file to that of the thread that
/// opened it; so that work runs on a thread of its own that joins the namespace (setns) and ends with the work. A pool
/// thread is never moved: it would carry the namespace into whatever ran on it next.
/// </summary>
public static class NetNamespace
{
    /// <summary>A new network namespace, kept alive by a bind mount of it on <paramref name="path"/> (a file created if
    /// missing; another bind may already be there, from a create that was retried).</summary>
    public static void Create(string path) => OnThread(() =>
    {
        var fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_CLOEXEC, 0b100_100_100);
        var created = fd >= 0;
        if (created) Libc.Close(fd);
        else if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.EEXIST) throw SystemCallException.FromLastError($"create {path}");
        try
        {
            // Only this thread moves, and it ends when this is done. /proc/self would name the process's first
            // thread, which stays where it is.
            if (Libc.Unshare(Libc.CLONE_NEWNET) != 0) throw SystemCallException.FromLastError($"unshare network namespace for {path}");
            if (Libc.Mount("/proc/thread-self/ns/net", path, null, Libc.MS_BIND, 0) != 0)
                throw SystemCallException.FromLastError($"bind mount /proc/thread-self/ns/net on {path}");
        }
        catch
        {
            if (created) File.Delete(path);
            throw;
        }
        return 0;
    });

    /// <summary>Runs <paramref name="action"/> inside the namespace bound at <paramref name="path"/>, on a thread that
    /// joins it first and ends after; its exception is rethrown here.</summary>
    public static T Run<T>(string path, Func<T> action) => OnThread(() =>
    {
        using (var ns = Open(path))
        {
            if (Libc.Setns((int)ns.DangerousGetHandle(), Libc.CLONE_NEWNET) != 0)
                throw SystemCallException.FromLastError($"setns {path}", "is it a network namespace?");
        }
        return action();
    });

    /// <summary>The namespace file, opened: for IFLA_NET_NS_FD (a link moved or made into it) and setns.</summary>
    internal static SafeFileHandle Open(string path)
    {
        var fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw SystemCallException.FromLastError($"open {path}");
    }

    /// <summary>Sets sysctl <paramref name="key"/> (net.ipv4.ping_group_range) as `sysctl -w` does, in the namespace of
    /// the calling thread: call it inside <see cref="Run"/>; <paramref name="path"/> names that namespace in a failure.</summary>
    public static void WriteSysctl(string path, string key, string value)
    {
        var file = "/proc/sys/" + key.Replace('.', '/');
        var fd = Libc.Open(file, Libc.O_WRONLY | Libc.O_TRUNC | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw SystemCallException.FromLastError($"open {file} in {path}");
        try
        {
            var bytes = Encoding.ASCII.GetBytes(value + "\n");
            unsafe
            {
                fixed (byte* b = bytes)
                    if (Libc.Write(fd, b, bytes.Length) < 0) throw SystemCallException.FromLastError($"write '{value}' to {file} in {path}");
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    private static T OnThread<T>(Func<T> work)
    {
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = work();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        { IsBackground = true, Name = "vserver netns" };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }
}
