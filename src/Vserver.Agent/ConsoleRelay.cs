using System.Net.WebSockets;
using System.Text;
using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>
/// `vsctl console` over a WebSocket, framed like exec (<see cref="ExecStream"/>): what the domain's serial console
/// prints goes out as Stdout frames, Stdin frames from the client go to the console; an Error frame says why there is
/// no console. The session ends when the client detaches (closes) or the domain's QEMU goes away.
/// </summary>
internal static class ConsoleRelay
{
    public static async Task RunAsync(HttpContext context, Fleet fleet, string name)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiErrors.Write(context, StatusCodes.Status400BadRequest, "console needs a WebSocket upgrade (use vsctl console)");
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var ct = context.RequestAborted;
        Stream console;
        try
        {
            console = await fleet.AttachConsoleAsync(name, ct);
        }
        catch (Exception e) when (e is FleetException or IOException or System.Net.Sockets.SocketException)
        {
            if (e is FleetException refusal) await socket.SendAsync(ExecRelay.ErrorDetailFrame(refusal), WebSocketMessageType.Binary, true, ct);
            await SendAsync(socket, ExecStream.Error, Encoding.UTF8.GetBytes(e.Message), ct);
            await CloseAsync(socket);
            return;
        }
        await using (console)
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var output = PumpOutputAsync(console, socket, stop.Token);
            var input = PumpInputAsync(socket, console, stop.Token);
            await Task.WhenAny(output, input);
            await stop.CancelAsync();
            await CloseAsync(socket);
        }
    }

    private static async Task PumpOutputAsync(Stream console, WebSocket socket, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var n = await console.ReadAsync(buffer.AsMemory(1), ct);
                if (n == 0) return;
                buffer[0] = ExecStream.Stdout;
                await socket.SendAsync(buffer.AsMemory(0, n + 1), WebSocketMessageType.Binary, true, ct);
            }
        }
        catch (Exception e) when (e is IOException or WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private static async Task PumpInputAsync(WebSocket socket, Stream console, CancellationToken ct)
    {
        var buffer = new byte[ApiLimits.MaxExecMessageBytes];
        try
        {
            while (true)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length) return; // not a frame vsctl sends: end the session
                    result = await socket.ReceiveAsync(buffer.AsMemory(length), ct);
                    if (result.MessageType == WebSocketMessageType.Close) return;
                    length += result.Count;
                }
                while (!result.EndOfMessage);
                if (length > 1 && buffer[0] == ExecStream.Stdin)
                {
                    await console.WriteAsync(buffer.AsMemory(1, length - 1), ct);
                    await console.FlushAsync(ct);
                }
            }
        }
        catch (Exception e) when (e is IOException or WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private static async Task SendAsync(WebSocket socket, byte stream, byte[] payload, CancellationToken ct)
    {
        var frame = new byte[payload.Length + 1];
        frame[0] = stream;
        payload.CopyTo(frame, 1);
        await socket.SendAsync(frame, WebSocketMessageType.Binary, true, ct);
    }

    private static async Task CloseAsync(WebSocket socket)
    {
        try
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }
        catch (WebSocketException)
        {
        }
    }
}
