using System.CommandLine;
using System.Globalization;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// <c>vsctl stat [NAME...]</c>: who uses what of the shared memory pool, measured now (the role of Linux-VServer's
/// vserver-stat), and how the host's used memory adds up.
/// </summary>
internal static class StatCommand
{
    public static readonly IReadOnlyList<string> Headers =
        ["NAME", "TYPE", "STATE", "PROCS", "RSS", "PSS/FAIR", "PRIVATE", "SHARED", "SWAP", "LIMIT", "GUARANTEE", "CPU%"];

    public static Command Create(CliContext cli)
    {
        var names = new Argument<string[]>("NAME") { Description = "Only these guests [default: every guest]", Arity = ArgumentArity.ZeroOrMore };
        var format = SharedOptions.Format("table");
        var command = new Command("stat",
            "Show each guest's memory (RSS, fair share, private, shared, swap), limit, guarantee and CPU, and how the host's memory adds up")
        {
            names, format,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client, parse.GetValue(names) ?? [], parse.GetValue(format), cli.Out, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, IReadOnlyList<string> names, string? format, TextWriter stdout, CancellationToken ct)
    {
        var json = Input.IsJson(format, "table");
        var report = await client.StatAsync(names, ct);
        if (json) Display.Json(stdout, report, ApiJson.Default.StatReport);
        else Write(report, stdout);
        return ExitCodes.Ok;
    }

    /// <summary>The table, one note per domain's balloon, then the host's summary; guests in the order given.</summary>
    public static void Write(StatReport report, TextWriter stdout)
    {
        TextTable.Write(stdout, Headers, report.Guests.Select(Row));
        foreach (var guest in report.Guests)
        {
            if (BalloonNote(guest) is { } note) stdout.WriteLine(note);
        }
        foreach (var line in Summary(report.Host)) stdout.WriteLine(line);
    }

    private static string?[] Row(GuestStat g) =>
    [
        Display.Name(g.Name), g.Kind, g.State,
        Display.Number(g.Processes),
        Display.Bytes(g.RssBytes),
        Display.Bytes(g.FairBytes),
        Display.Bytes(g.PrivateBytes),
        Display.Bytes(g.SharedBytes),
        Display.Bytes(g.SwapBytes),
        // No limit shows as in vsctl list: a dash.
        Display.Bytes(g.LimitBytes),
        Display.Bytes(g.GuaranteeBytes),
        g.CpuPercent.ToString("0.0", CultureInfo.InvariantCulture),
    ];

    /// <summary>A domain's balloon: what the guest has now of the target the agent set, and what KSM merged in it.</summary>
    public static string? BalloonNote(GuestStat g)
    {
        if (g.Kind != GuestKinds.Domain || (g.BalloonBytes is null && g.BalloonTargetBytes is null)) return null;
        var ksm = g.KsmBytes is > 0 ? $", KSM merged {Display.Bytes(g.KsmBytes)}" : "";
        return $"domain {Display.Name(g.Name)}: balloon {Display.Bytes(g.BalloonBytes)} of {Display.Bytes(g.BalloonTargetBytes)} target{ksm}";
    }

    /// <summary>
    /// Two lines: how the used memory adds up (used = guests' fair shares + the host's own + unaccounted), and the pool;
    /// then one line per note the agent made about pressure.
    /// </summary>
    public static IEnumerable<string> Summary(StatHost h)
    {
        var within = Math.Abs(h.UnaccountedBytes) <= h.ToleranceBytes ? "within" : "beyond";
        yield return $"host: total {Display.Bytes(h.TotalBytes)}, used {Display.Bytes(h.UsedBytes)} = guests' fair {Display.Bytes(h.GuestsBytes)}"
            + $" + host own {Display.Bytes(h.HostOwnBytes)} + unaccounted {Display.Bytes(h.UnaccountedBytes)}"
            + $" ({within} ±{Display.Bytes(h.ToleranceBytes)})";
        var pressure = h.UnderPressure ? ", under pressure" : "";
        yield return $"pool: capacity {Display.Bytes(h.CapacityBytes)}, committed {Display.Bytes(h.CommittedBytes)}"
            + $" ({Display.Percent(h.CommittedBytes, h.CapacityBytes)}), free {Display.Bytes(h.FreeBytes)}{pressure};"
            + $" shared pages save {Display.Bytes(h.SharedSavingsBytes)}, " + (h.Ksm ? $"KSM saves {Display.Bytes(h.KsmSavingsBytes)}" : "KSM off");
        foreach (var note in h.Notes) yield return $"note: {Escaped.Text(CliContext.OneLine(note))}";
    }
}
