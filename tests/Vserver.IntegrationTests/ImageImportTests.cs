using System.Formats.Tar;
using System.Text.Json;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>
/// Images from elsewhere, through vsctl and a real agent: tarballs of a root file system (as tar, docker export, LXC
/// make them) and OCI layouts made with umoci, each becoming a guest that runs; an export that imports again to the
/// same files; and every kind of bad archive refused in one line with the image store as it was.
/// </summary>
public sealed class ImageImportTests : IAsyncLifetime
{
    private TestHost _host = null!;

    public async ValueTask InitializeAsync() => _host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync() => await _host.DisposeAsync();

    private string Work => Directory.CreateDirectory(Path.Combine(_host.Dir, "work")).FullName;
    private string BusyboxRoot => Path.Combine(_host.Root, "images", "busybox", "rootfs");
    private string ImagesDir => Path.Combine(_host.Root, "images");

    private static CommandResult Sh(string script) => TestHost.Run("sh", "-c", script).ShouldSucceed();

    private IReadOnlyList<ImageInfo> Images() =>
        JsonSerializer.Deserialize(_host.Vsctl("image", "list", "-f", "json").ShouldSucceed().Stdout, ApiJson.Default.IReadOnlyListImageInfo)!;

    /// <summary>A guest made from the image starts and answers from inside.</summary>
    private void ShouldRun(string image, string guest, string check = "cat /etc/os-release")
    {
        _host.Vsctl("create", guest, "--image", image).ShouldSucceed();
        _host.Vsctl("start", guest).ShouldSucceed();
        _host.Vsctl("exec", guest, "--", "sh", "-c", check).ShouldSucceed().Stdout.ShouldContain("BusyBox");
        _host.Vsctl("destroy", "--force", guest).ShouldSucceed();
    }

    /// <summary>Every file of a tree as `find` sees it: path, type, mode, owner, size, link target.</summary>
    private static string Files(string root) =>
        string.Join('\n', TestHost.Run("find", root, "-printf", "%P %y %m %U:%G %s %l\\n").ShouldSucceed().Stdout.Split('\n').Order(StringComparer.Ordinal));

    [Fact]
    public void Tarballs_of_the_busybox_image_import_as_gz_and_zst_and_their_guests_run()
    {
        var gz = Path.Combine(Work, "busybox.tar.gz");
        var zst = Path.Combine(Work, "busybox.tar.zst");
        Sh($"tar -C {BusyboxRoot} -czf {gz} . && tar -C {BusyboxRoot} -c . | zstd -q -o {zst}");

        _host.Vsctl("image", "import", gz, "--as", "bbgz").ShouldSucceed().Stdout.ShouldContain($"imported image bbgz from {gz} (tar.gz sha256:");
        _host.Vsctl("image", "import", zst, "--as", "bbzst").ShouldSucceed().Stdout.ShouldContain("init busybox");

        var images = Images().ToDictionary(i => i.Name);
        images["bbgz"].Digest.ShouldBe(images["busybox"].Digest, "the same files, whichever way they came");
        images["bbzst"].Source!.Format.ShouldBe("tar.zst");
        images["bbzst"].Source!.ArchiveDigest.ShouldBe("sha256:" + TestHost.Run("sha256sum", zst).Stdout.Split(' ')[0]);
        images["bbzst"].Init.ShouldBe("busybox");
        images["busybox"].Source!.Kind.ShouldBe("recipe");
        var table = _host.Vsctl("image", "list").ShouldSucceed().Stdout;
        table.ShouldContain("INIT");
        table.ShouldContain($"tar.gz {gz} sha256:");
        table.ShouldContain("recipe busybox");
        ShouldRun("bbgz", "fromgz");
        ShouldRun("bbzst", "fromzst");
    }

    [Fact]
    public void A_docker_export_style_tarball_imports_and_its_guest_runs()
    {
        // docker export: names without "./", a .dockerenv, and the files docker bind-mounts left empty in place.
        var root = Path.Combine(Work, "container");
        var tar = Path.Combine(Work, "export.tar");
        Sh($"cp -a {BusyboxRoot} {root} && touch {root}/.dockerenv {root}/etc/hostname {root}/etc/resolv.conf {root}/dev/console && " +
            $"cd {root} && tar --numeric-owner -cf {tar} $(ls -A)");
        TestHost.Run("tar", "-tf", tar).Stdout.ShouldStartWith(".dockerenv");

        _host.Vsctl("image", "import", tar, "--as", "docker").ShouldSucceed().Stdout.ShouldContain("(tar sha256:");

        ShouldRun("docker", "fromdocker", "test -f /.dockerenv && cat /etc/os-release");
    }

