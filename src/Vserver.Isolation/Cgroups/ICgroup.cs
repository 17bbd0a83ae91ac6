namespace Vserver.Isolation.Cgroups;

/// <summary>One cgroup (a guest), seen through whichever backend the host uses.</summary>
public interface ICgroup
{
    /// <summary>The path relative to the hierarchy root, e.g. <c>vserver/web1</c>.</summary>
    string Path { get; }

    /// <summary>
    /// Absolute paths of every <c>cgroup.procs</c> a process must be written into to join this
    /// cgroup: one per managed controller hierarchy on v1, exactly one on v2.
    /// </summary>
    IReadOnlyList<string> ProcsFiles { get; }

    /// <summary>Moves a process into this cgroup (writes it into every <see cref="ProcsFiles"/> entry).</summary>
    void AddProcess(int pid);

    /// <summary>
    /// Writes all limits; works on a running cgroup. A null member means unlimited
    /// (see <see cref="CgroupLimits"/>). Throws <see cref="CgroupException"/> when the kernel refuses.
    /// </summary>
    void Apply(CgroupLimits limits);

    /// <summary>Freezes every task and waits (bounded) until the kernel reports the cgroup frozen.</summary>
    void Freeze();

    /// <summary>Thaws the cgroup and waits (bounded) until the kernel reports it thawed.</summary>
    void Thaw();

    /// <summary>All process ids in this cgroup and its descendants, sorted.</summary>
    IReadOnlyList<int> Pids();

    /// <summary>Reads the usage counters.</summary>
    CgroupStats ReadStats();

    /// <summary>
    /// The memory controller's breakdown for this cgroup and its descendants, in bytes, under the backend's own key
    /// names: v1 (total_ prefix dropped) cache, rss, mapped_file, shmem, swap, active_file, ...; v2 file, anon,
    /// file_mapped, shmem, active_file, ..., plus swap (from memory.swap.current when present).
    /// </summary>
    IReadOnlyDictionary<string, long> ReadMemoryStat();

    /// <summary>
    /// Kills every process in the cgroup (and its descendants), waits (bounded) until it is empty and
    /// removes its directories in every hierarchy. Idempotent; safe on a half-created cgroup.
    /// </summary>
    void Destroy();
}
