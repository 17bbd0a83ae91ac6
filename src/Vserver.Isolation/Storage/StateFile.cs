using System.Text;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>What a path under a root is, seen without following it.</summary>
public enum StateEntry { Missing, RegularFile, Directory, SymbolicLink, Fifo, Socket, CharacterDevice, BlockDevice }

/// <summary>A path under a root the agent owns that is not what it must be (a link, a FIFO, a directory where a file
/// belongs, outside the root), or could not be opened: one line naming the path, with errno and operation where a
/// system call failed. HResult is the errno, as for the runtime's own IOExceptions.</summary>
public sealed class StateFileException : IOException
{
    public StateFileException(string path, string message, int errno = 0) : base(message)
    {
        Path = path;
        Errno = errno;
        if (errno != 0) HResult = errno;
    }

    public string Path { get; }
    public int Errno { get; }
}

/// <summary>
/// The one way the agent opens what lies under its state and run roots. Anyone who can write there (an operator's
/// slip, a restored backup, a guest's files reaching the host) could put a FIFO where a config belongs (an open blocks
/// forever), or a link to /etc/shadow or to a host directory (the agent would read, mount or write through it as root).
/// So every path is resolved beneath its root with no symbolic link followed (openat2 RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS; on kernels before 5.6, one component at a time with O_NOFOLLOW), and what it names is checked on
/// the opened descriptor: a regular file where a file belongs, a directory where a directory does.
/// </summary>
public static class StateFile
{
    /// <summary>No config, record or pid file comes near this; anything larger is not one (and /dev/zero never ends).</summary>
    public const int MaxBytes = 4 << 20;

    private const ulong Resolve = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS;

    /// <summary>Whether openat2 is used (kernel 5.6 and later); tests turn it off to exercise the walk.</summary>
    internal static bool UseOpenat2 { get; set; } = true;

    /// <summary>The file's text, or null when nothing is at <paramref name="path"/>.</summary>
    public static string? TryReadAllText(string root, string path) =>
        TryReadAllBytes(root, path) is { } bytes ? Encoding.UTF8.GetString(bytes) : null;

    /// <summary>The file's text; its absence is an error like any other.</summary>
    public static string ReadAllText(string root, string path) =>
        TryReadAllText(root, path) ?? throw new StateFileException(path, $"{path} is missing", Errno.ENOENT);