    [Fact]
    public void An_oci_layout_made_with_umoci_imports_with_its_whiteouts_as_a_directory_and_as_a_tar()
    {
        var layout = Path.Combine(Work, "oci");
        var bundle = Path.Combine(Work, "bundle");
        var bundle2 = Path.Combine(Work, "bundle2");
        // Layer 1: the busybox files and some of its own; layer 2 deletes two of them (umoci writes .wh. entries).
        Sh($"umoci init --layout {layout} && umoci new --image {layout}:web && umoci unpack --image {layout}:web {bundle} >/dev/null && " +
            $"cp -a {BusyboxRoot}/. {bundle}/rootfs/ && mkdir -p {bundle}/rootfs/srv/data && echo a > {bundle}/rootfs/srv/data/a && " +
            $"echo b > {bundle}/rootfs/srv/data/b && echo gone > {bundle}/rootfs/etc/motd && umoci repack --image {layout}:web {bundle} && " +
            $"umoci unpack --image {layout}:web {bundle2} >/dev/null && rm {bundle2}/rootfs/etc/motd {bundle2}/rootfs/srv/data/a && " +
            $"umoci repack --image {layout}:web {bundle2}");
        var archive = Path.Combine(Work, "oci.tar");
        Sh($"tar -C {layout} -cf {archive} .");

        _host.Vsctl("image", "import", layout, "--as", "ocidir").ShouldSucceed().Stdout.ShouldContain("(OCI image sha256:");
        _host.Vsctl("image", "import", archive, "--as", "ocitar", "--tag", "web").ShouldSucceed().Stdout.ShouldContain(", tag web)");

        var images = Images().ToDictionary(i => i.Name);
        images["ocidir"].Source!.Format.ShouldBe("oci");
        images["ocidir"].Source!.ManifestDigest.ShouldNotBeNull().ShouldStartWith("sha256:");
        images["ocitar"].Source!.ManifestDigest.ShouldBe(images["ocidir"].Source!.ManifestDigest);
        images["ocitar"].Digest.ShouldBe(images["ocidir"].Digest);
        ShouldRun("ocidir", "fromoci", "test ! -e /etc/motd && test ! -e /srv/data/a && test -f /srv/data/b && cat /etc/os-release");
    }

    [Fact]
    public void An_export_imports_again_to_the_same_files()
    {
        var file = Path.Combine(Work, "busybox-out.tar.gz");

        _host.Vsctl("image", "export", "busybox", "-o", file).ShouldSucceed().Stdout.ShouldContain("(gzip,");
        TestHost.Run("tar", "-tzf", file).ShouldSucceed().Stdout.ShouldContain("./bin/busybox");
        _host.Vsctl("image", "import", file, "--as", "again").ShouldSucceed();

        Files(Path.Combine(ImagesDir, "again", "rootfs")).ShouldBe(Files(BusyboxRoot));
        var images = Images().ToDictionary(i => i.Name);
        images["again"].Digest.ShouldBe(images["busybox"].Digest);
        _host.Vsctl("image", "export", "busybox", "-o", Path.Combine(Work, "x.zip")).ShouldFailWith("give the file a suffix");
        Directory.EnumerateFiles(Work).Select(Path.GetFileName).ShouldBe(["busybox-out.tar.gz"], "no partial file is left");
    }

    private static void WriteTar(string path, params TarEntry[] entries)
    {
        using var file = File.Create(path);
        using var writer = new TarWriter(file, TarEntryFormat.Pax);
        foreach (var entry in entries) writer.WriteEntry(entry);
    }

    private static PaxTarEntry Entry(TarEntryType type, string name, string? text = null, string? link = null)
    {
        var entry = new PaxTarEntry(type, name) { Mode = (UnixFileMode)0x1ED };
        if (text is not null) entry.DataStream = new MemoryStream(System.Text.Encoding.ASCII.GetBytes(text));
        if (link is not null) entry.LinkName = link;
        return entry;
    }

