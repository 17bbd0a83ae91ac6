using HybridHypervisor.Guests;
using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>One `vsctl exec` over a WebSocket: the request, then stdin in and stdout/stderr out as
/// <see cref="ExecStream"/> frames, and the exit code last.</summary>
internal sealed class ExecRelay : IDisposable
{
    private readonly WebSocket _socket;
    private readonly SemaphoreSlim _send = new(1, 1);

    private ExecRelay(WebSocket socket) => _socket = socket;

    public static async Task RunAsync(HttpContext context, Fleet fleet, string name)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiErrors.Write(context, StatusCodes.Status400BadRequest, "exec needs a WebSocket upgrade (use vsctl exec)");
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        using var session = new ExecRelay(socket);
        try
        {
            await session.RunAsync(fleet, name, context.RequestAborted);
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException && context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nothing to tell it, and nothing the agent did wrong.
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"vserverd: exec in {name}: {ApiErrors.Failure(e)}");
            await session.FailAsync($"exec failed in the agent: {e.Message}", CancellationToken.None);
        }
    }

    private async Task RunAsync(Fleet fleet, string name, CancellationToken ct)
    {
        // The request is a request body by another road: capped like one, and refused before it is all read.
        var (first, firstLength, tooLarge) = await ReceiveAsync(new byte[4096], ApiLimits.MaxExecRequestBytes, ct);
        if (tooLarge)
        {
            await FailAsync($"exec request too large: the agent takes at most {ApiLimits.MaxExecRequestBytes} bytes; " +
                "pass large input on stdin instead", ct);
            return;
        }
        IGuestProcess exec;
        try
        {
            // The same check of its shape as a request body gets at the door (RequestGate).
            var body = first.AsMemory(0, firstLength);
            if (RequestBody.Check(body, AgentJson.Options.GetTypeInfo(typeof(ExecRequest))) is { } invalid) throw invalid;
            var request = JsonSerializer.Deserialize(body.Span, AgentJson.TypeInfo<ExecRequest>())!;
            exec = await fleet.ExecAsync(name, request.Command, request.Tty, request.Rows, request.Cols, request.Env, request.Cwd, ct);
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
        using (exec)
        {
            var stdout = PumpOutputAsync(exec.Stdout, ExecStream.Stdout);
            var stderr = exec.Stderr is null ? Task.CompletedTask : PumpOutputAsync(exec.Stderr, ExecStream.Stderr);
            // A pending WebSocket receive cannot be cancelled without aborting the socket: the input pump ends
            // when the client closes its side after reading the exit frame.
            var stdin = PumpInputAsync(exec, ct);
            var code = await exec.ExitCode;
            // Output written just before the exit is still in the pipe: drain it, but do not wait forever for a
            // background process that inherited stdout.
            await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None));
            var frame = new byte[5];
            frame[0] = ExecStream.Exit;
            BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(1), code);
            await SendAsync(frame, ct);
            await CloseAsync(ct);
            await Task.WhenAny(stdin, Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
        }
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
        catch (WebSocketException)
        {
        }
    }

    private async Task PumpInputAsync(IGuestProcess exec, CancellationToken ct)
    {
        var buffer = new byte[32 * 1024];
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
                    exec.Stdin.Dispose();
                    exec.Hangup();
                    return;
                }
                if (message is null)
                {
                    // The client hung up; if the command still runs, that is like a closed terminal.
                    exec.Hangup();
                    exec.Stdin.Dispose();
                    return;
                }
                if (length == 0) continue;
                switch (message[0])
                {
                    case ExecStream.Stdin when length == 1:
                        exec.Stdin.Dispose();
                        break;
                    case ExecStream.Stdin:
                        await exec.Stdin.WriteAsync(message.AsMemory(1, length - 1), ct);
                        await exec.Stdin.FlushAsync(ct);
                        break;
                    case ExecStream.Resize when length >= 5:
                        exec.Resize(BinaryPrimitives.ReadUInt16LittleEndian(message.AsSpan(1)), BinaryPrimitives.ReadUInt16LittleEndian(message.AsSpan(3)));
                        break;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or WebSocketException or OperationCanceledException)
        {
        }
    }

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
