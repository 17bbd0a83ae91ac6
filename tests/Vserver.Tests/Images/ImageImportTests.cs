using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Shouldly;
using Vserver.Isolation.Images;
using Xunit;

namespace Vserver.Tests.Images;

/// <summary>
/// The image store's import from a stream, with OCI layouts written here by hand (blobs, manifests, configs, indexes):
/// the image of this host's platform is picked from an index, its layers applied in order, every blob checked; a
/// refusal leaves nothing in the store; an export imports again to the same files.
/// </summary>
public sealed class ImageImportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsimport-").FullName;
    private ImageStore Store => new(Path.Combine(_dir, "images"), Path.Combine(_dir, "recipes"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Tar(params (string Name, string? Text)[] entries)
    {
        var output = new MemoryStream();
        var writer = new TarArchiveWriter(output);
        foreach (var (name, text) in entries)
        {
            var data = text is null ? null : Encoding.UTF8.GetBytes(text);
            writer.Write(new TarArchiveEntry
            {
                Name = name, Kind = text is null ? TarEntryKind.Directory : TarEntryKind.File, Mode = text is null ? 0x1EDu : 0x1A4u, Size = data?.Length ?? 0,
            }, data is null ? null : new MemoryStream(data));
        }
        writer.Finish();
        return output.ToArray();
    }

    private static byte[] Gzip(byte[] data)
    {
        var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(data);
        return output.ToArray();
    }

    /// <summary>An OCI layout written by hand, blob by blob.</summary>
    private sealed class Layout
    {
        public Dictionary<string, byte[]> Blobs { get; } = [];

        public (string Digest, long Size) Blob(byte[] data)
        {
            var digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(data));
            Blobs[digest] = data;
            return (digest, data.Length);
        }

        public (string Digest, long Size) Json(object value) => Blob(JsonSerializer.SerializeToUtf8Bytes(value));

        /// <summary>An image of the given platform with gzipped layers: its manifest's descriptor.</summary>
        public Dictionary<string, object> Image(string arch, params byte[][] layers) => Image(arch, gzip: true, layers);

        public Dictionary<string, object> Image(string arch, bool gzip, params byte[][] layers)
        {
            var config = Json(new Dictionary<string, object> { ["os"] = "linux", ["architecture"] = arch, ["rootfs"] = new { type = "layers" } });
            var mediaType = gzip ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar";
            var manifest = Json(new Dictionary<string, object>
            {
                ["schemaVersion"] = 2,
                ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
                ["config"] = new { mediaType = "application/vnd.oci.image.config.v1+json", digest = config.Digest, size = config.Size },
                ["layers"] = layers.Select(l => Blob(gzip ? Gzip(l) : l)).Select(b => new { mediaType, digest = b.Digest, size = b.Size }).ToArray(),
            });
            return new Dictionary<string, object> { ["mediaType"] = "application/vnd.oci.image.manifest.v1+json", ["digest"] = manifest.Digest, ["size"] = manifest.Size };
        }

        /// <summary>The layout as a tar, with <paramref name="manifests"/> in its index.json.</summary>
        public byte[] Archive(params Dictionary<string, object>[] manifests)
        {
            var output = new MemoryStream();
            var writer = new TarArchiveWriter(output);
            void Add(string name, byte[] data) =>
                writer.Write(new TarArchiveEntry { Name = name, Kind = TarEntryKind.File, Mode = 0x1A4, Size = data.Length }, new MemoryStream(data));
            Add("oci-layout", """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray());
            Add("index.json", JsonSerializer.SerializeToUtf8Bytes(new { schemaVersion = 2, manifests }));
            foreach (var (digest, data) in Blobs) Add("blobs/sha256/" + digest["sha256:".Length..], data);
            writer.Finish();
            return output.ToArray();
        }
    }

    private static Dictionary<string, object> WithPlatform(Dictionary<string, object> descriptor, string arch) =>
        new(descriptor) { ["platform"] = new { os = "linux", architecture = arch } };

    private string[] Leftovers() => Directory.Exists(Path.Combine(_dir, "images"))
        ? Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "images")).Select(Path.GetFileName).OfType<string>().ToArray()
        : [];

    private static string Read(ImageRecord image, string path) => File.ReadAllText(Path.Combine(image.RootfsPath, path));

    [Fact]
    public void A_rootfs_tarball_becomes_an_image_with_its_digest_and_source()
    {
        var tar = Gzip(Tar(("./", null), ("etc/", null), ("etc/os-release", "ID=test\n")));

        var result = Store.Import("plain", new MemoryStream(tar), new ImportOrigin("/srv/plain.tar.gz"));

        Read(result.Image, "etc/os-release").ShouldBe("ID=test\n");
        result.Image.Source.ShouldNotBeNull();
        result.Image.Source.Format.ShouldBe("tar.gz");
        result.Image.Source.File.ShouldBe("/srv/plain.tar.gz");
        result.Image.Source.ArchiveDigest.ShouldBe("sha256:" + Convert.ToHexStringLower(SHA256.HashData(tar)));
        result.Notes.ShouldContain(n => n.Contains("has no init"));
        Store.Find("plain").ShouldNotBeNull().Source!.Kind.ShouldBe(ImageSource.Import);
        Leftovers().ShouldBe(["plain"]);
    }

    [Fact]
    public void The_layers_of_the_hosts_image_are_applied_in_order()
    {
        var layout = new Layout();
        var amd64 = WithPlatform(layout.Image("amd64",
            Tar(("etc/", null), ("etc/motd", "lower"), ("etc/issue", "lower"), ("srv/data/old", "lower")),
            Tar(("etc/.wh.motd", ""), ("etc/issue", "upper"), ("srv/data/.wh..wh..opq", ""), ("srv/data/new", "upper"))), "amd64");
        var arm64 = WithPlatform(layout.Image("arm64", Tar(("etc/arm", "arm"))), "arm64");

        var result = Store.Import("layered", new MemoryStream(layout.Archive(arm64, amd64)), new ImportOrigin("layout.tar"));

        File.Exists(Path.Combine(result.Image.RootfsPath, "etc/motd")).ShouldBeFalse();
        Read(result.Image, "etc/issue").ShouldBe("upper");
        Directory.EnumerateFileSystemEntries(Path.Combine(result.Image.RootfsPath, "srv/data")).Select(Path.GetFileName).ShouldBe(["new"]);
        File.Exists(Path.Combine(result.Image.RootfsPath, "etc/arm")).ShouldBeFalse();
        result.Image.Source!.Format.ShouldBe("oci");
        result.Image.Source.ManifestDigest.ShouldBe((string)amd64["digest"]);
        Leftovers().ShouldBe(["layered"], "the unpacked layout is gone");
    }

    [Fact]
    public void A_platform_found_only_in_the_config_counts_and_a_tag_picks_among_several()
    {
        var layout = new Layout();
        var first = layout.Image("amd64", Tar(("id", "first")));
        first["annotations"] = new Dictionary<string, string> { ["org.opencontainers.image.ref.name"] = "first" };
        var second = layout.Image("amd64", Tar(("id", "second")));
        second["annotations"] = new Dictionary<string, string> { ["org.opencontainers.image.ref.name"] = "second" };
        var archive = layout.Archive(first, second);

        var e = Should.Throw<ImageException>(() => Store.Import("both", new MemoryStream(archive), new ImportOrigin("x")));
        e.Reason.ShouldBe(ArchiveReasons.NoPlatform);
        e.Message.ShouldContain("holds 2 linux/amd64 images (first, second)");

        Read(Store.Import("second", new MemoryStream(archive), new ImportOrigin("x", "second")).Image, "id").ShouldBe("second");
    }

    [Fact]
    public void An_index_without_an_image_for_this_host_is_refused_and_leaves_nothing()
    {
        var layout = new Layout();
        var archive = layout.Archive(WithPlatform(layout.Image("arm64", Tar(("x", "x"))), "arm64"), WithPlatform(layout.Image("s390x", Tar(("x", "x"))), "s390x"));

        var e = Should.Throw<ImageException>(() => Store.Import("foreign", new MemoryStream(archive), new ImportOrigin("x")));

        e.Problem.ShouldBe(ImageProblem.BadArchive);
        e.Reason.ShouldBe(ArchiveReasons.NoPlatform);
        e.Message.ShouldBe("import of image 'foreign' from x refused: the OCI layout has no linux/amd64 image (it has linux/arm64, linux/s390x); " +
            "a vserver runs the host's own architecture; nothing was kept");
        Leftovers().ShouldBeEmpty();
    }

    [Fact]
    public void A_layer_that_does_not_match_its_digest_is_refused()
    {
        var layout = new Layout();
        var layer = Tar(("etc/", null), ("etc/data", "QQQQQQQQQQ"));
        var image = layout.Image("amd64", gzip: false, layer);
        // One byte of a file's contents changed: the tar reads well, the size is the manifest's, the digest is not.
        var blob = layout.Blobs.Single(b => b.Value.Length == layer.Length).Value;
        blob[Array.IndexOf(blob, (byte)'Q')] = (byte)'X';

        var e = Should.Throw<ImageException>(() => Store.Import("bad", new MemoryStream(layout.Archive(image)), new ImportOrigin("x")));

        e.Reason.ShouldBe(ArchiveReasons.Corrupt);
        e.Message.ShouldContain("does not match its digest");
        Leftovers().ShouldBeEmpty();
    }

    [Fact]
    public void A_damaged_compressed_layer_is_refused_in_the_decompressors_words()
    {
        var layout = new Layout();
        var image = layout.Image("amd64", Tar(("etc/", null), ("etc/data", "0123456789")));
        var blob = layout.Blobs.Single(b => b.Value[0] == 0x1f).Value;
        blob[^5] ^= 0x01; // the CRC

        var e = Should.Throw<ImageException>(() => Store.Import("bad", new MemoryStream(layout.Archive(image)), new ImportOrigin("x")));

        e.Reason.ShouldBe(ArchiveReasons.Corrupt);
        e.Message.ShouldContain("corrupt gzip stream");
        Leftovers().ShouldBeEmpty();
    }

    [Fact]
    public void A_taken_name_and_a_bad_name_are_refused_before_anything_is_made()
    {
        Store.Import("taken", new MemoryStream(Tar(("./", null))), new ImportOrigin("x"));

        Should.Throw<ImageException>(() => Store.Import("taken", new MemoryStream(Tar(("./", null))), new ImportOrigin("x"))).Problem.ShouldBe(ImageProblem.Exists);
        Should.Throw<ImageException>(() => Store.Import("Bad_Name", new MemoryStream(Tar(("./", null))), new ImportOrigin("x"))).Problem.ShouldBe(ImageProblem.InvalidName);
        Leftovers().ShouldBe(["taken"]);
    }

    [Fact]
    public void A_refusal_reads_the_whole_stream_and_leaves_no_staging()
    {
        var tar = Tar(("./", null), ("../escape", "x"));
        var padded = tar.Concat(new byte[100_000]).ToArray();
        var stream = new MemoryStream(padded);

        var e = Should.Throw<ImageException>(() => Store.Import("escape", stream, new ImportOrigin("x")));

        e.Reason.ShouldBe(ArchiveReasons.UnsafePath);
        e.Entry.ShouldBe("../escape");
        stream.Position.ShouldBe(padded.Length, "an upload is read to its end before the answer");
        Leftovers().ShouldBeEmpty();
    }

    [Fact]
    public void An_export_imports_again_to_the_same_files()
    {
        var first = Store.Import("first", new MemoryStream(Tar(("./", null), ("etc/", null), ("etc/a", "a"), ("usr/bin/x", "xx"))), new ImportOrigin("x")).Image;
        var exported = new MemoryStream();
        Store.Export("first", exported, ArchiveCompression.Zstd);

        var second = Store.Import("second", new MemoryStream(exported.ToArray()), new ImportOrigin("first.tar.zst")).Image;

        second.Digest.ShouldBe(first.Digest);
        second.Source!.Format.ShouldBe("tar.zst");
    }
}
