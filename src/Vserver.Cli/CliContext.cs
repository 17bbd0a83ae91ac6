using System.CommandLine;
using System.Net.Http;
using System.Net.WebSockets;
using System.Text.Json;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>
/// What vsctl's commands see of the outside world: text writers for messages, raw streams for exec, the terminal,
/// the clock and how to reach (and if need be start) the agent. <see cref="ForConsole"/> is the real one; tests
/// build their own with <see cref="StringWriter"/>s.
/// </summary>
internal sealed class CliContext
{
    public required TextWriter Out { get; init; }
    public required TextWriter Err { get; init; }
    public Func<Stream> OpenStdin { get; init; } = () => Stream.Null;
    public Func<Stream> OpenStdout { get; init; } = () => Stream.Null;
    public Func<Stream> OpenStderr { get; init; } = () => Stream.Null;
    public ITerminal Terminal { get; init; } = NoTerminal.Instance;
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    /// <summary>How to start the agent when nobody answers on the given socket; null: do not.</summary>
    public Func<string, AutoStart?> AutoStartFor { get; init; } = _ => null;

    /// <summary>True for the process console: System.CommandLine then uses its own defaults (saves startup work).</summary>
    public bool IsProcessConsole { get; private init; }

    /// <summary><c>--socket PATH</c>, on every command.</summary>
    public Option<string?> SocketOption { get; } = new("--socket")
    {
        Description = "The agent's socket [default: $VSERVER_RUN/agent.sock, VSERVER_RUN defaults to /run/vserver]",
        HelpName = "PATH",
        Recursive = true,
    };

    public static CliContext ForConsole() => new()
    {
        // Made on first use: exec, the benchmarked path, then never touches System.Console.
        Out = new DeferredWriter(static () => Console.Out),
        Err = new DeferredWriter(static () => Console.Error),
        // Raw descriptors, not Console.OpenStandard*: those go through .NET's console layer (line editing on stdin,
        // terminal (re)configuration on write), which must stay out of exec's byte pipe.
        OpenStdin = () => RawStream(0, FileAccess.Read),
        OpenStdout = () => RawStream(1, FileAccess.Write),
        OpenStderr = () => RawStream(2, FileAccess.Write),
        Terminal = PosixTerminal.Instance,
        AutoStartFor = AutoStart.FromEnvironment,
        IsProcessConsole = true,
    };

    /// <summary>An unbuffered stream on a descriptor; a closed one (<c>vsctl exec ... &lt;&amp;-</c>) reads empty and swallows output.</summary>
    private static Stream RawStream(int fd, FileAccess access) =>
        StandardDescriptors.IsInherited(fd) ? new FdStream(fd, canRead: access == FileAccess.Read) : Stream.Null;

    /// <summary>
    /// Runs one verb's handler against the agent and turns every failure into one line on stderr and an exit code:
    /// 2 for input caught locally, 1 for anything the agent refused or vsctl could not do.
    /// </summary>
    public async Task<int> RunAsync(ParseResult parse, Func<AgentClient, Task<int>> handler)
    {
        try
        {
            var socket = parse.GetValue(SocketOption) is { Length: > 0 } s ? s : AgentClient.DefaultSocketPath;
            using var agent = new AgentConnection(socket, AutoStartFor(socket), Err);
            return await agent.InvokeAsync(handler);
        }
        catch (UsageException e)
        {
            return Fail(ExitCodes.Usage, e.Message);
        }
        catch (ApiException e)
        {
            // The agent's words, with what to do in vsctl's terms where its code says what went wrong.
            return Fail(ExitCodes.Failed, AgentErrorText.Line(e));
        }
        catch (Exception e) when (e is AgentUnavailableException or CliFailureException)
        {
            return Fail(ExitCodes.Failed, e.Message);
        }
        catch (OperationCanceledException)
        {
            return ExitCodes.Interrupted;
        }
        catch (HttpRequestException e)
        {
            return Fail(ExitCodes.Failed, $"talking to the agent failed: {e.Message}");
        }
        catch (JsonException e)
        {
            // Not e.Message: it names .NET types ("could not be converted to Vserver.Api.GuestInfo").
            return Fail(ExitCodes.Failed, $"the agent sent an answer vsctl does not understand{(e.Path is { Length: > 0 } at ? $" (at {at})" : "")}; " +
                "are vsctl and vserverd the same version?");
        }
        catch (WebSocketException e)
        {
            return Fail(ExitCodes.Failed, $"the agent refused the exec session: {e.Message}");
        }
        catch (Exception e)
        {
            return Fail(ExitCodes.Failed, e.Message);
        }
    }

    public int Fail(int exitCode, string message)
    {
        Err.WriteLine($"vsctl: {Escaped.Text(OneLine(message))}");
        return exitCode;
    }

    /// <summary>Messages are printed on one line; the agent's own text is kept as is otherwise (<see cref="Fail"/> escapes
    /// what is unsafe on a terminal).</summary>
    public static string OneLine(string message) =>
        message.Contains('\n', StringComparison.Ordinal) ? string.Join("; ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) : message;

    private sealed class NoTerminal : ITerminal
    {
        public static readonly NoTerminal Instance = new();

        public bool IsTerminal(int fd) => false;

        public (int Rows, int Cols)? Size() => null;

        public IDisposable EnterRawMode() => throw new IOException("not a terminal");
    }
}
