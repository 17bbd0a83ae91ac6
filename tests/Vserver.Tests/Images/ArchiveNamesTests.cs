using Shouldly;
using Vserver.Isolation.Images;
using Xunit;

namespace Vserver.Tests.Images;

/// <summary>What an archive's member names and first bytes are taken for: the checks that keep an import inside the
/// image root, the OCI whiteout names, and the format told from the bytes, not the file name.</summary>
public sealed class ArchiveNamesTests
{
    [Theory]
    [InlineData("./", "")]
    [InlineData(".", "")]
    [InlineData("./etc/passwd", "etc/passwd")]
    [InlineData("etc//passwd", "etc/passwd")]
    [InlineData("etc/./x/", "etc/x")]
    [InlineData("usr/bin/..foo", "usr/bin/..foo")]
    [InlineData("a/...", "a/...")]
    public void Names_inside_the_root_are_normalized(string name, string expected) =>
        ArchivePath.Normalize(name, out _).ShouldBe(expected);

    [Theory]
    [InlineData("../x", "climbs out")]
    [InlineData("etc/../../x", "climbs out")]
    [InlineData("etc/..", "climbs out")]
    [InlineData("/etc/shadow", "absolute path")]
    [InlineData("//etc", "absolute path")]
    [InlineData("", "empty name")]
    [InlineData("a\0b", "NUL")]
    public void Names_that_leave_the_root_are_refused_not_rewritten(string name, string why)
    {
        ArchivePath.Normalize(name, out var error).ShouldBeNull();
        error.ShouldNotBeNull().ShouldContain(why);
    }

    [Fact]
    public void A_component_longer_than_NAME_MAX_is_refused()
    {
        ArchivePath.Normalize("a/" + new string('x', 256), out var error).ShouldBeNull();
        error!.ShouldContain("longer than 255 bytes");
        ArchivePath.Normalize("a/" + new string('x', 255), out _).ShouldNotBeNull();
    }

    [Fact]
    public void IsWithin_compares_whole_components()
    {
        ArchivePath.IsWithin("dev/null", "dev").ShouldBeTrue();
        ArchivePath.IsWithin("dev", "dev").ShouldBeTrue();
        ArchivePath.IsWithin("devices/x", "dev").ShouldBeFalse();
        ArchivePath.IsWithin("anything", "").ShouldBeTrue();
    }

    [Theory]
    [InlineData("etc/motd", WhiteoutKind.None, "etc/motd")]
    [InlineData("etc/.wh.motd", WhiteoutKind.Remove, "etc/motd")]
    [InlineData(".wh.opt", WhiteoutKind.Remove, "opt")]
    [InlineData("srv/data/.wh..wh..opq", WhiteoutKind.Opaque, "srv/data")]
    [InlineData(".wh..wh..opq", WhiteoutKind.Opaque, "")]
    [InlineData("x/.wh..wh.plnk", WhiteoutKind.Bookkeeping, "x/.wh..wh.plnk")]
    [InlineData("etc/.whatever", WhiteoutKind.None, "etc/.whatever")]
    public void Whiteout_names_say_what_they_remove(string path, WhiteoutKind kind, string target) =>
        LayerWhiteout.Classify(path).ShouldBe((kind, target));

    [Theory]
    [InlineData("etc/.wh.")]
    [InlineData("etc/.wh..")]
    [InlineData("etc/.wh...")]
    public void A_whiteout_of_no_file_is_refused(string path) =>
        Should.Throw<ArchiveException>(() => LayerWhiteout.Classify(path)).Reason.ShouldBe(ArchiveReasons.UnsafePath);

    [Fact]
    public void The_format_is_told_from_the_first_bytes()
    {
        ArchiveFormat.Sniff([0x1f, 0x8b, 8, 0]).ShouldBe(ArchiveCompression.Gzip);
        ArchiveFormat.Sniff([0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0, 0]).ShouldBe(ArchiveCompression.Xz);
        ArchiveFormat.Sniff([0x28, 0xb5, 0x2f, 0xfd, 0]).ShouldBe(ArchiveCompression.Zstd);
        ArchiveFormat.Sniff("BZh91AY"u8).ShouldBe(ArchiveCompression.Bzip2);
        var tar = new MemoryStream();
        new TarArchiveWriter(tar).Write(new TarArchiveEntry { Name = "./", Kind = TarEntryKind.Directory, Mode = 0x1ED }, null);
        ArchiveFormat.Sniff(tar.ToArray()).ShouldBe(ArchiveCompression.None);
        ArchiveFormat.Sniff("PK\u0003\u0004"u8).ShouldBeNull();
        ArchiveFormat.Sniff([]).ShouldBeNull();
        ArchiveFormat.Sniff("BZh0"u8).ShouldBeNull();
    }

    [Fact]
    public void An_unknown_format_is_described_by_what_it_looks_like()
    {
        ArchiveFormat.Describe("PK\u0003\u0004rest"u8).ShouldContain("a zip file");
        ArchiveFormat.Describe("{\"schemaVersion\":2}"u8).ShouldContain("JSON");
        ArchiveFormat.Describe([]).ShouldBe("it is empty");
        ArchiveFormat.Describe([1, 2, 3]).ShouldBe("it starts with bytes 010203");
    }
}
