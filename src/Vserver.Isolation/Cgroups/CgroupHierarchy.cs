namespace Vserver.Isolation.Cgroups;

/// <summary>Finds the host's cgroup interface.</summary>
public static class CgroupHierarchy
{
    public const string DefaultRoot = "/sys/fs/cgroup";

    public const string MountInfoPath = "/proc/self/mountinfo";

    /// <summary>
    /// Pure cgroup v2 when <c>root/cgroup.controllers</c> exists and lists <c>memory</c>; otherwise
    /// cgroup v1 from the <c>cgroup</c> mounts in /proc/self/mountinfo. Throws
    /// <see cref="CgroupException"/> saying what is missing when neither is usable.
    /// </summary>
    public static ICgroupHierarchy Detect(string root = DefaultRoot)
    {
        int errno = CgroupFileSystem.Native.TryRead(MountInfoPath, out string mountInfo);
        return Detect(root, errno == 0 ? mountInfo : string.Empty, CgroupFileSystem.Native);
    }

    /// <summary>Like <see cref="Detect(string)"/> but with the mount table given as mountinfo text.</summary>
    public static ICgroupHierarchy Detect(string root, string mountInfo) => Detect(root, mountInfo, CgroupFileSystem.Native);

    internal static ICgroupHierarchy Detect(string root, string mountInfo, CgroupFileSystem fs)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        ArgumentNullException.ThrowIfNull(mountInfo);
        string controllersFile = CgroupPath.Join(root, "cgroup.controllers");
        string? controllers = fs.FileExists(controllersFile) ? fs.ReadIfExists(controllersFile) : null;
        if (controllers is not null && CgroupParsing.ParseControllerList(controllers).Contains("memory"))
        {
            return new CgroupV2Hierarchy(root, fs);
        }

        CgroupMount[] v1 = CgroupMount.ParseMountInfo(mountInfo).Where(m => m.FileSystemType == "cgroup").ToArray();
        if (v1.Any(m => m.Controllers.Contains("memory")))
        {
            return CgroupV1Hierarchy.FromMounts(v1, fs);
        }

        string v2State = controllers is null
            ? $"'{controllersFile}' does not exist (no cgroup2 mounted at {root})"
            : $"'{controllersFile}' lists '{controllers.Trim()}' without memory (enable it in the parent's cgroup.subtree_control or delegate it)";
        string v1Found = v1.Length == 0 ? "no cgroup v1 mounts" : "v1 mounts without memory: " + string.Join(", ", v1.Select(m => $"{m.MountPoint} ({string.Join(',', m.Controllers)})"));
        throw new CgroupException(
            $"No usable cgroup hierarchy. cgroup v2: {v2State}. cgroup v1: {(mountInfo.Length == 0 ? $"{MountInfoPath} unreadable or empty" : v1Found)}. " +
            $"Fix: mount cgroup2 at {root} with the memory controller (e.g. boot with systemd.unified_cgroup_hierarchy=1, or 'mount -t cgroup2 none {root}'), " +
            $"or mount the v1 controllers memory, cpu, cpuacct, pids, freezer and cpuset (e.g. 'mount -t cgroup -o memory cgroup {root}/memory').");
    }
}
