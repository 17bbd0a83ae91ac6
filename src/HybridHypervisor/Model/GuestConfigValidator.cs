using System.Net;
using Vserver.Api;
using Vserver.Isolation.Storage;
using static Vserver.Api.ErrorCodes;

namespace HybridHypervisor.Model;

/// <summary>Checks a guest's settings on their own (what needs the rest of the fleet, like a taken address, is checked by
/// <see cref="GuestSpecValidator"/>). Each error names the field, its value and the rule it breaks in plain words; how a
/// client spells the fix (vsctl's flags) is the client's business.</summary>
public static partial class GuestConfigValidator
{
    public const long MinMemoryBytes = 4L << 20;

    public static SettingError? NameError(string? name) => NameError(name, "guest");

    /// <summary>The one rule for names (<see cref="Vserver.Isolation.Naming.DnsLabel"/>): of guests, images and kernels.</summary>
    public static SettingError? NameError(string? name, string kind) =>
        Vserver.Isolation.Naming.DnsLabel.Error(name, kind) is { } error
            ? new SettingError(GuestSpec.Fields.Name, name, Reasons.Malformed, error)
            : null;

    /// <summary>The smallest CPU share a cgroup enforces: its minimum quota (1 ms) per period (100 ms).</summary>
    public const double MinCpus = (double)Vserver.Isolation.Cgroups.CgroupLimits.MinCpuQuotaMicroseconds / Vserver.Isolation.Cgroups.CgroupLimits.CpuPeriodMicroseconds;

