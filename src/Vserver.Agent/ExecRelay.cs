using HybridHypervisor.Guests;
using System.Buffers.Binary;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>One `vsctl exec` over a WebSocket: the request, then stdin in and stdout/stderr out as
/// <see cref="ExecStream"/> frames, and the exit code last. A client that goes away before the exit frame (killed,
/// interrupted, its connection dropped, or closing early) hangs the command up (<see cref="IGuestProcess.Hangup"/>), and
/// the log gets one line for it.</summary>
internal sealed class ExecRelay : IDisposable
{
    /// <summary>After a hangup, how long the relay waits for the command's end beyond its grace before it lets go of it
    /// (a domain whose guest agent no longer answers).</summary>
    private static readonly TimeSpan HangupWait = IGuestProcess.HangupGrace + TimeSpan.FromSeconds(10);

    private readonly WebSocket _socket;
    private readonly string _name;
    private readonly Action<string> _log;
    private readonly SemaphoreSlim _send = new(1, 1);
    /// <summary>How the client went away, once it has; null while it is there.</summary>
    private volatile string? _clientGone;
    private bool _commandStarted;
    /// <summary>The command's exit frame went out: whatever the client does after that is the session's end.</summary>
    private bool _exitSent;

    internal ExecRelay(WebSocket socket, string name, Action<string> log)
    {
        _socket = socket;
        _name = name;
        _log = log;
    }

