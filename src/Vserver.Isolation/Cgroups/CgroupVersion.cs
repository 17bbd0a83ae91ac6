namespace Vserver.Isolation.Cgroups;

/// <summary>Which cgroup interface the host exposes.</summary>
public enum CgroupVersion
{
    /// <summary>Legacy per-controller hierarchies (one mount per controller or controller group).</summary>
    V1 = 1,

    /// <summary>The unified hierarchy (a single cgroup2 mount).</summary>
    V2 = 2,
}
