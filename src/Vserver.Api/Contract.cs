using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vserver.Api;

// The HTTP/JSON contract between vserverd and its clients. Every transport (vsctl, curl) speaks these shapes.

public sealed record CreateGuestRequest
{
    public required string Name { get; init; }
    public string? Image { get; init; }
    public long? MemoryBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    public string? Ipv4 { get; init; }
    /// <summary>no | on-failure | always</summary>
    public string? Restart { get; init; }
    /// <summary>The program run as the guest's init; default /sbin/init.</summary>
    public IReadOnlyList<string>? Command { get; init; }
    /// <summary>
    /// Root inside is root on the host (reduced capabilities, no user namespace). Default false: the guest gets its own
    /// range of host ids and root inside is an unprivileged id outside.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Privileged { get; init; }
    /// <summary>Syscalls the default filter refuses that this guest may call anyway (e.g. "keyctl").</summary>
    public IReadOnlyList<string>? AllowSyscalls { get; init; }
    /// <summary>vserver (default) | domain</summary>
    public string? Kind { get; init; }
    /// <summary>Domains: the kernel to boot (default "default"), processors, and the root disk's size.</summary>
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }
    public long? DiskBytes { get; init; }
}

public sealed record SetLimitsRequest
{
    public long? MemoryBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
}

public sealed record GuestInfo
{
    public required string Name { get; init; }
    public required string Kind { get; init; }
    /// <summary>stopped | running | paused | crashed | broken</summary>
    public required string State { get; init; }
    public string? Image { get; init; }
    public string? Ipv4 { get; init; }
    public long? MemoryBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    public string? Restart { get; init; }
    public IReadOnlyList<string>? Command { get; init; }
    public int? InitPid { get; init; }
    public DateTimeOffset? Created { get; init; }
    public DateTimeOffset? StartedAt { get; init; }
    public ExitInfo? LastExit { get; init; }
    public int RestartCount { get; init; }
    public GuestUsage? Usage { get; init; }
    /// <summary>Why a guest is broken (e.g. its config file does not parse).</summary>
    public string? Problem { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Privileged { get; init; }
    /// <summary>Unprivileged guests: the host id that root (0) inside maps to, and how many ids follow it.</summary>
    public long? HostIdBase { get; init; }
    public long? HostIdCount { get; init; }
    public IReadOnlyList<string>? AllowSyscalls { get; init; }
    /// <summary>Domains: "kvm" or "tcg (emulated: why)".</summary>
    public string? Accelerator { get; init; }
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }
    /// <summary>Domains: guest RAM (the most the balloon can give back); <see cref="MemoryBytes"/> is the balloon target.</summary>
    public long? MaxMemoryBytes { get; init; }
    public long? DiskBytes { get; init; }
}

public sealed record ExitInfo
{
    public int? Code { get; init; }
    public int? Signal { get; init; }
    public DateTimeOffset At { get; init; }
    public required string Description { get; init; }
}

public sealed record GuestUsage
{
    public long MemoryBytes { get; init; }
    public long? MemoryPeakBytes { get; init; }
    public int Processes { get; init; }
    public double CpuSeconds { get; init; }
    public long OomKills { get; init; }
}

public sealed record GuestList
{
    public required IReadOnlyList<GuestInfo> Guests { get; init; }
    /// <summary>Guests the agent could not load, one line each (path, position, what to do).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

public sealed record BuildImageRequest
{
    public required string Name { get; init; }
}

public sealed record ImageInfo
{
    public required string Name { get; init; }
    public long SizeBytes { get; init; }
    public DateTimeOffset Created { get; init; }
    public required string Digest { get; init; }
}

public sealed record HostInfo
{
    public required string Version { get; init; }
    public required string CgroupVersion { get; init; }
    public required string Bridge { get; init; }
    public required string Subnet { get; init; }
    public required string StateRoot { get; init; }
    public required string RunRoot { get; init; }
    public int AgentPid { get; init; }
    /// <summary>What domains run on: "kvm", "tcg (emulated: why)", or why it is not known yet.</summary>
    public string? Accelerator { get; init; }
    public int Cpus { get; init; }
    public long MemoryBytes { get; init; }
}

public sealed record KernelInfo
{
    public required string Name { get; init; }
    public required string Version { get; init; }
    public required string Package { get; init; }
    public long SizeBytes { get; init; }
    public DateTimeOffset Built { get; init; }
}

public sealed record BuildKernelRequest
{
    public required string Name { get; init; }
}

/// <summary>A save file on the agent's host; absolute (vsctl makes a relative path absolute).</summary>
public sealed record SaveFileRequest
{
    public required string File { get; init; }
}

public sealed record SaveResult
{
    public required string File { get; init; }
    public long SizeBytes { get; init; }
}

public sealed record ErrorResponse
{
    public required string Error { get; init; }
}

public sealed record WaitResponse
{
    public required GuestInfo Guest { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CreateGuestRequest))]
[JsonSerializable(typeof(SetLimitsRequest))]
[JsonSerializable(typeof(GuestInfo))]
[JsonSerializable(typeof(GuestList))]
[JsonSerializable(typeof(BuildImageRequest))]
[JsonSerializable(typeof(ImageInfo))]
[JsonSerializable(typeof(IReadOnlyList<ImageInfo>))]
[JsonSerializable(typeof(HostInfo))]
[JsonSerializable(typeof(KernelInfo))]
[JsonSerializable(typeof(IReadOnlyList<KernelInfo>))]
[JsonSerializable(typeof(BuildKernelRequest))]
[JsonSerializable(typeof(SaveFileRequest))]
[JsonSerializable(typeof(SaveResult))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(ExecRequest))]
public sealed partial class ApiJson : JsonSerializerContext;