    public static async Task RunAsync(HttpContext context, Fleet fleet, string name)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiErrors.Write(context, StatusCodes.Status400BadRequest, "exec needs a WebSocket upgrade (use vsctl exec)");
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        using var session = new ExecRelay(socket, name, line => Console.Error.WriteLine($"vserverd: {line}"));
        await session.RunAsync((command, ct) => fleet.ExecAsync(name, command.Command, command.Tty, command.Rows, command.Cols,
            command.Env, command.Cwd, ct), context.RequestAborted);
    }

    /// <summary>The whole session, never throwing: whatever ends it early is one line in the log.</summary>
    internal async Task RunAsync(Func<ExecRequest, CancellationToken, Task<IGuestProcess>> start, CancellationToken ct)
    {
        try
        {
            await RunSessionAsync(start, ct);
        }
        catch (Exception e) when (_exitSent && e is WebSocketException or OperationCanceledException or IOException)
        {
            // The command ended and its exit went out: a client that leaves without closing the session is done, not gone.
        }
        catch (Exception e) when (_clientGone is not null || ct.IsCancellationRequested ||
                                  e is WebSocketException or OperationCanceledException)
        {
            _log($"exec in {_name}: the client went away {(_commandStarted ? "as the command ended" : "before the command started")} " +
                 $"({_clientGone ?? Describe(e)})");
        }
        catch (Exception e)
        {
            _log($"exec in {_name}: {ApiErrors.Failure(e)}");
            try
            {
                await FailAsync($"exec failed in the agent: {e.Message}", CancellationToken.None);
            }
            catch (Exception) when (_socket.State != WebSocketState.Open)
            {
            }
        }
    }

    private async Task RunSessionAsync(Func<ExecRequest, CancellationToken, Task<IGuestProcess>> start, CancellationToken ct)
    {
        // The request is a request body by another road: capped like one, and refused before it is all read.
        var (first, firstLength, tooLarge) = await ReceiveAsync(new byte[4096], ApiLimits.MaxExecRequestBytes, ct);
        if (first is null && !tooLarge)
        {
            _clientGone = "it closed the session";
            throw new OperationCanceledException();
        }
        if (tooLarge)
        {
            await FailAsync($"exec request too large: the agent takes at most {ApiLimits.MaxExecRequestBytes} bytes; " +
                "pass large input on stdin instead", ct);
            return;
        }
        IGuestProcess exec;
        ExecRequest request;
        try
        {
            // The same check of its shape as a request body gets at the door (RequestGate).
            var body = first.AsMemory(0, firstLength);
            if (RequestBody.Check(body, AgentJson.Options.GetTypeInfo(typeof(ExecRequest))) is { } invalid) throw invalid;
            request = JsonSerializer.Deserialize(body.Span, AgentJson.TypeInfo<ExecRequest>())!;
            exec = await start(request, ct);
        }
        catch (FleetException e)
        {
            await SendAsync(ErrorDetailFrame(e), ct);
            await FailAsync(e.Message, ct);
            return;
        }
        catch (IOException e)
        {
            await FailAsync(e.Message, ct);
            return;
        }
        _commandStarted = true;
        using (exec)
        {
            var stdout = PumpOutputAsync(exec.Stdout, ExecStream.Stdout);
            var stderr = exec.Stderr is null ? Task.CompletedTask : PumpOutputAsync(exec.Stderr, ExecStream.Stderr);
            // A pending WebSocket receive cannot be cancelled without aborting the socket: the input pump ends
            // when the client closes its side after reading the exit frame, or when the client goes away.
            var stdin = PumpInputAsync(exec, ct);
            await Task.WhenAny(exec.ExitCode, stdin);
            if (_clientGone is not null)
            {
                await HungUpAsync(exec, request.Command);
                return;
            }
            var code = await exec.ExitCode;
            // Output written just before the exit is still in the pipe: drain it, but do not wait forever for a
            // background process that inherited stdout.
            await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
            var frame = new byte[5];
            frame[0] = ExecStream.Exit;
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(1), code);
            await SendAsync(frame, ct);
            _exitSent = true;
            await CloseAsync(ct);
            await Task.WhenAny(stdin, Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
        }
    }

    /// <summary>The client went away while the command ran, and the input pump hung the command up: wait for its end
    /// (the hangup's grace, and a margin), and say so in one line.</summary>
    private async Task HungUpAsync(IGuestProcess exec, IReadOnlyList<string> command)
    {
        var ended = await Task.WhenAny(exec.ExitCode, Task.Delay(HangupWait, CancellationToken.None)) == exec.ExitCode;
        _log($"exec in {_name}: the client went away ({_clientGone}); hung up {DescribeCommand(command)}, " +
             (ended ? $"which ended with {exec.ExitCode.Result}" : $"which had not ended after {HangupWait.TotalSeconds:0} s"));
        _socket.Abort();
    }

    private async Task PumpOutputAsync(Stream source, byte stream)
    {
        var buffer = new byte[32 * 1024];
        try
        {
            while (true)
            {
                var n = await source.ReadAsync(buffer.AsMemory(1, buffer.Length - 1));
                if (n == 0) return;
                buffer[0] = stream;
                await SendAsync(buffer.AsMemory(0, n + 1), CancellationToken.None);
            }
        }
        catch (IOException)
        {
            // A pty master reads EIO once the last slave fd closes: that is its end of file.
        }
        catch (Exception e) when (e is WebSocketException or ObjectDisposedException)
        {
            // The session ended under the pump (the client is gone, the command disposed).
        }
    }

    /// <summary>Client frames to the command until the client closes or goes away; if the command still runs then,
    /// the client has gone away (<see cref="_clientGone"/>) and the command is hung up.</summary>
    private async Task PumpInputAsync(IGuestProcess exec, CancellationToken ct)
    {
        var buffer = new byte[32 * 1024];
        string gone;
        try
        {
            while (true)
            {
                var (message, length, tooLarge) = await ReceiveAsync(buffer, ApiLimits.MaxExecMessageBytes, ct);
                if (tooLarge)
                {
                    // Not a frame vsctl would send: end the session as if the client hung up, and say why. Close
                    // first: once the command ends, the exit path would close the socket as a normal end.
                    await CloseAsync(ct, WebSocketCloseStatus.MessageTooBig, $"exec messages are at most {ApiLimits.MaxExecMessageBytes} bytes");
                    gone = $"it sent a message over {ApiLimits.MaxExecMessageBytes} bytes";
                    break;
                }
                if (message is null)
                {
                    gone = "it closed the session";
                    break;
                }
                if (length == 0) continue;
                switch (message[0])
                {
                    case ExecStream.Stdin when length == 1:
                        exec.Stdin.Dispose();
                        break;
                    case ExecStream.Stdin:
                        try
                        {
                            await exec.Stdin.WriteAsync(message.AsMemory(1, length - 1), ct);
                            await exec.Stdin.FlushAsync(ct);
                        }
                        catch (Exception e) when (e is IOException or ObjectDisposedException)
                        {
                            // The command closed its stdin or ended: the rest of the input has nowhere to go.
                        }
                        break;
                    case ExecStream.Resize when length >= 5:
                        exec.Resize(BinaryPrimitives.ReadUInt16LittleEndian(message.AsSpan(1)), BinaryPrimitives.ReadUInt16LittleEndian(message.AsSpan(3)));
                        break;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or WebSocketException or OperationCanceledException)
        {
            gone = Describe(e);
        }
        // After the exit frame a close is the normal end; before it, the client is gone, as a closed terminal is.
        if (exec.HasExited) return;
        _clientGone = gone;
        exec.Hangup();
        exec.Stdin.Dispose();
    }

    /// <summary>How a connection ended, in a few words for the log.</summary>
    private static string Describe(Exception e) => e switch
    {
        OperationCanceledException => "its connection dropped",
        WebSocketException { WebSocketErrorCode: WebSocketError.ConnectionClosedPrematurely } => "its connection dropped",
        _ => OneLine(e.Message),
    };

    /// <summary>The command for a log line: words quoted where they hold spaces or quotes, control characters
    /// escaped (a command is the client's text, and the log may be read on a terminal), at most 100 characters.</summary>
    internal static string DescribeCommand(IReadOnlyList<string> command)
    {
        var text = new StringBuilder();
        foreach (var word in command)
        {
            if (text.Length > 0) text.Append(' ');
            var quote = word.Length == 0 || word.Any(c => c is ' ' or '\'' or '"' or '\\' || char.IsControl(c));
            if (quote) text.Append('\'');
            foreach (var c in word)
            {
                if (char.IsControl(c)) text.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
                else if (c == '\'') text.Append("'\\''");
                else text.Append(c);
            }
            if (quote) text.Append('\'');
        }
        return text.Length <= 100 ? $"`{text}`" : $"`{text.ToString(0, 99)}…`";
    }

    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>Reads one whole message of at most <paramref name="limit"/> bytes. Message is null when the client
    /// closed; TooLarge when the message outgrew the limit (its rest is left unread, the buffer never grows past it).</summary>
    private async Task<(byte[]? Message, int Length, bool TooLarge)> ReceiveAsync(byte[] buffer, int limit, CancellationToken ct)
    {
        var length = 0;
        while (true)
        {
            if (length == buffer.Length) Array.Resize(ref buffer, Math.Min(buffer.Length * 2, limit + 1));
            var result = await _socket.ReceiveAsync(buffer.AsMemory(length), ct);
            if (result.MessageType == WebSocketMessageType.Close) return (null, 0, false);
            length += result.Count;
            if (length > limit) return (null, length, true);
            if (result.EndOfMessage) return (buffer, length, false);
        }
    }

    /// <summary>The <see cref="ExecStream.ErrorDetail"/> message of the fleet's refusal: its code and fields.</summary>
    internal static byte[] ErrorDetailFrame(FleetException e) =>
        [ExecStream.ErrorDetail, .. JsonSerializer.SerializeToUtf8Bytes(ApiErrors.Body(e), ApiJson.Default.ErrorResponse)];

    internal async Task FailAsync(string message, CancellationToken ct)
    {
        var text = Encoding.UTF8.GetBytes(ApiErrors.OneLine(message));
        var frame = new byte[text.Length + 1];
        frame[0] = ExecStream.Error;
        text.CopyTo(frame, 1);
        await SendAsync(frame, ct);
        await CloseAsync(ct);
    }

    private async Task SendAsync(ReadOnlyMemory<byte> frame, CancellationToken ct)
    {
        await _send.WaitAsync(ct);
        try
        {
            if (_socket.State == WebSocketState.Open) await _socket.SendAsync(frame, WebSocketMessageType.Binary, true, ct);
        }
        finally
        {
            _send.Release();
        }
    }

    private async Task CloseAsync(CancellationToken ct, WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = null)
    {
        // Under the send lock: the output pumps may still be sending, and a WebSocket takes one send at a time.
        await _send.WaitAsync(ct);
        try
        {
            if (_socket.State == WebSocketState.Open) await _socket.CloseOutputAsync(status, reason, ct);
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _send.Release();
        }
    }

    public void Dispose() => _send.Dispose();
}
