namespace Vserver.Cli;

/// <summary>How vsctl shows what a domain runs on; the agent reports "kvm" or "tcg (emulated: why)".</summary>
internal static class Accelerators
{
    private const string EmulatedPrefix = "tcg (emulated: ";

    /// <summary>The accelerator's name alone, for a table column: kvm or tcg.</summary>
    public static string? Short(string? accelerator)
    {
        if (string.IsNullOrEmpty(accelerator)) return null;
        var space = accelerator.IndexOf(' ', StringComparison.Ordinal);
        return space < 0 ? accelerator : accelerator[..space];
    }

    public static bool IsEmulated(string? accelerator) => Short(accelerator) == "tcg";

    /// <summary>One line under a table that shows tcg, with the agent's reason when it gave one.</summary>
    public static string EmulationNote(string? accelerator)
    {
        var reason = accelerator is not null && accelerator.StartsWith(EmulatedPrefix, StringComparison.Ordinal) && accelerator.EndsWith(')')
            ? accelerator[EmulatedPrefix.Length..^1]
            : null;
        return string.IsNullOrWhiteSpace(reason)
            ? "tcg = emulated (no usable KVM on this host): domains run several times slower"
            : $"tcg = emulated (no usable KVM on this host: {reason}): domains run several times slower";
    }
}
