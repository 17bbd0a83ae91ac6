using System.Net.WebSockets;

namespace Vserver.Cli;

/// <summary>The sending half of an exec or console WebSocket: one whole binary frame at a time (a WebSocket takes one
/// send at a time, and stdin, resizes and the close come from different tasks), and a close that never hangs.</summary>
internal sealed class FramedSocket(WebSocket socket) : IDisposable
{
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
