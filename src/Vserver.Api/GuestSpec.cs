using System.Text.Json.Serialization;

namespace Vserver.Api;

/// <summary>
/// A guest as a client asks for it: the body of POST /v1/guests (and of its dry run), built by vsctl create and vsctl
/// apply and read by the fleet as is, which validates it and turns it into the guest's stored config. Null members
/// take the agent's defaults; sizes are bytes.
/// </summary>
public sealed record GuestSpec
{
    public required string Name { get; init; }
    public string? Image { get; init; }
    /// <summary>The memory limit (vserver: cgroup limit; domain: guest RAM).</summary>
    public long? MemoryBytes { get; init; }
    /// <summary>The memory guarantee (vserver: soft limit / memory.low; domain: balloon floor). Counted by admission.</summary>
    public long? MemoryMinBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    public string? Ipv4 { get; init; }
    /// <summary>The name servers written into the guest's /etc/resolv.conf at each start; null: the host's resolver on
    /// the bridge; empty: none written (the guest keeps its own).</summary>
    public IReadOnlyList<string>? Dns { get; init; }
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
    /// <summary>Domains: the kernel to boot (default "default") and processors.</summary>
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }
    /// <summary>Domains: the root disk's size [default 2G]. Vservers: a disk quota, the size of the ext4 image the
    /// writable layer lives in [default: none].</summary>
    public long? DiskBytes { get; init; }
    /// <summary>Started by the agent after the host boots.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Autostart { get; init; }

    /// <summary>The members' names on the wire, as error fields name them (<see cref="ErrorCodes"/>).</summary>
    public static class Fields
    {
        public const string Name = "name";
        public const string Image = "image";
        public const string MemoryBytes = "memoryBytes";
        public const string MemoryMinBytes = "memoryMinBytes";
        public const string Cpus = "cpus";
        public const string Pids = "pids";
        public const string Ipv4 = "ipv4";
        public const string Dns = "dns";
        public const string Restart = "restart";
        public const string Command = "command";
        public const string Privileged = "privileged";
        public const string AllowSyscalls = "allowSyscalls";
        public const string Kind = "kind";
        public const string Kernel = "kernel";
        public const string Vcpus = "vcpus";
        public const string DiskBytes = "diskBytes";
        public const string Autostart = "autostart";
    }
}
