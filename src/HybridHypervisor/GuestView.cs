using HybridHypervisor.Guests;
using HybridHypervisor.Model;

namespace HybridHypervisor;

/// <summary>A snapshot of a guest for callers: config, state, and what its driver says it uses right now, in the fleet's
/// (the contract's) own terms: callers above the fleet never see a type of Vserver.Isolation.</summary>
public sealed record GuestView
{
    public GuestView(string name, GuestState state, GuestConfig? config, int? initPid, DateTimeOffset? startedAt, GuestExit? lastExit,
        int restartCount, Vserver.Api.GuestUsage? usage, string? problem)
    {
        Name = name;
        State = state;
        Config = config;
        InitPid = initPid;
        StartedAt = startedAt;
        LastExit = lastExit;
        RestartCount = restartCount;
        Usage = usage;
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
    /// <summary>Its address is one of the host's routed range: its own public address, reached without NAT.</summary>
    public bool Routed { get; init; }
}
