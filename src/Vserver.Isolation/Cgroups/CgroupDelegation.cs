using Vserver.Isolation.Guests;
using Vserver.Isolation.Storage;

namespace Vserver.Isolation.Cgroups;

/// <summary>
/// What an init that keeps its own cgroup tree (systemd) gets of the host's cgroups, as LXC and Incus give it: the
/// guest's own cgroup, seen as the root of its cgroup namespace, writable where the init files its services and
/// read-only where the host enforces the guest's limits. The limits stay where the agent set them (the guest's own
/// cgroup in each controller, above anything the guest makes), so nothing the guest does inside raises them.
/// <list type="bullet">
/// <item>cgroup v1 host: a tmpfs at /sys/fs/cgroup holding each managed controller's hierarchy read-only, the named
/// <c>systemd</c> hierarchy and (a hybrid host) the unified one writable, in each of which the agent makes the guest a
/// cgroup of its own, owned by the guest's root.</item>
/// <item>cgroup v2 host: the unified hierarchy on /sys/fs/cgroup, the guest's cgroup delegated to its root (the
/// directory and cgroup.procs, cgroup.threads and cgroup.subtree_control, as the kernel's delegation model has it).</item>
/// </list>
/// </summary>
public sealed class CgroupDelegation
{
    private static readonly string[] DelegatedFiles = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks", "cgroup.clone_children", "notify_on_release"];

    /// <summary>The cgroup file systems vsinit mounts in the guest.</summary>
    public required IReadOnlyList<CgroupFsMount> Mounts { get; init; }
    /// <summary>The cgroup.procs files of the guest's cgroups in the writable hierarchies the agent manages no limit in
    /// (v1 host): the monitor joins the guest's init to them before its cgroup namespace is made.</summary>
    public required IReadOnlyList<string> ProcsFiles { get; init; }
    /// <summary>Those cgroups' directories, removed with everything the guest made below them when it ends.</summary>
    public required IReadOnlyList<string> Dirs { get; init; }

    /// <summary>Makes the guest's cgroups in the writable hierarchies and hands them (and, on v2, its own cgroup) to
    /// <paramref name="owner"/>, the guest's root as a host id (0 for a privileged guest).</summary>
    public static CgroupDelegation Prepare(ICgroupHierarchy hierarchy, string cgroupPath, uint owner, string? mountInfo = null)
    {
        var mounts = CgroupMount.ParseMountInfo(mountInfo ?? File.ReadAllText("/proc/self/mountinfo"));
        if (hierarchy is CgroupV2Hierarchy v2)
        {
            var own = Path.Combine(v2.Root, cgroupPath);
            Hand(own, owner);
            return new CgroupDelegation { Mounts = [new CgroupFsMount("cgroup2", "", ".", Writable: true)], ProcsFiles = [], Dirs = [] };
        }
        var v1 = (CgroupV1Hierarchy)hierarchy;
        var managed = v1.ControllerMounts.Values.ToHashSet(StringComparer.Ordinal);
        var list = new List<CgroupFsMount>();
        var procs = new List<string>();
        var dirs = new List<string>();
        foreach (var mount in mounts.Where(m => m.Root == "/" && m.MountPoint.StartsWith("/sys/fs/cgroup/", StringComparison.Ordinal)))
        {
            var dir = Path.GetFileName(mount.MountPoint);
            if (mount.FileSystemType == "cgroup" && managed.Contains(mount.MountPoint))
                list.Add(new CgroupFsMount("cgroup", string.Join(',', mount.Controllers), dir, Writable: false));
            else if (IsDelegated(mount))
            {
                var own = Path.Combine(mount.MountPoint, cgroupPath);
                Directory.CreateDirectory(own);
                Hand(own, owner);
                list.Add(mount.FileSystemType == "cgroup2"
                    ? new CgroupFsMount("cgroup2", "", dir, Writable: true)
                    : new CgroupFsMount("cgroup", "none,name=systemd", dir, Writable: true));
                procs.Add(Path.Combine(own, "cgroup.procs"));
                dirs.Add(own);
            }
        }
        return new CgroupDelegation { Mounts = list, ProcsFiles = procs, Dirs = dirs };
    }

    /// <summary>The directories of a guest's cgroups in the writable v1 hierarchies (named systemd, unified), whether or
    /// not they exist: what <see cref="Release"/> removes after the guest ended.</summary>
    public static IReadOnlyList<string> DirsOf(ICgroupHierarchy hierarchy, string cgroupPath, string? mountInfo = null)
    {
        if (hierarchy is not CgroupV1Hierarchy) return [];
        return DelegatedMounts(mountInfo).Select(m => Path.Combine(m.MountPoint, cgroupPath)).ToList();
    }

