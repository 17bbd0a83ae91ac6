using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Storage;

/// <summary>A mounted layer filesystem as statfs(2) reports it, which is what <c>df /</c> shows inside the guest (overlayfs
/// passes its upper filesystem's numbers through): its size less the filesystem's own metadata, what is used, what the
/// guest may still write.</summary>
public sealed record LayerUsage(long SizeBytes, long UsedBytes, long FreeBytes);

/// <summary>
/// A vserver's disk quota: its writable layer (the overlay's upper and work directories) lives in an ext4 filesystem of
/// its own, in a sparse image file loop-mounted on the host. This kernel has no ext4 or XFS quota support, so the
/// filesystem's size is the limit: a write past it fails with ENOSPC inside the guest and touches nothing else, and
/// <c>df /</c> inside shows it.
///
/// Made with <c>mkfs.ext4</c> (4 KiB blocks, no blocks reserved for root, one inode per 8 KiB, lazy inode table and
/// journal init: the file stays sparse). Measured (mke2fs 1.47.0): mkfs about 20 ms, a 2 GiB image allocates about
/// 1.2 MiB on the host; a 64M image shows 58M in df and takes 56M of writes before ENOSPC.
///
/// Growing: a mounted ext4 grows online (the loop device re-reads its file's size, resize2fs asks the kernel), but the
/// kernel allows that only to a holder of CAP_SYS_RESOURCE (ext4_resize_begin); without it a layer grows offline,
/// unmounted (e2fsck -f, then resize2fs on the file). Shrinking is refused: ext4 cannot shrink while mounted, and
/// an offline shrink could lose a guest's files to a miscount.
/// </summary>
public static class LayerImage
{
    private const long MiB = 1L << 20;
    public const long MinimumBytes = 16 * MiB;
    /// <summary>The largest ext4 with 4 KiB blocks that mke2fs makes without further options.</summary>
    public const long MaximumBytes = 16L << 40;
    private const int CapSysResource = 24;

    // ---- sizes ----

    /// <summary>Which of the quota's own rules <paramref name="bytes"/> breaks (see <see cref="QuotaError"/>), or null.</summary>
    public static QuotaProblem? QuotaProblem(long bytes) =>
        bytes < MinimumBytes ? Storage.QuotaProblem.BelowMinimum
        : bytes > MaximumBytes ? Storage.QuotaProblem.AboveMaximum
        : bytes % MiB != 0 ? Storage.QuotaProblem.NotWholeMib
        : null;

    /// <summary>The quota's own rules: whole MiB, at least <see cref="MinimumBytes"/>, at most <see cref="MaximumBytes"/>;
    /// the broken one in plain words, or null.</summary>
    public static string? QuotaMessage(long bytes) => QuotaProblem(bytes) switch
    {
        Storage.QuotaProblem.BelowMinimum =>
            $"disk quota {Show(bytes)} is below the minimum of 16M (an ext4 of less has little room beside its journal and tables)",
        Storage.QuotaProblem.AboveMaximum => $"disk quota {Show(bytes)} is above the maximum of 16T",
        Storage.QuotaProblem.NotWholeMib => $"disk quota {bytes} bytes is not a whole number of MiB",
        _ => null,
    };

    /// <summary>Refuses a quota whose layer could not hold a rewrite of every file of the guest's image (a package
    /// upgrade copies each one up into the layer) beside the filesystem's journal and tables; names the minimum.</summary>
    public static string? ImageFitMessage(long bytes, long imageBytes, string imageName)
    {
        var minimum = MinimumFor(imageBytes);
        if (bytes >= minimum) return null;
        var image = (imageBytes / (double)MiB).ToString("0.#", CultureInfo.InvariantCulture) + "M";
        return $"disk quota {Show(bytes)} is too small for image {imageName}: the layer must hold a rewrite of its {image} of files " +
               $"beside the ext4's journal and tables, which takes {Show(minimum)}";
    }

    /// <summary>Grow only: a smaller quota than the layer has is refused, naming both.</summary>
    public static string? GrowError(string guest, long currentBytes, long requestedBytes) =>
        requestedBytes >= currentBytes ? null
            : $"the disk quota of '{guest}' is {Show(currentBytes)}; shrinking it to {Show(requestedBytes)} is refused (an ext4 layer only grows)";

