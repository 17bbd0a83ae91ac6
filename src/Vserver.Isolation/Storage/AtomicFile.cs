using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>Config and state files are replaced whole: write a temp file, fsync, rename, fsync the directory.
/// A crash leaves either the old or the new content, never a torn file.</summary>
public static partial class AtomicFile
{
    public static void WriteAllText(string path, string content) => WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(content));

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temp = Path.Combine(dir, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}");
        try
        {
            // Unbuffered (the bytes go in one write): a write that fails (ENOSPC) fails here, not again in Dispose.
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0, FileOptions.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        FsyncDirectory(dir);
    }

    /// <summary>Deletes a directory tree, renamed first to a dot-name beside it (".NAME.WHY-GUID"): a crash mid-delete
    /// leaves a hidden leftover for the owner's start-up clean-up, never half a tree under the real name.</summary>
    public static void DeleteDirectory(string dir, string why)
    {
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
        var fd = Libc.Open(dir, Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd < 0) return;
        _ = Fsync(fd);
        Libc.Close(fd);
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);
}
