using System.Net;

namespace HybridHypervisor.Model;

/// <summary>Checks a guest's config on its own (what needs the rest of the fleet, like a taken address, is checked by the fleet).
/// Each message names what is wrong and what to do.</summary>
public static partial class GuestConfigValidator
{
    public const long MinMemoryBytes = 4L << 20;

    public static string? NameError(string? name) => Vserver.Isolation.Naming.DnsLabel.Error(name, "guest");

    public static string? LimitsError(GuestLimits limits, int hostCpus)
    {
        if (limits.MemoryBytes is { } m && m < MinMemoryBytes)
            return $"memory limit {m} bytes is below the minimum of 4M; give at least --memory 4M";
        if (limits.Cpus is { } c && (double.IsNaN(c) || c <= 0 || c > hostCpus))
            return $"invalid cpus {c}: give a number above 0 and at most this host's {hostCpus} CPUs, e.g. --cpus 0.5";
        if (limits.Pids is { } p && p < 1)
            return $"invalid pids limit {p}: give a positive number of processes, e.g. --pids 200";
        if (limits.DiskBytes is { } d && Vserver.Isolation.Storage.LayerImage.QuotaError(d) is { } diskError) return diskError;
        return GuaranteeError(limits.MemoryMinBytes, limits.MemoryBytes, "memory limit");
    }

    /// <summary>A guarantee must be a size no larger than what the guest may have (a vserver's limit, a domain's memory).</summary>
    public static string? GuaranteeError(long? minBytes, long? ceilingBytes, string ceilingName)
    {
        if (minBytes is not { } min) return null;
        if (min < 0) return $"invalid memory guarantee {min}: give a size, e.g. --memory-min 64M";
        if (ceilingBytes is { } ceiling && min > ceiling)
            return $"memory guarantee {min >> 20}M is above the {ceilingName} of {ceiling >> 20}M; a guest cannot be promised more than it may use";
        return null;
    }

    /// <summary>A domain's balloon floor and target: floor within its memory, target not below the floor.</summary>
    public static string? DomainGuaranteeError(DomainSettings domain, long? minBytes, long? targetBytes)
    {
        if (GuaranteeError(minBytes, domain.MaxMemoryBytes, "domain's memory") is { } error) return error;
        if (minBytes is { } min && min < MinDomainMemoryBytes)
            return $"memory guarantee {min >> 20}M is below a domain's minimum of 64M; give at least --memory-min 64M";
        if (minBytes is { } floor && targetBytes is { } target && target < floor)
            return $"memory {target >> 20}M is below the domain's guarantee of {floor >> 20}M; lower --memory-min first";
        return null;
    }

