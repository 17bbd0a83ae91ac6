using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;

namespace HybridHypervisor;

/// <summary>A snapshot of a guest for callers: config, state, and what its cgroup says right now.</summary>
public sealed record GuestView(
    string Name,
    GuestState State,
    GuestConfig? Config,
    int? InitPid,
    DateTimeOffset? StartedAt,
    GuestExit? LastExit,
    int RestartCount,
    Vserver.Isolation.Cgroups.CgroupStats? Usage,
    string? Problem)
{
    /// <summary>Domains: what they run (or would run) on, e.g. "kvm" or "tcg (emulated: ...)".</summary>
    public string? Accelerator { get; init; }
    /// <summary>Guests with a disk quota: the quota and its use.</summary>
    public DiskView? Disk { get; init; }
}
