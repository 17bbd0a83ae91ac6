using HybridHypervisor.Domains;
using System.Text.Json.Serialization;
using Vserver.Api;
using Vserver.Isolation.Network;

namespace HybridHypervisor.Model;

/// <summary>A guest as the operator asked for it: plain data, persisted as guests/NAME/guest.json.</summary>
public sealed record GuestConfig
{
    public required string Name { get; init; }
    public GuestKind Kind { get; init; } = GuestKind.Vserver;
    public required string Image { get; init; }
    public GuestLimits Limits { get; init; } = new();
    public GuestNetworkConfig Network { get; init; } = new();
    public RestartPolicy Restart { get; init; } = RestartPolicy.No;
    /// <summary>Started by the agent when the host has (re)booted, all such guests at once (Incus boot.autostart, xl's
    /// /etc/xen/auto). A guest without it is listed stopped after a reboot, nothing of it lost.</summary>
    public bool Autostart { get; init; }
    /// <summary>The guest's init and its arguments; null means the image's /sbin/init.</summary>
    public IReadOnlyList<string>? Command { get; init; }
    public DateTimeOffset Created { get; init; }
    /// <summary>Creating and Destroying mark work in flight: an agent that died mid-way finishes or undoes it.</summary>
    public GuestPhase Phase { get; init; } = GuestPhase.Ready;
    public GuestSecurity Security { get; init; } = new();
    /// <summary>Domains only: the virtual machine's kernel, processors and disk.</summary>
    public DomainSettings? Domain { get; init; }
    /// <summary>What happened to the guest beyond its runs, oldest first: promotions and demotions.</summary>
    public IReadOnlyList<GuestEvent> History { get; init; } = [];

    public IReadOnlyList<string> InitCommand => Command is { Count: > 0 } c ? c : ["/sbin/init"];
}

public sealed record GuestLimits
{
    public long? MemoryBytes { get; init; }
    /// <summary>The guarantee: a vserver's soft limit (memory.low on v2), a domain's balloon floor. Admission counts it.</summary>
    public long? MemoryMinBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    /// <summary>Vservers (and a domain promoted from one with a shared root): the disk quota, the size of the ext4 image
    /// its writable layer lives in (see <see cref="Vservers.WritableLayer"/>). Null: no quota, the layer is a plain
    /// directory on the host's disk, as for every guest made before quotas existed.</summary>
    public long? DiskBytes { get; init; }
}

/// <summary>
/// What a domain is beyond its limits. Its memory is <see cref="MaxMemoryBytes"/> of guest RAM (QEMU's -m); the
/// guest's <see cref="GuestLimits.MemoryBytes"/> is the balloon target within it (equal unless `vsctl set --memory`
/// lowered it).
/// </summary>
public sealed record DomainSettings
{
    public const string DefaultKernel = "default";
    public const long DefaultMemoryBytes = 256L << 20;
    public const long DefaultDiskBytes = 2L << 30;

    public string Kernel { get; init; } = DefaultKernel;
    public int Vcpus { get; init; } = 1;
    public long MaxMemoryBytes { get; init; } = DefaultMemoryBytes;
    public long DiskBytes { get; init; } = DefaultDiskBytes;
    /// <summary>What the domain's root filesystem is (see <see cref="DomainRoot"/>).</summary>
    public DomainRoot Root { get; init; } = DomainRoot.Overlay;
}

/// <summary>
/// A domain's root filesystem. <see cref="Overlay"/>: a qcow2 overlay over its image's ext4 base (a domain created as
/// one). <see cref="Virtiofs"/>: a promoted vserver's own layers (its image and writable layer, as the vserver saw
/// them) shared in place through virtiofsd, nothing copied. <see cref="Ext4"/>: a raw ext4 image of its own
/// (promote --copy).
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<DomainRoot>))]
public enum DomainRoot { Overlay, Virtiofs, Ext4 }

/// <summary>One entry of a guest's history: when, what ("promoted", "demoted"), in words, and the limits it had as a
/// vserver before a promotion (its CPU share and process limit, which a domain does not have), for the demotion.</summary>
public sealed record GuestEvent(DateTimeOffset At, string Event, string Detail, GuestLimits? VserverLimits = null);

/// <summary>How a guest is confined beyond its namespaces.</summary>
public sealed record GuestSecurity
{
    /// <summary>Root inside is root on the host (with the reduced capability set); no user namespace.</summary>
    public bool Privileged { get; init; }
    /// <summary>Unprivileged guests: the host ids the guest's ids 0..Count-1 map to; never shared while the guest exists.</summary>
    public IdMap? IdMap { get; init; }
    /// <summary>Syscalls the default seccomp filter refuses that this guest may call anyway.</summary>
    public IReadOnlyList<string> AllowSyscalls { get; init; } = [];
}

