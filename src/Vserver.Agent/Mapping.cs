using HybridHypervisor;
using HybridHypervisor.Model;
using Vserver.Api;
using Vserver.Isolation.Images;

namespace Vserver.Agent;

internal static class Mapping
{
    public static GuestInfo ToInfo(GuestView v) => new()
    {
        Name = v.Name,
        Kind = (v.Config?.Kind ?? GuestKind.Vserver).ToString().ToLowerInvariant(),
        State = v.State.ToString().ToLowerInvariant(),
        Image = v.Config?.Image,
        Ipv4 = v.Config?.Network.Ipv4,
        MemoryBytes = v.Config?.Limits.MemoryBytes,
        Cpus = v.Config?.Limits.Cpus,
        Pids = v.Config?.Limits.Pids,
        Restart = v.Config is null ? null : RestartPolicies.Format(v.Config.Restart),
        Command = v.Config?.InitCommand,
        InitPid = v.InitPid,
        Created = v.Config?.Created,
        StartedAt = v.StartedAt,
        LastExit = v.LastExit is { } e ? new ExitInfo { Code = e.Code, Signal = e.Signal, At = e.At, Description = e.Description } : null,
        RestartCount = v.RestartCount,
        Usage = v.Usage is { } u
            ? new GuestUsage
            {
                MemoryBytes = u.MemoryBytes, MemoryPeakBytes = u.MemoryPeakBytes, Processes = u.Pids,
                CpuSeconds = u.CpuUsage.TotalSeconds, OomKills = u.OomKills,
            }
            : null,
        Problem = v.Problem,
        Privileged = v.Config?.Security.Privileged ?? false,
        HostIdBase = v.Config?.Security.IdMap?.HostBase,
        HostIdCount = v.Config?.Security.IdMap?.Count,
        AllowSyscalls = v.Config?.Security.AllowSyscalls is { Count: > 0 } a ? a : null,
        Accelerator = v.Accelerator,
        Kernel = v.Config?.Domain?.Kernel,
        Vcpus = v.Config?.Domain?.Vcpus,
        MaxMemoryBytes = v.Config?.Domain?.MaxMemoryBytes,
        DiskBytes = v.Config?.Domain?.DiskBytes,
    };

    public static KernelInfo ToInfo(HybridHypervisor.Domains.KernelRecord k) =>
        new() { Name = k.Name, Version = k.Version, Package = k.Package, SizeBytes = k.SizeBytes, Built = k.Built };

    public static GuestKind ParseKind(string? kind) => kind switch
    {
        null or "" or "vserver" => GuestKind.Vserver,
        "domain" => GuestKind.Domain,
        _ => throw FleetException.Invalid($"invalid kind '{kind}': use vserver (shares the host's kernel) or domain (a VM with its own kernel)"),
    };

    public static ImageInfo ToInfo(ImageRecord i) => new() { Name = i.Name, SizeBytes = i.SizeBytes, Created = i.Created, Digest = i.Digest };
}
