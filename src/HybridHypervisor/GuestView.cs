using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;

namespace HybridHypervisor;

/// <summary>A snapshot of a guest for callers: config, state, and what its cgroup says right now.</summary>
public sealed record GuestView
{
    /// <summary>A view with the usage its cgroup reported, in the fleet's (the contract's) own terms: callers above the
    /// fleet never see a type of Vserver.Isolation.</summary>
    public GuestView(string name, GuestState state, GuestConfig? config, int? initPid, DateTimeOffset? startedAt, GuestExit? lastExit,
        int restartCount, Vserver.Isolation.Cgroups.CgroupStats? usage, string? problem)
    {
        Name = name;
        State = state;
        Config = config;
        InitPid = initPid;
        StartedAt = startedAt;
        LastExit = lastExit;
        RestartCount = restartCount;
        Usage = usage is { } u
            ? new Vserver.Api.GuestUsage
            {
                MemoryBytes = u.MemoryBytes, MemoryPeakBytes = u.MemoryPeakBytes, Processes = u.Pids,
                CpuSeconds = u.CpuUsage.TotalSeconds, OomKills = u.OomKills,
            }
            : null;
        Problem = problem;
    }

    public string Name { get; init; }
    public GuestState State { get; init; }
    public GuestConfig? Config { get; init; }
    public int? InitPid { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public GuestExit? LastExit { get; init; }
    public int RestartCount { get; init; }
    /// <summary>A running vserver's memory, processes and CPU time, as its cgroup counts them; null otherwise.</summary>
    public Vserver.Api.GuestUsage? Usage { get; init; }
    public string? Problem { get; init; }
    /// <summary>Domains: what they run (or would run) on, e.g. "kvm" or "tcg (emulated: ...)".</summary>
    public string? Accelerator { get; init; }
    /// <summary>Guests with a disk quota: the quota and its use.</summary>
    public DiskView? Disk { get; init; }
}
