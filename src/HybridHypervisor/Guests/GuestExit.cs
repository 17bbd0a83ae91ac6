using System.Globalization;

namespace HybridHypervisor.Guests;

/// <summary>How a guest's run ended: a vserver's init as its monitor recorded it, or a domain's QEMU together with
/// what the guest asked for (power-off, reset) as QMP reported it.</summary>
/// <param name="Reason">Domains: what ended the run, in words (e.g. "the guest powered off").</param>
/// <param name="Crashed">Domains: QEMU died without the guest or the agent asking it to (killed, or an error).</param>
/// <param name="Reset">Domains: whether the guest rebooted; null for vservers, where a reboot is a SIGHUP to init.</param>
public sealed record GuestExit(int? Code, int? Signal, DateTimeOffset At, string? Reason = null, bool Crashed = false, bool? Reset = null)
{
    public bool Failed => Crashed || Code is not 0;

    /// <summary>reboot(2) inside a pid namespace ends its init with SIGHUP; power-off and halt with SIGINT.</summary>
    public bool RebootRequested => Reset ?? Signal == 1;

    public string Description => Reason ?? (Code is { } c ? $"exited with code {c}" : Signal is { } s ? $"killed by signal {s}{SignalName(s)}" : "ended, status unknown");

    private static string SignalName(int s) => s switch
    {
        1 => " (SIGHUP: reboot requested)", 2 => " (SIGINT: power-off requested)", 9 => " (SIGKILL)", 15 => " (SIGTERM)", _ => "",
    };

    /// <summary>Parses the monitor's exit file: `exited N` or `signaled S`.</summary>
    public static GuestExit? Parse(string text, DateTimeOffset at)
    {
        var parts = text.Trim().Split(' ');
        if (parts.Length != 2 || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out var n)) return null;
        return parts[0] switch
        {
            "exited" => new GuestExit(n, null, at),
            "signaled" => new GuestExit(null, n, at),
            _ => null,
        };
    }
}
