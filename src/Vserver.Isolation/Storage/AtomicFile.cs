using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>Config and state files are replaced whole: write a temp file, fsync, rename, fsync the directory.
/// A crash leaves either the old or the new content, never a torn file.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string content, string? beneath = null) =>
        WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(content), beneath);

    /// <summary>Replaces <paramref name="path"/> whole. With <paramref name="beneath"/> (the state or run root) its
    /// directory is reached as <see cref="StateFile"/> reaches one, through no link and not outside that root; without,
    /// the directory itself must not be a link. The temp file is made new (O_EXCL, O_NOFOLLOW), so nothing planted under
    /// its name is written through, and the rename replaces whatever is at the name, a link included, never its target.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes, string? beneath = null)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        var temp = $".{name}.tmp-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}";
        using var dirHandle = beneath is null ? OpenDirectory(dir) : StateFile.OpenDirectory(beneath, dir);
        var dirFd = dirHandle.DangerousGetHandle().ToInt32();
        using (var file = CreateNew(dirFd, dir, temp))
        {
            try
            {
                RandomAccess.Write(file, bytes, 0);
                if (Libc.Fsync(file.DangerousGetHandle().ToInt32()) != 0) throw Failed("fsync", Path.Combine(dir, temp));
            }
            catch
            {
                _ = Libc.Unlinkat(dirFd, temp, 0);
                throw;
            }
        }
        if (Libc.Renameat(dirFd, temp, dirFd, name) != 0)
        {
            var error = Failed("rename", full);
            _ = Libc.Unlinkat(dirFd, temp, 0);
            throw error;
        }
        _ = Libc.Fsync(dirFd);
    }

    private static Microsoft.Win32.SafeHandles.SafeFileHandle OpenDirectory(string dir)
    {
        var fd = Libc.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno == Errno.ENOENT) throw new DirectoryNotFoundException($"{dir} is missing");
            throw Failed("open", dir, errno);
        }
        return new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>The temp file, made new; one left by a writer that died (same pid and thread after a restart) is removed first.</summary>
    private static Microsoft.Win32.SafeHandles.SafeFileHandle CreateNew(int dirFd, string dir, string temp)
    {
        const int flags = Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC;
        var fd = Libc.Openat(dirFd, temp, flags, 0x1B6 /* 0666, less the umask */);
        if (fd < 0 && System.Runtime.InteropServices.Marshal.GetLastPInvokeError() == Errno.EEXIST && Libc.Unlinkat(dirFd, temp, 0) == 0)
            fd = Libc.Openat(dirFd, temp, flags, 0x1B6);
        if (fd < 0) throw Failed("create", Path.Combine(dir, temp));
        return new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
    }

    private static StateFileException Failed(string operation, string path) =>
        Failed(operation, path, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());

    private static StateFileException Failed(string operation, string path, int errno) =>
        new(path, SystemCallException.Format($"{operation} {path}", errno), errno);

    /// <summary>Deletes a directory tree, renamed first to a dot-name beside it (".NAME.WHY-GUID"): a crash mid-delete
    /// leaves a hidden leftover for the owner's start-up clean-up, never half a tree under the real name.</summary>
    public static void DeleteDirectory(string dir, string why)
    {
        if (new FileInfo(dir).LinkTarget is not null)
        {
            // A link planted where a directory belongs: remove the link, never the tree it points to.
            File.Delete(dir);
            return;
        }
        var doomed = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(dir))!, $".{Path.GetFileName(dir)}.{why}-{Guid.NewGuid():N}");
        try
        {
            Directory.Move(dir, doomed);
        }
        catch (IOException e) when (e.HResult is 28 or 122) // ENOSPC, EDQUOT
        {
            // The longer name needed a new directory block on a full disk: deleting in place is what frees space.
            Directory.Delete(dir, recursive: true);
            return;
        }
        Directory.Delete(doomed, recursive: true);
    }

    /// <summary>File.Delete that is also fine when the directory is gone (a run directory after a reboot or a crash
    /// before it was made).</summary>
    public static void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    public static void FsyncDirectory(string dir)
    {
        var fd = Libc.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) return;
        _ = Libc.Fsync(fd);
        Libc.Close(fd);
    }
}