    /// <summary>The file's bytes, or null when nothing is at <paramref name="path"/>; anything there but a regular file
    /// (a link, a FIFO, a socket, a device, a directory) is a <see cref="StateFileException"/>.</summary>
    public static byte[]? TryReadAllBytes(string root, string path)
    {
        using var handle = OpenRegularFile(root, path);
        if (handle is null) return null;
        var size = Status(handle.DangerousGetHandle().ToInt32(), path).Size;
        if (size > MaxBytes)
            throw new StateFileException(path, $"{path} is {size} bytes, more than any state file holds ({MaxBytes >> 20}M)");
        var buffer = new byte[size];
        var read = 0;
        while (read < buffer.Length)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(read), read);
            if (n == 0) break;
            read += n;
        }
        return read == buffer.Length ? buffer : buffer[..read];
    }

    /// <summary>Whether a regular file is at <paramref name="path"/> (a marker); anything else there is an error.</summary>
    public static bool RegularFileExists(string root, string path) => Inspect(root, path) switch
    {
        StateEntry.Missing => false,
        StateEntry.RegularFile => true,
        var other => throw NotA(path, other, "a regular file", root),
    };

    /// <summary>What is at <paramref name="path"/>, the last component not followed; a link on the way there or a path
    /// that leaves the root is an error.</summary>
    public static StateEntry Inspect(string root, string path)
    {
        var fd = Open(root, path, Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
        if (fd < 0) return StateEntry.Missing;
        try
        {
            return KindOf(Status(fd, path).Mode);
        }
        finally
        {
            Libc.Close(fd);
        }
    }

    /// <summary>Refuses anything but a directory at <paramref name="path"/> (missing, a link, a file) in one line.</summary>
    public static void RequireDirectory(string root, string path)
    {
        var kind = Inspect(root, path);
        if (kind != StateEntry.Directory) throw NotA(path, kind, "a directory", root);
    }

    /// <summary>Refuses anything but a regular file at <paramref name="path"/> (missing, a link, a FIFO, a device) in one line.</summary>
    public static void RequireRegularFile(string root, string path)
    {
        var kind = Inspect(root, path);
        if (kind != StateEntry.RegularFile) throw NotA(path, kind, "a regular file", root);
    }

    /// <summary>Why what is at <paramref name="path"/> is not <paramref name="expected"/>, in one line; null when it is,
    /// or when nothing is there.</summary>
    public static string? ShapeProblem(string root, string path, StateEntry expected)
    {
        try
        {
            var kind = Inspect(root, path);
            return kind == StateEntry.Missing || kind == expected ? null : NotA(path, kind, Describe(expected), root).Message;
        }
        catch (StateFileException e)
        {
            return e.Message;
        }
    }

    /// <summary>The directory at <paramref name="path"/>, opened for use with the *at calls (AtomicFile's writes).</summary>
    internal static SafeFileHandle OpenDirectory(string root, string path)
    {
        RequireDirectory(root, path);
        var fd = Open(root, path, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw new StateFileException(path, $"{path} is missing", Errno.ENOENT);
    }

    /// <summary>A regular file opened for reading, or null when nothing is there. Looked at through O_PATH first, so a
    /// FIFO or a device is never opened for real (opening a device can act: a tape rewinds), then opened with O_NONBLOCK
    /// and checked again to be the same regular file.</summary>
    private static SafeFileHandle? OpenRegularFile(string root, string path)
    {
        var kind = Inspect(root, path);
        if (kind == StateEntry.Missing) return null;
        if (kind != StateEntry.RegularFile) throw NotA(path, kind, "a regular file", root);
        var fd = Open(root, path, Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOFOLLOW | Libc.O_NOCTTY | Libc.O_CLOEXEC);
        if (fd < 0) return null;
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        var kindNow = KindOf(Status(fd, path).Mode);
        if (kindNow != StateEntry.RegularFile)
        {
            handle.Dispose();
            throw NotA(path, kindNow, "a regular file", root);
        }
        return handle;
    }

    /// <summary>Resolves <paramref name="path"/> beneath <paramref name="root"/>, following no link; -1 when nothing is
    /// there (ENOENT), every other failure a <see cref="StateFileException"/>.</summary>
    private static int Open(string root, string path, int flags)
    {
        var relative = Relative(root, path);
        var rootFd = Libc.Open(root, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (rootFd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno == Errno.ENOENT) return -1;
            throw Failure("open", root, errno, root);
        }
        try
        {
            if (relative.Length == 0) return Check(Libc.Openat(rootFd, ".", flags, 0), path, root);
            if (UseOpenat2)
            {
                var fd = Libc.Openat2(rootFd, relative, new Libc.OpenHow { Flags = (ulong)flags, Resolve = Resolve });
                if (fd >= 0 || System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.ENOSYS) return Check(fd, path, root);
                UseOpenat2 = false;
            }
            return Check(Walk(rootFd, relative, flags), path, root);
        }
        finally
        {
            Libc.Close(rootFd);
        }
    }

    /// <summary>openat2's resolution by hand: each directory on the way opened with O_NOFOLLOW and checked to be one.</summary>
    private static int Walk(int rootFd, string relative, int flags)
    {
        var parts = relative.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var current = Libc.Openat(rootFd, ".", Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (current < 0) return -1;
        for (var i = 0; i < parts.Length; i++)
        {
            if (parts[i] is "." or "..")
            {
                Libc.Close(current);
                System.Runtime.InteropServices.Marshal.SetLastPInvokeError(Errno.EXDEV);
                return -1;
            }
            var last = i == parts.Length - 1;
            var next = Libc.Openat(current, parts[i], last ? flags | Libc.O_NOFOLLOW : Libc.O_PATH | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            Libc.Close(current);
            if (next < 0)
            {
                System.Runtime.InteropServices.Marshal.SetLastPInvokeError(errno);
                return -1;
            }
            if (!last && (Libc.Fstat(next, out var stat) != 0 || (stat.Mode & Libc.S_IFMT) != Libc.S_IFDIR))
            {
                var isLink = (stat.Mode & Libc.S_IFMT) == Libc.S_IFLNK;
                Libc.Close(next);
                System.Runtime.InteropServices.Marshal.SetLastPInvokeError(isLink ? Errno.ELOOP : Errno.ENOTDIR);
                return -1;
            }
            current = next;
        }
        return current;
    }

    private static int Check(int fd, string path, string root)
    {
        if (fd >= 0) return fd;
        var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        return errno == Errno.ENOENT ? -1 : throw Failure("open", path, errno, root);
    }

    private static string Relative(string root, string path)
    {
        var relative = System.IO.Path.GetRelativePath(System.IO.Path.GetFullPath(root), System.IO.Path.GetFullPath(path));
        if (relative == ".") return "";
        if (relative == ".." || relative.StartsWith("../", StringComparison.Ordinal) || System.IO.Path.IsPathRooted(relative))
            throw new StateFileException(path, $"{path} is outside {root}", Errno.EXDEV);
        return relative;
    }

    private static Libc.Stat Status(int fd, string path) =>
        Libc.Fstat(fd, out var stat) == 0 ? stat
            : throw new StateFileException(path, SystemCallException.Format($"fstat {path}", System.Runtime.InteropServices.Marshal.GetLastPInvokeError()),
                System.Runtime.InteropServices.Marshal.GetLastPInvokeError());

    private static StateEntry KindOf(uint mode) => (mode & Libc.S_IFMT) switch
    {
        Libc.S_IFREG => StateEntry.RegularFile,
        Libc.S_IFDIR => StateEntry.Directory,
        Libc.S_IFLNK => StateEntry.SymbolicLink,
        Libc.S_IFIFO => StateEntry.Fifo,
        Libc.S_IFSOCK => StateEntry.Socket,
        Libc.S_IFBLK => StateEntry.BlockDevice,
        _ => StateEntry.CharacterDevice,
    };

    /// <summary>How a kind of entry is said in a message.</summary>
    public static string Describe(StateEntry kind) => kind switch
    {
        StateEntry.Missing => "missing",
        StateEntry.RegularFile => "a regular file",
        StateEntry.Directory => "a directory",
        StateEntry.SymbolicLink => "a symbolic link",
        StateEntry.Fifo => "a FIFO",
        StateEntry.Socket => "a unix socket",
        StateEntry.BlockDevice => "a block device",
        _ => "a character device",
    };

    private static StateFileException NotA(string path, StateEntry kind, string expected, string root) => kind switch
    {
        StateEntry.Missing => new StateFileException(path, $"{path} is missing", Errno.ENOENT),
        StateEntry.SymbolicLink => new StateFileException(path,
            $"{path} is a symbolic link, not {expected}; nothing under {root} is followed", Errno.ELOOP),
        _ => new StateFileException(path, $"{path} is {Describe(kind)}, not {expected}"),
    };

    private static StateFileException Failure(string operation, string path, int errno, string root) => errno switch
    {
        Errno.ELOOP => new StateFileException(path,
            $"{operation} {path}: ELOOP (a symbolic link on the way); nothing under {root} is followed", errno),
        Errno.EXDEV => new StateFileException(path, $"{operation} {path}: EXDEV (it leads outside {root})", errno),
        _ => new StateFileException(path, SystemCallException.Format($"{operation} {path}", errno), errno),
    };
}
