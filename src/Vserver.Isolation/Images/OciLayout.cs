using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Storage;

namespace Vserver.Isolation.Images;

/// <summary>One file system layer of an OCI image: its blob's digest, media type and size.</summary>
internal sealed record OciLayer(string Digest, string MediaType, long Size);

/// <summary>The image an OCI layout holds for this host: its manifest's digest, its layers (lowest first), its platform
/// and the tag it was found by.</summary>
internal sealed record OciImage(string ManifestDigest, IReadOnlyList<OciLayer> Layers, string Platform, string? Tag);

/// <summary>
/// An OCI image layout (image-spec image-layout.md: <c>oci-layout</c>, <c>index.json</c>, <c>blobs/ALG/HEX</c>), as a
/// directory the import unpacked. Picks the image for this host's platform from the index (nested indexes and Docker's
/// manifest lists too), checks every blob it reads against its digest, and refuses what it cannot use in one line.
/// </summary>
internal static partial class OciLayout
{
    private const string IndexType = "application/vnd.oci.image.index.v1+json";
    private const string DockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";
    private const string ManifestType = "application/vnd.oci.image.manifest.v1+json";
    private const string DockerManifestType = "application/vnd.docker.distribution.manifest.v2+json";
    private const string RefName = "org.opencontainers.image.ref.name";
    private const int MaxDepth = 4;

