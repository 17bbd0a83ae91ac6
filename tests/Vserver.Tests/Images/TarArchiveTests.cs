using System.Formats.Tar;
using System.Text;
using Shouldly;
using Vserver.Isolation.Images;
using Xunit;

namespace Vserver.Tests.Images;

/// <summary>The tar reader and writer an import and an export use: what they write comes back the same (names of any
/// length, big ids, binary extended attributes), archives of other writers read right, and an archive cut short or
/// damaged is refused, never taken for a smaller whole one.</summary>
public sealed class TarArchiveTests
{
    private static byte[] Write(params (TarArchiveEntry Entry, byte[]? Data)[] entries)
    {
        var output = new MemoryStream();
        var writer = new TarArchiveWriter(output);
        foreach (var (entry, data) in entries) writer.Write(entry, data is null ? null : new MemoryStream(data));
        writer.Finish();
        return output.ToArray();
    }

    private static List<(TarArchiveEntry Entry, byte[] Data)> Read(byte[] archive)
    {
        var result = new List<(TarArchiveEntry, byte[])>();
        using var reader = new TarArchiveReader(new MemoryStream(archive));
        while (reader.Next() is { } entry)
        {
            var data = new MemoryStream();
            reader.Data.CopyTo(data);
            result.Add((entry, data.ToArray()));
        }
        return result;
    }

    private static TarArchiveEntry File(string name, int size, long uid = 0) =>
        new() { Name = name, Kind = TarEntryKind.File, Mode = 0x1A4, Size = size, Uid = uid, Gid = uid, MtimeSeconds = 1_700_000_000 };

