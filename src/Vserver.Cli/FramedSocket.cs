using System.Net.WebSockets;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>The sending half of an exec or console WebSocket: one whole binary frame at a time (a WebSocket takes one
/// send at a time, and stdin, resizes and the close come from different tasks), and a close that never hangs.</summary>
internal sealed class FramedSocket(WebSocket socket) : IDisposable
{
    private const int StdinChunk = 32 * 1024;
    private readonly SemaphoreSlim _sendLock = new(1, 1);

    public WebSocket Socket => socket;

    public async Task SendAsync(ReadOnlyMemory<byte> frame, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            await socket.SendAsync(frame, WebSocketMessageType.Binary, endOfMessage: true, ct);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>
    /// Reads local stdin in chunks into a Stdin frame (its first byte the header) and hands each to
    /// <paramref name="forward"/> with the chunk's length (0 at the end of stdin), until <paramref name="forward"/> says
    /// stop. A session that ends first ends the pump quietly: the receiving side says how it ended.
    /// </summary>
    public static async Task PumpStdinAsync(Stream stdin, Func<Memory<byte>, int, Task<bool>> forward, CancellationToken ct)
    {
        var frame = new byte[StdinChunk + 1];
        frame[0] = ExecStream.Stdin;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var n = await LocalStreams.ReadAsync(stdin, frame.AsMemory(1), ct);
                if (!await forward(frame, n)) return;
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
        }
    }

    /// <summary>Says goodbye within a second, else drops the connection; a socket that is no longer open is dropped
    /// (<paramref name="abortIfNotOpen"/>) or left alone.</summary>
    public async Task CloseAsync(bool abortIfNotOpen)
    {
        if (socket.State is not (WebSocketState.Open or WebSocketState.CloseReceived))
        {
            if (abortIfNotOpen) socket.Abort();
            return;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await _sendLock.WaitAsync(timeout.Token);
            try
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, timeout.Token);
            }
            finally
            {
                _sendLock.Release();
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            socket.Abort();
        }
    }

    public void Dispose() => _sendLock.Dispose();
}