    /// <param name="hostMemoryBytes">The host's memory, the most a limit can mean; null: not checked (a stored config,
    /// whose host may have lost memory since).</param>
    public static SettingError? LimitsError(GuestLimits limits, int hostCpus, long? hostMemoryBytes = null)
    {
        if (limits.MemoryBytes is { } m && m < MinMemoryBytes)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(m), Reasons.BelowMinimum,
                $"memory limit {(m < 1024 ? $"{m} bytes" : ByteSize.Format(m))} is below the minimum of 4M").With("minimum", MinMemoryBytes);
        if (limits.MemoryBytes is { } big && hostMemoryBytes is { } host && big > host)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(big), Reasons.OutOfRange,
                    $"memory limit {ByteSize.FormatRounded(big)} is more than this host has: give 4M to {ByteSize.FormatRounded(host)}")
                .With("minimum", MinMemoryBytes).With("maximum", host);
        if (limits.MemoryMinBytes is { } floor && hostMemoryBytes is { } total && floor > total)
            return new SettingError(GuestSpec.Fields.MemoryMinBytes, Text(floor), Reasons.OutOfRange,
                    $"memory guarantee {ByteSize.FormatRounded(floor)} is more than this host has: give 0 to {ByteSize.FormatRounded(total)}")
                .With("minimum", 0).With("maximum", total);
        // A share below the cgroup's smallest quota would be raised to it without a word: refused instead.
        if (limits.Cpus is { } c && (!double.IsFinite(c) || c < MinCpus || c > hostCpus))
            return new SettingError(GuestSpec.Fields.Cpus, Text(c), Reasons.OutOfRange,
                    $"invalid cpus {Text(c)}: give {Text(MinCpus)} to this host's {hostCpus} CPUs")
                .With("minimum", Text(MinCpus)).With("maximum", hostCpus);
        if (limits.Pids is { } p && p < 1)
            return new SettingError(GuestSpec.Fields.Pids, Text(p), Reasons.BelowMinimum,
                $"invalid pids limit {p}: give a positive number of processes").With("minimum", 1);
        if (limits.DiskBytes is { } d && DiskQuotaError(d) is { } diskError) return diskError;
        return GuaranteeError(limits.MemoryMinBytes, limits.MemoryBytes, "memory limit");
    }

    /// <summary>A disk quota's own rules (<see cref="LayerImage.QuotaMessage"/>), as a setting error.</summary>
    public static SettingError? DiskQuotaError(long bytes)
    {
        if (LayerImage.QuotaMessage(bytes) is not { } message) return null;
        var error = new SettingError(GuestSpec.Fields.DiskBytes, Text(bytes), LayerImage.QuotaProblem(bytes) switch
        {
            QuotaProblem.BelowMinimum => Reasons.BelowMinimum,
            QuotaProblem.AboveMaximum => Reasons.AboveMaximum,
            _ => Reasons.NotWholeMib,
        }, message);
        return error.With("minimum", LayerImage.MinimumBytes).With("maximum", LayerImage.MaximumBytes);
    }

    /// <summary>A guarantee must be a size no larger than what the guest may have (a vserver's limit, a domain's memory).</summary>
    public static SettingError? GuaranteeError(long? minBytes, long? ceilingBytes, string ceilingName)
    {
        if (minBytes is not { } min) return null;
        if (min < 0)
            return new SettingError(GuestSpec.Fields.MemoryMinBytes, Text(min), Reasons.BelowMinimum, $"invalid memory guarantee {min}: give a size")
                .With("minimum", 0);
        if (ceilingBytes is { } ceiling && min > ceiling)
            return new SettingError(GuestSpec.Fields.MemoryMinBytes, Text(min), Reasons.AgainstGuarantee,
                $"memory guarantee {ByteSize.Format(min)} is above the {ceilingName} of {ByteSize.Format(ceiling)}; a guest cannot be promised more than it may use")
                .With("maximum", ceiling);
        return null;
    }

    /// <summary>A domain's balloon floor and target: floor within its memory, target not below the floor.</summary>
    public static SettingError? DomainGuaranteeError(DomainSettings domain, long? minBytes, long? targetBytes)
    {
        if (GuaranteeError(minBytes, domain.MaxMemoryBytes, "domain's memory") is { } error) return error;
        if (minBytes is { } min && min < MinDomainMemoryBytes)
            return new SettingError(GuestSpec.Fields.MemoryMinBytes, Text(min), Reasons.BelowMinimum,
                $"memory guarantee {ByteSize.Format(min)} is below a domain's minimum of 64M").With("minimum", MinDomainMemoryBytes);
        if (minBytes is { } floor && targetBytes is { } target && target < floor)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(target), Reasons.AgainstGuarantee,
                $"memory {ByteSize.Format(target)} is below the domain's guarantee of {ByteSize.Format(floor)}").With("minimum", floor);
        return null;
    }

    /// <summary>Why <paramref name="ipv4"/> cannot be a guest's address: a guest address of the subnet, or any address
    /// of the host's routed range (<paramref name="routed"/>: public addresses routed to the guest, not on a link of its
    /// own, so none of them is reserved).</summary>
    public static SettingError? Ipv4Error(string? ipv4, Vserver.Isolation.Network.Ipv4Subnet subnet, Vserver.Isolation.Network.Ipv4Subnet? routed = null)
    {
        if (ipv4 is null) return null;
        if (!IPAddress.TryParse(ipv4, out var address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || ipv4.Count(ch => ch == '.') != 3 || address.ToString() != ipv4)
            return new SettingError(GuestSpec.Fields.Ipv4, ipv4, Reasons.Malformed, $"invalid IPv4 address '{ipv4}': write it as A.B.C.D");
        if (routed is not null && routed.Contains(address)) return null;
        if (!subnet.Contains(address))
        {
            var error = new SettingError(GuestSpec.Fields.Ipv4, ipv4, Reasons.OutsideSubnet,
                    $"address {ipv4} is outside this host's guest subnet {subnet}{(routed is null ? " (and the host routes no public range to guests)" : $" and its routed range {routed}")}")
                .With("subnet", subnet.ToString());
            return routed is null ? error : error.With("routed", routed.ToString());
        }
        if (!subnet.IsGuestAddress(address))
            return new SettingError(GuestSpec.Fields.Ipv4, ipv4, Reasons.ReservedAddress, $"address {ipv4} is the subnet's network, gateway or broadcast address");
        return null;
    }

    /// <summary>A guest's name servers: A.B.C.D addresses, at most three (what the C library reads of resolv.conf).</summary>
    public static SettingError? DnsError(IReadOnlyList<string>? servers)
    {
        if (servers is null) return null;
        if (servers.Count > MaxNameServers)
            return new SettingError(GuestSpec.Fields.Dns, string.Join(',', servers), Reasons.AboveMaximum,
                $"{servers.Count} name servers given; the C library reads at most {MaxNameServers}").With("maximum", MaxNameServers);
        foreach (var server in servers)
            if (!IPAddress.TryParse(server, out var a) || a.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork || a.ToString() != server
                || server.Count(ch => ch == '.') != 3)
                return new SettingError(GuestSpec.Fields.Dns, server, Reasons.Malformed, $"invalid name server '{server}': write it as A.B.C.D, or none");
        return null;
    }

    public const int MaxNameServers = 3;

    public static SettingError? AllowSyscallsError(IReadOnlyList<string>? allow, bool privileged)
    {
        if (allow is null) return null;
        var allowed = Vserver.Isolation.Security.SeccompProfile.Overridable(privileged);
        foreach (var name in allow)
            if (!allowed.Contains(name, StringComparer.Ordinal))
                return new SettingError(GuestSpec.Fields.AllowSyscalls, name, Reasons.NotAllowed,
                    $"cannot allow syscall '{name}': the filter does not refuse it{(privileged ? " for privileged guests" : "")}; allow one of: {string.Join(", ", allowed)}");
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
        return AllowSyscallsError(security.AllowSyscalls, security.Privileged)?.Message;
    }

    /// <summary>A published port on its own: both ports within 1..65535.</summary>
    public static string? PortError(PortInfo port)
    {
        if (port.HostPort is < 1 or > 65535) return $"invalid host port {port.HostPort}: give a port from 1 to 65535";
        if (port.GuestPort is < 1 or > 65535) return $"invalid guest port {port.GuestPort}: give a port from 1 to 65535";
        if (port.Protocol is not ("tcp" or "udp")) return $"invalid protocol '{port.Protocol}': use tcp or udp";
        return null;
    }

    /// <summary>A guest's published ports: each valid, no host port and protocol twice.</summary>
    public static string? PortsError(IReadOnlyList<PortInfo> ports)
    {
        foreach (var port in ports)
            if (PortError(port) is { } error) return error;
        var twice = ports.GroupBy(p => (p.HostPort, p.Protocol)).FirstOrDefault(g => g.Count() > 1);
        return twice is null ? null
            : $"host port {twice.Key.HostPort}/{twice.Key.Protocol} is published twice; keep one";
    }

    /// <summary>The smallest domain that boots the kernel, its initramfs and a busybox system.</summary>
    public const long MinDomainMemoryBytes = 64L << 20;

    /// <summary>A domain's processors, memory (its maximum and the balloon target within it) and kernel name.</summary>
    public static SettingError? DomainError(DomainSettings domain, long? targetBytes, int hostCpus, long hostMemoryBytes)
    {
        if (Vserver.Isolation.Naming.DnsLabel.Error(domain.Kernel, "kernel") is { } kernelError)
            return new SettingError(GuestSpec.Fields.Kernel, domain.Kernel, Reasons.Malformed, kernelError);
        if (domain.Vcpus < 1 || domain.Vcpus > hostCpus)
            return new SettingError(GuestSpec.Fields.Vcpus, Text(domain.Vcpus), Reasons.OutOfRange,
                $"invalid vcpus {domain.Vcpus}: give 1 to {hostCpus} (this host's cores); a domain with more vcpus than cores only runs slower")
                .With("minimum", 1).With("maximum", hostCpus);
        var max = domain.MaxMemoryBytes;
        if (max < MinDomainMemoryBytes)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(max), Reasons.BelowMinimum,
                $"memory {ByteSize.Format(max)} is too small for a domain").With("minimum", MinDomainMemoryBytes);
        if (max > hostMemoryBytes)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(max), Reasons.AboveMaximum,
                $"memory {ByteSize.Format(max)} is more than this host has ({ByteSize.Format(hostMemoryBytes)})").With("maximum", hostMemoryBytes);
        if (max % (1L << 20) != 0)
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(max), Reasons.NotWholeMib, $"memory {max} bytes is not a whole number of MiB");
        if (targetBytes is { } t && (t < MinDomainMemoryBytes || t > max))
            return new SettingError(GuestSpec.Fields.MemoryBytes, Text(t), Reasons.OutOfRange,
                $"memory target {ByteSize.Format(t)} is outside this domain's range of 64M to its maximum of {ByteSize.Format(max)}")
                .With("minimum", MinDomainMemoryBytes).With("maximum", max);
        return null;
    }

    /// <summary>The first problem of a whole config (a guest.json as stored, or a save file's), or null: the rules a
    /// create applies, so that a hand-edited file can make nothing the API would refuse. Its image and kernel become
    /// paths under the state root, so they obey the name rule; its id map must lie in <paramref name="ids"/>, the range
    /// this host hands out, when given.</summary>
    public static string? Validate(GuestConfig config, Vserver.Isolation.Network.Ipv4Subnet subnet, int hostCpus, HostIdRange? ids = null,
        Vserver.Isolation.Network.Ipv4Subnet? routed = null) =>
        NameError(config.Name)?.Message
        ?? (string.IsNullOrEmpty(config.Image) ? "no image given" : NameError(config.Image, "image")?.Message)
        ?? MacError(config.Network.Mac)
        ?? (ids is not null && config.Security.IdMap is { } map && !ids.Holds(map)
            ? $"id map {map.HostBase}+{map.Count} is outside this host's id range {ids} (VSERVER_IDMAP)" : null)
        ?? Ipv4Error(config.Network.Ipv4, subnet, routed)?.Message
        ?? DnsError(config.Network.Dns)?.Message
        ?? PortsError(config.Network.Ports)
        ?? CommandError(config.Command)?.Message
        ?? (config.Kind == GuestKind.Domain
            ? (config.Domain is { } d ? (DomainError(d, config.Limits.MemoryBytes, hostCpus, HostMemory.TotalBytes)
                ?? DomainGuaranteeError(d, config.Limits.MemoryMinBytes, config.Limits.MemoryBytes))?.Message
                : "a domain needs its \"domain\" section (kernel, vcpus, maxMemoryBytes, diskBytes)")
            : LimitsError(config.Limits, hostCpus)?.Message ?? SecurityError(config.Security));

    /// <summary>eth0's MAC as the agent records it: six lowercase hex pairs, locally administered and unicast.</summary>
    public static string? MacError(string? mac) =>
        mac is null || (MacPattern().IsMatch(mac) && (Convert.ToByte(mac[..2], 16) & 0x03) == 0x02) ? null
            : "invalid MAC address: write six hex pairs like 52:54:00:12:34:56, locally administered";

    [System.Text.RegularExpressions.GeneratedRegex("^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")]
    private static partial System.Text.RegularExpressions.Regex MacPattern();

    /// <summary>A guest's own init: none (the image's /sbin/init), or a program and its arguments.</summary>
    public static SettingError? CommandError(IReadOnlyList<string>? command) =>
        command is { Count: 0 } || command?.Any(string.IsNullOrEmpty) == true
            ? new SettingError(GuestSpec.Fields.Command, command is { Count: > 0 } ? string.Join(' ', command) : "", Reasons.Empty,
                "empty command: give a program to run")
            : NulError(GuestSpec.Fields.Command, command);

    /// <summary>What runs in a guest by exec: a program (and arguments), its environment and working directory, each a
    /// C string for the kernel (no NUL), an environment of NAME=value pairs (a name without '=' or NUL, not empty), and
    /// an absolute working directory. Fields as <see cref="ExecRequest"/> names them.</summary>
    public static SettingError? ExecError(IReadOnlyList<string>? command, IReadOnlyDictionary<string, string>? env, string? cwd)
    {
        if (command is not { Count: > 0 } || string.IsNullOrEmpty(command[0]) || command.Any(a => a is null))
            return new SettingError("command", command is { Count: > 0 } ? string.Join(' ', command) : "", Reasons.Empty,
                "no command given: exec needs the program to run");
        if (NulError("command", command) is { } commandError) return commandError;
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            if (key.Length == 0 || key.Contains('=', StringComparison.Ordinal) || key.Contains('\0', StringComparison.Ordinal))
                return new SettingError("env", key, Reasons.Malformed,
                    $"invalid environment variable name '{Shown(key)}': a name is not empty and holds no '=' or NUL");
            if (value is null || value.Contains('\0', StringComparison.Ordinal))
                return new SettingError("env", key, Reasons.Malformed, $"environment variable {Shown(key)} holds a NUL byte, which no variable can");
        }
        if (cwd is not null && (!cwd.StartsWith('/') || cwd.Contains('\0', StringComparison.Ordinal)))
            return new SettingError("cwd", cwd, Reasons.Malformed, $"invalid working directory '{Shown(cwd)}': give an absolute path without NUL");
        return null;
    }

    /// <summary>An argument with a NUL byte: the kernel would see it cut there.</summary>
    private static SettingError? NulError(string field, IReadOnlyList<string>? arguments) =>
        arguments?.FirstOrDefault(a => a.Contains('\0', StringComparison.Ordinal)) is { } bad
            ? new SettingError(field, bad, Reasons.Malformed, $"argument '{Shown(bad)}' holds a NUL byte, which no program argument can")
            : null;

    private static string Shown(string text) => Vserver.Isolation.Naming.DnsLabel.Shown(text);

    private static string Text(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string Text(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
