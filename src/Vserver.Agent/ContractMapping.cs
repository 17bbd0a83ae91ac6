using HybridHypervisor;
using HybridHypervisor.Model;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>The fleet's views as the contract (Vserver.Api) shapes them: one function per answer.</summary>
internal static class ContractMapping
{
    public static GuestInfo ToInfo(GuestView v) => new()
    {
        Name = v.Name,
        Kind = (v.Config?.Kind ?? GuestKind.Vserver).ToString().ToLowerInvariant(),
        State = v.State.ToString().ToLowerInvariant(),
        Image = v.Config?.Image,
        Ipv4 = v.Config?.Network.Ipv4,
        Ports = v.Config?.Network.Ports is { Count: > 0 } ports ? ports : null,
        Routed = v.Routed,
        Dns = v.Config?.Network.Dns,
        MemoryBytes = v.Config?.Limits.MemoryBytes,
        MemoryMinBytes = v.Config is { } c && Fleet.CommitmentOf(c).Guarantee is > 0 and var min ? min : null,
        Cpus = v.Config?.Limits.Cpus,
        Pids = v.Config?.Limits.Pids,
        Restart = v.Config is null ? null : RestartPolicies.Format(v.Config.Restart),
        Autostart = v.Config?.Autostart ?? false,
        Command = v.Config?.InitCommand,
        InitPid = v.InitPid,
        Created = v.Config?.Created,
        StartedAt = v.StartedAt,
        LastExit = v.LastExit is { } e ? new ExitInfo { Code = e.Code, Signal = e.Signal, At = e.At, Description = e.Description } : null,
        RestartCount = v.RestartCount,
        Usage = v.Usage,
        Problem = v.Problem,
        Privileged = v.Config?.Security.Privileged ?? false,
        HostIdBase = v.Config?.Security.IdMap?.HostBase,
        HostIdCount = v.Config?.Security.IdMap?.Count,
        AllowSyscalls = v.Config?.Security.AllowSyscalls is { Count: > 0 } a ? a : null,
        Accelerator = v.Accelerator,
        Kernel = v.Config?.Domain?.Kernel,
        Vcpus = v.Config?.Domain?.Vcpus,
        MaxMemoryBytes = v.Config?.Domain?.MaxMemoryBytes,
        DiskBytes = v.Config?.Domain is { Root: not DomainRoot.Virtiofs } d ? d.DiskBytes : v.Config?.Limits.DiskBytes,
        DiskUsedBytes = v.Disk?.Usage?.UsedBytes,
        DiskFreeBytes = v.Disk?.Usage?.FreeBytes,
        DiskCurrentBytes = v.Disk is { GrowPending: true } pending ? pending.FilesystemBytes : null,
        Root = v.Config?.Domain?.Root.ToString().ToLowerInvariant(),
        Mac = v.Config?.Network.Mac,
        History = v.Config?.History is { Count: > 0 } h
            ? h.Select(e => $"{e.At.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z {e.Detail}").ToList()
            : null,
    };

    public static HostCheckReport ToReport(HostCheckView v) => new()
    {
        Guests = v.Guests,
        Orphans = v.Orphans.Select(o => new OrphanInfo { Kind = o.Kind, What = o.What, Why = o.Why, Repaired = o.Repaired, Error = o.Error }).ToList(),
        Busy = v.Busy,
        Problems = v.Problems,
        Broken = v.Broken,
    };

    public static ConversionResult ToResult(ConversionPlan plan, GuestView? view) => new()
    {
        Name = plan.Name,
        From = plan.From,
        To = plan.To,
        Settings = plan.Settings.Select(s => new PlanSetting { What = s.What, Value = s.Value }).ToList(),
        Notes = plan.Notes,
        DryRun = view is null,
        Guest = view is null ? null : ToInfo(view),
    };

    public static PoolInfo ToInfo(PoolView p) => new()
    {
        CapacityBytes = p.Pool.Capacity,
        ReserveBytes = p.Pool.Reserve,
        Overcommit = p.Pool.Overcommit,
        CommittedBytes = p.Committed,
        LimitsBytes = p.Limits,
        LimitsCapBytes = p.Pool.LimitsCap,
        UsedBytes = p.Used,
        FreeBytes = p.Free,
        MinFreeBytes = p.Pool.MinFree,
        UnderPressure = p.UnderPressure,
        Ksm = p.Settings.Ksm,
        KsmSavedBytes = p.Ksm.SavedBytes,
    };

    public static StatReport ToStat(StatView s) => new()
    {
        Host = new StatHost
        {
            TotalBytes = s.Usage.Total,
            UsedBytes = s.Usage.Used,
            CapacityBytes = s.Pool.Pool.Capacity,
            CommittedBytes = s.Pool.Committed,
            GuestsBytes = s.Usage.Guests,
            HostOwnBytes = s.Usage.HostOwn,
            UnaccountedBytes = s.Usage.Unaccounted,
            ToleranceBytes = s.Usage.Tolerance,
            SharedSavingsBytes = s.Usage.SharedSavings,
            Ksm = s.Pool.Settings.Ksm,
            KsmSavingsBytes = s.Pool.Ksm.SavedBytes,
            FreeBytes = s.Pool.Free,
            UnderPressure = s.Pool.UnderPressure,
            Notes = s.Notes,
        },
        Guests = s.Guests.Select(g => new GuestStat
        {
            Name = g.Name,
            Kind = g.Kind.ToString().ToLowerInvariant(),
            State = g.State.ToString().ToLowerInvariant(),
            Processes = g.Usage?.Processes ?? 0,
            RssBytes = g.Usage?.Rss ?? 0,
            FairBytes = g.Usage?.Fair ?? 0,
            PrivateBytes = g.Usage?.Private ?? 0,
            SharedBytes = g.Usage?.Shared ?? 0,
            SwapBytes = g.Usage?.Swap ?? 0,
            ChargedBytes = g.Usage?.Charged,
            LimitBytes = g.Limit,
            GuaranteeBytes = g.Guarantee,
            CpuPercent = Math.Round(g.CpuPercent, 1),
            BalloonBytes = g.Balloon,
            BalloonTargetBytes = g.BalloonTarget,
            KsmBytes = g.KsmBytes,
        }).ToList(),
    };

    public static KernelInfo ToInfo(HybridHypervisor.Domains.KernelRecord k) =>
        new() { Name = k.Name, Version = k.Version, Package = k.Package, SizeBytes = k.SizeBytes, Built = k.Built };

    /// <summary>A restart policy to set; null leaves it as it is.</summary>
    public static RestartPolicy? ParseRestart(string? text) => text is null
        ? null
        : RestartPolicies.TryParse(text, out var policy) ? policy : throw FleetException.Invalid(RestartPolicies.Invalid(text));

}
