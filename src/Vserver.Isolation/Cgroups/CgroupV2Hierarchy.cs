using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>
/// The unified cgroup v2 hierarchy mounted at <see cref="Root"/>. Guests are leaves: the
/// controllers are enabled in <c>cgroup.subtree_control</c> of every ancestor, never in the guest.
/// </summary>
public sealed class CgroupV2Hierarchy : ICgroupHierarchy
{
    /// <summary>Controllers every guest cgroup needs.</summary>
    public static IReadOnlyList<string> RequiredControllers { get; } = ["cpu", "memory", "pids"];

    /// <summary>Controllers enabled too when the parent offers them.</summary>
    public static IReadOnlyList<string> OptionalControllers { get; } = ["cpuset"];

    public CgroupV2Hierarchy(string root = CgroupHierarchy.DefaultRoot)
        : this(root, CgroupFileSystem.Native)
    {
    }

    internal CgroupV2Hierarchy(string root, CgroupFileSystem fs)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = root.Length > 1 ? root.TrimEnd('/') : root;
        Fs = fs;
    }

    /// <summary>The cgroup2 mount point, e.g. <c>/sys/fs/cgroup</c>.</summary>
    public string Root { get; }

    /// <summary>Upper bound for Freeze/Thaw/Destroy waits.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    public CgroupVersion Version => CgroupVersion.V2;

    internal CgroupFileSystem Fs { get; }

    public ICgroup Create(string path)
    {
        string normalized = CgroupPath.Normalize(path);
        string[] segments = CgroupPath.Segments(normalized);
        string dir = Root;
        for (int i = 0; i < segments.Length; i++)
        {
            // dir is an ancestor of the leaf: it must hand the controllers down before the child exists.
            EnableControllers(dir);
            dir = CgroupPath.Join(dir, segments[i]);
            Fs.MakeDirectory(dir);
        }

        return new CgroupV2(this, normalized);
    }

    public ICgroup? Open(string path)
    {
        string normalized = CgroupPath.Normalize(path);
        return Fs.DirectoryExists(CgroupPath.Join(Root, normalized)) ? new CgroupV2(this, normalized) : null;
    }

    public bool Exists(string path) => Fs.DirectoryExists(CgroupPath.Join(Root, CgroupPath.Normalize(path)));

    public IReadOnlyList<string> Children(string path)
    {
        string dir = CgroupPath.Join(Root, CgroupPath.Normalize(path));
        return Fs.DirectoryExists(dir) ? Fs.SubDirectories(dir).Select(d => System.IO.Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList() : [];
    }

    /// <summary>Enables the required (and available optional) controllers in <paramref name="dir"/>'s subtree_control.</summary>
    private void EnableControllers(string dir)
    {
        string controllersFile = CgroupPath.Join(dir, "cgroup.controllers");
        HashSet<string> available = CgroupParsing.ParseControllerList(Fs.Read(controllersFile));
        string[] missing = RequiredControllers.Where(c => !available.Contains(c)).ToArray();
        if (missing.Length > 0)
        {
            throw new CgroupException(
                $"cgroup v2: controller(s) {string.Join(", ", missing)} not available in '{controllersFile}' " +
                $"(it lists: {(available.Count == 0 ? "nothing" : string.Join(" ", available.Order(StringComparer.Ordinal)))}); " +
                "enable them in the parent's cgroup.subtree_control or have them delegated to this subtree");
        }

        string subtreeFile = CgroupPath.Join(dir, "cgroup.subtree_control");
        HashSet<string> enabled = CgroupParsing.ParseControllerList(Fs.Read(subtreeFile));
        string[] toEnable = RequiredControllers
            .Concat(OptionalControllers.Where(available.Contains))
            .Where(c => !enabled.Contains(c))
            .ToArray();
        if (toEnable.Length == 0)
        {
            return;
        }

        Fs.Write(subtreeFile, string.Join(' ', toEnable.Select(c => "+" + c)), errno => errno switch
        {
            Errno.EBUSY => "the cgroup has processes of its own; cgroup v2 only lets cgroups without member processes enable controllers for children",
            Errno.EOPNOTSUPP => "controller cannot be enabled here (threaded subtree?)",
            Errno.ENOENT => "controller not available in this cgroup",
            _ => null,
        });
    }
}
