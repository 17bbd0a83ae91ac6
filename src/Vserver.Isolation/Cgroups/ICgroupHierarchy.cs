namespace Vserver.Isolation.Cgroups;

/// <summary>
/// The host's cgroup tree (v1 or v2). Obtain one with <see cref="CgroupHierarchy.Detect(string)"/>.
/// Paths are relative to the hierarchy root, e.g. <c>vserver/web1</c>; they must not be empty,
/// absolute after trimming, or contain <c>.</c>/<c>..</c> segments.
/// </summary>
public interface ICgroupHierarchy
{
    /// <summary>The cgroup interface in use.</summary>
    CgroupVersion Version { get; }

    /// <summary>
    /// Creates the cgroup (and its missing parents) in every controller it needs and returns it.
    /// Idempotent: creating an existing cgroup returns it (and repairs missing pieces).
    /// </summary>
    ICgroup Create(string path);

    /// <summary>Returns the cgroup, or null when it does not exist (in any controller hierarchy).</summary>
    ICgroup? Open(string path);

    /// <summary>True when the cgroup exists (on v1: in at least one managed controller hierarchy).</summary>
    bool Exists(string path);

    /// <summary>The names of the cgroups directly below <paramref name="path"/> (on v1: in any managed controller
    /// hierarchy), sorted; empty when it does not exist.</summary>
    IReadOnlyList<string> Children(string path);
}