    [Fact]
    public void What_the_writer_writes_reads_back_the_same()
    {
        var longName = "./usr/share/" + string.Join('/', Enumerable.Repeat("a-rather-long-directory-name", 8)) + "/file";
        var capability = new byte[] { 0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
        var archive = Write(
            (new TarArchiveEntry { Name = "./", Kind = TarEntryKind.Directory, Mode = 0x1ED }, null),
            (File(longName, 3, uid: 100_000) with { Xattrs = new Dictionary<string, byte[]> { ["security.capability"] = capability } }, "abc"u8.ToArray()),
            (new TarArchiveEntry { Name = "./bin/sh", Kind = TarEntryKind.Symlink, LinkName = "/" + new string('l', 150), Mode = 0x1FF }, null),
            (new TarArchiveEntry { Name = "./bin/hard", Kind = TarEntryKind.HardLink, LinkName = longName }, null),
            (new TarArchiveEntry { Name = "./dev/null", Kind = TarEntryKind.CharDevice, DevMajor = 1, DevMinor = 3, Mode = 0x1B6 }, null),
            (new TarArchiveEntry { Name = "./run/fifo", Kind = TarEntryKind.Fifo, Mode = 0x180 }, null),
            (File("./usr/bin/su", 5) with { Mode = 0x9ED /* 04755 */ }, "hello"u8.ToArray()));

        var entries = Read(archive);

        entries.Select(e => e.Entry.Name).ShouldBe(["./", longName, "./bin/sh", "./bin/hard", "./dev/null", "./run/fifo", "./usr/bin/su"]);
        entries[1].Entry.Uid.ShouldBe(100_000);
        entries[1].Entry.MtimeSeconds.ShouldBe(1_700_000_000);
        entries[1].Entry.Xattrs["security.capability"].ShouldBe(capability, "a capability is binary and must come back byte for byte");
        entries[1].Data.ShouldBe("abc"u8.ToArray());
        entries[2].Entry.LinkName.ShouldBe("/" + new string('l', 150));
        entries[3].Entry.Kind.ShouldBe(TarEntryKind.HardLink);
        entries[3].Entry.LinkName.ShouldBe(longName);
        (entries[4].Entry.DevMajor, entries[4].Entry.DevMinor).ShouldBe((1u, 3u));
        entries[5].Entry.Kind.ShouldBe(TarEntryKind.Fifo);
        entries[6].Entry.Mode.ShouldBe(0x9EDu, "setuid survives");
        entries[6].Data.ShouldBe("hello"u8.ToArray());
    }

    [Theory]
    [InlineData(TarEntryFormat.Gnu)]
    [InlineData(TarEntryFormat.Pax)]
    [InlineData(TarEntryFormat.Ustar)]
    public void Archives_of_another_writer_are_read(TarEntryFormat format)
    {
        var output = new MemoryStream();
        var name = format == TarEntryFormat.Ustar ? "etc/" + new string('n', 90) + "/" + new string('m', 90) : "etc/" + new string('n', 300);
        using (var writer = new TarWriter(output, format, leaveOpen: true))
        {
            TarEntry directory = format switch
            {
                TarEntryFormat.Gnu => new GnuTarEntry(TarEntryType.Directory, "etc/"),
                TarEntryFormat.Pax => new PaxTarEntry(TarEntryType.Directory, "etc/"),
                _ => new UstarTarEntry(TarEntryType.Directory, "etc/"),
            };
            writer.WriteEntry(directory);
            TarEntry file = format switch
            {
                TarEntryFormat.Gnu => new GnuTarEntry(TarEntryType.RegularFile, name),
                TarEntryFormat.Pax => new PaxTarEntry(TarEntryType.RegularFile, name),
                _ => new UstarTarEntry(TarEntryType.RegularFile, name),
            };
            file.DataStream = new MemoryStream("data"u8.ToArray());
            writer.WriteEntry(file);
        }

        var entries = Read(output.ToArray());

        entries.Select(e => e.Entry.Name).ShouldBe(["etc/", name]);
        entries[1].Data.ShouldBe("data"u8.ToArray());
    }

    [Fact]
    public void An_archive_cut_at_an_entry_boundary_is_truncated_not_smaller()
    {
        var archive = Write((File("./a", 600), new byte[600]), (File("./b", 10), new byte[10]));
        // Header of a, 2 blocks of data: the archive ends where b's header would start.
        var cut = archive[..(3 * 512)];

        var e = Should.Throw<ArchiveException>(() => Read(cut));

        e.Reason.ShouldBe(ArchiveReasons.Truncated);
        e.Message.ShouldContain("without its end marker");
    }

    [Fact]
    public void An_archive_cut_inside_a_file_names_the_file()
    {
        var archive = Write((File("./big", 5000), new byte[5000]));

        var e = Should.Throw<ArchiveException>(() => Read(archive[..2048]));

        e.Reason.ShouldBe(ArchiveReasons.Truncated);
        e.Message.ShouldContain("entry './big' ends after 1536 of its 5000 bytes");
    }

    [Fact]
    public void A_lone_zero_block_at_the_end_is_an_end()
    {
        var archive = Write((File("./a", 1), new byte[1]));
        Read(archive[..(archive.Length - 512)]).Count.ShouldBe(1);
    }

    [Fact]
    public void A_damaged_header_is_refused_by_its_checksum()
    {
        var archive = Write((File("./a", 1), new byte[1]), (File("./b", 1), new byte[1]));
        archive[1024 + 3] ^= 0x40;

        var e = Should.Throw<ArchiveException>(() => Read(archive));

        e.Reason.ShouldBe(ArchiveReasons.Corrupt);
        e.Message.ShouldContain("after entry './a' has a wrong checksum");
    }

    [Fact]
    public void Bytes_that_are_no_tar_are_an_unknown_format()
    {
        var bytes = Encoding.ASCII.GetBytes(new string('x', 1024));
        Should.Throw<ArchiveException>(() => Read(bytes)).Reason.ShouldBe(ArchiveReasons.UnknownFormat);
        Should.Throw<ArchiveException>(() => Read([])).Message.ShouldBe("the archive is empty");
    }

    [Fact]
    public void A_sparse_file_is_refused_by_name()
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "GNUSparseFile.0/disk.img",
                new Dictionary<string, string> { ["GNU.sparse.major"] = "1", ["GNU.sparse.minor"] = "0", ["GNU.sparse.name"] = "disk.img" }));
        }

        var e = Should.Throw<ArchiveException>(() => Read(output.ToArray()));

        e.Reason.ShouldBe(ArchiveReasons.Unsupported);
        e.Message.ShouldContain("sparse");
    }
}
