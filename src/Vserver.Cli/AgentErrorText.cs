using System.Globalization;
using Vserver.Api;
using static Vserver.Api.ErrorCodes;

namespace Vserver.Cli;

/// <summary>
/// vsctl's one line for an error the agent answered. The agent says what is wrong in plain words and, in its code and
/// fields (<see cref="ErrorCodes"/>), which setting and rule; only here does that become advice in vsctl's own terms:
/// its flags and verbs. A code or field without advice here leaves the agent's words as they are.
/// </summary>
internal static class AgentErrorText
{
    /// <summary>vsctl's flag for each <see cref="GuestSpec"/> field.</summary>
    private static readonly Dictionary<string, string> Flags = new(StringComparer.Ordinal)
    {
        [GuestSpec.Fields.Image] = "--image",
        [GuestSpec.Fields.MemoryBytes] = "--memory",
        [GuestSpec.Fields.MemoryMinBytes] = "--memory-min",
        [GuestSpec.Fields.Cpus] = "--cpus",
        [GuestSpec.Fields.Pids] = "--pids",
        [GuestSpec.Fields.Ipv4] = "--ip",
        [GuestSpec.Fields.Restart] = "--restart",
        [GuestSpec.Fields.Command] = "--cmd",
        [GuestSpec.Fields.Privileged] = "--privileged",
        [GuestSpec.Fields.AllowSyscalls] = "--allow-syscall",
        [GuestSpec.Fields.Kind] = "--kind",
        [GuestSpec.Fields.Kernel] = "--kernel",
        [GuestSpec.Fields.Vcpus] = "--vcpus",
        [GuestSpec.Fields.DiskBytes] = "--disk",
        [GuestSpec.Fields.Autostart] = "--autostart",
    };

    public static string FlagOf(string field) => Flags.TryGetValue(field, out var flag) ? flag : field;

    public static string Line(ApiException e) => e.Code switch
    {
        OptionNotForKind when e.Field("option") is { } option => NotForKind(FlagOf(option), e.Field("kind")),
        NameTaken => $"{e.Message}; pick another name or destroy it first",
        AddressTaken => $"{e.Message}; pick another or leave --ip out",
        NotFound when e.Field("guest") is not null => $"{e.Message} (see: vsctl list)",
        NotRunning when e.Field("guest") is { } guest => $"{e.Message}; start it with: vsctl start {guest}",
        InvalidValue => e.Message + Advice(e),
        _ => e.Message,
    };

    private static string NotForKind(string flag, string? kind) => kind == GuestKinds.Vserver
        ? $"{flag} is for domains; add --kind domain, or leave it out for a vserver"
        : flag switch
        {
            "--cpus" => "--cpus is a vserver's CPU share; give a domain processors with --vcpus N",
            "--cmd" => "--cmd is for vservers; a domain boots its image's /sbin/init (see vsctl console)",
            _ => $"{flag} is for vservers; a domain is isolated by its own kernel",
        };

    /// <summary>What to do about a refused value, in vsctl's flags; empty where the agent's words say it all.</summary>
    private static string Advice(ApiException e)
    {
        var field = e.Field("field") ?? "";
        var flag = FlagOf(field);
        var value = e.Field("value") ?? "";
        var minimum = Number(e.Field("minimum"));
        return (field, e.Field("reason")) switch
        {
            (GuestSpec.Fields.MemoryMinBytes, Reasons.BelowMinimum) when minimum is 0 => $", e.g. {flag} 64M",
            (GuestSpec.Fields.MemoryBytes or GuestSpec.Fields.MemoryMinBytes or GuestSpec.Fields.DiskBytes, Reasons.BelowMinimum) when minimum is { } min =>
                $"; give at least {flag} {ByteSize.FormatExact(min)}",
            (GuestSpec.Fields.DiskBytes, Reasons.AboveMaximum) when Number(e.Field("maximum")) is { } max => $"; give at most {flag} {ByteSize.FormatExact(max)}",
            (GuestSpec.Fields.MemoryBytes, Reasons.AboveMaximum) => "; give less",
            (GuestSpec.Fields.DiskBytes, Reasons.NotWholeMib) when Number(value) is { } bytes => $"; give e.g. {flag} {(bytes + (1L << 20) - 1) >> 20}M",
            (GuestSpec.Fields.MemoryBytes, Reasons.NotWholeMib) when Number(value) is { } bytes => $"; give e.g. {flag} {bytes >> 20}M",
            (GuestSpec.Fields.DiskBytes, Reasons.TooSmallForImage) when minimum is { } min => $"; give {flag} {ByteSize.FormatExact(min)} or more",
            (GuestSpec.Fields.MemoryBytes, Reasons.AgainstGuarantee) => "; lower --memory-min first",
            (GuestSpec.Fields.Cpus, _) => $", e.g. {flag} 0.5",
            (GuestSpec.Fields.Pids, _) => $", e.g. {flag} 200",
            (GuestSpec.Fields.Ipv4, Reasons.OutsideSubnet) => $"; pick one inside it or leave {flag} out",
            (GuestSpec.Fields.Ipv4, Reasons.ReservedAddress) => "; pick another",
            (GuestSpec.Fields.Command, Reasons.Empty) => $", or leave {flag} out to run the image's /sbin/init",
            (GuestSpec.Fields.Image, Reasons.NotBuilt) => $"; build one with: vsctl image build {value}",
            (GuestSpec.Fields.Kernel, Reasons.NotBuilt) => $"; build it with: vsctl kernel build {value}",
            _ => "",
        };
    }

    private static long? Number(string? text) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n : null;
}
