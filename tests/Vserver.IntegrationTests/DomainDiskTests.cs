using HybridHypervisor.Domains;
using System.Diagnostics;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace Vserver.IntegrationTests;

/// <summary>
/// Root disks against the real tools (mkfs.ext4, e2fsck, debugfs, qemu-img, qemu-storage-daemon, resize2fs), in a
/// temp dir of their own; no agent. The busybox rootfs is built with images/busybox/build.sh.
/// </summary>
public sealed class DomainDiskTests : IDisposable
{
    private const long MiB = 1024 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("vsdisk-").FullName;
    private readonly ITestOutputHelper _output;

    public DomainDiskTests(ITestOutputHelper output) => _output = output;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Vserver.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository (Vserver.sln) above the test binaries");
    }

    /// <summary>STATEROOT/images/busybox/{rootfs/} laid out as ImageStore does; returns the image dir.</summary>
    private string BusyboxImage()
    {
        var imageDir = Path.Combine(_dir, "images", "busybox");
        var rootfs = Path.Combine(imageDir, "rootfs");
        Directory.CreateDirectory(rootfs);
        HostProgram.Run("sh", [Path.Combine(RepoRoot(), "images", "busybox", "build.sh"), rootfs]);
        return imageDir;
    }

    private static long AllocatedBytes(string path) =>
        long.Parse(HostProgram.Run("du", ["-B1", path]).Split('\t')[0].Trim());

    [Fact]
    public void Ten_domains_add_ten_small_overlays_not_ten_copies()
    {
        var imageDir = BusyboxImage();
        var sw = Stopwatch.StartNew();
        var (basePath, baseSize) = BaseDisk.EnsureBase(imageDir, Path.Combine(imageDir, "rootfs"));
        _output.WriteLine($"base {baseSize} bytes, {AllocatedBytes(basePath)} allocated, built in {sw.ElapsedMilliseconds} ms");

        basePath.ShouldBe(Path.Combine(imageDir, "disk.ext4"));
        baseSize.ShouldBe(new FileInfo(basePath).Length);
        (baseSize % MiB).ShouldBe(0);
        baseSize.ShouldBeLessThan(64 * MiB);
        Directory.EnumerateFiles(imageDir, ".disk.ext4.tmp-*").ShouldBeEmpty();
        HostProgram.TryRun("e2fsck", ["-fn", basePath]).Code.ShouldBe(0);
        var bin = HostProgram.Run("debugfs", ["-R", "ls -l /bin", basePath]);
        bin.ShouldContain("busybox");
        bin.ShouldContain(" sh");
        HostProgram.Run("debugfs", ["-R", "cat /etc/passwd", basePath]).ShouldContain("root:x:0:0:");

        // A second call finds the base and does not rebuild it.
        var mtime = File.GetLastWriteTimeUtc(basePath);
        BaseDisk.EnsureBase(imageDir, Path.Combine(imageDir, "rootfs")).ShouldBe((basePath, baseSize));
        File.GetLastWriteTimeUtc(basePath).ShouldBe(mtime);
        var baseDigest = HostProgram.Run("sha256sum", [basePath]).Split(' ')[0];

        var domains = Path.Combine(_dir, "domains");
        Directory.CreateDirectory(domains);
        var overlays = Enumerable.Range(0, 10).Select(i => Path.Combine(domains, $"d{i}.qcow2")).ToList();
        for (var i = 0; i < overlays.Count; i++)
        {
            // Half exactly the base's size (no growing), half 1 GiB (the filesystem is grown to the disk).
            var size = i % 2 == 0 ? baseSize : 1L << 30;
            sw.Restart();
            DomainDisk.Create(basePath, overlays[i], size);
            var info = DomainDisk.Info(overlays[i]);
            _output.WriteLine($"{Path.GetFileName(overlays[i])}: virtual {info.VirtualSize}, actual {info.ActualSize}, " +
                              $"du {AllocatedBytes(overlays[i])}, created in {sw.ElapsedMilliseconds} ms");
            info.Format.ShouldBe("qcow2");
            info.BackingFile.ShouldBe(basePath);
            info.VirtualSize.ShouldBe(size);
            info.ActualSize.ShouldBeLessThan(2 * MiB);
            AllocatedBytes(overlays[i]).ShouldBeLessThan(2 * MiB);
        }

        Directory.EnumerateFiles(imageDir, "*.ext4").Count().ShouldBe(1);
        Directory.EnumerateFiles(domains).Order().ShouldBe(overlays.Order());
        var total = overlays.Sum(AllocatedBytes);
        _output.WriteLine($"ten overlays: {total} bytes on disk; ten copies of the base would be {10 * baseSize}");
        total.ShouldBeLessThan(10 * AllocatedBytes(basePath) / 2);
        total.ShouldBeLessThan(20 * MiB);

        // The shared base is never written: not by creating overlays, not by growing their filesystems.
        HostProgram.Run("sha256sum", [basePath]).Split(' ')[0].ShouldBe(baseDigest);
        HostProgram.TryRun("e2fsck", ["-fn", basePath]).Code.ShouldBe(0);

        // The grown filesystem fills its 1 GiB disk and is consistent (checked through a raw copy of the overlay).
        var flat = Path.Combine(_dir, "flat.raw");
        HostProgram.Run("qemu-img", ["convert", "-O", "raw", overlays[1], flat]);
        HostProgram.TryRun("e2fsck", ["-fn", flat]).Code.ShouldBe(0);
        HostProgram.Run("dumpe2fs", ["-h", flat]).ShouldContain("Block count:              262144");
        HostProgram.Run("debugfs", ["-R", "ls -l /bin", flat]).ShouldContain("busybox");
        File.Delete(flat);

        foreach (var o in overlays)
        {
            DomainDisk.Delete(o);
            DomainDisk.Delete(o); // idempotent
            File.Exists(o).ShouldBeFalse();
        }
        File.Exists(basePath).ShouldBeTrue();
    }

    [Fact]
    public void An_overlays_header_naming_another_backing_file_is_not_followed()
    {
        var imageDir = BusyboxImage();
        var (basePath, _) = BaseDisk.EnsureBase(imageDir, Path.Combine(imageDir, "rootfs"));
        var overlay = Path.Combine(_dir, "web.qcow2");
        DomainDisk.Create(basePath, overlay, 128 * MiB);
        // Someone with write access to the state root points the overlay at a host file of theirs choosing.
        var planted = Path.Combine(_dir, "host-secret.raw");
        File.WriteAllBytes(planted, new byte[4 * MiB]);
        HostProgram.Run("qemu-img", ["rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", planted, overlay]);
        DomainDisk.Info(overlay).BackingFile.ShouldBe(planted);

        // The export reads the image's base, named by the agent: the busybox files are there, the planted file unread.
        string? passwd = null;
        DomainDisk.WithRawExport(overlay, basePath, writable: false, raw => passwd = HostProgram.Run("debugfs", ["-R", "cat /etc/passwd", raw]));
        passwd.ShouldNotBeNull().ShouldContain("root:x:0:0:");
    }

    [Fact]
    public void Too_small_a_disk_is_refused_with_one_line_and_leaves_no_overlay()
    {
        var imageDir = BusyboxImage();
        var (basePath, baseSize) = BaseDisk.EnsureBase(imageDir, Path.Combine(imageDir, "rootfs"));
        var overlay = Path.Combine(_dir, "small.qcow2");
        var need = Vserver.Api.ByteSize.FormatExact(baseSize);

        var error = Should.Throw<DiskException>(() => DomainDisk.Create(basePath, overlay, 32 * MiB));
        error.Message.ShouldBe($"disk 32M is smaller than image busybox needs ({need})");
        File.Exists(overlay).ShouldBeFalse();

        Should.Throw<DiskException>(() => DomainDisk.Create(basePath, overlay, baseSize - 512));
        File.Exists(overlay).ShouldBeFalse();
        Directory.EnumerateFileSystemEntries(_dir, ".small.qcow2*").ShouldBeEmpty();
    }

    [Fact]
    public async Task Concurrent_EnsureBase_calls_build_once()
    {
        var imageDir = BusyboxImage();
        var rootfs = Path.Combine(imageDir, "rootfs");
        using var start = new Barrier(4);
        var tasks = Enumerable.Range(0, 4).Select(_ => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            var result = BaseDisk.EnsureBase(imageDir, rootfs);
            return (result, Inode: HostProgram.Run("stat", ["-c", "%i %Y", result.Path]).Trim());
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = (await Task.WhenAll(tasks)).ToList();
        results.Select(r => r.result).Distinct().Count().ShouldBe(1);
        // One build: every caller saw the same inode (a second build would have renamed a new file into place).
        results.Select(r => r.Inode).Distinct().Count().ShouldBe(1);
        HostProgram.Run("stat", ["-c", "%i %Y", results[0].result.Path]).Trim().ShouldBe(results[0].Inode);
        Directory.EnumerateFiles(imageDir, ".disk.ext4.tmp-*").ShouldBeEmpty();
        HostProgram.TryRun("e2fsck", ["-fn", results[0].result.Path]).Code.ShouldBe(0);
    }

    [Fact]
    public void A_temp_file_left_by_a_crashed_builder_is_removed_and_never_taken_for_the_base()
    {
        var imageDir = BusyboxImage();
        File.WriteAllText(Path.Combine(imageDir, ".disk.ext4.tmp-999999"), "half a filesystem");
        var rootfs = Path.Combine(imageDir, "rootfs");
        var (basePath, _) = BaseDisk.EnsureBase(imageDir, rootfs);
        Directory.EnumerateFiles(imageDir, ".disk.ext4.tmp-*").ShouldBeEmpty();
        HostProgram.TryRun("e2fsck", ["-fn", basePath]).Code.ShouldBe(0);
    }
}
