using Errno = Vserver.Isolation.Interop.Errno;
using System.Text;

namespace Vserver.Isolation.Cgroups;

/// <summary>
/// File access for cgroupfs. The <c>Try*</c> primitives return 0 or the errno and are virtual so
/// tests can put a simulated kernel on top of a temp directory; the non-virtual helpers turn errnos
/// into <see cref="CgroupException"/>s.
/// </summary>
internal class CgroupFileSystem
{
    public static CgroupFileSystem Native { get; } = new();

    /// <summary>Writes the whole value with one write() call (open O_WRONLY|O_TRUNC, never creates the file).</summary>
    public virtual unsafe int TryWrite(string path, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        int fd = OpenRetrying(path, CgroupNative.O_WRONLY | CgroupNative.O_TRUNC | CgroupNative.O_CLOEXEC, out int errno);
        if (fd < 0)
        {
            return errno;
        }

        try
        {
            fixed (byte* p = bytes)
            {
                nint written;
                do
                {
                    written = CgroupNative.Write(fd, p, (nuint)bytes.Length);
                    errno = written < 0 ? LastErrno() : 0;
                }
                while (written < 0 && errno == Errno.EINTR);

                if (written < 0)
                {
                    return errno;
                }

                return written == bytes.Length ? 0 : Errno.EIO;
            }
        }
        finally
        {
            _ = CgroupNative.Close(fd);
        }
    }

    public virtual unsafe int TryRead(string path, out string content)
    {
        content = string.Empty;
        int fd = OpenRetrying(path, CgroupNative.O_RDONLY | CgroupNative.O_CLOEXEC, out int errno);
        if (fd < 0)
        {
            return errno;
        }

        try
        {
            using var buffer = new MemoryStream();
            byte[] chunk = new byte[8192];
            fixed (byte* p = chunk)
            {
                while (true)
                {
                    nint n = CgroupNative.Read(fd, p, (nuint)chunk.Length);
                    if (n < 0)
                    {
                        errno = LastErrno();
                        if (errno == Errno.EINTR)
                        {
                            continue;
                        }

                        return errno;
                    }

                    if (n == 0)
                    {
                        break;
                    }

                    buffer.Write(chunk, 0, (int)n);
                }
            }

            content = Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
            return 0;
        }
        finally
        {
            _ = CgroupNative.Close(fd);
        }
    }

    public virtual int TryMakeDirectory(string path) =>
        CgroupNative.MkDir(path, 0x1ED /* 0755 */) == 0 ? 0 : LastErrno();

    public virtual int TryRemoveDirectory(string path) =>
        CgroupNative.RmDir(path) == 0 ? 0 : LastErrno();

    public virtual int TryKill(int pid) =>
        CgroupNative.Kill(pid, CgroupNative.SIGKILL) == 0 ? 0 : LastErrno();

    public virtual bool FileExists(string path) => File.Exists(path);

    public virtual bool DirectoryExists(string path) => Directory.Exists(path);

    public virtual IReadOnlyList<string> SubDirectories(string path)
    {
        try
        {
            return Directory.GetDirectories(path);
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
    }

    // ---- throwing helpers ----

    /// <summary>Writes or throws <c>write 'path': ENAME (detail)</c>; <paramref name="hint"/> may explain an errno.</summary>
    public void Write(string path, string value, Func<int, string?>? hint = null)
    {
        int errno = TryWrite(path, value);
        if (errno != 0)
        {
            throw CgroupException.FromErrno("write", path, errno, hint?.Invoke(errno));
        }
    }

    public string Read(string path)
    {
        int errno = TryRead(path, out string content);
        return errno == 0 ? content : throw CgroupException.FromErrno("read", path, errno);
    }

    /// <summary>Reads the file, or returns null when it does not exist.</summary>
    public string? ReadIfExists(string path)
    {
        int errno = TryRead(path, out string content);
        return errno switch
        {
            0 => content,
            Errno.ENOENT => null,
            _ => throw CgroupException.FromErrno("read", path, errno),
        };
    }

    /// <summary>Creates the directory; returns false when it already existed.</summary>
    public bool MakeDirectory(string path)
    {
        int errno = TryMakeDirectory(path);
        return errno switch
        {
            0 => true,
            Errno.EEXIST => false,
            _ => throw CgroupException.FromErrno("mkdir", path, errno),
        };
    }

    private static int OpenRetrying(string path, int flags, out int errno)
    {
        int fd;
        do
        {
            fd = CgroupNative.Open(path, flags, 0);
            errno = fd < 0 ? LastErrno() : 0;
        }
        while (fd < 0 && errno == Errno.EINTR);

        return fd;
    }

    private static int LastErrno() => System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
}
