using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HybridHypervisor;
using HybridHypervisor.Model;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Vserver.Agent;
using Vserver.Api;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;
using Vserver.Tests.FleetParts;

namespace Vserver.Tests.Agent;

/// <summary>
/// The agent's real HTTP pipeline (Kestrel on a unix socket, ApiErrors, RequestGate, the routes) over a fleet of fake
/// drivers in a temp directory: what a client's request does at the door, without root. Requests are written byte by
/// byte, as an attacker would, not through a client that would escape or refuse them.
/// </summary>
internal sealed class DoorAgent : IAsyncDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vsdoorunit-").FullName;
    private readonly WebApplication _app;
    private readonly List<string> _log = [];

    public Fleet Fleet { get; }
    public FakeGuestDriver Vservers { get; } = new(GuestKind.Vserver);
    public string Socket => Path.Combine(_root, "agent.sock");
    public string GuestsDir => Path.Combine(_root, "state", "guests");

    public IReadOnlyList<string> Log
    {
        get
        {
            lock (_log) return [.. _log];
        }
    }

    private DoorAgent()
    {
        var image = Path.Combine(_root, "state", "images", "busybox");
        Directory.CreateDirectory(Path.Combine(image, "rootfs"));
        File.WriteAllText(Path.Combine(image, "image.json"),
            JsonSerializer.Serialize(new ImageRecord("busybox", 2 << 20, DateTimeOffset.UtcNow, "sha256:0"), ImageJson.Default.ImageRecord));
        var options = new FleetOptions
        {
            StateRoot = Path.Combine(_root, "state"),
            RunRoot = Path.Combine(_root, "run"),
            BridgeName = "vsdoor0",
            Subnet = Ipv4Subnet.Parse("10.251.0.0/24"),
            CgroupParent = "vsdoor",
            VsinitPath = "/bin/sh",
            RecipesRoot = Path.Combine(_root, "recipes"),
        };
        var domains = new FakeGuestDriver(GuestKind.Domain);
        Fleet = new Fleet(options, line => { lock (_log) _log.Add(line); }, new HybridHypervisor.FleetParts
        {
            Vservers = Vservers,
            Domains = domains,
            Conversion = new FakeConversionDriver(domains),
            Network = new FakeHostNetwork(options.BridgeName),
            Cgroups = new NoCgroups(),
            Images = new ImageStore(options.ImagesRoot, options.RecipesRoot),
            Kernels = new HybridHypervisor.Domains.KernelStore(options.KernelsRoot, options.RecipesRoot),
            Clock = new TimerCountingClock(),
        });
        Fleet.Initialize();
        _app = AgentApp.Build([], Fleet, Socket);
    }

    public static async Task<DoorAgent> StartAsync()
    {
        var agent = new DoorAgent();
        await agent._app.StartAsync();
        return agent;
    }

    /// <summary>Every route of the agent: method and pattern, and the record its body is, if it takes one.</summary>
    public IReadOnlyList<(string Method, string Pattern, Type? Body)> Routes() =>
        _app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"])
                .Select(m => (m, e.RoutePattern.RawText!, e.Metadata.GetMetadata<IAcceptsMetadata>()?.RequestType)))
            .ToList();

    /// <summary>Everything in the state and run roots (the image's files aside).</summary>
    public IReadOnlyList<string> Snapshot() =>
        Directory.EnumerateFileSystemEntries(_root, "*", SearchOption.AllDirectories)
            .Select(p => Path.GetRelativePath(_root, p))
            .Where(p => !p.StartsWith("state/images", StringComparison.Ordinal) && !p.StartsWith(".bind", StringComparison.Ordinal) && p != "agent.sock")
            .Order(StringComparer.Ordinal)
            .ToList();

    public Task<Answer> SendAsync(string method, string target, string? body = null, string contentType = "application/json",
        IEnumerable<string>? headers = null) =>
        SendRawAsync(Request(method, target, body is null ? null : Encoding.UTF8.GetBytes(body), contentType, headers));

    public static byte[] Request(string method, string target, byte[]? body, string contentType = "application/json", IEnumerable<string>? headers = null)
    {
        var head = new StringBuilder($"{method} {target} HTTP/1.1\r\nHost: vserverd\r\nConnection: close\r\n");
        if (body is not null) head.Append($"Content-Type: {contentType}\r\nContent-Length: {body.Length}\r\n");
        foreach (var h in headers ?? []) head.Append(h).Append("\r\n");
        head.Append("\r\n");
        return [.. Encoding.Latin1.GetBytes(head.ToString()), .. body ?? []];
    }

    public async Task<Answer> SendRawAsync(byte[] request)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(Socket), timeout.Token);
        try
        {
            await socket.SendAsync(request, SocketFlags.None, timeout.Token);
        }
        catch (SocketException)
        {
            // Kestrel may answer and hang up before it read all of a request it refuses.
        }
        var answer = new MemoryStream();
        var buffer = new byte[16 * 1024];
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0) answer.Write(buffer, 0, n);
        }
        catch (SocketException) when (answer.Length > 0)
        {
        }
        return Answer.Parse(Encoding.UTF8.GetString(answer.ToArray()));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Fleet.Dispose();
        Directory.Delete(_root, recursive: true);
    }
}

/// <summary>An HTTP answer as read off the socket; <see cref="Body"/> parsed as the agent's error where it is one.</summary>
internal sealed record Answer(int Status, string Head, string Text)
{
    public ErrorResponse Error => JsonSerializer.Deserialize(Text, ApiJson.Default.ErrorResponse)
        ?? throw new InvalidOperationException($"no error body: {this}");

    public static Answer Parse(string raw)
    {
        var split = raw.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = split < 0 ? raw : raw[..split];
        var body = split < 0 ? "" : raw[(split + 4)..];
        var status = head.Length >= 12 && int.TryParse(head.AsSpan(9, 3), out var s) ? s : 0;
        if (head.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase)) body = Unchunk(body);
        return new Answer(status, head, body);
    }

    private static string Unchunk(string body)
    {
        var text = new StringBuilder();
        var at = 0;
        while (at < body.Length)
        {
            var eol = body.IndexOf("\r\n", at, StringComparison.Ordinal);
            if (eol < 0) break;
            var size = Convert.ToInt32(body[at..eol].Split(';')[0], 16);
            if (size == 0) break;
            text.Append(body, eol + 2, size);
            at = eol + 2 + size + 2;
        }
        return text.ToString();
    }

    public override string ToString() => $"HTTP {Status} {Text}";
}
