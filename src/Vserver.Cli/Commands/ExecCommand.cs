using System.CommandLine;
using System.Runtime.InteropServices;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>The local side of an exec: streams for the bytes, the terminal for -t.</summary>
internal sealed record ExecIo(Func<Stream> OpenStdin, Func<Stream> OpenStdout, Func<Stream> OpenStderr, ITerminal Terminal)
{
    public static ExecIo From(CliContext cli) => new(cli.OpenStdin, cli.OpenStdout, cli.OpenStderr, cli.Terminal);
}

internal static class ExecCommand
{
    private const int DefaultRows = 24;
    private const int DefaultCols = 80;

    public static Command Create(CliContext cli)
    {
        var tty = new Option<bool>("--tty", "-t") { Description = "Give the command a terminal: raw mode here, window size changes follow" };
        var env = new Option<string[]>("--env", "-e") { Description = "Set a variable in the command's environment (repeatable)", HelpName = "KEY=VALUE" };
        var workdir = new Option<string?>("--workdir", "-w") { Description = "Working directory of the command in the guest", HelpName = "DIR" };
        var name = SharedOptions.GuestName();
        var argv = new Argument<string[]>("COMMAND")
        {
            Description = "The command and its arguments; put them after -- when they have options of their own",
            // Zero here, refused in one line below: System.CommandLine would answer a missing command with the whole help.
            Arity = ArgumentArity.ZeroOrMore,
        };
        var command = new Command("exec", "Run a command in a running guest; vsctl exits with its exit code") { tty, env, workdir, name, argv };
        command.SetAction((parse, ct) =>
        {
            var options = new Options
            {
                Name = parse.GetValue(name)!,
                Command = parse.GetValue(argv) ?? [],
                Tty = parse.GetValue(tty),
                Env = parse.GetValue(env) ?? [],
                Workdir = parse.GetValue(workdir),
            };
            if (options.Command.Count == 0) return Task.FromResult(cli.Fail(ExitCodes.Usage, NoCommand(options.Name)));
            return cli.RunAsync(parse, client => HandleAsync(client, options, ExecIo.From(cli), cli.Err, ct));
        });
        return command;
    }

    /// <summary>The one line for <c>vsctl exec NAME</c> without a command.</summary>
    public static string NoCommand(string name) =>
        $"exec needs a command to run in {Escaped.Name(name)}: vsctl exec {Escaped.Name(name)} -- CMD ARGS... (or a shell: vsctl enter {Escaped.Name(name)})";

    public sealed record Options
    {
        public required string Name { get; init; }
        public required IReadOnlyList<string> Command { get; init; }
        /// <summary>-t: a terminal for the command, raw mode for ours.</summary>
        public bool Tty { get; init; }
        /// <summary>enter: a terminal only when stdin is one, and no remark when it is not.</summary>
        public bool TtyIfTerminal { get; init; }
        public IReadOnlyList<string> Env { get; init; } = [];
        public string? Workdir { get; init; }
    }

    public static Dictionary<string, string>? ParseEnv(IReadOnlyList<string> pairs)
    {
        if (pairs.Count == 0) return null;
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0) throw new UsageException($"--env: '{pair}' is not KEY=VALUE");
            env[pair[..eq]] = pair[(eq + 1)..];
        }
        return env;
    }

    public static async Task<int> HandleAsync(AgentClient client, Options options, ExecIo io, TextWriter stderr, CancellationToken ct)
    {
        if (options.Command.Count == 0) throw new UsageException(NoCommand(options.Name));
        var env = ParseEnv(options.Env);
        var stdinIsTerminal = io.Terminal.IsTerminal(0);
        var tty = options.Tty || (options.TtyIfTerminal && stdinIsTerminal);
        var raw = tty && stdinIsTerminal;
        if (options.Tty && !stdinIsTerminal)
            stderr.WriteLine("vsctl: stdin is not a terminal; the command gets one, but input is passed as is (no raw mode)");
        var size = tty ? io.Terminal.Size() : null;
        var request = new ExecRequest
        {
            Command = options.Command,
            Tty = tty,
            Rows = tty ? size?.Rows ?? DefaultRows : 0,
            Cols = tty ? size?.Cols ?? DefaultCols : 0,
            Env = env,
            Cwd = options.Workdir,
        };

        // The only request: an absent agent shows here, before anything is read or printed (see AgentConnection).
        using var socket = await client.OpenExecAsync(options.Name, request, ct);

        using var session = new ExecTerminal(socket, io.OpenStdin(), io.OpenStdout(), io.OpenStderr());
        IDisposable? rawMode = null;
        var signals = new List<PosixSignalRegistration>();
        ExecResult result;
        try
        {
            if (raw)
            {
                try
                {
                    rawMode = io.Terminal.EnterRawMode();
                }
                catch (IOException e)
                {
                    stderr.WriteLine($"vsctl: {e.Message}; continuing without raw mode");
                }
                // In raw mode Ctrl-C is a byte for the guest; these come from elsewhere (kill, a closed terminal) and
                // must still give the terminal back.
                if (rawMode is not null)
                {
                    foreach (var (signal, code) in (ReadOnlySpan<(PosixSignal, int)>)
                             [(PosixSignal.SIGINT, 130), (PosixSignal.SIGTERM, 143), (PosixSignal.SIGHUP, 129), (PosixSignal.SIGQUIT, 131)])
                    {
                        signals.Add(PosixSignalRegistration.Create(signal, context =>
                        {
                            context.Cancel = true;
                            session.Abort(code);
                        }));
                    }
                }
            }
            if (tty && stdinIsTerminal && !OperatingSystem.IsWindows())
            {
                signals.Add(PosixSignalRegistration.Create(PosixSignal.SIGWINCH, context =>
                {
                    context.Cancel = true;
                    if (io.Terminal.Size() is { } now) _ = session.ResizeAsync(now.Rows, now.Cols);
                }));
            }
            result = await session.RunAsync(ct);
        }
        finally
        {
            foreach (var registration in signals) registration.Dispose();
            rawMode?.Dispose();
        }
        if (result.Error is not null) stderr.WriteLine($"vsctl: {Escaped.Text(CliContext.OneLine(result.Error))}");
        return result.ExitCode;
    }
}
