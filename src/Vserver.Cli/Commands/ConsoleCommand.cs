using System.CommandLine;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl console NAME</c>: attach to a running domain's serial console; Ctrl-] detaches, the domain runs on.</summary>
internal static class ConsoleCommand
{
    public static readonly TimeSpan DefaultLinger = TimeSpan.FromSeconds(1);

    /// <summary>How long a quiet console waits for the agent's refusal before it counts as attached.</summary>
    public static readonly TimeSpan ConfirmAfter = TimeSpan.FromMilliseconds(200);

    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName("The running domain");
        var linger = new Option<string?>("--linger")
        {
            Description = "When stdin is not a terminal and ends: seconds to keep showing the console's output before detaching [default: 1]",
            HelpName = "SECONDS",
        };
        var command = new Command("console", "Attach to a running domain's serial console; detach with Ctrl-] (the domain runs on)") { name, linger };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client, parse.GetValue(name)!, parse.GetValue(linger), ExecIo.From(cli), cli.Err, ct)));
        return command;
    }

    public static TimeSpan ParseLinger(string? text) =>
        Input.Seconds("--linger", text, allowZero: true, "1 or 0.5 (0 detaches at once)") ?? DefaultLinger;

    public static async Task<int> HandleAsync(AgentClient client, string name, string? lingerText, ExecIo io, TextWriter stderr,
        CancellationToken ct, TimeSpan? confirmAfter = null)
    {
        var linger = ParseLinger(lingerText);
        var raw = io.Terminal.IsTerminal(0);

        // The only request: an absent agent shows here, before anything is read or printed (see AgentConnection).
        WebSocket socket;
        try
        {
            socket = await client.OpenConsoleAsync(name, ct);
        }
        catch (WebSocketException e)
        {
            throw new CliFailureException($"the agent refused the console session: {e.Message}");
        }
        using var _ = socket;
        using var session = new ConsoleTerminal(socket, io.OpenStdin(), io.OpenStdout(), linger, confirmAfter ?? ConfirmAfter);
        IDisposable? rawMode = null;
        var signals = new List<PosixSignalRegistration>();
        ConsoleResult result;
        try
        {
            result = await session.RunAsync(() =>
            {
                stderr.WriteLine($"vsctl: connected to the console of {Escaped.Name(name)}; detach with Ctrl-]");
                if (!raw) return;
                try
                {
                    rawMode = io.Terminal.EnterRawMode();
                }
                catch (IOException e)
                {
                    stderr.WriteLine($"vsctl: {e.Message}; continuing without raw mode (Ctrl-] then Enter detaches)");
                    return;
                }
                // In raw mode Ctrl-C is a byte for the guest; these come from elsewhere (kill, a closed terminal) and
                // must still give the terminal back.
                foreach (var (signal, code) in (ReadOnlySpan<(PosixSignal, int)>)
                         [(PosixSignal.SIGINT, 130), (PosixSignal.SIGTERM, 143), (PosixSignal.SIGHUP, 129), (PosixSignal.SIGQUIT, 131)])
                {
                    signals.Add(PosixSignalRegistration.Create(signal, context =>
                    {
                        context.Cancel = true;
                        session.Abort(code);
                    }));
                }
            }, ct);
        }
        finally
        {
            foreach (var registration in signals) registration.Dispose();
            if (rawMode is not null)
            {
                rawMode.Dispose();
                stderr.WriteLine(); // the guest's prompt left the cursor mid-line
            }
        }
        switch (result.End)
        {
            case ConsoleEnd.Detached:
                stderr.WriteLine($"vsctl: detached from {Escaped.Name(name)}");
                break;
            case ConsoleEnd.Closed:
                stderr.WriteLine($"vsctl: the console of {Escaped.Name(name)} closed");
                break;
            case ConsoleEnd.Failed:
                stderr.WriteLine($"vsctl: {Escaped.Text(CliContext.OneLine(result.Error ?? "the console session failed"))}");
                break;
        }
        return result.ExitCode;
    }
}