    public static string? Ipv4Error(string? ipv4, Vserver.Isolation.Network.Ipv4Subnet subnet)
    {
        if (ipv4 is null) return null;
        if (!IPAddress.TryParse(ipv4, out var address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || ipv4.Count(ch => ch == '.') != 3 || address.ToString() != ipv4)
            return $"invalid IPv4 address '{ipv4}': write it as A.B.C.D";
        if (!subnet.Contains(address))
            return $"address {ipv4} is outside this host's guest subnet {subnet}; pick one inside it or leave --ip out";
        if (!subnet.IsGuestAddress(address))
            return $"address {ipv4} is the subnet's network, gateway or broadcast address; pick another";
        return null;
    }

    public static string? AllowSyscallsError(IReadOnlyList<string>? allow, bool privileged)
    {
        if (allow is null) return null;
        var allowed = Vserver.Isolation.Security.SeccompProfile.Overridable(privileged);
        foreach (var name in allow)
            if (!allowed.Contains(name, StringComparer.Ordinal))
                return $"cannot allow syscall '{name}': the filter does not refuse it{(privileged ? " for privileged guests" : "")}; allow one of: {string.Join(", ", allowed)}";
        return null;
    }

    public static string? SecurityError(GuestSecurity security)
    {
        if (security.Privileged && security.IdMap is not null)
            return "a privileged guest has no id map: remove \"idMap\" or \"privileged\"";
        if (!security.Privileged && security.IdMap is not { } map)
            return "an unprivileged guest needs its id map (\"idMap\": {\"hostBase\": ..., \"count\": 65536}); recreate the guest";
        if (security.IdMap is { } m && (m.HostBase < HostIdRange.SlotSize || m.Count < HostIdRange.SlotSize || m.HostEnd - 1 > HostIdRange.LastUsableId))
            return $"invalid id map {m.HostBase}+{m.Count}: it must start at or above {HostIdRange.SlotSize}, hold at least {HostIdRange.SlotSize} ids and end by {HostIdRange.LastUsableId}";
        return AllowSyscallsError(security.AllowSyscalls, security.Privileged);
    }

    /// <summary>A published port on its own: both ports within 1..65535.</summary>
    public static string? PortError(PublishedPort port)
    {
        if (port.HostPort is < 1 or > 65535) return $"invalid host port {port.HostPort}: give a port from 1 to 65535";
        if (port.GuestPort is < 1 or > 65535) return $"invalid guest port {port.GuestPort}: give a port from 1 to 65535";
        if (!Enum.IsDefined(port.Protocol)) return $"invalid protocol {(int)port.Protocol}: use tcp or udp";
        return null;
    }

    /// <summary>A guest's published ports: each valid, no host port and protocol twice.</summary>
    public static string? PortsError(IReadOnlyList<PublishedPort> ports)
    {
        foreach (var port in ports)
            if (PortError(port) is { } error) return error;
        var twice = ports.GroupBy(p => (p.HostPort, p.Protocol)).FirstOrDefault(g => g.Count() > 1);
        return twice is null ? null
            : $"host port {twice.Key.HostPort}/{Vserver.Isolation.Network.PortProtocols.Name(twice.Key.Protocol)} is published twice; keep one";
    }

    /// <summary>The smallest domain that boots the kernel, its initramfs and a busybox system.</summary>
    public const long MinDomainMemoryBytes = 64L << 20;

    /// <summary>A domain's processors, memory (its maximum and the balloon target within it) and kernel name.</summary>
    public static string? DomainError(DomainSettings domain, long? targetBytes, int hostCpus, long hostMemoryBytes)
    {
        if (Vserver.Isolation.Naming.DnsLabel.Error(domain.Kernel, "kernel") is { } kernelError) return kernelError;
        if (domain.Vcpus < 1 || domain.Vcpus > hostCpus)
            return $"invalid vcpus {domain.Vcpus}: give 1 to {hostCpus} (this host's cores); a domain with more vcpus than cores only runs slower";
        var max = domain.MaxMemoryBytes;
        if (max < MinDomainMemoryBytes)
            return $"memory {Vserver.Isolation.Storage.DiskSize.Format(max)} is too small for a domain; give at least --memory 64M";
        if (max > hostMemoryBytes)
            return $"memory {Vserver.Isolation.Storage.DiskSize.Format(max)} is more than this host has ({hostMemoryBytes >> 20}M); give less";
        if (max % (1L << 20) != 0) return $"memory {max} bytes is not a whole number of MiB; give e.g. --memory {max >> 20}M";
        if (targetBytes is { } t && (t < MinDomainMemoryBytes || t > max))
            return $"memory target {t >> 20}M is outside this domain's range of 64M to its maximum of {max >> 20}M";
        return null;
    }

    /// <summary>The first problem of a whole config, or null.</summary>
    public static string? Validate(GuestConfig config, Vserver.Isolation.Network.Ipv4Subnet subnet, int hostCpus) =>
        NameError(config.Name)
        ?? (string.IsNullOrEmpty(config.Image) ? "no image given" : null)
        ?? Ipv4Error(config.Network.Ipv4, subnet)
        ?? PortsError(config.Network.Ports)
        ?? (config.Command is { Count: 0 } ? "empty command: leave --cmd out to run the image's /sbin/init" : null)
        ?? (config.Kind == GuestKind.Domain
            ? (config.Domain is { } d ? DomainError(d, config.Limits.MemoryBytes, hostCpus, HostMemory.TotalBytes)
                ?? DomainGuaranteeError(d, config.Limits.MemoryMinBytes, config.Limits.MemoryBytes) : "a domain needs its \"domain\" section (kernel, vcpus, maxMemoryBytes, diskBytes)")
            : LimitsError(config.Limits, hostCpus) ?? SecurityError(config.Security));
}
