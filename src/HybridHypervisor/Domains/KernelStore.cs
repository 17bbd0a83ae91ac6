using Vserver.Isolation.Storage;
using Vserver.Isolation.Naming;
using Vserver.Isolation.Processes;

namespace HybridHypervisor.Domains;

/// <summary>A built domain kernel: what QEMU boots (<see cref="Vmlinux"/> with <see cref="Initrd"/>) and what it is.</summary>
public sealed record KernelRecord(string Name, string Dir, string Version, string Package, long SizeBytes, DateTimeOffset Built)
{
    /// <summary>What its initramfs can do beyond booting, from the recipe's <c>features</c> file ("hold": a held boot
    /// for a promotion's cut-over); empty for kernels built before the file existed.</summary>
    public IReadOnlySet<string> Features { get; init; } = new HashSet<string>();

    public string Vmlinux => Path.Combine(Dir, "vmlinux");
    public string Initrd => Path.Combine(Dir, "initrd.img");
}

/// <summary>
/// Domain kernels under ROOT/kernels/NAME/, each the output of the images/kernel recipe (Debian's cloud kernel package,
/// unpacked, never installed on the host: vmlinux, initrd.img, version, package). A kernel is built into a hidden
/// staging directory and renamed into place, so a half-built kernel never looks like one.
/// </summary>
public sealed class KernelStore(string kernelsRoot, string recipesRoot)
{
    public string Root { get; } = kernelsRoot;

    public string Recipe => Path.Combine(recipesRoot, "kernel", "build.sh");

    public IReadOnlyList<KernelRecord> List() =>
        Directory.Exists(Root)
            ? Directory.EnumerateDirectories(Root).Select(d => Find(Path.GetFileName(d))).OfType<KernelRecord>()
                .OrderBy(k => k.Name, StringComparer.Ordinal).ToList()
            : [];

    public KernelRecord? Find(string name)
    {
        if (!DnsLabel.IsValid(name)) return null;
        var dir = Path.Combine(Root, name);
        var vmlinux = Path.Combine(dir, "vmlinux");
        var initrd = Path.Combine(dir, "initrd.img");
        // QEMU boots these as root: a kernel is built only if both are regular files reached through no link.
        if (!IsRegularFile(vmlinux) || !IsRegularFile(initrd)) return null;
        return new KernelRecord(name, dir, Line(Path.Combine(dir, "version")) ?? "?", Line(Path.Combine(dir, "package")) ?? "?",
            new FileInfo(vmlinux).Length + new FileInfo(initrd).Length, new DateTimeOffset(File.GetLastWriteTimeUtc(vmlinux), TimeSpan.Zero))
        {
            Features = Line(Path.Combine(dir, "features")) is { } features
                ? features.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal)
                : new HashSet<string>(),
        };
    }

    private bool IsRegularFile(string path)
    {
        try
        {
            return StateFile.Inspect(Root, path) == StateEntry.RegularFile;
        }
        catch (StateFileException)
        {
            return false;
        }
    }

    /// <summary>A record's text, trimmed; null when it is missing or not a regular file.</summary>
    private string? Line(string path)
    {
        try
        {
            return StateFile.TryReadAllText(Root, path)?.Trim();
        }
        catch (StateFileException)
        {
            return null;
        }
    }

    /// <summary>The one line for a kernel that is not there, with those that are.</summary>
    public string Missing(string name) => MissingError(name).Message;

    /// <summary>The refusal for a kernel that is not there (<see cref="Vserver.Api.ErrorCodes.KernelMissing"/>).</summary>
    public FleetException MissingError(string name, FleetError kind = FleetError.Conflict) =>
        FleetException.KernelMissing(kind, name, List().Select(k => k.Name));

    public KernelRecord Build(string name)
    {
        if (DnsLabel.Error(name, "kernel") is { } invalid) throw FleetException.Invalid(invalid);
        if (!File.Exists(Recipe)) throw FleetException.Invalid($"the kernel recipe {Recipe} is missing; set VSERVER_IMAGES to the source tree's images/");
        var dir = Path.Combine(Root, name);
        if (Directory.Exists(dir))
            throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.KernelExists, $"kernel '{name}' already exists", ("kernel", name));
        Directory.CreateDirectory(Root);
        var staging = Path.Combine(Root, $".{name}.build-{Guid.NewGuid():N}");
        try
        {
            HostProgram.Run("/bin/sh", [Recipe, staging], timeout: TimeSpan.FromMinutes(20));
            Directory.Move(staging, dir);
        }
        catch (HostProgramException e)
        {
            throw new FleetException(FleetError.Failed, $"building kernel '{name}' failed: {e.Message}", e);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
        return Find(name) ?? throw new FleetException(FleetError.Failed, $"the kernel recipe left no vmlinux and initrd.img in {dir}");
    }

    public void Remove(string name)
    {
        if (Find(name) is null) throw MissingError(name, FleetError.NotFound);
        Vserver.Isolation.Storage.AtomicFile.DeleteDirectory(Path.Combine(Root, name), "removing");
    }

    /// <summary>Drops leftovers of builds or removals interrupted by a crash.</summary>
    public void CleanStaging()
    {
        if (!Directory.Exists(Root)) return;
        foreach (var d in Directory.EnumerateDirectories(Root, ".*")) Directory.Delete(d, recursive: true);
    }
}
