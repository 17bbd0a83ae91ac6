using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Vserver.Api;

namespace Vserver.Tests.Cli;

internal sealed record FakeRequest(string Method, string Path, string Body);

internal sealed record FakeResponse(int Status, string Body)
{
    public static FakeResponse Json<T>(T value, JsonTypeInfo<T> type, int status = 200) => new(status, JsonSerializer.Serialize(value, type));

    public static FakeResponse Error(int status, string message) =>
        Json(new ErrorResponse { Error = message }, ApiJson.Default.ErrorResponse, status);

    /// <summary>An error as the agent sends it: plain words, a code and its fields.</summary>
    public static FakeResponse Error(int status, string message, string code, params (string Key, string Value)[] fields) =>
        Json(new ErrorResponse { Error = message, Code = code, Fields = fields.ToDictionary(f => f.Key, f => f.Value) },
            ApiJson.Default.ErrorResponse, status);
}

/// <summary>
/// A stand-in for vserverd on a unix socket: just enough HTTP/1.1 (Content-Length and chunked bodies, keep-alive) and
/// the WebSocket upgrade of exec, so vsctl's handlers run against their real <see cref="AgentClient"/>.
/// </summary>
internal sealed class FakeAgent : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    private FakeAgent(string socketPath)
    {
        SocketPath = socketPath;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(16);
        _accepting = AcceptLoopAsync();
    }

    public string SocketPath { get; }

    public ConcurrentQueue<FakeRequest> Requests { get; } = new();

    public ConcurrentQueue<ExecRequest> ExecRequests { get; } = new();

    /// <summary>Answers plain requests; the default knows nothing.</summary>
    public Func<FakeRequest, FakeResponse> Handler { get; set; } = r => FakeResponse.Error(404, $"no route for {r.Method} {r.Path}");

    /// <summary>Runs an exec session after the request arrived; null refuses the upgrade with 409.</summary>
    public Func<WebSocket, ExecRequest, CancellationToken, Task>? Exec { get; set; }

    /// <summary>Runs a console session (no request message comes first); null refuses the upgrade with 409.</summary>
    public Func<WebSocket, CancellationToken, Task>? Console { get; set; }

    public static string NewSocketPath() => Path.Combine(Path.GetTempPath(), $"vsctl-{Guid.NewGuid():N}"[..20] + ".sock");

    public static FakeAgent Start(string? socketPath = null) => new(socketPath ?? NewSocketPath());

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(() => ServeAsync(connection));
        }
    }

    private async Task ServeAsync(Socket connection)
    {
        using var stream = new NetworkStream(connection, ownsSocket: true);
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var head = await ReadHeadAsync(stream);
                if (head is null) return;
                var lines = head.Split("\r\n");
                var requestLine = lines[0].Split(' ');
                var headers = lines.Skip(1).Where(l => l.Contains(':', StringComparison.Ordinal))
                    .ToDictionary(l => l[..l.IndexOf(':', StringComparison.Ordinal)].Trim(), l => l[(l.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim(),
                        StringComparer.OrdinalIgnoreCase);
                var method = requestLine[0];
                var path = requestLine[1];
                if (headers.TryGetValue("Upgrade", out var upgrade) && upgrade.Equals("websocket", StringComparison.OrdinalIgnoreCase))
                {
                    await UpgradeAsync(stream, path, headers["Sec-WebSocket-Key"]);
                    return;
                }
                var body = await ReadBodyAsync(stream, headers);
                var request = new FakeRequest(method, path, body);
                Requests.Enqueue(request);
                var response = Handler(request);
                await WriteResponseAsync(stream, response);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
        }
    }

    private async Task UpgradeAsync(NetworkStream stream, string path, string key)
    {
        var console = path.EndsWith("/console", StringComparison.Ordinal);
        if (console ? Console is null : Exec is null)
        {
            Requests.Enqueue(new FakeRequest("UPGRADE", path, ""));
            await WriteResponseAsync(stream, FakeResponse.Error(409, "refused"));
            return;
        }
#pragma warning disable CA5350 // RFC 6455 prescribes SHA-1 for the handshake
        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
#pragma warning restore CA5350
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"));
        using var ws = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
        if (console)
        {
            Requests.Enqueue(new FakeRequest("CONSOLE", path, ""));
            await Console!(ws, _stop.Token);
            return;
        }
        var buffer = new byte[64 * 1024];
        var first = await ws.ReceiveAsync(buffer, _stop.Token);
        var request = JsonSerializer.Deserialize(buffer.AsSpan(0, first.Count), ApiJson.Default.ExecRequest)!;
        ExecRequests.Enqueue(request);
        Requests.Enqueue(new FakeRequest("EXEC", path, Encoding.UTF8.GetString(buffer, 0, first.Count)));
        await Exec!(ws, request, _stop.Token);
    }

    private static async Task<string?> ReadHeadAsync(Stream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            if (await stream.ReadAsync(one) == 0) return null;
            bytes.Add(one[0]);
            if (bytes.Count >= 4 && bytes[^1] == '\n' && bytes[^2] == '\r' && bytes[^3] == '\n' && bytes[^4] == '\r')
                return Encoding.ASCII.GetString([.. bytes]).TrimEnd();
        }
    }

    private static async Task<string> ReadBodyAsync(Stream stream, Dictionary<string, string> headers)
    {
        if (headers.TryGetValue("Content-Length", out var length))
        {
            var body = new byte[int.Parse(length, CultureInfo.InvariantCulture)];
            await stream.ReadExactlyAsync(body);
            return Encoding.UTF8.GetString(body);
        }
        if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            var body = new MemoryStream();
            while (true)
            {
                var size = int.Parse((await ReadLineAsync(stream)).Split(';')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (size == 0)
                {
                    while ((await ReadLineAsync(stream)).Length > 0)
                    {
                    }
                    return Encoding.UTF8.GetString(body.ToArray());
                }
                var chunk = new byte[size];
                await stream.ReadExactlyAsync(chunk);
                body.Write(chunk);
                await ReadLineAsync(stream);
            }
        }
        return "";
    }

    private static async Task<string> ReadLineAsync(Stream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (await stream.ReadAsync(one) == 1)
        {
            if (one[0] == '\n') break;
            if (one[0] != '\r') bytes.Add(one[0]);
        }
        return Encoding.ASCII.GetString([.. bytes]);
    }

    private static async Task WriteResponseAsync(Stream stream, FakeResponse response)
    {
        var body = Encoding.UTF8.GetBytes(response.Body);
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {response.Status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n");
        await stream.WriteAsync(head);
        await stream.WriteAsync(body);
        await stream.FlushAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accepting;
        _stop.Dispose();
        File.Delete(SocketPath);
    }
}
