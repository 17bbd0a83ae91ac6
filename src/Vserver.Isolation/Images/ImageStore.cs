using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Naming;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace Vserver.Isolation.Images;

/// <summary>An image of the store: <see cref="Digest"/> is over its files (paths, modes, link targets, contents), the
/// same for the same tree however it came; <see cref="Source"/> says how it came (null: built before sources were
/// recorded, from the recipe of its name).</summary>
public sealed record ImageRecord(string Name, long SizeBytes, DateTimeOffset Created, string Digest)
{
    [System.Text.Json.Serialization.JsonIgnore]
    public string RootfsPath { get; init; } = "";

    public ImageSource? Source { get; init; }
}

/// <summary>An imported image and what the import skipped or changed (one line each).</summary>
public sealed record ImportResult(ImageRecord Image, IReadOnlyList<string> Notes);

/// <summary>What an <see cref="ImageException"/> is about, for whoever turns it into an answer.</summary>
public enum ImageProblem { InvalidName, NoRecipe, Exists, NotFound, BuildFailed, BadArchive, Busy, DiskFull }

/// <summary>A refusal of the image store: one plain line, the <see cref="ImageProblem"/> and the image it names; for a
/// <see cref="ImageProblem.BadArchive"/>, the <see cref="ArchiveReasons"/> reason and the entry at fault.</summary>
public sealed class ImageException(ImageProblem problem, string image, string message) : Exception(message)
{
    public ImageProblem Problem { get; } = problem;
    public string Image { get; } = image;
    public string? Reason { get; init; }
    public string? Entry { get; init; }
}

/// <summary>
/// Images under ROOT/images/NAME/{rootfs/, image.json}. An image is built once from its recipe (images/NAME/build.sh
/// in the source tree) or imported from an archive, and never written again: it is the shared read-only lower layer of
/// every vserver made from it. Both are made in a hidden staging directory (.NAME.build-*, .NAME.import-*) that is
/// renamed into place whole or removed, so no half image ever bears a name; one operation at a time holds a name.
/// Every name is checked against <see cref="DnsLabel"/> before it becomes a path, so no name can reach outside
/// ROOT/images or RecipesRoot. Files are owned as root sees them in the guest (0 is root): each unprivileged vserver
/// sees the tree through an idmapped mount, so neither a build nor an import shifts ids.
/// </summary>
public sealed class ImageStore(string imagesRoot, string recipesRoot)
{
    public string ImagesRoot { get; } = imagesRoot;
    public string RecipesRoot { get; } = recipesRoot;

    /// <summary>Names an operation holds (build, import, remove, or exports by count), so two never meet on one name.</summary>
    private readonly Dictionary<string, (string Operation, int Count)> _busy = new(StringComparer.Ordinal);

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
        using var hold = HoldName(name, "build");
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
            var record = new ImageRecord(name, size, DateTimeOffset.UtcNow, digest) { Source = new ImageSource { Kind = ImageSource.Recipe, RecipeName = name } };
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

