using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// <c>vsctl top</c>: <c>vsctl stat</c> again and again, the biggest fair share first. On a terminal it redraws one
/// screen; otherwise (a pipe, a file, a test) it prints one view per round, separated by a blank line.
/// </summary>
internal static class TopCommand
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(1);

    private const string Escape = "\u001b[";
    // The alternate screen (as top and less use) keeps the shell's scrollback as it was; the cursor is hidden meanwhile.
    private const string EnterScreen = Escape + "?1049h" + Escape + "?25l";
    private const string LeaveScreen = Escape + "?25h" + Escape + "?1049l";
    private const string Home = Escape + "H";
    private const string ClearLine = Escape + "K";
    private const string ClearBelow = Escape + "J";

    public static Command Create(CliContext cli)
    {
        var interval = new Option<string?>("--interval", "-d")
        {
            Description = "Seconds between refreshes, e.g. 2 or 0.5 [default: 1]",
            HelpName = "SECONDS",
        };
        var iterations = new Option<string?>("--iterations", "-n")
        {
            Description = "Stop after this many refreshes [default: until Ctrl-C]",
            HelpName = "N",
        };
        var command = new Command("top", "Show vsctl stat and refresh it, biggest fair share first, until Ctrl-C") { interval, iterations };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client, parse.GetValue(interval), parse.GetValue(iterations), cli.Terminal, cli.Clock, cli.Out, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string? intervalText, string? iterationsText, ITerminal terminal,
        TimeProvider clock, TextWriter stdout, CancellationToken ct)
    {
        var interval = Input.Seconds("--interval", intervalText, allowZero: false, "1 or 0.5") ?? DefaultInterval;
        var iterations = Input.PositiveInt("--iterations", iterationsText, "number of iterations");
        var redraw = terminal.IsTerminal(1);

        // Ctrl-C is how top is meant to end: stop the loop, give the screen back, exit 0.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        var onScreen = false;
        try
        {
            for (var round = 1; ; round++)
            {
                // The first request comes before anything is printed (see AgentConnection).
                var report = await client.StatAsync(null, stop.Token);
                if (redraw)
                {
                    if (!onScreen) stdout.Write(EnterScreen);
                    onScreen = true;
                    stdout.Write(Frame(report, interval, clock, terminal.Size()));
                }
                else
                {
                    if (round > 1) stdout.WriteLine();
                    StatCommand.Write(ByFairShare(report), stdout);
                }
                stdout.Flush();
                if (round == iterations) break;
                await Task.Delay(interval, clock, stop.Token);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested && !ct.IsCancellationRequested)
        {
        }
        finally
        {
            if (onScreen)
            {
                stdout.Write(LeaveScreen);
                stdout.Flush();
            }
        }
        return ExitCodes.Ok;
    }

    public static StatReport ByFairShare(StatReport report) => report with
    {
        Guests = [.. report.Guests.OrderByDescending(g => g.FairBytes).ThenBy(g => g.Name, StringComparer.Ordinal)],
    };

    /// <summary>One screen: a title, the stat view cut to the terminal's size, each line cleared to its end.</summary>
    public static string Frame(StatReport report, TimeSpan interval, TimeProvider clock, (int Rows, int Cols)? size)
    {
        var view = new StringWriter { NewLine = "\n" };
        var now = TimeZoneInfo.ConvertTime(clock.GetUtcNow(), clock.LocalTimeZone);
        view.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"vsctl top - {now:HH:mm:ss}, every {interval.TotalSeconds:0.###} s, {report.Guests.Count} guests; Ctrl-C quits"));
        view.WriteLine();
        StatCommand.Write(ByFairShare(report), view);
        IEnumerable<string> lines = view.ToString().TrimEnd('\n').Split('\n');
        // The last row and column stay empty: writing into the last row scrolls the screen, and erasing after a
        // character in the last column erases that character on some terminals.
        if (size is { } s)
            lines = lines.Take(Math.Max(1, s.Rows - 1)).Select(l => l.Length >= s.Cols ? l[..Math.Max(0, s.Cols - 1)] : l);
        return Home + string.Concat(lines.Select(l => l + ClearLine + "\n")) + ClearBelow;
    }
}