    [Fact]
    public async Task Bad_archives_are_refused_in_one_line_and_leave_the_store_as_it_was()
    {
        var outside = Directory.CreateDirectory(Path.Combine(_host.Dir, "outside")).FullName;
        var busyboxGz = Path.Combine(Work, "bb.tar.gz");
        Sh($"tar -C {BusyboxRoot} -czf {busyboxGz} . && head -c $(($(stat -c %s {busyboxGz}) / 2)) {busyboxGz} > {Work}/truncated.tar.gz");
        WriteTar(Path.Combine(Work, "whole.tar"), Entry(TarEntryType.RegularFile, "a", new string('a', 600)), Entry(TarEntryType.RegularFile, "b", "b"));
        File.WriteAllBytes(Path.Combine(Work, "truncated.tar"), File.ReadAllBytes(Path.Combine(Work, "whole.tar"))[..(4 * 512)]);
        WriteTar(Path.Combine(Work, "dotdot.tar"), Entry(TarEntryType.Directory, "etc/"), Entry(TarEntryType.RegularFile, "etc/../../escape", "x"));
        WriteTar(Path.Combine(Work, "absolute.tar"), Entry(TarEntryType.RegularFile, "/etc/evil", "x"));
        WriteTar(Path.Combine(Work, "symlink.tar"), Entry(TarEntryType.SymbolicLink, "evil", link: outside), Entry(TarEntryType.RegularFile, "evil/pwned", "x"));
        var mem = Entry(TarEntryType.CharacterDevice, "root/mem");
        mem.DeviceMajor = 1;
        mem.DeviceMinor = 1;
        WriteTar(Path.Combine(Work, "device.tar"), Entry(TarEntryType.Directory, "root/"), mem);
        var arm = Path.Combine(Work, "arm64");
        Sh($"umoci init --layout {arm} && umoci new --image {arm}:t && umoci config --image {arm}:t --architecture arm64 --os linux");
        File.WriteAllBytes(Path.Combine(Work, "archive.zip"), [(byte)'P', (byte)'K', 3, 4, 20, 0, 0, 0]);

        var before = _host.Vsctl("image", "list", "-f", "json").ShouldSucceed().Stdout;
        var entries = Directory.EnumerateFileSystemEntries(ImagesDir).Order().ToList();
        var cases = new (string File, string Name, string Says)[]
        {
            ("truncated.tar.gz", "t1", "is a truncated gzip stream (gzip: stdin: unexpected end of file)"),
            ("truncated.tar", "t2", "the archive is truncated"),
            ("dotdot.tar", "t3", "entry 'etc/../../escape' climbs out of the image root"),
            ("absolute.tar", "t4", "entry '/etc/evil' is an absolute path"),
            ("symlink.tar", "t5", "entry 'evil/pwned' lies beneath 'evil', which is a symbolic link in the image"),
            ("device.tar", "t6", "entry 'root/mem' is a character device (1:1) outside /dev"),
            ("arm64", "t7", "the OCI layout has no linux/amd64 image (it has linux/arm64)"),
            ("archive.zip", "t8", "is not a tar archive (plain, gzip, xz, zstd or bzip2) nor an OCI layout: it looks like a zip file"),
            ("bb.tar.gz", "busybox", "image 'busybox' already exists"),
        };
        foreach (var (file, name, says) in cases)
        {
            var refused = _host.Vsctl("image", "import", Path.Combine(Work, file), "--as", name).ShouldFailWith(says);
            if (name != "busybox") refused.Stderr.ShouldContain("nothing was kept");
            _host.Vsctl("image", "list", "-f", "json").ShouldSucceed().Stdout.ShouldBe(before, $"{file} changed the image list");
            Directory.EnumerateFileSystemEntries(ImagesDir).Order().ToList().ShouldBe(entries, $"{file} left something under {ImagesDir}");
        }
        Directory.EnumerateFileSystemEntries(outside).ShouldBeEmpty("nothing was written through the archive's link");

        _host.Vsctl("image", "import", busyboxGz, "--as", "Bad_Name").ShouldFailWith("invalid name");
        using var client = _host.Client();
        await using (var stream = File.OpenRead(busyboxGz))
        {
            var e = await Should.ThrowAsync<ApiException>(() => client.ImportImageAsync("Bad_Name", stream, busyboxGz, ct: TestContext.Current.CancellationToken));
            e.Code.ShouldBe(ErrorCodes.InvalidValue);
        }
        await using (var stream = File.OpenRead(Path.Combine(Work, "device.tar")))
        {
            var e = await Should.ThrowAsync<ApiException>(() => client.ImportImageAsync("t9", stream, "device.tar", ct: TestContext.Current.CancellationToken));
            (e.Code, e.Fields?["reason"], e.Fields?["entry"]).ShouldBe((ErrorCodes.BadArchive, "device_node", "root/mem"));
        }
        Directory.EnumerateFileSystemEntries(ImagesDir).Order().ToList().ShouldBe(entries);

        // An upload that breaks off (the client dies mid-way): the import ends, its staging goes, the name is free again.
        foreach (var file in new[] { "bb.tar.gz", "whole.tar" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(Work, file));
            await Should.ThrowAsync<Exception>(() => client.ImportImageAsync("cut", new BreakingStream(bytes, bytes.Length / 2), file, ct: TestContext.Current.CancellationToken));
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (Directory.EnumerateFileSystemEntries(ImagesDir).Count() != entries.Count && DateTime.UtcNow < deadline) await Task.Delay(100, TestContext.Current.CancellationToken);
            Directory.EnumerateFileSystemEntries(ImagesDir).Order().ToList().ShouldBe(entries, $"an upload of {file} cut short left its staging");
        }
        _host.Vsctl("image", "import", busyboxGz, "--as", "cut").ShouldSucceed();
    }

    /// <summary>A client's file that fails to read after <paramref name="breakAt"/> bytes.</summary>
    private sealed class BreakingStream(byte[] data, int breakAt) : Stream
    {
        private int _position;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position >= breakAt) throw new IOException("the disk went away");
            var n = Math.Min(buffer.Length, breakAt - _position);
            data.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
