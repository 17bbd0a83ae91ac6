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
        [GuestSpec.Fields.Dns] = "--dns",
        [HostSettingsRequest.Fields.Nat] = "--nat",
        [HostSettingsRequest.Fields.Routed] = "--routed",
        [HostSettingsRequest.Fields.Uplink] = "--uplink",
        [HostSettingsRequest.Fields.DnsDomain] = "--dns-domain",
        [HostSettingsRequest.Fields.DnsUpstream] = "--dns-upstream",
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

    public static string Line(ApiException e) => e.Code == OptionNotForKind && e.Field("option") is { } option
        ? NotForKind(FlagOf(option), e.Field("kind"))
        : e.Message + Advice(e);

    /// <summary>vsctl's line for a refused exec or console: the agent's Error message, with the advice of its code when
    /// an <see cref="ExecStream.ErrorDetail"/> came before it.</summary>
    public static string Line(string text, ErrorResponse? detail) => detail is { Code: not null }
        ? Line(new ApiException(System.Net.HttpStatusCode.Conflict, detail.Error, detail.Code, detail.Fields))
        : text;

    /// <summary>The <see cref="ErrorResponse"/> of an <see cref="ExecStream.ErrorDetail"/> message, or null for one vsctl
    /// cannot read (the Error message's text is shown as it is then).</summary>
    public static ErrorResponse? Detail(ReadOnlySpan<byte> json)
    {
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize(json, ApiJson.Default.ErrorResponse);
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>What to do about a refusal, in vsctl's verbs and flags, to follow the agent's words; empty where they
    /// say it all. A name in advice is quoted to be typed back (<see cref="Escaped.Name"/>), and no advice builds an
    /// image or kernel whose name could never be built.</summary>
    private static string Advice(ApiException e) => e.Code switch
    {
        NameTaken => "; pick another name or destroy it first",
        AddressTaken => "; pick another or leave --ip out",
        NotFound when (e.Field("guest"), e.Field("port")) is ({ } guest, not null) => $" (see: vsctl port list {Escaped.Name(guest)})",
        NotFound when e.Field("guest") is not null => " (see: vsctl list)",
        NotFound when e.Field("image") is not null => " (see: vsctl image list)",
        NotRunning when e.Field("guest") is { } guest => $"; start it with: vsctl start {Escaped.Name(guest)}",
        AlreadyRunning when e.Field("guest") is { } guest => e.Field("operation") == "destroy"
            ? $" or use: vsctl destroy --force {Escaped.Name(guest)}"
            : $"; stop it first, or use: vsctl restart {Escaped.Name(guest)}",
        Paused when e.Field("guest") is { } guest => $"; resume it with: vsctl resume {Escaped.Name(guest)}",
        Broken when e.Field("guest") is { } guest => $"; {BrokenAdvice(guest)}",
        ImageMissing when e.Field("image") is { } image && Names.IsValid(image) => $"; build it{(e.Field("guest") is null ? "" : " again")} with: vsctl image build {Escaped.Name(image)}",
        ImageExists when e.Field("image") is { } image => $" (remove it first with: vsctl image rm {Escaped.Name(image)})",
        KernelMissing when e.Field("kernel") is { } kernel && Names.IsValid(kernel) => $"; build it with: vsctl kernel build {Escaped.Name(kernel)}",
        KernelOutdated when e.Field("kernel") is { } kernel => $"; rebuild it: vsctl kernel rm {Escaped.Name(kernel)} && vsctl kernel build {Escaped.Name(kernel)}",
        KernelExists when e.Field("kernel") is { } kernel => $"; remove it first with: vsctl kernel rm {Escaped.Name(kernel)}",
        AlreadyDomain when e.Field("guest") is { } guest => $"; to make it a vserver again: vsctl demote {Escaped.Name(guest)}",
        AlreadyVserver when e.Field("guest") is { } guest => $"; to give it its own kernel: vsctl promote {Escaped.Name(guest)}",
        NotADomain when (e.Field("guest"), e.Field("operation")) is ({ } guest, "console") => $"; enter it with: vsctl enter {Escaped.Name(guest)}",
        ConsoleBusy => "; detach that one with Ctrl-]",
        GuestAgentSilent when e.Field("guest") is { } guest => $"; see its console with: vsctl console {Escaped.Name(guest)}",
        PortTaken when (e.Field("owner"), e.Field("port"), e.Field("guestPort")) is ({ } owner, { } port, not null) =>
            $"; remove it first: vsctl port remove {Escaped.Name(owner)} {port}",
        PoolFull => e.Field("bound") == "limits"
            ? "; give a smaller --memory, or allow more overcommit (vsctl host set --overcommit)"
            : "; give a smaller --memory-min, lower or destroy another guest, or shrink the host reserve (vsctl host set --reserve)",
        PoolTooSmall => e.Field("bound") == "limits"
            ? "; lower some limits first or allow more overcommit"
            : "; lower their --memory-min first or keep a smaller reserve",
        NoDiskQuota => " (vsctl create NAME --disk SIZE)",
        LayerMissing when e.Field("guest") is { } guest => $"; destroy the guest with: vsctl destroy {Escaped.Name(guest)}",
        NotASaveFile => "; give a file written by vsctl save",
        SaveFailed when e.Field("guest") is { } guest => $": start it with: vsctl start {Escaped.Name(guest)}",
        InvalidValue => ValueAdvice(e),
        _ => "",
    };

    /// <summary>vsctl's advice for a guest the agent holds as broken: it can be fixed by hand or removed.</summary>
    public static string BrokenAdvice(string guest) => $"fix its files, or remove it with: vsctl destroy --force {Escaped.Name(guest)}";

    private static string NotForKind(string flag, string? kind) => kind == GuestKinds.Vserver
        ? $"{flag} is for domains; add --kind domain, or leave it out for a vserver"
        : flag switch
        {
            "--cpus" => "--cpus is a vserver's CPU share; give a domain processors with --vcpus N",
            "--cmd" => "--cmd is for vservers; a domain boots its image's /sbin/init (see vsctl console)",
            _ => $"{flag} is for vservers; a domain is isolated by its own kernel",
        };

    /// <summary>What to do about a refused value, in vsctl's flags; empty where the agent's words say it all.</summary>
    private static string ValueAdvice(ApiException e)
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
            (GuestSpec.Fields.MemoryBytes, Reasons.AboveBootMaximum) when e.Field("guest") is { } guest =>
                $"; stop it and set {flag} {(Number(value) ?? 0) >> 20}M to raise the maximum: vsctl stop {Escaped.Name(guest)}",
            (GuestSpec.Fields.Cpus, _) => $", e.g. {flag} 0.5",
            (GuestSpec.Fields.Pids, _) => $", e.g. {flag} 200",
            (GuestSpec.Fields.Ipv4, Reasons.OutsideSubnet) when e.Field("routed") is null =>
                $"; pick one inside it or leave {flag} out (public addresses: vsctl host set --routed CIDR --uplink IF)",
            (GuestSpec.Fields.Ipv4, Reasons.OutsideSubnet) => $"; pick one inside either or leave {flag} out",
            (HostSettingsRequest.Fields.Routed, Reasons.InUse) => "; vsctl list shows each guest's address",
            (HostSettingsRequest.Fields.Uplink, Reasons.Missing) => ", e.g. --uplink eth0",
            (HostSettingsRequest.Fields.Uplink, Reasons.NotOnHost) => "; ip link lists the host's interfaces",
            (GuestSpec.Fields.Ipv4, Reasons.ReservedAddress) => "; pick another",
            (GuestSpec.Fields.Command, Reasons.Empty) => $", or leave {flag} out to run the image's /sbin/init",
            (GuestSpec.Fields.Image, Reasons.NotBuilt) when Names.IsValid(value) => $"; build one with: vsctl image build {Escaped.Name(value)}",
            (GuestSpec.Fields.Kernel, Reasons.NotBuilt) when Names.IsValid(value) => $"; build it with: vsctl kernel build {Escaped.Name(value)}",
            _ => "",
        };
    }

    private static long? Number(string? text) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) ? n : null;
}
