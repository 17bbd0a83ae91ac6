using System.Buffers;
using System.Net.WebSockets;
using System.Text;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>Why a console session ended.</summary>
internal enum ConsoleEnd
{
    /// <summary>Ctrl-] was typed (or found in the input), or stdin ended and the linger time passed.</summary>
    Detached,
    /// <summary>The agent ended the session: the domain stopped.</summary>
    Closed,
    /// <summary>The agent sent an error (there is no console), or the session broke.</summary>
    Failed,
    /// <summary>Local output is gone (<c>vsctl console vm1 | head</c>).</summary>
    OutputClosed,
    /// <summary>A signal ended it (<see cref="ConsoleTerminal.Abort"/>).</summary>
    Signalled,
}

internal readonly record struct ConsoleResult(ConsoleEnd End, int ExitCode, string? Error = null);

/// <summary>
/// Pumps one console WebSocket (framed like exec, see <see cref="ExecStream"/>): Stdout frames to local stdout, local
/// stdin to Stdin frames, until the user detaches with <see cref="DetachKey"/>, stdin ends (then output is still shown
/// for <c>linger</c>, so <c>printf 'uname -r\n' | vsctl console vm1</c> prints the answer), or the agent closes.
/// </summary>
/// <remarks>
/// The agent accepts the WebSocket before it attaches, and says why it could not with an Error frame. So the session
/// counts as attached (<c>onAttached</c>: the "connected" line, raw mode) only at the first output or once
/// <c>confirmAfter</c> passed quietly, and stdin is read only from then on: a refusal is then one line, not two.
/// </remarks>
internal sealed class ConsoleTerminal(WebSocket socket, Stream stdin, Stream stdout, TimeSpan linger, TimeSpan confirmAfter) : IDisposable
{
    /// <summary>Ctrl-]: what telnet, virsh console and xl console detach with.</summary>
    public const byte DetachKey = 0x1d;

    /// <summary>128 + SIGPIPE, as exec reports a reader that went away.</summary>
    private const int BrokenPipe = 141;
    private readonly FramedSocket _frames = new(socket);
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<ConsoleResult> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task<ConsoleResult> RunAsync(Action onAttached, CancellationToken ct)
    {
        await using var interrupt = ct.Register(() => _ended.TrySetCanceled(ct));
        var buffer = new byte[64 * 1024];
        var fragments = new ArrayBufferWriter<byte>();
        // A cancelled ReceiveAsync aborts the WebSocket, so none is cancelled: the loop waits for a frame or an end.
        var receive = socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask();
        Task? confirm = Task.Delay(confirmAfter, _stop.Token);
        string? error = null;
        ErrorResponse? detail = null;
        try
        {
            while (true)
            {
                var done = confirm is null ? await Task.WhenAny(receive, _ended.Task) : await Task.WhenAny(receive, _ended.Task, confirm);
                if (done == _ended.Task) return await _ended.Task;
                if (done == confirm)
                {
                    confirm = null;
                    Attach(onAttached);
                    continue;
                }
                var received = await receive;
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    return error is null ? new ConsoleResult(ConsoleEnd.Closed, ExitCodes.Ok) : new ConsoleResult(ConsoleEnd.Failed, ExitCodes.Failed, error);
                }
                fragments.Write(buffer.AsSpan(0, received.Count));
                if (received.EndOfMessage && received.MessageType == WebSocketMessageType.Binary && fragments.WrittenCount > 0)
                {
                    var message = fragments.WrittenSpan;
                    switch (message[0])
                    {
                        case ExecStream.Stdout:
                            if (confirm is not null)
                            {
                                confirm = null;
                                Attach(onAttached);
                            }
                            if (!LocalStreams.Write(stdout, message[1..])) return new ConsoleResult(ConsoleEnd.OutputClosed, BrokenPipe);
                            break;
                        case ExecStream.ErrorDetail:
                            detail = AgentErrorText.Detail(message[1..]);
                            break;
                        case ExecStream.Error:
                            confirm = null;
                            error = AgentErrorText.Line(Encoding.UTF8.GetString(message[1..]).Trim(), detail);
                            if (error.Length == 0) error = "the agent could not attach to the console";
                            break;
                    }
                }
                if (received.EndOfMessage) fragments.ResetWrittenCount();
                receive = socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask();
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException && !ct.IsCancellationRequested)
        {
            return new ConsoleResult(ConsoleEnd.Failed, ExitCodes.Failed, $"lost the console session with the agent: {e.Message}");
        }
        finally
        {
            await _stop.CancelAsync();
            await CloseAsync();
            receive = await DrainAsync(receive, buffer);
            // Whatever still pends ends with the socket's disposal; nobody waits for it.
            _ = receive.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>
    /// After a detach, waits a moment for the agent's close so the session ends with a full close handshake; what the
    /// console prints meanwhile is not shown (the user has left).
    /// </summary>
    private async Task<Task<ValueWebSocketReceiveResult>> DrainAsync(Task<ValueWebSocketReceiveResult> receive, byte[] buffer)
    {
        if (socket.State != WebSocketState.CloseSent) return receive;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        try
        {
            while (true)
            {
                var received = await receive.WaitAsync(timeout.Token);
                if (received.MessageType == WebSocketMessageType.Close) return receive;
                receive = socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask();
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            return receive;
        }
    }

    /// <summary>Ends the session from outside (a signal): <see cref="RunAsync"/> returns this exit code.</summary>
    public void Abort(int exitCode) => _ended.TrySetResult(new ConsoleResult(ConsoleEnd.Signalled, exitCode));

    private void Attach(Action onAttached)
    {
        onAttached();
        // stdin may stay blocked in read(2) on a terminal after the session ended; it is not awaited (vsctl exits).
        _ = Task.Run(() => PumpStdinAsync(_stop.Token), CancellationToken.None);
    }

    /// <summary>Local stdin as Stdin frames, up to a <see cref="DetachKey"/> (not sent) or its end.</summary>
    private Task PumpStdinAsync(CancellationToken ct) =>
        FramedSocket.PumpStdinAsync(stdin, async (frame, n) =>
        {
            if (n == 0)
            {
                // No EOF frame: the console is a serial line, it has no end of input. Show what still comes, then go.
                await Task.Delay(linger, ct);
                _ended.TrySetResult(new ConsoleResult(ConsoleEnd.Detached, ExitCodes.Ok));
                return false;
            }
            var detach = frame.Span.Slice(1, n).IndexOf(DetachKey);
            var count = detach >= 0 ? detach : n;
            if (count > 0) await _frames.SendAsync(frame[..(count + 1)], ct);
            if (detach < 0) return true;
            _ended.TrySetResult(new ConsoleResult(ConsoleEnd.Detached, ExitCodes.Ok));
            return false;
        }, ct);

    /// <summary>Closing is the end of the session for the agent too.</summary>
    private Task CloseAsync() => _frames.CloseAsync(abortIfNotOpen: true);

    public void Dispose()
    {
        _stop.Dispose();
        _frames.Dispose();
    }
}
