using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vserver.Isolation.Naming;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace Vserver.Isolation.Images;

public sealed record ImageRecord(string Name, long SizeBytes, DateTimeOffset Created, string Digest)
{
    [System.Text.Json.Serialization.JsonIgnore]
    public string RootfsPath { get; init; } = "";
}

/// <summary>What an <see cref="ImageException"/> is about, for whoever turns it into an answer.</summary>
public enum ImageProblem { InvalidName, NoRecipe, Exists, NotFound, BuildFailed }

/// <summary>A refusal of the image store: one plain line, the <see cref="ImageProblem"/> and the image it names.</summary>
public sealed class ImageException(ImageProblem problem, string image, string message) : Exception(message)
{
    public ImageProblem Problem { get; } = problem;
    public string Image { get; } = image;
}

/// <summary>
/// Built images under ROOT/images/NAME/{rootfs/, image.json}. An image is built once from its recipe
/// (images/NAME/build.sh in the source tree) and never written again: it is the shared read-only lower layer of
/// every vserver made from it. Every name is checked against <see cref="DnsLabel"/> before it becomes a path, so no
/// name can reach outside ROOT/images or RecipesRoot.
/// </summary>
public sealed class ImageStore(string imagesRoot, string recipesRoot)
{
    public string ImagesRoot { get; } = imagesRoot;
    public string RecipesRoot { get; } = recipesRoot;

    public IReadOnlyList<ImageRecord> List()
    {
        if (!Directory.Exists(ImagesRoot)) return [];
        return Directory.EnumerateDirectories(ImagesRoot)
            .Select(d => Find(Path.GetFileName(d)))
            .OfType<ImageRecord>()
            .OrderBy(i => i.Name, StringComparer.Ordinal)
            .ToList();
    }

    public ImageRecord? Find(string name)
    {
        if (!DnsLabel.IsValid(name)) return null;
        var dir = Path.Combine(ImagesRoot, name);
        var meta = Path.Combine(dir, "image.json");
        try
        {
            // A record that is not a regular file reached through no link (or whose rootfs is not a directory) is no
            // image: its rootfs would be the lower layer of guests, mounted as root.
            if (StateFile.TryReadAllBytes(ImagesRoot, meta) is not { } bytes) return null;
            if (StateFile.Inspect(ImagesRoot, Path.Combine(dir, "rootfs")) != StateEntry.Directory) return null;
            var record = JsonSerializer.Deserialize(bytes, ImageJson.Default.ImageRecord);
            return record is null ? null : record with { Name = name, RootfsPath = Path.Combine(dir, "rootfs") };
        }
        catch (Exception e) when (e is JsonException or StateFileException)
        {
            return null;
        }
    }

    public IReadOnlyList<string> Recipes() =>
        Directory.Exists(RecipesRoot)
            ? Directory.EnumerateDirectories(RecipesRoot).Where(d => File.Exists(Path.Combine(d, "build.sh")))
                .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList()
            : [];

    public ImageRecord Build(string name)
    {
        if (DnsLabel.Error(name, "image") is { } invalid) throw new ImageException(ImageProblem.InvalidName, name, invalid);
        var recipe = Path.Combine(RecipesRoot, name, "build.sh");
        if (!File.Exists(recipe))
            throw new ImageException(ImageProblem.NoRecipe, name, $"no recipe for image '{name}' in {RecipesRoot}; available: {string.Join(", ", Recipes())}");
        var dir = Path.Combine(ImagesRoot, name);
        if (Directory.Exists(dir))
            throw new ImageException(ImageProblem.Exists, name, $"image '{name}' already exists; images are read-only once built");
        Directory.CreateDirectory(ImagesRoot);
        var staging = Path.Combine(ImagesRoot, $".{name}.build-{Environment.ProcessId}");
        RemoveTree(staging);
        try
        {
            var rootfs = Path.Combine(staging, "rootfs");
            Directory.CreateDirectory(rootfs);
            HostProgram.Run("/bin/sh", [recipe, rootfs], timeout: TimeSpan.FromMinutes(30));
            var (size, digest) = Measure(rootfs);
            var record = new ImageRecord(name, size, DateTimeOffset.UtcNow, digest);
            AtomicFile.WriteAllText(Path.Combine(staging, "image.json"), JsonSerializer.Serialize(record, ImageJson.Default.ImageRecord));
            Directory.Move(staging, dir);
            return record with { RootfsPath = Path.Combine(dir, "rootfs") };
        }
        catch (HostProgramException e)
        {
            RemoveTree(staging);
            throw new ImageException(ImageProblem.BuildFailed, name, $"building image '{name}' failed: {e.Message}");
        }
        catch
        {
            RemoveTree(staging);
            throw;
        }
    }

    public void Remove(string name)
    {
        if (DnsLabel.Error(name, "image") is { } invalid) throw new ImageException(ImageProblem.InvalidName, name, invalid);
        var dir = Path.Combine(ImagesRoot, name);
        if (Find(name) is null) throw new ImageException(ImageProblem.NotFound, name, $"no image named '{name}'");
        // Rename first so a crash mid-delete never leaves a half image that looks whole.
        var doomed = Path.Combine(ImagesRoot, $".{name}.removing-{Environment.ProcessId}");
        Directory.Move(dir, doomed);
        RemoveTree(doomed);
    }

    /// <summary>Drops leftovers of builds or removals interrupted by a crash.</summary>
    public void CleanStaging()
    {
        if (!Directory.Exists(ImagesRoot)) return;
        foreach (var d in Directory.EnumerateDirectories(ImagesRoot, ".*")) RemoveTree(d);
    }

    /// <summary>Apparent size and a digest over paths, modes, link targets and contents, in a stable order.</summary>
    private static (long Size, string Digest) Measure(string rootfs)
    {
        long size = 0;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var entry in Walk(new DirectoryInfo(rootfs)).OrderBy(e => e.FullName, StringComparer.Ordinal))
        {
            var rel = Path.GetRelativePath(rootfs, entry.FullName);
            hash.AppendData(Encoding.UTF8.GetBytes($"{rel}\0{(int)entry.UnixFileMode}\0{entry.LinkTarget}\0"));
            // Device nodes, fifos and sockets have no size; never open them.
            if (entry is FileInfo { LinkTarget: null, Length: > 0 } file)
            {
                size += file.Length;
                using var stream = file.OpenRead();
                hash.AppendData(SHA256.HashData(stream));
            }
        }
        return (size, "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>Every entry below dir, never following a symlink: an image's /dev/fd points at the host's /proc/self/fd.</summary>
    private static IEnumerable<FileSystemInfo> Walk(DirectoryInfo dir)
    {
        var options = new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = false, ReturnSpecialDirectories = false };
        foreach (var entry in dir.EnumerateFileSystemInfos("*", options))
        {
            yield return entry;
            if (entry is DirectoryInfo { LinkTarget: null } sub)
                foreach (var inner in Walk(sub)) yield return inner;
        }
    }

    internal static void RemoveTree(string path)
    {
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
    }
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, WriteIndented = true)]
[System.Text.Json.Serialization.JsonSerializable(typeof(ImageRecord))]
internal sealed partial class ImageJson : System.Text.Json.Serialization.JsonSerializerContext;
