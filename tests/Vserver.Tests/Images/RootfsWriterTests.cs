using Shouldly;
using Vserver.Isolation.Images;
using Xunit;

namespace Vserver.Tests.Images;

/// <summary>
/// Unpacking into an image root, in a temporary directory: nothing is ever written outside it or through a link the
/// archive made, what an entry replaces is removed first, device nodes stay out, and an OCI layer's whiteouts remove
/// what the layers below made and nothing of their own layer.
/// </summary>
public sealed class RootfsWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsrootfs-").FullName;
    private string Root => Path.Combine(_dir, "root");
    private string Outside => Path.Combine(_dir, "outside");

    public RootfsWriterTests()
    {
        Directory.CreateDirectory(Root);
        Directory.CreateDirectory(Outside);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (TarArchiveEntry, byte[]?) Dir(string name) => (new TarArchiveEntry { Name = name, Kind = TarEntryKind.Directory, Mode = 0x1ED }, null);

    private static (TarArchiveEntry, byte[]?) File(string name, string text = "x") =>
        (new TarArchiveEntry { Name = name, Kind = TarEntryKind.File, Mode = 0x1A4, Size = text.Length }, System.Text.Encoding.ASCII.GetBytes(text));

    private static (TarArchiveEntry, byte[]?) Link(string name, string target, TarEntryKind kind = TarEntryKind.Symlink) =>
        (new TarArchiveEntry { Name = name, Kind = kind, LinkName = target, Mode = 0x1FF }, null);

    private static (TarArchiveEntry, byte[]?) Device(string name) =>
        (new TarArchiveEntry { Name = name, Kind = TarEntryKind.CharDevice, DevMajor = 1, DevMinor = 1, Mode = 0x1B6 }, null);

    /// <summary>Each array is one layer; whiteouts count from the second layer on, or in every one with <paramref name="oci"/>.</summary>
    private IReadOnlyList<string> Unpack(bool oci, params (TarArchiveEntry Entry, byte[]? Data)[][] layers)
    {
        using var writer = new RootfsWriter(Root);
        foreach (var layer in layers)
        {
            writer.BeginLayer(whiteouts: oci);
            foreach (var (entry, data) in layer) writer.Add(entry, new MemoryStream(data ?? []));
        }
        writer.Finish();
        return writer.Notes();
    }

    private string[] Tree() =>
        Directory.EnumerateFileSystemEntries(Root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Select(p => Path.GetRelativePath(Root, p)).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void A_file_below_a_symlink_the_archive_made_is_refused_and_nothing_is_written_through_it()
    {
        var e = Should.Throw<ArchiveException>(() => Unpack(false, [Dir("./"), Link("evil", Outside), File("evil/pwned")]));

        e.Reason.ShouldBe(ArchiveReasons.UnsafePath);
        e.Message.ShouldContain("lies beneath 'evil', which is a symbolic link");
        Directory.EnumerateFileSystemEntries(Outside).ShouldBeEmpty();
    }

    [Fact]
    public void A_symlink_replaced_by_a_file_is_replaced_not_written_through()
    {
        System.IO.File.WriteAllText(Path.Combine(Outside, "target"), "host");

        Unpack(false, [Link("etc", "../outside"), Link("passwd", Path.Combine(Outside, "target")), File("passwd", "guest")]);

        System.IO.File.ReadAllText(Path.Combine(Outside, "target")).ShouldBe("host");
        System.IO.File.ReadAllText(Path.Combine(Root, "passwd")).ShouldBe("guest");
        new FileInfo(Path.Combine(Root, "passwd")).LinkTarget.ShouldBeNull();
    }

    [Fact]
    public void A_hard_link_keeps_to_the_root_and_a_later_file_of_its_name_gets_an_inode_of_its_own()
    {
        Should.Throw<ArchiveException>(() => Unpack(false, [File("a"), Link("h", "../../etc/passwd", TarEntryKind.HardLink)]))
            .Reason.ShouldBe(ArchiveReasons.UnsafePath);

        Directory.Delete(Root, recursive: true);
        Directory.CreateDirectory(Root);
        Unpack(false, [File("a", "first"), Link("h", "a", TarEntryKind.HardLink), File("h", "second")]);

        System.IO.File.ReadAllText(Path.Combine(Root, "a")).ShouldBe("first");
        System.IO.File.ReadAllText(Path.Combine(Root, "h")).ShouldBe("second");
    }

    [Fact]
    public void Device_nodes_under_dev_are_skipped_with_a_note_and_refused_elsewhere()
    {
        var notes = Unpack(false, [Dir("./"), Dir("dev"), Device("dev/null"), Device("dev/zero")]);

        Tree().ShouldBe(["dev"]);
        notes.ShouldHaveSingleItem().ShouldContain("skipped 2 device nodes under /dev (/dev/null, /dev/zero)");

        var e = Should.Throw<ArchiveException>(() => Unpack(false, [Dir("root"), Device("root/mem")]));
        e.Reason.ShouldBe(ArchiveReasons.DeviceNode);
        e.Entry.ShouldBe("root/mem");
        Should.Throw<ArchiveException>(() => Unpack(false, [Device("dev")])).Reason.ShouldBe(ArchiveReasons.DeviceNode);
    }

    [Fact]
    public void Missing_parents_are_made_and_a_file_where_a_directory_must_be_is_refused()
    {
        Unpack(false, [File("usr/share/doc/x")]);
        Tree().ShouldBe(["usr", "usr/share", "usr/share/doc", "usr/share/doc/x"]);

        Should.Throw<ArchiveException>(() => Unpack(false, [File("usr/share/doc/x/y")])).Message.ShouldContain("which is not a directory");
    }

    [Fact]
    public void A_directory_entry_over_a_directory_keeps_its_contents_and_a_file_over_one_replaces_it()
    {
        Unpack(false, [Dir("etc"), File("etc/a"), Dir("etc"), File("var/x"), File("var", "now a file")]);

        Tree().ShouldBe(["etc", "etc/a", "var"]);
        System.IO.File.ReadAllText(Path.Combine(Root, "var")).ShouldBe("now a file");
    }

    [Fact]
    public void Whiteouts_remove_what_lower_layers_made()
    {
        Unpack(true,
            [Dir("etc"), File("etc/motd"), File("etc/keep"), Dir("opt/tool"), File("opt/tool/bin")],
            [File("etc/.wh.motd"), File("opt/.wh.tool"), File("etc/.wh.never-there")]);

        Tree().ShouldBe(["etc", "etc/keep", "opt"]);
    }

    [Fact]
    public void A_whiteout_spares_its_own_layer_whatever_the_order()
    {
        Unpack(true,
            [File("etc/a", "lower"), File("etc/b", "lower")],
            [File("etc/a", "upper"), File("etc/.wh.a"), File("etc/.wh.b"), File("etc/b", "upper")]);

        System.IO.File.ReadAllText(Path.Combine(Root, "etc/a")).ShouldBe("upper");
        System.IO.File.ReadAllText(Path.Combine(Root, "etc/b")).ShouldBe("upper");
    }

    [Fact]
    public void An_opaque_directory_keeps_only_what_its_own_layer_put_there()
    {
        Unpack(true,
            [File("srv/data/a"), File("srv/data/sub/old"), File("srv/other")],
            [File("srv/data/sub/new"), File("srv/data/.wh..wh..opq"), File("srv/data/c")]);

        Tree().ShouldBe(["srv", "srv/data", "srv/data/c", "srv/data/sub", "srv/data/sub/new", "srv/other"]);
    }

    [Fact]
    public void Whiteout_names_in_a_plain_tarball_are_ordinary_files()
    {
        Unpack(false, [File("etc/motd"), File("etc/.wh.motd")]);
        Tree().ShouldBe(["etc", "etc/.wh.motd", "etc/motd"]);
    }

    [Fact]
    public void Owners_modes_and_times_are_the_archives()
    {
        var (file, data) = File("usr/bin/su", "elf");
        Unpack(false, [(file with { Uid = 0, Gid = 42, Mode = 0x9ED /* 04755 */, MtimeSeconds = 1_000_000_000 }, data)]);

        var info = new FileInfo(Path.Combine(Root, "usr/bin/su"));
        info.UnixFileMode.ShouldBe((UnixFileMode)0x9ED);
        info.LastWriteTimeUtc.ShouldBe(DateTimeOffset.FromUnixTimeSeconds(1_000_000_000).UtcDateTime);
        new DirectoryInfo(Root).UnixFileMode.ShouldBe((UnixFileMode)0x1ED, "a root the archive has no entry for is 0755");
    }
}