    /// <summary>
    /// The cgroup.procs files a command run in the guest (vsinit exec) joins: the guest's own cgroup in the hierarchies
    /// whose limits the host keeps (v1 controllers), and in each hierarchy the guest's init keeps its own tree in (the
    /// named systemd one and the unified one on v1, the unified one on v2) the cgroup its init is in, as lxc-attach
    /// does: a delegated tree's top holds no process once systemd enabled controllers below it (EBUSY on v2), and a
    /// command outside the tree would sit outside the guest's cgroup namespace. A guest's init outside its own cgroup
    /// (it cannot be: the kernel keeps it below) or gone leaves the command in the guest's own cgroup.
    /// </summary>
    /// <param name="initCgroups">What /proc/INIT/cgroup says, read from the host's cgroup namespace.</param>
    public static IReadOnlyList<string> CommandProcsFiles(ICgroupHierarchy hierarchy, ICgroup own, string cgroupPath, string? initCgroups,
        string? mountInfo = null)
    {
        var inits = ParseProcCgroup(initCgroups ?? "");
        if (hierarchy is CgroupV2Hierarchy v2) return [Path.Combine(v2.Root, InitCgroup(cgroupPath, inits.GetValueOrDefault("")).TrimStart('/'), "cgroup.procs")];
        var delegated = DelegatedMounts(mountInfo).Where(m => Directory.Exists(Path.Combine(m.MountPoint, cgroupPath)))
            .Select(m => Path.Combine(m.MountPoint, InitCgroup(cgroupPath, inits.GetValueOrDefault(m.FileSystemType == "cgroup2" ? "" : "name=systemd")).TrimStart('/'), "cgroup.procs"));
        return [.. own.ProcsFiles, .. delegated];
    }

    /// <summary>The init's cgroup when it lies inside the guest's own (<paramref name="cgroupPath"/>, relative to the
    /// hierarchy's root), else the guest's own. Pure.</summary>
    public static string InitCgroup(string cgroupPath, string? initPath)
    {
        var own = "/" + cgroupPath.Trim('/');
        if (initPath is null || initPath.Split('/').Any(p => p is "." or "..")) return own;
        return initPath == own || initPath.StartsWith(own + "/", StringComparison.Ordinal) ? initPath : own;
    }

    /// <summary>/proc/PID/cgroup as hierarchy key ("" for the unified one, "name=systemd", "cpu,cpuacct", ...) to path. Pure.</summary>
    public static IReadOnlyDictionary<string, string> ParseProcCgroup(string text)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(':', 3);
            if (parts.Length == 3) map[parts[1]] = parts[2];
        }
        return map;
    }

    /// <summary>Removes a guest's cgroups in the writable hierarchies with what it made below them (its processes are
    /// gone: they were in its pid namespace). Missing ones are fine.</summary>
    public static void Release(ICgroupHierarchy hierarchy, string cgroupPath)
    {
        foreach (var dir in DirsOf(hierarchy, cgroupPath))
            if (Directory.Exists(dir)) CgroupTree.RemoveTree(CgroupFileSystem.Native, dir, TimeSpan.FromSeconds(5));
    }

    /// <summary>The hierarchies of a v1 host an init keeps its own tree in: the named systemd one and the unified one.</summary>
    private static IEnumerable<CgroupMount> DelegatedMounts(string? mountInfo) =>
        CgroupMount.ParseMountInfo(mountInfo ?? File.ReadAllText("/proc/self/mountinfo"))
            .Where(m => m.Root == "/" && m.MountPoint.StartsWith("/sys/fs/cgroup/", StringComparison.Ordinal) && IsDelegated(m));

    private static bool IsDelegated(CgroupMount m) =>
        (m.FileSystemType == "cgroup" && m.Controllers is ["name=systemd"]) || m.FileSystemType == "cgroup2";

    private static void Hand(string dir, uint owner)
    {
        FileOwner.Chown(dir, owner, owner, $"delegate cgroup {dir}");
        foreach (var file in DelegatedFiles)
        {
            var path = Path.Combine(dir, file);
            if (File.Exists(path)) FileOwner.Chown(path, owner, owner, $"delegate cgroup file {path}");
        }
    }
}