    /// <summary>The smallest quota (whole MiB, at least 16M) whose layer holds the image's files once more, plus a tenth
    /// for the blocks and directories they take.</summary>
    public static long MinimumFor(long imageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(imageBytes);
        var need = checked(imageBytes + imageBytes / 10);
        var size = Math.Max(MinimumBytes, (need + MiB - 1) / MiB * MiB);
        while (UsableBytes(size) < need) size += MiB;
        return size;
    }

    /// <summary>What a guest can write into a freshly made layer of <paramref name="sizeBytes"/>, estimated low: the size
    /// less the journal, the inode tables (256 bytes per 8 KiB), the clusters ext4 holds back (2%, at most 16M), bitmaps
    /// and group descriptors. Checked against df (statfs f_bavail) from 16M to 2G: never above it, at most 1.5M + 1% below.</summary>
    public static long UsableBytes(long sizeBytes) =>
        sizeBytes - JournalBytes(sizeBytes) - sizeBytes / 32 - Math.Min(sizeBytes / 50, 16 * MiB) - sizeBytes / 256 - MiB;

    /// <summary>The journal mke2fs gives an ext4 of this size with 4 KiB blocks (ext2fs_default_journal_size).</summary>
    public static long JournalBytes(long sizeBytes)
    {
        var blocks = sizeBytes / 4096;
        long journalBlocks = blocks switch
        {
            < 2048 => 0,
            < 32768 => 1024,
            < 256 * 1024 => 4096,
            < 512 * 1024 => 8192,
            < 4096 * 1024 => 16384,
            < 8192 * 1024 => 32768,
            < 16384 * 1024 => 65536,
            < 32768 * 1024 => 131072,
            _ => 262144,
        };
        return journalBlocks * 4096;
    }

    /// <summary>A quota in its unit: its rules make it a whole number of MiB (what is not, is said in bytes). Sizes
    /// shown any other way are the caller's to format (Vserver.Api's ByteSize, a layer up).</summary>
    private static string Show(long bytes) =>
        bytes > 0 && bytes % MiB == 0 ? (bytes / MiB).ToString(CultureInfo.InvariantCulture) + "M" : $"{bytes} bytes";

    // ---- the image ----

