using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vserver.Api;

// The HTTP/JSON contract between vserverd and its clients. Every transport (vsctl, curl) speaks these shapes.

public sealed record SetLimitsRequest
{
    public long? MemoryBytes { get; init; }
    public long? MemoryMinBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    /// <summary>A vserver's disk quota (grows only).</summary>
    public long? DiskBytes { get; init; }
    /// <summary>no | on-failure | always</summary>
    public string? Restart { get; init; }
    /// <summary>Whether the agent starts the guest after the host boots.</summary>
    public bool? Autostart { get; init; }
}

public sealed record GuestInfo
{
    public required string Name { get; init; }
    public required string Kind { get; init; }
    /// <summary>stopped | running | paused | crashed | broken</summary>
    public required string State { get; init; }
    public string? Image { get; init; }
    public string? Ipv4 { get; init; }
    /// <summary>The address is one of the host's routed range: the guest's own public address, reached without NAT.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool Routed { get; init; }
    /// <summary>The name servers written into its /etc/resolv.conf: null, the host's resolver on the bridge; empty, none
    /// (the guest keeps its own file).</summary>
    public IReadOnlyList<string>? Dns { get; init; }
    public long? MemoryBytes { get; init; }
    /// <summary>The memory guarantee admission counts (vserver: soft limit; domain: balloon floor).</summary>
    public long? MemoryMinBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    public string? Restart { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Autostart { get; init; }
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
    /// <summary>Domains: the root disk's size. Vservers (and domains sharing a promoted vserver's files): the disk quota,
    /// null without one.</summary>
    public long? DiskBytes { get; init; }
    /// <summary>Disk quota: what the layer's filesystem holds and what the guest may still write (df / inside), while it
    /// is mounted (the guest runs).</summary>
    public long? DiskUsedBytes { get; init; }
    public long? DiskFreeBytes { get; init; }
    /// <summary>Disk quota: the layer's size now, when it is below <see cref="DiskBytes"/> because the grow waits for the
    /// next start (the agent may not grow a mounted ext4 without CAP_SYS_RESOURCE).</summary>
    public long? DiskCurrentBytes { get; init; }
    /// <summary>Domains: overlay (qcow2 over the image), virtiofs (a promoted vserver's files, shared) or ext4 (a copy).</summary>
    public string? Root { get; init; }
    public string? Mac { get; init; }
    /// <summary>Promotions and demotions, oldest first, one line each ("2026-11-21 10:00:00Z promoted from vserver: ...").</summary>
    public IReadOnlyList<string>? History { get; init; }
    /// <summary>Published ports (null: none); POST /v1/guests/{name}/ports takes one as its body.</summary>
    public IReadOnlyList<PortInfo>? Ports { get; init; }
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

/// <summary>What to build from a recipe: an image (POST /v1/images) or a kernel (POST /v1/kernels), by name.</summary>
public sealed record BuildRequest
{
    public required string Name { get; init; }
}

public sealed record ImageInfo
{
    public required string Name { get; init; }
    public long SizeBytes { get; init; }
    public DateTimeOffset Created { get; init; }
    /// <summary>Over the image's files (paths, modes, link targets, contents): the same for the same tree, built or imported.</summary>
    public required string Digest { get; init; }
    /// <summary>Where the image came from.</summary>
    public ImageSourceInfo? Source { get; init; }
    /// <summary>What the image's /sbin/init is: systemd, busybox, shell script, script (...), executable (...), none (...).</summary>
    public string? Init { get; init; }
    /// <summary>The path inside the image /sbin/init resolves to.</summary>
    public string? InitPath { get; init; }
    /// <summary>An import's answer only: what it skipped or changed, one line each.</summary>
    public IReadOnlyList<string>? Notes { get; init; }
}

/// <summary>How an image came to be: built from a recipe, or imported (POST /v1/images/NAME/import).</summary>
public sealed record ImageSourceInfo
{
    /// <summary>recipe or import.</summary>
    public required string Kind { get; init; }
    public string? Recipe { get; init; }
    /// <summary>The file or directory imported, as the client named it.</summary>
    public string? File { get; init; }
    /// <summary>tar, tar.gz, tar.xz, tar.zst, tar.bz2, or oci.</summary>
    public string? Format { get; init; }
    /// <summary>sha256 of the bytes imported.</summary>
    public string? ArchiveDigest { get; init; }
    /// <summary>The OCI manifest's digest.</summary>
    public string? ManifestDigest { get; init; }
    /// <summary>The OCI tag the image was picked by.</summary>
    public string? Tag { get; init; }
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
    public PoolInfo? Pool { get; init; }
    /// <summary>Outbound NAT: guests reach beyond the host, masqueraded to its addresses (null from an older agent).</summary>
    public bool? Nat { get; init; }
    /// <summary>Whether the host routes IPv4 between its interfaces (net.ipv4.ip_forward).</summary>
    public bool? IpForwarding { get; init; }
    /// <summary>The routed range of public addresses guests may hold, and the uplink it arrives on (null: none).</summary>
    public string? Routed { get; init; }
    public string? Uplink { get; init; }
    /// <summary>The guests' resolver: its address, suffix, upstream and state.</summary>
    public ResolverInfo? Resolver { get; init; }
}

/// <summary>What <c>vsctl host teardown</c> took off the host.</summary>
public sealed record HostTeardownReport
{
    public IReadOnlyList<string> Removed { get; init; } = [];
}

/// <summary>The resolver on the bridge that guests ask (dnsmasq, run by the agent).</summary>
public sealed record ResolverInfo
{
    public required string Address { get; init; }
    public required string Domain { get; init; }
    /// <summary>The upstream name servers, or empty: the host's own (its /etc/resolv.conf).</summary>
    public IReadOnlyList<string> Upstream { get; init; } = [];
    public int? Pid { get; init; }
    /// <summary>Why it is not serving, or null when it is.</summary>
    public string? Problem { get; init; }
}

/// <summary>
/// The shared memory pool: what guests may be promised. Capacity = host memory - reserve. Guarantees (memory-min) may
/// add up to the capacity; limits may add up to capacity x overcommit.
/// </summary>
public sealed record PoolInfo
{
    public long CapacityBytes { get; init; }
    public long ReserveBytes { get; init; }
    public double Overcommit { get; init; }
    /// <summary>Sum of all guests' guarantees (memory-min).</summary>
    public long CommittedBytes { get; init; }
    /// <summary>Sum of all guests' limits (a vserver without a limit is not counted).</summary>
    public long LimitsBytes { get; init; }
    /// <summary>capacity x overcommit: what the limits may add up to.</summary>
    public long LimitsCapBytes { get; init; }
    /// <summary>Memory in use on the host (MemTotal - MemAvailable).</summary>
    public long UsedBytes { get; init; }
    /// <summary>What the pool has left: MemAvailable - reserve (may be negative).</summary>
    public long FreeBytes { get; init; }
    /// <summary>Below this much free memory in the pool the agent acts on pressure.</summary>
    public long MinFreeBytes { get; init; }
    public bool UnderPressure { get; init; }
    public bool Ksm { get; init; }
    /// <summary>Memory KSM saves right now (pages_sharing x page size).</summary>
    public long KsmSavedBytes { get; init; }
}

/// <summary>Host pool and guest network settings; a null member is left as it is.</summary>
public sealed record HostSettingsRequest
{
    public long? ReserveBytes { get; init; }
    public double? Overcommit { get; init; }
    public long? MinFreeBytes { get; init; }
    public bool? Ksm { get; init; }
    /// <summary>Outbound NAT of the guest subnet on or off.</summary>
    public bool? Nat { get; init; }
    /// <summary>The routed range of public addresses (A.B.C.D/N); "" takes it away (refused while guests hold its addresses).</summary>
    public string? Routed { get; init; }
    /// <summary>The interface the routed range arrives on.</summary>
    public string? Uplink { get; init; }
    /// <summary>The suffix of the guests' names in the resolver (db1.vserver).</summary>
    public string? DnsDomain { get; init; }
    /// <summary>The resolver's upstream name servers; empty: the host's own (its /etc/resolv.conf).</summary>
    public IReadOnlyList<string>? DnsUpstream { get; init; }

    /// <summary>The members' names as error fields give them.</summary>
    public static class Fields
    {
        public const string Nat = "nat";
        public const string Routed = "routed";
        public const string Uplink = "uplink";
        public const string DnsDomain = "dnsDomain";
        public const string DnsUpstream = "dnsUpstream";
    }
}

/// <summary>`vsctl stat`: who uses what of the shared pool, measured now.</summary>
public sealed record StatReport
{
    public required StatHost Host { get; init; }
    public required IReadOnlyList<GuestStat> Guests { get; init; }
}

public sealed record StatHost
{
    public long TotalBytes { get; init; }
    /// <summary>MemTotal - MemFree: what /proc/meminfo says is used (page cache included).</summary>
    public long UsedBytes { get; init; }
    public long CapacityBytes { get; init; }
    public long CommittedBytes { get; init; }
    /// <summary>Sum of the guests' fair shares.</summary>
    public long GuestsBytes { get; init; }
    /// <summary>The host's own use, measured: its processes' PSS, page cache not charged to a guest, kernel memory.</summary>
    public long HostOwnBytes { get; init; }
    /// <summary>UsedBytes - GuestsBytes - HostOwnBytes: what no reading explains (drivers, timing).</summary>
    public long UnaccountedBytes { get; init; }
    /// <summary>The stated tolerance for |UnaccountedBytes|.</summary>
    public long ToleranceBytes { get; init; }
    /// <summary>Sum of guests' RSS - sum of their PSS: what sharing pages saves.</summary>
    public long SharedSavingsBytes { get; init; }
    public bool Ksm { get; init; }
    public long KsmSavingsBytes { get; init; }
    /// <summary>As <see cref="PoolInfo.FreeBytes"/>: MemAvailable - reserve (may be negative).</summary>
    public long FreeBytes { get; init; }
    public bool UnderPressure { get; init; }
    /// <summary>Lines about pressure: balloons moved, vservers over their guarantee.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

public sealed record GuestStat
{
    public required string Name { get; init; }
    public required string Kind { get; init; }
    public required string State { get; init; }
    public int Processes { get; init; }
    /// <summary>Sum of the guest's processes' resident memory (shared pages counted in full).</summary>
    public long RssBytes { get; init; }
    /// <summary>The guest's fair share: its processes' PSS plus page cache charged to it that nobody maps.</summary>
    public long FairBytes { get; init; }
    /// <summary>Anonymous memory plus its own unmapped page cache.</summary>
    public long PrivateBytes { get; init; }
    /// <summary>Resident pages the guest's processes share with other processes.</summary>
    public long SharedBytes { get; init; }
    public long SwapBytes { get; init; }
    /// <summary>What the cgroup charges (page cache goes to whoever touched it first); vservers only.</summary>
    public long? ChargedBytes { get; init; }
    /// <summary>A vserver's --memory (null: unlimited); a domain's RAM.</summary>
    public long? LimitBytes { get; init; }
    /// <summary>What admission counts: a vserver's --memory-min (0: none); a domain's balloon floor (default its RAM).</summary>
    public long? GuaranteeBytes { get; init; }
    /// <summary>100 = one core busy, over the last second or so (since the agent's previous one-second sample).</summary>
    public double CpuPercent { get; init; }
    /// <summary>Domains: the memory the guest has now (RAM minus balloon), and the target the agent set.</summary>
    public long? BalloonBytes { get; init; }
    public long? BalloonTargetBytes { get; init; }
    /// <summary>Domains: pages KSM merged in this guest.</summary>
    public long? KsmBytes { get; init; }
}

public sealed record KernelInfo
{
    public required string Name { get; init; }
    public required string Version { get; init; }
    public required string Package { get; init; }
    public long SizeBytes { get; init; }
    public DateTimeOffset Built { get; init; }
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

/// <summary>vsctl promote: null fields carry over from the vserver.</summary>
public sealed record PromoteRequest
{
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }
    public long? MemoryBytes { get; init; }
    /// <summary>Copy the files into an ext4 image of the domain's own instead of sharing them in place (virtiofs).</summary>
    public bool Copy { get; init; }
    public long? DiskBytes { get; init; }
    public bool DryRun { get; init; }
    /// <summary>How long the domain may take to come up before the promotion is rolled back.</summary>
    public int? TimeoutSeconds { get; init; }
}

public sealed record DemoteRequest
{
    public bool DryRun { get; init; }
}

/// <summary>What a promotion or demotion gives the guest; with the guest as it is now unless it was a dry run.</summary>
public sealed record ConversionResult
{
    public required string Name { get; init; }
    public required string From { get; init; }
    public required string To { get; init; }
    public required IReadOnlyList<PlanSetting> Settings { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
    public bool DryRun { get; init; }
    public GuestInfo? Guest { get; init; }
}

public sealed record PlanSetting
{
    public required string What { get; init; }
    public required string Value { get; init; }
}

public sealed record GuestPorts
{
    public required string Name { get; init; }
    public string? Ipv4 { get; init; }
    public required IReadOnlyList<PortInfo> Ports { get; init; }
}

/// <summary>Published ports, per guest; what every /ports route answers.</summary>
public sealed record PortList
{
    public required IReadOnlyList<GuestPorts> Guests { get; init; }
    /// <summary>What stands between the ports and some of their clients (e.g. IPv4 forwarding off), one line each.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>POST /v1/host/check: find (and with <see cref="Repair"/> remove) what no guest owns.</summary>
public sealed record HostCheckRequest
{
    public bool Repair { get; init; }
}

public sealed record HostCheckReport
{
    /// <summary>How many guests the check matched the host against.</summary>
    public int Guests { get; init; }
    public IReadOnlyList<OrphanInfo> Orphans { get; init; } = [];
    /// <summary>Guests in the middle of an operation: their things were not judged.</summary>
    public IReadOnlyList<string> Busy { get; init; } = [];
    /// <summary>What is wrong that no repair of the host fixes (a broken config, overlapping id ranges).</summary>
    public IReadOnlyList<string> Problems { get; init; } = [];
    /// <summary>The broken guests among the problems: only removing them (or fixing their files) helps.</summary>
    public IReadOnlyList<string> Broken { get; init; } = [];
}

/// <summary>One thing on the host that no guest owns.</summary>
public sealed record OrphanInfo
{
    /// <summary>process | mount | loop device | cgroup | interface | directory | nftables</summary>
    public required string Kind { get; init; }
    public required string What { get; init; }
    public required string Why { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Repaired { get; init; }
    public string? Error { get; init; }
}

/// <summary>POST /v1/debug/failpoints (an agent started with VSERVER_FAILPOINTS=armable only): the agent kills itself
/// at the <see cref="After"/>th crash point it reaches from now; 0 disarms.</summary>
public sealed record FailpointRequest
{
    public int After { get; init; }
}

public sealed record FailpointResult
{
    /// <summary>Crash points reached since the previous request.</summary>
    public long Reached { get; init; }
}

/// <summary>A plan checked whole (POST /v1/plans/check): what `vsctl apply` would create and publish, in its order.</summary>
public sealed record PlanCheckRequest
{
    public required IReadOnlyList<PlannedGuestRequest> Guests { get; init; }
}

/// <summary>One guest of a plan: created as <see cref="Create"/> says, or (null) one that exists; the host ports the plan
/// publishes for it.</summary>
public sealed record PlannedGuestRequest
{
    public required string Name { get; init; }
    public GuestSpec? Create { get; init; }
    public IReadOnlyList<PortInfo> Ports { get; init; } = [];
}

public sealed record PlanCheckReport
{
    public IReadOnlyList<PlannedGuestResult> Guests { get; init; } = [];
}

/// <summary>What the agent says of one planned guest: the guest a create would make, or its refusal (as an error body).</summary>
public sealed record PlannedGuestResult
{
    public required string Name { get; init; }
    public GuestInfo? Would { get; init; }
    public ErrorResponse? Refusal { get; init; }
}

public sealed record WaitResponse
{
    public required GuestInfo Guest { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(GuestSpec))]
[JsonSerializable(typeof(PlanCheckRequest))]
[JsonSerializable(typeof(PlanCheckReport))]
[JsonSerializable(typeof(SetLimitsRequest))]
[JsonSerializable(typeof(PortInfo))]
[JsonSerializable(typeof(GuestInfo))]
[JsonSerializable(typeof(GuestList))]
[JsonSerializable(typeof(BuildRequest))]
[JsonSerializable(typeof(ImageInfo))]
[JsonSerializable(typeof(IReadOnlyList<ImageInfo>))]
[JsonSerializable(typeof(HostInfo))]
[JsonSerializable(typeof(HostSettingsRequest))]
[JsonSerializable(typeof(StatReport))]
[JsonSerializable(typeof(KernelInfo))]
[JsonSerializable(typeof(IReadOnlyList<KernelInfo>))]
[JsonSerializable(typeof(SaveFileRequest))]
[JsonSerializable(typeof(SaveResult))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(PromoteRequest))]
[JsonSerializable(typeof(DemoteRequest))]
[JsonSerializable(typeof(ConversionResult))]
[JsonSerializable(typeof(ExecRequest))]
[JsonSerializable(typeof(PortList))]
[JsonSerializable(typeof(HostCheckRequest))]
[JsonSerializable(typeof(HostTeardownReport))]
[JsonSerializable(typeof(HostCheckReport))]
[JsonSerializable(typeof(FailpointRequest))]
[JsonSerializable(typeof(FailpointResult))]
public sealed partial class ApiJson : JsonSerializerContext;
