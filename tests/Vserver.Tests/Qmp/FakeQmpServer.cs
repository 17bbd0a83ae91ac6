using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Vserver.Tests.Qmp;

/// <summary>A scripted QMP peer on a unix socket in a temp directory. The test drives it step by step: accept,
/// greet, read the client's commands, answer (in any order), send events, close.</summary>
internal sealed class FakeQmpServer : IAsyncDisposable
{
    public const string Greeting =
        """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Fake 7.2"}, "capabilities": ["oob"]}}""";

    private readonly Socket _listener;
    private readonly List<FakeQmpConnection> _connections = [];

    public string Directory { get; }
    public string SocketPath { get; }

    private FakeQmpServer(string dir, string path, Socket listener)
    {
        Directory = dir;
        SocketPath = path;
        _listener = listener;
    }

    public static string NewTempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "vs-qmp-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(dir);
        return dir;
    }

    public static FakeQmpServer Start(string? dir = null)
    {
        dir ??= NewTempDir();
        var path = Path.Combine(dir, "qmp.sock");
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(4);
        return new FakeQmpServer(dir, path, listener);
    }

    public async Task<FakeQmpConnection> AcceptAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var s = await _listener.AcceptAsync(cts.Token);
        var c = new FakeQmpConnection(s);
        _connections.Add(c);
        return c;
    }

    /// <summary>Accepts, greets, answers qmp_capabilities: the state a connected QmpClient expects.</summary>
    public async Task<FakeQmpConnection> AcceptAndNegotiateAsync()
    {
        var c = await AcceptAsync();
        await c.SendAsync(Greeting);
        var caps = await c.ReadCommandAsync();
        if ((string?)caps["execute"] != "qmp_capabilities") throw new InvalidOperationException("expected qmp_capabilities, got " + caps.ToJsonString());
        await c.ReplyAsync(caps, new JsonObject());
        return c;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _connections) c.Dispose();
        _listener.Dispose();
        await Task.Yield();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}

internal sealed class FakeQmpConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;

    public FakeQmpConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, new UTF8Encoding(false));
    }

    /// <summary>The client's next message, as raw text (null at end of stream).</summary>
    public async Task<string?> ReadLineAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await _reader.ReadLineAsync(cts.Token);
    }

    public async Task<JsonObject> ReadCommandAsync()
    {
        var line = await ReadLineAsync() ?? throw new EndOfStreamException("client closed");
        return JsonNode.Parse(line)!.AsObject();
    }

    /// <summary>Sends raw text, appending QEMU's "\r\n".</summary>
    public Task SendAsync(string json) => SendRawAsync(json + "\r\n");

    public async Task SendRawAsync(string text)
    {
        await _stream.WriteAsync(Encoding.UTF8.GetBytes(text));
        await _stream.FlushAsync();
    }

    /// <summary>{"return": value, "id": same id as the command} (id echoed verbatim, as QEMU does).</summary>
    public Task ReplyAsync(JsonObject command, JsonNode? value) =>
        SendAsync(new JsonObject { ["return"] = value, ["id"] = command["id"]!.DeepClone() }.ToJsonString());

    public Task ReplyErrorAsync(JsonObject command, string errorClass, string desc) =>
        SendAsync(new JsonObject
        {
            ["id"] = command["id"]!.DeepClone(),
            ["error"] = new JsonObject { ["class"] = errorClass, ["desc"] = desc },
        }.ToJsonString());

    public Task SendEventAsync(string name, JsonObject? data = null, long seconds = 1_700_000_000, long micros = 123_456)
    {
        var e = new JsonObject
        {
            ["timestamp"] = new JsonObject { ["seconds"] = seconds, ["microseconds"] = micros },
            ["event"] = name,
        };
        if (data is not null) e["data"] = data;
        return SendAsync(e.ToJsonString());
    }

    public void Dispose()
    {
        _reader.Dispose();
        _stream.Dispose();
        _socket.Dispose();
    }
}
