using System.Security.Cryptography;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Storage;

namespace Vserver.Isolation.Images;

/// <summary>Where an image came from: built from a recipe, or imported from a file (with its digest and, for an OCI
/// image, the manifest's digest and the tag it was picked by).</summary>
public sealed record ImageSource
{
    public const string Recipe = "recipe", Import = "import";

    /// <summary><see cref="Recipe"/> or <see cref="Import"/>.</summary>
    public required string Kind { get; init; }
    /// <summary>The recipe (images/NAME/build.sh) a built image came from.</summary>
    public string? RecipeName { get; init; }
    /// <summary>What the import was given, as the client named it (a path on its host, or "-" for stdin).</summary>
    public string? File { get; init; }
    /// <summary>"tar", "tar.gz", "tar.xz", "tar.zst", "tar.bz2"; "oci" for an OCI layout (in a tar of any of those).</summary>
    public string? Format { get; init; }
    /// <summary>sha256 of the bytes imported.</summary>
    public string? ArchiveDigest { get; init; }
    /// <summary>The OCI image manifest's digest.</summary>
    public string? ManifestDigest { get; init; }
    /// <summary>The OCI tag (org.opencontainers.image.ref.name) the image was picked by, when it had one.</summary>
    public string? Tag { get; init; }
}

/// <summary>What an import was asked: the name its client gives the file, and an OCI tag to pick an image by.</summary>
public sealed record ImportOrigin(string File, string? Tag = null);

/// <summary>
/// An archive unpacked into an image root: a root file system tarball as it comes (docker export, LXC and Incus
/// rootfs tarballs, tar -C ROOT -c .), or an OCI layout (a tar of one) whose image for this host has its layers applied
/// in order with their whiteouts. Everything is unpacked by <see cref="RootfsWriter"/> (never through a link, never
/// outside the root); every OCI blob is checked against its digest.
/// </summary>
internal static class ImageImport
{
    /// <summary>Unpacks <paramref name="archive"/> into <paramref name="staging"/>/rootfs (the directory is made here;
    /// <paramref name="staging"/> exists). The archive is read to its end, refused or not.</summary>
    public static (ImageSource Source, IReadOnlyList<string> Notes) Unpack(Stream archive, string staging, ImportOrigin origin)
    {
        using var hashed = new HashingStream(archive, HashAlgorithmName.SHA256);
        var unpacked = MakeDirectory(Path.Combine(staging, "unpacked"));
        ArchiveCompression compression;
        IReadOnlyList<string> notes;
        using (var input = ArchiveInput.Open(hashed, "the archive"))
        {
            compression = input.Compression;
            notes = UnpackTar(input, unpacked, whiteouts: false);
        }
        var archiveDigest = hashed.Digest();
        var rootfs = Path.Combine(staging, "rootfs");
        var layout = LayoutIn(unpacked);
        if (layout is null)
        {
            if (origin.Tag is not null)
                throw new ArchiveException(ArchiveReasons.UnknownFormat, $"a tag ('{ArchivePath.Shown(origin.Tag)}') picks an image of an OCI layout, and the archive is a root file system tarball");
            Directory.Move(unpacked, rootfs);
            return (new ImageSource
            {
                Kind = ImageSource.Import, File = origin.File, ArchiveDigest = archiveDigest,
                Format = compression == ArchiveCompression.None ? "tar" : "tar." + Suffix(compression),
            }, notes);
        }
        var image = OciLayout.Resolve(layout, origin.Tag, OciLayout.HostPlatform);
        MakeDirectory(rootfs);
        notes = ApplyLayers(layout, image, rootfs);
        ImageStore.RemoveTree(unpacked);
        return (new ImageSource
        {
            Kind = ImageSource.Import, File = origin.File, ArchiveDigest = archiveDigest, Format = "oci",
            ManifestDigest = image.ManifestDigest, Tag = image.Tag,
        }, notes);
    }

    private static string Suffix(ArchiveCompression compression) => compression switch
    {
        ArchiveCompression.Gzip => "gz",
        ArchiveCompression.Xz => "xz",
        ArchiveCompression.Zstd => "zst",
        ArchiveCompression.Bzip2 => "bz2",
        _ => "",
    };

    /// <summary>The OCI layout an unpacked archive is: its top, or the one directory at its top (tar -c DIR).</summary>
    private static string? LayoutIn(string unpacked)
    {
        if (OciLayout.IsLayout(unpacked)) return unpacked;
        var entries = Directory.EnumerateFileSystemEntries(unpacked).Take(2).ToList();
        if (entries.Count == 1 && StateFile.Inspect(unpacked, entries[0]) == StateEntry.Directory && OciLayout.IsLayout(entries[0])) return entries[0];
        return null;
    }

    private static IReadOnlyList<string> ApplyLayers(string layout, OciImage image, string rootfs)
    {
        using var writer = new RootfsWriter(rootfs);
        for (var i = 0; i < image.Layers.Count; i++)
        {
            var layer = image.Layers[i];
            using var blob = OciLayout.OpenBlob(layout, layer);
            using var hashed = new HashingStream(blob, OciLayout.Algorithm(layer.Digest));
            var what = $"layer {i + 1} of {image.Layers.Count} ({layer.Digest})";
            using (var input = ArchiveInput.Open(hashed, what))
            {
                writer.BeginLayer(whiteouts: true);
                Read(input, writer);
            }
            if (hashed.Digest() != layer.Digest)
                throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} does not match its digest: the OCI layout is corrupt");
        }
        writer.Finish();
        return writer.Notes();
    }

    private static IReadOnlyList<string> UnpackTar(ArchiveInput input, string root, bool whiteouts)
    {
        using var writer = new RootfsWriter(root);
        writer.BeginLayer(whiteouts);
        Read(input, writer);
        writer.Finish();
        return writer.Notes();
    }

    /// <summary>Every entry of the tar into the writer, then the input read to its end and its decompressor's verdict;
    /// on a refusal the input is read to its end too, before the refusal goes up.</summary>
    private static void Read(ArchiveInput input, RootfsWriter writer)
    {
        try
        {
            using var reader = new TarArchiveReader(input.Tar);
            while (reader.Next() is { } entry) writer.Add(entry, reader.Data);
            input.Complete();
        }
        catch (ArchiveException e)
        {
            throw input.Abandon(e);
        }
        catch
        {
            input.Abandon();
            throw;
        }
    }

    private static string MakeDirectory(string path)
    {
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>Flushes the staged image to disk (syncfs of its file system), then renames it into place unless
    /// something is there already (RENAME_NOREPLACE): a crash never leaves a published image with files not yet written.</summary>
    internal static bool Publish(string imagesRoot, string staging, string name)
    {
        var fd = Libc.Open(imagesRoot, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw SystemCallException.FromLastError($"open {imagesRoot}");
        try
        {
            if (Libc.Syncfs(fd) != 0) throw SystemCallException.FromLastError($"syncfs {imagesRoot}");
            if (Libc.Renameat2(fd, Path.GetFileName(staging), fd, name, Libc.RENAME_NOREPLACE) == 0) return true;
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno == Errno.EEXIST) return false;
            throw new SystemCallException($"rename {staging} to {Path.Combine(imagesRoot, name)}", errno);
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