    private static readonly HashSet<string> LayerTypes = new(StringComparer.Ordinal)
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };

    [GeneratedRegex("^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")]
    private static partial Regex DigestPattern();

    /// <summary>The platform an image must be for to run here, as OCI names it (linux/amd64 on x86-64).</summary>
    public static string HostPlatform => "linux/" + RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        Architecture.X86 => "386",
        Architecture.Arm => "arm",
        Architecture.S390x => "s390x",
        Architecture.Ppc64le => "ppc64le",
        Architecture.RiscV64 => "riscv64",
        var other => other.ToString().ToLowerInvariant(),
    };

    /// <summary>Whether <paramref name="dir"/> is an OCI layout: an <c>oci-layout</c> file and an <c>index.json</c> at
    /// its top, regular files reached through no link.</summary>
    public static bool IsLayout(string dir)
    {
        try
        {
            return StateFile.Inspect(dir, Path.Combine(dir, "oci-layout")) == StateEntry.RegularFile
                && StateFile.Inspect(dir, Path.Combine(dir, "index.json")) == StateEntry.RegularFile;
        }
        catch (StateFileException)
        {
            return false;
        }
    }

    /// <summary>The one image of <paramref name="platform"/> the layout holds (named by <paramref name="tag"/>, its
    /// org.opencontainers.image.ref.name, when the layout holds several).</summary>
    public static OciImage Resolve(string dir, string? tag, string platform)
    {
        var index = Json(dir, "index.json", null, "index.json");
        var manifests = new List<(JsonElement Descriptor, string? Tag)>();
        var tags = new List<string>();
        Collect(dir, index, "index.json", depth: 0, tag, manifests, tags);
        if (tag is not null && manifests.Count == 0)
            throw new ArchiveException(ArchiveReasons.NoPlatform,
                $"the OCI layout has no image tagged '{ArchivePath.Shown(tag)}' ({(tags.Count == 0 ? "it has no tags" : "its tags: " + string.Join(", ", tags.Distinct()))})");
        if (manifests.Count == 0) throw new ArchiveException(ArchiveReasons.NoPlatform, "the OCI layout's index lists no image");

        var found = new List<(string Digest, JsonElement Manifest, string? Tag)>();
        var platforms = new List<string>();
        foreach (var (descriptor, imageTag) in manifests)
        {
            var digest = Digest(descriptor, "a manifest of the index");
            string? described = descriptor.TryGetProperty("platform", out var p) && p.ValueKind == JsonValueKind.Object ? PlatformOf(p) : null;
            if (described is not null && described != platform && !described.StartsWith(platform + "/", StringComparison.Ordinal))
            {
                platforms.Add(described);
                continue;
            }
            var manifest = Json(dir, BlobPath(digest), digest, $"manifest {digest}");
            var config = manifest.TryGetProperty("config", out var c) && c.ValueKind == JsonValueKind.Object
                ? c
                : throw new ArchiveException(ArchiveReasons.Corrupt, $"manifest {digest} has no config");
            var configDigest = Digest(config, $"the config of manifest {digest}");
            var actual = described ?? PlatformOf(Json(dir, BlobPath(configDigest), configDigest, $"image config {configDigest}"));
            if (actual != platform && !actual.StartsWith(platform + "/", StringComparison.Ordinal))
            {
                platforms.Add(actual);
                continue;
            }
            if (!found.Any(f => f.Digest == digest)) found.Add((digest, manifest, imageTag));
        }
        if (found.Count == 0)
            throw new ArchiveException(ArchiveReasons.NoPlatform,
                $"the OCI layout has no {platform} image (it has {string.Join(", ", platforms.Distinct())}); a vserver runs the host's own architecture");
        if (found.Count > 1)
            throw new ArchiveException(ArchiveReasons.NoPlatform,
                $"the OCI layout holds {found.Count} {platform} images ({string.Join(", ", found.Select(f => f.Tag ?? f.Digest))}); name one with its tag");
        var (manifestDigest, chosen, chosenTag) = found[0];
        var layers = new List<OciLayer>();
        if (!chosen.TryGetProperty("layers", out var list) || list.ValueKind != JsonValueKind.Array)
            throw new ArchiveException(ArchiveReasons.Corrupt, $"manifest {manifestDigest} has no list of layers");
        foreach (var layer in list.EnumerateArray())
        {
            var digest = Digest(layer, $"a layer of manifest {manifestDigest}");
            var mediaType = layer.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : "";
            if (!LayerTypes.Contains(mediaType))
                throw new ArchiveException(ArchiveReasons.Unsupported,
                    $"layer {digest} of the image is of media type '{ArchivePath.Shown(mediaType)}', which is no file system layer (tar, tar+gzip or tar+zstd)");
            var size = layer.TryGetProperty("size", out var s) && s.TryGetInt64(out var bytes) && bytes >= 0 ? bytes : -1;
            layers.Add(new OciLayer(digest, mediaType, size));
        }
        return new OciImage(manifestDigest, layers, platform, chosenTag);
    }

    /// <summary>The manifests an index lists (nested indexes descended), those of <paramref name="tag"/> only when one
    /// is given; the tags seen go to <paramref name="tags"/>.</summary>
    private static void Collect(string dir, JsonElement index, string what, int depth, string? tag, List<(JsonElement, string?)> manifests, List<string> tags)
    {
        if (!index.TryGetProperty("manifests", out var list) || list.ValueKind != JsonValueKind.Array)
            throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} has no list of manifests");
        foreach (var descriptor in list.EnumerateArray())
        {
            if (descriptor.ValueKind != JsonValueKind.Object) throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} lists a manifest that is no object");
            var imageTag = descriptor.TryGetProperty("annotations", out var a) && a.ValueKind == JsonValueKind.Object
                && a.TryGetProperty(RefName, out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            if (depth == 0 && imageTag is not null) tags.Add(imageTag);
            if (depth == 0 && tag is not null && imageTag != tag) continue;
            var mediaType = descriptor.TryGetProperty("mediaType", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
            if (mediaType is IndexType or DockerListType)
            {
                if (depth + 1 >= MaxDepth) throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} nests indexes deeper than {MaxDepth}");
                var digest = Digest(descriptor, $"an index listed in {what}");
                var nested = new List<(JsonElement, string?)>();
                Collect(dir, Json(dir, BlobPath(digest), digest, $"index {digest}"), $"index {digest}", depth + 1, tag, nested, tags);
                manifests.AddRange(nested.Select(n => (n.Item1, n.Item2 ?? imageTag)));
            }
            else if (mediaType is null or ManifestType or DockerManifestType)
            {
                manifests.Add((descriptor, imageTag));
            }
            // Anything else an index lists (artifacts, signatures) is no image to run.
        }
    }

    private static string PlatformOf(JsonElement element)
    {
        var os = element.TryGetProperty("os", out var o) && o.ValueKind == JsonValueKind.String ? o.GetString() : null;
        var arch = element.TryGetProperty("architecture", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
        var variant = element.TryGetProperty("variant", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        return $"{os ?? "unknown"}/{arch ?? "unknown"}{(variant is { Length: > 0 } ? "/" + variant : "")}";
    }

    private static string Digest(JsonElement descriptor, string what)
    {
        var digest = descriptor.TryGetProperty("digest", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString()! : "";
        // The digest becomes a path (blobs/ALG/HEX): nothing but an algorithm this checks and hex digits passes.
        return DigestPattern().IsMatch(digest)
            ? digest
            : throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} has digest '{ArchivePath.Shown(digest)}', which is no sha256 or sha512 digest");
    }

    private static string BlobPath(string digest) => "blobs/" + digest.Replace(':', '/');

    /// <summary>A JSON document of the layout, checked against its digest when it is a blob.</summary>
    private static JsonElement Json(string dir, string path, string? digest, string what)
    {
        byte[] bytes;
        try
        {
            bytes = StateFile.TryReadAllBytes(dir, Path.Combine(dir, path))
                ?? throw new ArchiveException(ArchiveReasons.Corrupt, $"the OCI layout lacks {what} ({path})");
        }
        catch (StateFileException e)
        {
            throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} of the OCI layout is unusable: {e.Message}");
        }
        if (digest is not null && DigestOf(bytes, digest) != digest)
            throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} does not match its digest: the OCI layout is corrupt");
        try
        {
            using var document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 32 });
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? document.RootElement.Clone()
                : throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} is no JSON object");
        }
        catch (JsonException e)
        {
            throw new ArchiveException(ArchiveReasons.Corrupt, $"{what} is not valid JSON (line {(e.LineNumber ?? 0) + 1})");
        }
    }

    private static string DigestOf(byte[] bytes, string like) =>
        like.StartsWith("sha512:", StringComparison.Ordinal)
            ? "sha512:" + Convert.ToHexStringLower(SHA512.HashData(bytes))
            : "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>A layer's blob, opened beneath the layout through no link, a regular file of the size its descriptor
    /// gives; the caller reads it through a <see cref="HashingStream"/> of <see cref="Algorithm"/> and checks the digest.</summary>
    public static FileStream OpenBlob(string dir, OciLayer layer)
    {
        var root = Libc.Open(dir, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (root < 0) throw SystemCallException.FromLastError($"open {dir}");
        int fd;
        try
        {
            fd = Libc.Openat2(root, BlobPath(layer.Digest), new Libc.OpenHow
            {
                Flags = (ulong)(Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_NONBLOCK | Libc.O_CLOEXEC),
                Resolve = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS,
            });
        }
        finally
        {
            Libc.Close(root);
        }
        if (fd < 0)
            throw new ArchiveException(ArchiveReasons.Corrupt,
                $"the OCI layout lacks layer {layer.Digest} ({BlobPath(layer.Digest)}: {Errno.Name(Marshal.GetLastPInvokeError())})");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (Libc.Fstat(fd, out var stat) != 0 || (stat.Mode & Libc.S_IFMT) != Libc.S_IFREG)
        {
            handle.Dispose();
            throw new ArchiveException(ArchiveReasons.Corrupt, $"layer {layer.Digest} of the OCI layout is not a regular file");
        }
        if (layer.Size >= 0 && stat.Size != layer.Size)
        {
            handle.Dispose();
            throw new ArchiveException(stat.Size < layer.Size ? ArchiveReasons.Truncated : ArchiveReasons.Corrupt,
                $"layer {layer.Digest} is {stat.Size} bytes where the manifest says {layer.Size}: the OCI layout is {(stat.Size < layer.Size ? "truncated" : "corrupt")}");
        }
        return new FileStream(handle, FileAccess.Read, bufferSize: 1 << 16);
    }

    /// <summary>The hash a digest is of.</summary>
    public static HashAlgorithmName Algorithm(string digest) =>
        digest.StartsWith("sha512:", StringComparison.Ordinal) ? HashAlgorithmName.SHA512 : HashAlgorithmName.SHA256;
}