/// <summary>Ids 0..Count-1 inside a guest are HostBase..HostBase+Count-1 on the host (uids and gids alike).</summary>
public sealed record IdMap(long HostBase, long Count)
{
    public long HostEnd => HostBase + Count;
}

public sealed record GuestNetworkConfig
{
    public string? Ipv4 { get; init; }
    /// <summary>eth0's MAC, kept across promotion and demotion; null for guests created before it was recorded (a
    /// vserver's then is whatever its veth got, a domain's <see cref="HybridHypervisor.Domains.DomainTap.MacFor"/>).</summary>
    public string? Mac { get; init; }
    /// <summary>Host ports forwarded to the guest's address (the agent's nftables table); kept across promotion.</summary>
    public IReadOnlyList<PortInfo> Ports { get; init; } = [];
    /// <summary>The name servers of the guest's /etc/resolv.conf: null, the host's resolver on the bridge; empty, none
    /// (the guest keeps its own file); else these.</summary>
    public IReadOnlyList<string>? Dns { get; init; }

    /// <summary>Equal for the same address, MAC, ports and name servers (the lists' contents, not their instances).</summary>
    public bool Equals(GuestNetworkConfig? other) =>
        other is not null && Ipv4 == other.Ipv4 && Mac == other.Mac && Ports.SequenceEqual(other.Ports)
        && (Dns is null ? other.Dns is null : other.Dns is not null && Dns.SequenceEqual(other.Dns));

    public override int GetHashCode() => HashCode.Combine(Ipv4, Mac, Ports.Count);
}

/// <summary>A published port's protocol as the host's rules take it (<see cref="PortProtocol"/>); the port itself is the
/// contract's <see cref="PortInfo"/>, which names it tcp or udp.</summary>
public static class PublishedPorts
{
    /// <summary>A protocol by its contract name (tcp when none is given); a refusal naming the field for anything else.</summary>
    public static PortProtocol ParseProtocol(string? text) =>
        PortProtocols.TryParse(text, out var protocol) ? protocol
            : throw FleetException.Invalid(new SettingError("protocol", text, ErrorCodes.Reasons.Malformed, $"invalid protocol '{text}': use tcp or udp"));

    /// <summary>A port as a client sent it, with its protocol as a config records it: tcp or udp, tcp when left out; a
    /// refusal naming the field for anything else.</summary>
    public static PortInfo AsRecorded(PortInfo port) => port with { Protocol = PortProtocols.Name(ParseProtocol(port.Protocol)) };

    /// <summary>The protocol of a port the validator has passed (a guest's config, a port being published).</summary>
    public static PortProtocol ProtocolOf(PortInfo port) => ParseProtocol(port.Protocol);
}

[JsonConverter(typeof(JsonStringEnumConverter<GuestKind>))]
public enum GuestKind { Vserver, Domain }

[JsonConverter(typeof(JsonStringEnumConverter<GuestPhase>))]
// Ready first: a config without "phase" must never read as work in flight (which the agent would undo).
public enum GuestPhase { Ready, Creating, Destroying }

[JsonConverter(typeof(JsonStringEnumConverter<RestartPolicy>))]
public enum RestartPolicy { No, OnFailure, Always }

public static class RestartPolicies
{
    public static bool TryParse(string? text, out RestartPolicy policy)
    {
        policy = RestartPolicy.No;
        switch (text)
        {
            case null or "" or "no": return true;
            case "on-failure": policy = RestartPolicy.OnFailure; return true;
            case "always": policy = RestartPolicy.Always; return true;
            default: return false;
        }
    }

    public static string Invalid(string? text) => $"invalid restart policy '{text}': use no, on-failure or always";

    public static string Format(RestartPolicy policy) => policy switch
    {
        RestartPolicy.OnFailure => "on-failure",
        RestartPolicy.Always => "always",
        _ => "no",
    };
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(GuestConfig))]
[JsonSerializable(typeof(GuestIntent))]
[JsonSerializable(typeof(SharedMemoryAccounting.PoolSettings))]
[JsonSerializable(typeof(HostNetworkSettings))]
internal sealed partial class ConfigJson : JsonSerializerContext;

/// <summary>One-line JSON (a save file's header is one line).</summary>
[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, WriteIndented = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(HybridHypervisor.Domains.SaveHeader))]
internal sealed partial class CompactJson : JsonSerializerContext;