    /// <summary>Makes a sparse ext4 image of <paramref name="sizeBytes"/> at <paramref name="imagePath"/> holding an empty
    /// upper/ (owned by <paramref name="upperOwner"/>: the guest's root as a host id, since the upper layer's root is the
    /// guest's "/") and work/, put there by mkfs.ext4 -d from a staging tree beside the image, so no mount is needed.
    /// On failure nothing is left.</summary>
    public static void Create(string imagePath, long sizeBytes, uint upperOwner)
    {
        if (File.Exists(imagePath)) throw new DiskException($"disk quota image {imagePath} already exists");
        var staging = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(imagePath))!, $".{Path.GetFileName(imagePath)}.tree");
        try
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            var upper = Path.Combine(staging, "upper");
            Directory.CreateDirectory(upper);
            FileOwner.Chown(upper, upperOwner, upperOwner);
            Directory.CreateDirectory(Path.Combine(staging, "work"));
            using (var file = new FileStream(imagePath, FileMode.CreateNew, FileAccess.Write)) file.SetLength(sizeBytes);
            File.SetUnixFileMode(imagePath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            HostProgram.Run("mkfs.ext4",
            [
                "-q", "-F", "-b", "4096", "-m", "0", "-i", "8192", "-L", "vserver-layer",
                "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", "-d", staging, imagePath,
            ], timeout: TimeSpan.FromMinutes(5));
        }
        catch (HostProgramException e)
        {
            File.Delete(imagePath);
            throw new DiskException($"making the disk quota image {imagePath} failed: {e.Message}");
        }
        catch
        {
            File.Delete(imagePath);
            throw;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>Loop-mounts the image at <paramref name="mountpoint"/> unless something is mounted there already. The loop
    /// device clears itself when the filesystem is last unmounted; mount(8) reuses the device the file is already
    /// attached to, so a second mount of the same image shares its one superblock.</summary>
    public static void Mount(string imagePath, string mountpoint)
    {
        if (HostMounts.IsMountpoint(mountpoint)) return;
        if (!File.Exists(imagePath)) throw new DiskException($"disk quota image {imagePath} is missing");
        Directory.CreateDirectory(mountpoint);
        try
        {
            HostProgram.Run("mount", ["-t", "ext4", "-o", "loop", imagePath, mountpoint]);
        }
        catch (HostProgramException e)
        {
            throw new DiskException($"mounting the disk quota image {imagePath} on {mountpoint} failed: {e.Message}" +
                                    "; check it with: e2fsck -f " + imagePath);
        }
    }

    /// <summary>Detaches the layer's mount (lazily: the overlay of a guest that is still going away may hold it); the
    /// loop device goes with the last user. Nothing mounted is fine.</summary>
    public static void Unmount(string mountpoint) => HostMounts.Unmount(mountpoint);

    /// <summary>The size of the ext4 in the image, from its superblock (not the file's length, which a grow that failed
    /// half-way may have raised already).</summary>
    public static long FilesystemBytes(string imagePath)
    {
        var superblock = new byte[1024];
        using (var file = new FileStream(imagePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            file.Position = 1024;
            file.ReadExactly(superblock);
        }
        return FilesystemBytes(superblock) ?? throw new DiskException($"{imagePath} holds no ext4 filesystem (bad superblock magic)");
    }

    /// <summary>Block count times block size from an ext4 superblock (the 1024 bytes at offset 1024), or null if it is none.</summary>
    public static long? FilesystemBytes(ReadOnlySpan<byte> superblock)
    {
        if (superblock.Length < 1024 || BinaryPrimitives.ReadUInt16LittleEndian(superblock[0x38..]) != 0xEF53) return null;
        long blocks = BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x4..]);
        var is64Bit = (BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x60..]) & 0x80) != 0;
        if (is64Bit) blocks |= (long)BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x150..]) << 32;
        var logBlockSize = BinaryPrimitives.ReadUInt32LittleEndian(superblock[0x18..]);
        if (logBlockSize > 6) return null;
        return blocks * (1024L << (int)logBlockSize);
    }

    /// <summary>Grows an unmounted layer to <paramref name="sizeBytes"/>: the file, then e2fsck -f (resize2fs insists on a
    /// checked filesystem) and resize2fs. Refused while any loop device holds the file: resizing a mounted ext4 from
    /// outside would corrupt it.</summary>
    public static void GrowOffline(string imagePath, long sizeBytes)
    {
        if (LoopDevices(imagePath) is [var device, ..])
            throw new DiskException($"cannot grow {imagePath} offline: it is in use by {device}");
        if (FilesystemBytes(imagePath) >= sizeBytes) return;
        using (var file = new FileStream(imagePath, FileMode.Open, FileAccess.Write))
            if (file.Length < sizeBytes) file.SetLength(sizeBytes);
        // 0: clean, 1: errors corrected; more is a filesystem resize2fs must not touch.
        var (code, stdout, stderr) = HostProgram.TryRun("e2fsck", ["-f", "-p", imagePath], timeout: TimeSpan.FromMinutes(30));
        if (code > 1)
            throw new DiskException($"e2fsck -f -p {imagePath} exited {code} before growing it: {LastLine(stdout + stderr, code)}; repair it with: e2fsck -f {imagePath}");
        try
        {
            HostProgram.Run("resize2fs", [imagePath, (sizeBytes / 1024).ToString(CultureInfo.InvariantCulture) + "K"], timeout: TimeSpan.FromMinutes(30));
        }
        catch (HostProgramException e)
        {
            throw new DiskException($"growing {imagePath} to {Show(sizeBytes)} failed: {e.Message}");
        }
    }

    /// <summary>Grows the mounted layer to <paramref name="sizeBytes"/> while the guest uses it: the file, the loop
    /// device's capacity (LOOP_SET_CAPACITY), then resize2fs on the device, which asks the kernel to grow the
    /// filesystem online. Needs CAP_SYS_RESOURCE (see <see cref="CanGrowOnline"/>).</summary>
    public static void GrowOnline(string imagePath, string mountpoint, long sizeBytes)
    {
        var device = HostMounts.SourceOf(mountpoint) ?? throw new DiskException($"cannot grow {imagePath} online: nothing is mounted on {mountpoint}");
        if (!LoopDevices(imagePath).Contains(device))
            throw new DiskException($"cannot grow {imagePath} online: {mountpoint} is mounted from {device}, not from a loop device over it");
        using (var file = new FileStream(imagePath, FileMode.Open, FileAccess.Write))
            if (file.Length < sizeBytes) file.SetLength(sizeBytes);
        var fd = Libc.Open(device, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw SystemCallException.FromLastError($"open {device}");
        try
        {
            unsafe
            {
                if (Libc.Ioctl(fd, Libc.LOOP_SET_CAPACITY, null) != 0)
                    throw SystemCallException.FromLastError($"ioctl LOOP_SET_CAPACITY {device} (backing {imagePath})");
            }
        }
        finally
        {
            Libc.Close(fd);
        }
        try
        {
            HostProgram.Run("resize2fs", [device, (sizeBytes / 1024).ToString(CultureInfo.InvariantCulture) + "K"], timeout: TimeSpan.FromMinutes(30));
        }
        catch (HostProgramException e)
        {
            throw new DiskException($"growing the mounted {imagePath} ({device} on {mountpoint}) to {Show(sizeBytes)} failed: {e.Message}");
        }
    }

    /// <summary>Whether this process may grow a mounted ext4 (the kernel wants CAP_SYS_RESOURCE in its effective set).</summary>
    public static bool CanGrowOnline => HasCapability(File.ReadAllText("/proc/self/status"), CapSysResource);

    /// <summary>Whether a /proc/PID/status text's CapEff holds capability <paramref name="capability"/>.</summary>
    public static bool HasCapability(string procStatus, int capability)
    {
        foreach (var line in procStatus.Split('\n'))
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                return ulong.TryParse(line["CapEff:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var caps)
                       && (caps >> capability & 1) == 1;
        return false;
    }

    /// <summary>What the layer's filesystem reports, or null when nothing is mounted at <paramref name="mountpoint"/>
    /// (it then reports the filesystem of <paramref name="parentDir"/>, told apart by its fsid).</summary>
    public static LayerUsage? Usage(string mountpoint, string parentDir)
    {
        if (Libc.Statfs(mountpoint, out var layer) != 0 || Libc.Statfs(parentDir, out var parent) != 0) return null;
        if (layer.FsId == parent.FsId && layer.Type == parent.Type) return null;
        var block = layer.BlockSize;
        return new LayerUsage((long)layer.Blocks * block, (long)(layer.Blocks - layer.BlocksFree) * block, (long)layer.BlocksAvailable * block);
    }

    /// <summary>Whether no loop device holds the image, waiting up to <paramref name="patience"/> for the last one to let
    /// go (the overlay of a run that just ended goes away a moment after its init).</summary>
    public static bool WaitUntilFree(string imagePath, TimeSpan patience)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (LoopDevices(imagePath).Count > 0)
        {
            if (clock.Elapsed > patience) return false;
            Thread.Sleep(20);
        }
        return true;
    }

    /// <summary>The loop devices attached to <paramref name="imagePath"/> (sysfs names each one's backing file).</summary>
    public static IReadOnlyList<string> LoopDevices(string imagePath)
    {
        var full = Path.GetFullPath(imagePath);
        return AttachedLoopDevices().Where(l => l.Backing == full).Select(l => l.Device).ToList();
    }

    /// <summary>Every attached loop device and its backing file (sysfs appends " (deleted)" to a deleted one's name; it
    /// is cut off).</summary>
    public static IEnumerable<(string Device, string Backing)> AttachedLoopDevices()
    {
        foreach (var dir in Directory.EnumerateDirectories("/sys/block", "loop*"))
        {
            string backing;
            try
            {
                backing = File.ReadAllText(Path.Combine(dir, "loop", "backing_file")).TrimEnd('\n');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // not attached
            }
            if (backing.EndsWith(" (deleted)", StringComparison.Ordinal)) backing = backing[..^" (deleted)".Length];
            yield return ("/dev/" + Path.GetFileName(dir), backing);
        }
    }

    private static string LastLine(string text, int code) =>
        text.Trim().Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? $"exit code {code}";
}