    /// <summary>
    /// Makes image <paramref name="name"/> from an archive read from <paramref name="archive"/> (see
    /// <see cref="ImageImport"/>): staged under a hidden name, measured, flushed and renamed into place whole. A refusal
    /// (<see cref="ImageProblem.BadArchive"/> and the others) leaves nothing behind, and the archive is read to its
    /// end either way.
    /// </summary>
    public ImportResult Import(string name, Stream archive, ImportOrigin origin)
    {
        if (DnsLabel.Error(name, "image") is { } invalid)
        {
            Drain(archive);
            throw new ImageException(ImageProblem.InvalidName, name, invalid);
        }
        NameHold? hold = null;
        try
        {
            hold = HoldName(name, "import");
            if (StateFile.Inspect(Directory.CreateDirectory(ImagesRoot).FullName, Path.Combine(ImagesRoot, name)) != StateEntry.Missing)
                throw new ImageException(ImageProblem.Exists, name, $"image '{name}' already exists; import under another name");
        }
        catch
        {
            hold?.Dispose();
            Drain(archive);
            throw;
        }
        using (hold)
        {
            var staging = Path.Combine(ImagesRoot, $".{name}.import-{Environment.ProcessId}-{Guid.NewGuid():N}");
            var what = $"import of image '{name}' from {origin.File}";
            try
            {
                Directory.CreateDirectory(staging);
                File.SetUnixFileMode(staging, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                var (source, notes) = ImageImport.Unpack(archive, staging, origin);
                var rootfs = Path.Combine(staging, "rootfs");
                var allNotes = notes.ToList();
                if (ImageInit.Detect(rootfs) is { Kind: InitKind.None } init)
                    allNotes.Add($"the image has no init: {init.Display}; a vserver made from it needs a command (vsctl create --cmd)");
                var (size, digest) = Measure(rootfs);
                var record = new ImageRecord(name, size, DateTimeOffset.UtcNow, digest) { Source = source };
                AtomicFile.WriteAllText(Path.Combine(staging, "image.json"), JsonSerializer.Serialize(record, ImageJson.Default.ImageRecord));
                // Private while it was made; a published image's directory is as a built one's.
                File.SetUnixFileMode(staging, (UnixFileMode)0x1ED /* 0755 */);
                if (!ImageImport.Publish(ImagesRoot, staging, name))
                    throw new ImageException(ImageProblem.Exists, name, $"image '{name}' already exists; import under another name");
                return new ImportResult(record with { RootfsPath = Path.Combine(ImagesRoot, name, "rootfs") }, allNotes);
            }
            catch (ArchiveException e)
            {
                RemoveTree(staging);
                throw new ImageException(ImageProblem.BadArchive, name, $"{what} refused: {e.Message}; nothing was kept") { Reason = e.Reason, Entry = e.Entry };
            }
            catch (IOException e) when (e is SystemCallException { Errno: Errno.ENOSPC or 122 } || e.HResult is Errno.ENOSPC or 122)
            {
                RemoveTree(staging);
                throw new ImageException(ImageProblem.DiskFull, name,
                    $"{what} failed: the state disk is full ({e.Message}); free space on the file system of {ImagesRoot} (df {ImagesRoot}) and retry; nothing was kept");
            }
            catch
            {
                RemoveTree(staging);
                throw;
            }
        }
    }

    /// <summary>Writes image <paramref name="name"/>'s files to <paramref name="output"/> as a tarball (see
    /// <see cref="ImageExport"/>). The image is looked up before the first byte is written; it cannot be removed while
    /// this runs.</summary>
    public void Export(string name, Stream output, ArchiveCompression compression)
    {
        if (DnsLabel.Error(name, "image") is { } invalid) throw new ImageException(ImageProblem.InvalidName, name, invalid);
        using var hold = HoldName(name, "export");
        var image = Find(name) ?? throw new ImageException(ImageProblem.NotFound, name, $"no image named '{name}'");
        StateFile.RequireDirectory(ImagesRoot, image.RootfsPath);
        ImageExport.Write(image.RootfsPath, output, compression);
    }

    /// <summary>Holds <paramref name="name"/> for <paramref name="operation"/> until disposed; exports share a name,
    /// anything else has it alone.</summary>
    private NameHold HoldName(string name, string operation)
    {
        lock (_busy)
        {
            if (_busy.TryGetValue(name, out var held))
            {
                if (!(operation == "export" && held.Operation == "export"))
                    throw new ImageException(ImageProblem.Busy, name,
                        $"image '{name}' is being {Past(held.Operation)} by another request; retry when it is done");
                _busy[name] = (held.Operation, held.Count + 1);
            }
            else
            {
                _busy[name] = (operation, 1);
            }
        }
        return new NameHold(this, name);
    }

    private static string Past(string operation) => operation switch
    {
        "build" => "built",
        "import" => "imported",
        "remove" => "removed",
        _ => "exported",
    };

    private void Release(string name)
    {
        lock (_busy)
        {
            if (!_busy.TryGetValue(name, out var held)) return;
            if (held.Count > 1) _busy[name] = (held.Operation, held.Count - 1);
            else _busy.Remove(name);
        }
    }

    private sealed class NameHold(ImageStore store, string name) : IDisposable
    {
        private bool _released;

        public void Dispose()
        {
            if (_released) return;
            _released = true;
            store.Release(name);
        }
    }

    /// <summary>Reads a stream to its end (an upload the store refuses before it looks at it is still taken whole).</summary>
    private static void Drain(Stream stream)
    {
        var buffer = new byte[1 << 16];
        try
        {
            while (stream.Read(buffer, 0, buffer.Length) > 0)
            {
            }
        }
        catch (IOException)
        {
        }
    }

    public void Remove(string name)
    {
        if (DnsLabel.Error(name, "image") is { } invalid) throw new ImageException(ImageProblem.InvalidName, name, invalid);
        var dir = Path.Combine(ImagesRoot, name);
        if (Find(name) is null) throw new ImageException(ImageProblem.NotFound, name, $"no image named '{name}'");
        using var hold = HoldName(name, "remove");
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
[System.Text.Json.Serialization.JsonSerializable(typeof(ImageSource))]
internal sealed partial class ImageJson : System.Text.Json.Serialization.JsonSerializerContext;
