using System.Buffers;
using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>How an exec session ended: the exit code for vsctl, and an error line to print once the terminal is back.</summary>
internal readonly record struct ExecResult(int ExitCode, string? Error);

/// <summary>
/// Pumps one exec WebSocket (see <see cref="ExecStream"/>): local stdin to Stdin frames (an empty frame at EOF), Stdout and
/// Stderr frames to the local streams as raw bytes, until the Exit frame, whose code becomes vsctl's own.
/// </summary>
internal sealed class ExecTerminal(WebSocket socket, Stream stdin, Stream stdout, Stream stderr) : IDisposable
{
    /// <summary>128 + SIGPIPE, what a shell reports for a writer whose reader went away.</summary>
    private const int BrokenPipe = 141;
    private readonly FramedSocket _frames = new(socket);
    private readonly CancellationTokenSource _stop = new();
    private int _abortExitCode = -1;

    public async Task<ExecResult> RunAsync(CancellationToken ct)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        var stdinPump = Task.Run(() => PumpStdinAsync(linked.Token), CancellationToken.None);
        try
        {
            return await ReceiveAsync(linked.Token);
        }
        catch (OperationCanceledException) when (Volatile.Read(ref _abortExitCode) >= 0)
        {
            return new ExecResult(_abortExitCode, null);
        }
        catch (Exception e) when (e is WebSocketException or HttpRequestException or IOException && !ct.IsCancellationRequested)
        {
            return new ExecResult(ExitCodes.ExecFailed, $"lost the exec session with the agent: {e.Message}");
        }
        finally
        {
            await _stop.CancelAsync();
            await CloseAsync();
            // stdinPump may stay blocked in read(2) on a terminal; it is not awaited (the process is about to exit).
            _ = stdinPump;
        }
    }

    /// <summary>Ends the session from outside (a signal): <see cref="RunAsync"/> returns this exit code.</summary>
    public void Abort(int exitCode)
    {
        Interlocked.CompareExchange(ref _abortExitCode, exitCode, -1);
        _stop.Cancel();
    }

    public async Task ResizeAsync(int rows, int cols)
    {
        var frame = new byte[5];
        frame[0] = ExecStream.Resize;
        BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(1), (ushort)Math.Clamp(rows, 1, ushort.MaxValue));
        BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(3), (ushort)Math.Clamp(cols, 1, ushort.MaxValue));
        try
        {
            await _frames.SendAsync(frame, _stop.Token);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // The session is ending; a lost resize does not matter.
        }
    }

    private async Task<ExecResult> ReceiveAsync(CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        var fragments = new ArrayBufferWriter<byte>();
        string? error = null;
        ErrorResponse? detail = null;
        while (true)
        {
            var received = await socket.ReceiveAsync(buffer.AsMemory(), ct);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                return new ExecResult(ExitCodes.ExecFailed, error ?? "the agent ended the exec session without an exit status");
            }
            if (!received.EndOfMessage)
            {
                fragments.Write(buffer.AsSpan(0, received.Count));
                continue;
            }
            ReadOnlyMemory<byte> message;
            if (fragments.WrittenCount > 0)
            {
                fragments.Write(buffer.AsSpan(0, received.Count));
                message = fragments.WrittenMemory;
            }
            else
            {
                message = buffer.AsMemory(0, received.Count);
            }
            if (received.MessageType == WebSocketMessageType.Binary && message.Length > 0)
            {
                var payload = message[1..];
                switch (message.Span[0])
                {
                    case ExecStream.Stdout:
                        if (!LocalStreams.Write(stdout, payload.Span)) return new ExecResult(BrokenPipe, null);
                        break;
                    case ExecStream.Stderr:
                        if (!LocalStreams.Write(stderr, payload.Span)) return new ExecResult(BrokenPipe, null);
                        break;
                    case ExecStream.Exit:
                        if (payload.Length < 4) return new ExecResult(ExitCodes.ExecFailed, error ?? "the agent sent a malformed exit status");
                        return error is null
                            ? new ExecResult(BinaryPrimitives.ReadInt32LittleEndian(payload.Span), null)
                            : new ExecResult(ExitCodes.ExecFailed, error);
                    case ExecStream.ErrorDetail:
                        detail = AgentErrorText.Detail(payload.Span);
                        break;
                    case ExecStream.Error:
                        error = AgentErrorText.Line(Encoding.UTF8.GetString(payload.Span).Trim(), detail);
                        if (error.Length == 0) error = "the agent could not run the command";
                        break;
                }
            }
            fragments.ResetWrittenCount();
        }
    }

    /// <summary>Local stdin as Stdin frames; the empty frame at its end closes the command's stdin.</summary>
    private Task PumpStdinAsync(CancellationToken ct) =>
        FramedSocket.PumpStdinAsync(stdin, async (frame, n) =>
        {
            await _frames.SendAsync(frame[..(n + 1)], ct);
            return n > 0;
        }, ct);

    /// <summary>Closing is the end of the session for the agent too.</summary>
    private Task CloseAsync() => _frames.CloseAsync(abortIfNotOpen: false);

    public void Dispose()
    {
        _stop.Dispose();
        _frames.Dispose();
    }
}
