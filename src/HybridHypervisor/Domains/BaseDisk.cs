using System.Globalization;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Storage;
using Vserver.Isolation.Processes;

namespace HybridHypervisor.Domains;

/// <summary>
/// The per-image base of every domain's root disk: STATEROOT/images/NAME/disk.ext4, a raw ext4 image made once from
/// the image's rootfs/ with <c>mkfs.ext4 -d</c> (no loop mount, no root filesystem tricks) and never written again:
/// it is the read-only backing file of every domain's qcow2 overlay (<see cref="DomainDisk"/>).
///
/// Measured for images/busybox (rootfs 2,098,925 bytes apparent, 308 entries; Debian 12, mke2fs 1.47.0):
/// size 35 MiB (36,700,160 bytes, 4 KiB blocks, 8,960 inodes), about 6.4 MiB actually allocated on the host
/// (mke2fs leaves the free space sparse), mkfs.ext4 takes about 20 ms. e2fsck -fn passes.
/// </summary>
public static class BaseDisk
{
    public const string FileName = "disk.ext4";
    public const string LockName = "disk.lock";
    private const long MiB = 1024 * 1024;

    /// <summary>
    /// The base's size for a rootfs of <paramref name="rootfsBytes"/> (the larger of du's apparent and allocated
    /// sizes): 1.3 times that plus 32 MiB for the superblock, group descriptors, bitmaps, inode tables and the
    /// journal, rounded up to a whole MiB.
    /// </summary>
    public static long SizeFor(long rootfsBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rootfsBytes);
        var bytes = checked(rootfsBytes + (rootfsBytes * 3 + 9) / 10 + 32 * MiB);
        return (bytes + MiB - 1) / MiB * MiB;
    }

    /// <summary>Inodes for the base: the mke2fs "small" ratio (one per 4 KiB) or, for trees of many tiny files,
    /// the tree's entries plus a quarter, whichever is larger.</summary>
    public static long InodesFor(long sizeBytes, long entries) => Math.Max(sizeBytes / 4096, entries + entries / 4 + 64);

    /// <summary>
    /// Returns imageDir/disk.ext4 and its size, building it from <paramref name="rootfsPath"/> first if it does not
    /// exist yet.
    ///
    /// Crash safety: mkfs writes a temp file next to the base; it is fsynced and only then renamed to disk.ext4
    /// (and the directory fsynced), so disk.ext4 either does not exist or is complete. A temp file left by a crash is
    /// removed by the next builder.
    ///
    /// Concurrency: builders take an exclusive flock(2) on imageDir/disk.lock (blocking) and re-check for disk.ext4
    /// after getting it, so of any number of concurrent callers (threads or processes) exactly one builds and the
    /// others then find the finished file. flock is per open file description, so it excludes threads of one
    /// process as well, and the kernel drops it if the holder dies. The lock file itself is left in place (removing
    /// it would let a waiter lock an unlinked inode while a newcomer locks a fresh one).
    /// </summary>
    public static (string Path, long SizeBytes) EnsureBase(string imageDir, string rootfsPath)
    {
        var basePath = Path.Combine(imageDir, FileName);
        // QEMU gets the base as a backing file and the image's rootfs is copied into it, as root: both must be what the
        // image store made, reached through no link from the images directory.
        var imagesRoot = Path.GetDirectoryName(Path.GetFullPath(imageDir))!;
        var problem = StateFile.ShapeProblem(imagesRoot, basePath, StateEntry.RegularFile)
            ?? StateFile.ShapeProblem(imagesRoot, rootfsPath, StateEntry.Directory);
        if (problem is not null) throw new DiskException(problem);
        if (File.Exists(basePath)) return (basePath, new FileInfo(basePath).Length);
        if (!Directory.Exists(rootfsPath)) throw new DiskException($"image rootfs {rootfsPath} does not exist");

        try
        {
            using var held = FileLock.Acquire(Path.Combine(imageDir, LockName));
            return BuildLocked(imageDir, rootfsPath, basePath);
        }
        catch (SystemCallException e)
        {
            throw new DiskException(e.Message);
        }
    }

    private static (string Path, long SizeBytes) BuildLocked(string imageDir, string rootfsPath, string basePath)
    {
        if (File.Exists(basePath)) return (basePath, new FileInfo(basePath).Length);
        foreach (var stale in Directory.EnumerateFiles(imageDir, $".{FileName}.tmp-*")) File.Delete(stale);

        var (bytes, entries) = Measure(rootfsPath);
        var size = SizeFor(bytes);
        var temp = Path.Combine(imageDir, $".{FileName}.tmp-{Environment.ProcessId}");
        try
        {
            using (File.Create(temp)) { }
            HostProgram.Run("mkfs.ext4",
            [
                "-q", "-F", "-b", "4096", "-N", InodesFor(size, entries).ToString(CultureInfo.InvariantCulture),
                "-d", rootfsPath, "-L", "root", "-E", "root_owner=0:0", temp,
                (size / 1024).ToString(CultureInfo.InvariantCulture) + "k",
            ], timeout: TimeSpan.FromMinutes(10));
            using (var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite))
                stream.Flush(flushToDisk: true);
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            File.Move(temp, basePath, overwrite: false);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        AtomicFile.FsyncDirectory(imageDir);
        return (basePath, size);
    }

    /// <summary>The rootfs's size in bytes (the larger of du's apparent and allocated sizes) and its entry count.</summary>
    public static (long Bytes, long Entries) Measure(string rootfsPath)
    {
        static long Du(params string[] args) =>
            long.Parse(HostProgram.Run("du", args).Split('\t', 2)[0].Trim(), CultureInfo.InvariantCulture);
        var apparent = Du("-s", "-x", "-B1", "--apparent-size", rootfsPath);
        var allocated = Du("-s", "-x", "-B1", rootfsPath);
        var entries = Du("-s", "-x", "--inodes", rootfsPath);
        return (Math.Max(apparent, allocated), entries);
    }
}
