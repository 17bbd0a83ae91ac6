namespace Vserver.Isolation.Cgroups;

/// <summary>A snapshot of one cgroup's usage counters.</summary>
/// <param name="MemoryBytes">Current memory usage (v1 memory.usage_in_bytes, v2 memory.current).</param>
/// <param name="MemoryPeakBytes">Highest usage seen (v1 memory.max_usage_in_bytes, v2 memory.peak;
/// equals <paramref name="MemoryBytes"/> on v2 kernels older than 5.19 that lack memory.peak).</param>
/// <param name="MemoryLimitBytes">The memory limit, null when unlimited.</param>
/// <param name="OomKills">Processes killed by the OOM killer inside this cgroup (v1 memory.oom_control oom_kill, v2 memory.events oom_kill).</param>
/// <param name="Pids">Current number of tasks (pids.current).</param>
/// <param name="PidsLimit">The task limit, null when unlimited.</param>
/// <param name="CpuUsage">Total CPU time consumed (v1 cpuacct.usage, v2 cpu.stat usage_usec).</param>
/// <param name="Frozen">Whether the cgroup is completely frozen.</param>
public sealed record CgroupStats(
    long MemoryBytes,
    long MemoryPeakBytes,
    long? MemoryLimitBytes,
    long OomKills,
    int Pids,
    int? PidsLimit,
    TimeSpan CpuUsage,
    bool Frozen);
