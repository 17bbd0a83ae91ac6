using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>
/// Legacy cgroup v1: one hierarchy per mounted controller (group). A guest cgroup is a directory
/// with the same relative path in each managed hierarchy.
/// </summary>
public sealed class CgroupV1Hierarchy : ICgroupHierarchy
{
    /// <summary>Controllers that must be mounted.</summary>
    public static IReadOnlyList<string> RequiredControllers { get; } = ["memory", "cpu", "pids", "freezer"];

    /// <summary>Controllers used when mounted: cpuacct (CPU usage), cpuset (cpus/mems are copied from the parent).</summary>
    public static IReadOnlyList<string> OptionalControllers { get; } = ["cpuacct", "cpuset"];

    /// <param name="controllerMounts">controller name → mount point of its hierarchy, e.g.
    /// <c>memory → /sys/fs/cgroup/memory</c>; co-mounted controllers share a mount point.</param>
    public CgroupV1Hierarchy(IReadOnlyDictionary<string, string> controllerMounts)
        : this(controllerMounts, CgroupFileSystem.Native)
    {
    }

    internal CgroupV1Hierarchy(IReadOnlyDictionary<string, string> controllerMounts, CgroupFileSystem fs)
    {
        ArgumentNullException.ThrowIfNull(controllerMounts);
        string[] missing = RequiredControllers.Where(c => !controllerMounts.ContainsKey(c)).ToArray();
        if (missing.Length > 0)
        {
            string found = controllerMounts.Count == 0
                ? "none"
                : string.Join(", ", controllerMounts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} at {kv.Value}"));
            throw new CgroupException(
                $"cgroup v1: controller(s) {string.Join(", ", missing)} not mounted (found: {found}). " +
                $"Mount them, e.g. 'mount -t cgroup -o {missing[0]} cgroup /sys/fs/cgroup/{missing[0]}', or boot with cgroup v2 " +
                "(systemd.unified_cgroup_hierarchy=1).");
        }

        var mounts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string controller in RequiredControllers.Concat(OptionalControllers))
        {
            if (controllerMounts.TryGetValue(controller, out string? mountPoint))
            {
                mounts[controller] = mountPoint.Length > 1 ? mountPoint.TrimEnd('/') : mountPoint;
            }
        }

        ControllerMounts = mounts;
        MountPoints = RequiredControllers.Concat(OptionalControllers)
            .Where(mounts.ContainsKey)
            .Select(c => mounts[c])
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        Fs = fs;
    }

    /// <summary>The managed controllers and the mount point of each one's hierarchy.</summary>
    public IReadOnlyDictionary<string, string> ControllerMounts { get; }

    /// <summary>Upper bound for Freeze/Thaw/Destroy waits.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    public CgroupVersion Version => CgroupVersion.V1;

    /// <summary>Distinct mount points of the managed hierarchies (memory, cpu, pids, freezer, cpuacct, cpuset order).</summary>
    internal IReadOnlyList<string> MountPoints { get; }

    internal CgroupFileSystem Fs { get; }

    /// <summary>Builds the hierarchy from parsed mounts; the first v1 mount carrying a controller wins.</summary>
    public static CgroupV1Hierarchy FromMounts(IEnumerable<CgroupMount> mounts) => FromMounts(mounts, CgroupFileSystem.Native);

    internal static CgroupV1Hierarchy FromMounts(IEnumerable<CgroupMount> mounts, CgroupFileSystem fs)
    {
        ArgumentNullException.ThrowIfNull(mounts);
        var table = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (CgroupMount mount in mounts.Where(m => m.FileSystemType == "cgroup"))
        {
            foreach (string controller in mount.Controllers)
            {
                table.TryAdd(controller, mount.MountPoint);
            }
        }

        return new CgroupV1Hierarchy(table, fs);
    }

    public ICgroup Create(string path)
    {
        string normalized = CgroupPath.Normalize(path);
        string[] segments = CgroupPath.Segments(normalized);
        ControllerMounts.TryGetValue("cpuset", out string? cpusetMount);
        foreach (string mountPoint in MountPoints)
        {
            string dir = mountPoint;
            foreach (string segment in segments)
            {
                string parent = dir;
                dir = CgroupPath.Join(dir, segment);
                Fs.MakeDirectory(dir);
                if (mountPoint == cpusetMount)
                {
                    // A v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until they are set.
                    InheritCpuset(parent, dir);
                }
            }
        }

        return new CgroupV1(this, normalized);
    }

    public ICgroup? Open(string path)
    {
        string normalized = CgroupPath.Normalize(path);
        return ExistsNormalized(normalized) ? new CgroupV1(this, normalized) : null;
    }

    public bool Exists(string path) => ExistsNormalized(CgroupPath.Normalize(path));

    public IReadOnlyList<string> Children(string path)
    {
        string normalized = CgroupPath.Normalize(path);
        return MountPoints.Select(m => CgroupPath.Join(m, normalized)).Where(Fs.DirectoryExists)
            .SelectMany(Fs.SubDirectories).Select(d => System.IO.Path.GetFileName(d)!).Distinct().Order(StringComparer.Ordinal).ToList();
    }

    private bool ExistsNormalized(string normalized) =>
        MountPoints.Any(m => Fs.DirectoryExists(CgroupPath.Join(m, normalized)));

    private void InheritCpuset(string parent, string dir)
    {
        foreach (string name in (string[])["cpuset.cpus", "cpuset.mems"])
        {
            string file = CgroupPath.Join(dir, name);
            if (Fs.Read(file).Trim().Length > 0)
            {
                continue;
            }

            string parentFile = CgroupPath.Join(parent, name);
            string value = Fs.Read(parentFile).Trim();
            if (value.Length == 0)
            {
                throw new CgroupException($"cgroup v1: '{parentFile}' is empty, so '{file}' cannot inherit it; set the parent's cpuset first");
            }

            Fs.Write(file, value, errno => errno == Errno.EINVAL ? "not a subset of the parent's cpuset" : null);
        }
    }
}
