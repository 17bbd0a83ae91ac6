using System.Globalization;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>One agent (no image, no guests) for the request tests, with sentinels next to its state root: what a name
/// that escaped the state root would reach.</summary>
public sealed class DoorHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;
    public string Sentinel => Path.Combine(Host.Dir, "sentinel");

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync(buildImage: false);
        Directory.CreateDirectory(Path.Combine(Sentinel, "rootfs"));
        File.WriteAllText(Path.Combine(Sentinel, "image.json"), "{\"name\":\"sentinel\"}");
        File.WriteAllText(Path.Combine(Sentinel, "guest.json"), "{\"name\":\"sentinel\"}");
        File.WriteAllText(Path.Combine(Sentinel, "build.sh"), "#!/bin/sh\nexit 0\n");
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();

    /// <summary>Every path under the host's directory (state root, run root, sentinels) with its type and size.</summary>
    public IReadOnlyList<string> Snapshot() =>
        new DirectoryInfo(Host.Dir).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
            .Select(e => $"{Path.GetRelativePath(Host.Dir, e.FullName)} {(e is FileInfo f ? f.Length.ToString(CultureInfo.InvariantCulture) : "dir")}")
            .Order(StringComparer.Ordinal)
            .ToList();
}

/// <summary>
/// The agent's API is no way in for strangers: its socket is root's (or group vserver's), request bodies are capped,
/// and no guest or image name can reach outside the state root. Requests are crafted byte by byte on the socket,
/// since HttpClient would normalise or escape exactly what is under test.
/// </summary>
public sealed class AgentDoorTests(DoorHost door) : IClassFixture<DoorHost>
{
    private TestHost Host => door.Host;

    private static readonly string[] Nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];

    /// <summary>The gid of group vserver on this host, or null; the tests never create it (that would change what
    /// every other agent on the host does).</summary>
    private static uint? VserverGroup()
    {
        var entry = TestHost.Run("getent", "group", "vserver");
        return entry.Code == 0 ? uint.Parse(entry.Stdout.Split(':')[2], CultureInfo.InvariantCulture) : null;
    }

    // ---- 1. who may connect ----

    [Fact]
    public async Task The_socket_is_roots_alone_and_another_user_is_refused()
    {
        await using var host = TestHost.CreateWithoutAgent();
        await host.StartAgentAsync();
        var group = VserverGroup();

        var stat = TestHost.Run("stat", "-c", "%a %u %g %F", host.Socket).ShouldSucceed().Stdout.Trim();
        stat.ShouldBe(group is { } gid ? $"660 0 {gid} socket" : "600 0 0 socket");
        host.AgentLog.ShouldContain(group is null ? "(mode 0600, root only" : "(mode 0660, root and group vserver");

        // The test's directory is 0700: open the way down to the socket, so that only the socket's mode can refuse.
        File.SetUnixFileMode(host.Dir, (UnixFileMode)0b111_001_001);
        string[] asNobody = [.. Nobody, "curl", "-sv", "--unix-socket", host.Socket, "http://vserverd/v1/host"];
        var refused = TestHost.Run("setpriv", asNobody);
        refused.Code.ShouldBe(7, refused.ToString()); // curl: could not connect
        refused.Stderr.ShouldContain("Permission denied", Case.Sensitive, refused.ToString());
        refused.Stdout.ShouldNotContain("agentPid");

        // The control: with the socket opened up, the same user gets in. So the refusal above was the socket's mode.
        File.SetUnixFileMode(host.Socket, (UnixFileMode)0b110_110_110);
        try
        {
            TestHost.Run("setpriv", asNobody).ShouldSucceed().Stdout.ShouldContain("agentPid");
        }
        finally
        {
            File.SetUnixFileMode(host.Socket, group is null ? (UnixFileMode)0b110_000_000 : (UnixFileMode)0b110_110_000);
        }
    }

    [Fact]
    public async Task A_world_writable_run_directory_is_closed_and_a_leftover_bind_directory_is_cleared()
    {
        await using var host = TestHost.CreateWithoutAgent();
        Directory.CreateDirectory(host.RunDir);
        File.SetUnixFileMode(host.RunDir, (UnixFileMode)0b111_111_111);
        // As an agent killed between bind and rename would leave it.
        Directory.CreateDirectory(Path.Combine(host.RunDir, ".bind"));
        File.WriteAllText(Path.Combine(host.RunDir, ".bind", "sock"), "");

        await host.StartAgentAsync();

        ((int)File.GetUnixFileMode(host.RunDir)).ShouldBe(0b111_101_101); // 0755
        host.AgentLog.ShouldContain("took group and other write access away");
        Directory.Exists(Path.Combine(host.RunDir, ".bind")).ShouldBeFalse("the directory the socket is bound in must go once it is published");
        ((int)File.GetUnixFileMode(host.Socket) & 0b000_000_111).ShouldBe(0, "others get nothing on the socket");
        using var client = host.Client();
        (await client.HostAsync(TestContext.Current.CancellationToken)).AgentPid.ShouldBe(host.AgentPid);
    }

    [Fact]
    public async Task A_second_agent_cannot_take_over_the_socket_even_after_garbage_collections()
    {
        await using var host = TestHost.CreateWithoutAgent();
        // A tiny gen0 budget: the agent collects garbage many times while it serves the requests below.
        await host.StartAgentAsync(new Dictionary<string, string> { ["DOTNET_gcServer"] = "0", ["DOTNET_GCgen0size"] = "0x20000" });
        for (var i = 0; i < 200; i++)
            (await RawHttp.SendAsync(host.Socket, "GET", "/v1/guests")).Status.ShouldBe(200);

        // (timeout: should it start after all, it is stopped rather than left serving)
        var second = TestHost.RunWith(host.Env, null, "timeout", "10", Binaries.Vserverd);
        second.Code.ShouldBe(1, second.ToString());
        second.Stderr.ShouldContain("another vserverd is already running");
        using var client = host.Client();
        (await client.HostAsync(TestContext.Current.CancellationToken)).AgentPid.ShouldBe(host.AgentPid, "the first agent still owns the socket");
    }

    // ---- 2. request size ----

    /// <summary>A JSON body of exactly <paramref name="size"/> bytes: {"name":"aaa..."}.</summary>
    private static byte[] BodyOfSize(int size)
    {
        const string head = "{\"name\":\"", tail = "\"}";
        return Encoding.ASCII.GetBytes(head + new string('a', size - head.Length - tail.Length) + tail);
    }

    [Theory]
    [InlineData("POST", "/v1/guests", false)]
    [InlineData("POST", "/v1/guests", true)]
    [InlineData("POST", "/v1/images", false)]
    [InlineData("POST", "/v1/images", true)]
    [InlineData("PATCH", "/v1/guests/web1/limits", false)]
    [InlineData("PATCH", "/v1/guests/web1/limits", true)]
    [InlineData("POST", "/v1/guests/web1/start", false)] // a route that reads no body at all
    public async Task A_body_over_the_cap_is_refused_with_413_naming_the_limit(string method, string path, bool chunked)
    {
        var response = await RawHttp.SendAsync(Host.Socket, method, path, BodyOfSize(ApiLimits.MaxRequestBodyBytes + 1), chunked: chunked);
        response.Status.ShouldBe(413, response.ToString());
        response.Error.ShouldContain($"at most {ApiLimits.MaxRequestBodyBytes} bytes");
        (await RawHttp.SendAsync(Host.Socket, "GET", "/v1/host")).Status.ShouldBe(200, "the agent goes on serving");
    }

    [Theory]
    [InlineData(ApiLimits.MaxRequestBodyBytes, false)]
    // Kestrel counts a chunked body's framing (size lines, CRLFs) against the limit too: 16 chunks of 4 KiB cost 128
    // bytes more, so a chunked body must stay that much under the cap.
    [InlineData(ApiLimits.MaxRequestBodyBytes - 1024, true)]
    public async Task A_body_up_to_the_cap_is_read(int size, bool chunked)
    {
        var response = await RawHttp.SendAsync(Host.Socket, "POST", "/v1/guests", BodyOfSize(size), chunked: chunked);
        response.Status.ShouldBe(400, response.ToString());
        response.Error.ShouldStartWith("invalid name 'aaaa");
        response.Error.Length.ShouldBeLessThan(300, "a long name is cut short in the message");
    }

    [Fact]
    public async Task An_exec_request_over_the_cap_is_refused_before_it_is_read_whole()
    {
        var ct = TestContext.Current.CancellationToken;
        using var client = Host.Client();
        var huge = new ExecRequest { Command = ["true", new string('x', ApiLimits.MaxExecRequestBytes)] };
        using (var ws = await client.OpenExecAsync("ghost", huge, ct))
        {
            var (stream, text) = await ReceiveFrameAsync(ws, ct);
            stream.ShouldBe(ExecStream.Error);
            text.ShouldContain($"at most {ApiLimits.MaxExecRequestBytes} bytes");
        }
        // The control: the same request under the cap is read, and fails for its real reason.
        var small = new ExecRequest { Command = ["true", new string('x', ApiLimits.MaxExecRequestBytes - 1000)] };
        using (var ws = await client.OpenExecAsync("ghost", small, ct))
        {
            // A refusal with a code comes as its error body first (for a client to give advice), then its line.
            var (detail, body) = await ReceiveFrameAsync(ws, ct);
            detail.ShouldBe(ExecStream.ErrorDetail);
            body.ShouldContain("\"code\":\"not_found\"");
            var (stream, text) = await ReceiveFrameAsync(ws, ct);
            stream.ShouldBe(ExecStream.Error);
            text.ShouldContain("no guest named 'ghost'");
        }
    }

    [Fact]
    public async Task An_exec_message_over_its_cap_ends_the_session_as_message_too_big()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "door2").ShouldSucceed();
        host.Vsctl("start", "door2").ShouldSucceed();
        using var client = host.Client();
        using var ws = await client.OpenExecAsync("door2", new ExecRequest { Command = ["cat"] }, ct);

        // A frame as vsctl sends them goes through: cat echoes it.
        await ws.SendAsync(new byte[] { ExecStream.Stdin, (byte)'h', (byte)'i', (byte)'\n' }, WebSocketMessageType.Binary, true, ct);
        var (stream, text) = await ReceiveFrameAsync(ws, ct);
        stream.ShouldBe(ExecStream.Stdout);
        text.ShouldBe("hi\n");

        var huge = new byte[ApiLimits.MaxExecMessageBytes + 1];
        huge[0] = ExecStream.Stdin;
        await ws.SendAsync(huge, WebSocketMessageType.Binary, true, ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var buffer = new byte[64 * 1024];
        while ((await ws.ReceiveAsync(buffer, timeout.Token)).MessageType != WebSocketMessageType.Close)
        {
        }
        ws.CloseStatus.ShouldBe(WebSocketCloseStatus.MessageTooBig);
        ws.CloseStatusDescription.ShouldNotBeNull().ShouldContain($"at most {ApiLimits.MaxExecMessageBytes} bytes");
        host.Vsctl("exec", "door2", "--", "true").ShouldSucceed();
    }

    private static async Task<(byte Stream, string Text)> ReceiveFrameAsync(WebSocket ws, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var buffer = new byte[64 * 1024];
        var length = 0;
        while (true)
        {
            var result = await ws.ReceiveAsync(buffer.AsMemory(length), timeout.Token);
            result.MessageType.ShouldNotBe(WebSocketMessageType.Close, "the agent closed without saying why");
            length += result.Count;
            if (result.EndOfMessage) break;
        }
        return (buffer[0], Encoding.UTF8.GetString(buffer, 1, length - 1));
    }

    // ---- 2b. malformed requests ----

    [Theory]
    [InlineData("POST", "/v1/guests", "{\"name\":", "application/json", 400, "invalid JSON body")]
    [InlineData("POST", "/v1/guests", "{}", "application/json", 400, "'name'")]
    [InlineData("POST", "/v1/guests", "[1, 2]", "application/json", 400, "the request body must be a JSON object, not an array")]
    [InlineData("POST", "/v1/images", "{\"name\": 7}", "application/json", 400, "field 'name' must be a string, not the number 7")]
    [InlineData("PATCH", "/v1/guests/web1/limits", "{\"memoryBytes\": \"lots\"}", "application/json", 400, "field 'memoryBytes' must be a whole number")]
    [InlineData("POST", "/v1/guests", "{\"name\":\"j3\",\"memory\":\"256M\"}", "application/json", 400, "unknown field 'memory' in the request body")]
    [InlineData("POST", "/v1/guests", "{\"name\":\"web1\"}", "text/plain", 415, "application/json")]
    [InlineData("POST", "/v1/guests", null, null, 400, "needs a JSON body")]
    [InlineData("POST", "/v1/guests/web1/stop?timeout=soon", null, null, 400, "query parameter 'timeout' must be a whole number, not 'soon'")]
    [InlineData("PUT", "/v1/guests", null, null, 405, "does not take PUT")]
    [InlineData("GET", "/v2/everything", null, null, 404, "no such API endpoint")]
    public async Task A_malformed_request_gets_a_one_line_json_error(string method, string path, string? body, string? contentType, int status, string fragment)
    {
        var response = await RawHttp.SendAsync(Host.Socket, method, path, body is null ? null : Encoding.UTF8.GetBytes(body), contentType);
        response.Status.ShouldBe(status, response.ToString());
        response.Error.ShouldContain(fragment, Case.Sensitive, response.ToString());
        response.Error.ShouldNotContain('\n');
    }

    // ---- 3. names cannot leave the state root ----

    /// <summary>Every route that takes a name in its path, with {0} for the name.</summary>
    private static readonly (string Method, string Path, string Kind)[] NameRoutes =
    [
        ("GET", "/v1/guests/{0}", "guest"),
        ("DELETE", "/v1/guests/{0}?force=true", "guest"),
        ("POST", "/v1/guests/{0}/start", "guest"),
        ("POST", "/v1/guests/{0}/stop", "guest"),
        ("POST", "/v1/guests/{0}/restart", "guest"),
        ("POST", "/v1/guests/{0}/pause", "guest"),
        ("POST", "/v1/guests/{0}/resume", "guest"),
        ("POST", "/v1/guests/{0}/wait", "guest"),
        ("PATCH", "/v1/guests/{0}/limits", "guest"),
        ("GET", "/v1/guests/{0}/exec", "guest"),
        ("DELETE", "/v1/images/{0}", "image"),
    ];

    [Theory]
    [InlineData("..")]
    [InlineData("../etc")]
    [InlineData("../sentinel")]
    [InlineData("%2e%2e")]
    [InlineData("%2E%2E%2F%2E%2E%2Fsentinel")]
    [InlineData("..%2Fsentinel")]
    [InlineData("a%2Fb")]
    [InlineData("%2Fetc%2Fpasswd")]
    [InlineData("a%00b")]
    [InlineData("%00")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 64
    [InlineData("Web1")]
    [InlineData("%C3%A9t%C3%A9")] // été
    [InlineData("web1%0A")]
    [InlineData("a%0D%0Ab")]
    public async Task A_crafted_name_in_the_path_is_refused_and_touches_nothing(string segment)
    {
        var before = door.Snapshot();
        foreach (var (method, template, kind) in NameRoutes)
        {
            var target = string.Format(CultureInfo.InvariantCulture, template, segment);
            var body = method == "PATCH" ? "{}"u8.ToArray() : null;
            var response = await RawHttp.SendAsync(Host.Socket, method, target, body);
            var what = $"{method} {target}: {response}";
            if (segment.Contains("%00", StringComparison.Ordinal))
            {
                // Kestrel refuses a NUL in the request target itself, before any of the agent's code runs, and hangs
                // up; the agent gives that refusal its error body (KestrelRefusals). Nothing of the agent is reached.
                response.Status.ShouldBe(400, what);
                response.Error.ShouldStartWith("malformed HTTP request", Case.Sensitive, what);
                continue;
            }
            response.Status.ShouldBeOneOf([400, 404], what);
            response.Error.ShouldNotContain('\n', customMessage: what);
            response.Error.ShouldNotBeNullOrWhiteSpace(what);
            if (response.Status == 400)
            {
                response.Error.ShouldStartWith("invalid name '", Case.Sensitive, what);
                response.Error.ShouldContain($"{kind} names are DNS labels", Case.Sensitive, what);
            }
            else
            {
                // A '..' segment is resolved before routing (/v1/guests/../etc is /v1/etc), so no route matches at all.
                Uri.UnescapeDataString(segment).Split('/').ShouldContain("..", what);
                response.Error.ShouldStartWith("no such API endpoint", Case.Sensitive, what);
            }
        }
        ShouldBeUntouched(before);
    }

    [Theory]
    [InlineData("..")]
    [InlineData("../sentinel")]
    [InlineData("../../sentinel")]
    [InlineData("/etc/passwd")]
    [InlineData("a/b")]
    [InlineData("a\0b")]
    [InlineData("\0")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 64
    [InlineData("Web1")]
    [InlineData("été")]
    [InlineData("web1\n")]
    [InlineData("")]
    public async Task A_crafted_name_in_a_body_is_refused_and_touches_nothing(string name)
    {
        var before = door.Snapshot();
        var json = JsonSerializer.Serialize(name);
        foreach (var (path, body, kind) in new[]
                 {
                     ("/v1/guests", $"{{\"name\":{json}}}", "guest"),
                     ("/v1/images", $"{{\"name\":{json}}}", "image"),
                 })
        {
            var response = await RawHttp.SendAsync(Host.Socket, "POST", path, Encoding.UTF8.GetBytes(body));
            var what = $"POST {path} {body}: {response}";
            response.Status.ShouldBe(400, what);
            if (name.Contains('\0', StringComparison.Ordinal))
            {
                // No string of a request may hold a NUL: refused with the body's shape, before the name rule.
                response.Error.ShouldStartWith("field 'name' contains a NUL byte", Case.Sensitive, what);
                continue;
            }
            response.Error.ShouldStartWith("invalid name '", Case.Sensitive, what);
            response.Error.ShouldContain($"{kind} names are DNS labels", Case.Sensitive, what);
            response.Error.ShouldNotContain('\n', customMessage: what);
            response.Error.ShouldNotContain('\0', customMessage: what);
        }
        // An image name in a create request goes through the same rule.
        var create = await RawHttp.SendAsync(Host.Socket, "POST", "/v1/guests", Encoding.UTF8.GetBytes($"{{\"name\":\"door1\",\"image\":{json}}}"));
        create.Status.ShouldBe(400, create.ToString());
        create.Error.ShouldContain(name.Contains('\0', StringComparison.Ordinal) ? "field 'image' contains a NUL byte" : "unknown image");
        ShouldBeUntouched(before);
    }

    private void ShouldBeUntouched(IReadOnlyList<string> before)
    {
        door.Snapshot().ShouldBe(before, "a refused request must leave the state root, the run root and what lies next to them as they were");
        File.ReadAllText(Path.Combine(door.Sentinel, "image.json")).ShouldBe("{\"name\":\"sentinel\"}");
        File.Exists("/etc/passwd").ShouldBeTrue();
        Directory.Exists(Path.Combine(Host.Root, "guests")).ShouldBeTrue();
        Directory.EnumerateFileSystemEntries(Path.Combine(Host.Root, "guests")).ShouldBeEmpty();
    }
}

/// <summary>An HTTP/1.1 response as read off the socket.</summary>
public sealed record RawResponse(int Status, string Body)
{
    /// <summary>The "error" of a JSON error body; fails the test when the body is anything else.</summary>
    public string Error
    {
        get
        {
            try
            {
                using var json = JsonDocument.Parse(Body);
                return json.RootElement.GetProperty("error").GetString() ?? throw new ShouldAssertException($"null error in {Body}");
            }
            catch (JsonException e)
            {
                throw new ShouldAssertException($"HTTP {Status}: the body is no JSON error: '{Body}' ({e.Message})");
            }
        }
    }

    public override string ToString() => $"HTTP {Status} {(Body.Length > 500 ? Body[..500] + "..." : Body)}";
}

/// <summary>Just enough HTTP/1.1 to send a request exactly as written (no normalising of '..' or '%2e') to the agent's
/// unix socket and read the answer.</summary>
public static class RawHttp
{
    public static async Task<RawResponse> SendAsync(string socketPath, string method, string target, byte[]? body = null,
        string? contentType = "application/json", bool chunked = false)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), timeout.Token);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var head = new StringBuilder($"{method} {target} HTTP/1.1\r\nHost: vserverd\r\nConnection: close\r\n");
        if (body is not null)
        {
            if (contentType is not null) head.Append($"Content-Type: {contentType}\r\n");
            head.Append(chunked ? "Transfer-Encoding: chunked\r\n" : $"Content-Length: {body.Length}\r\n");
        }
        head.Append("\r\n");
        try
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()), timeout.Token);
            if (body is not null && chunked)
            {
                for (var i = 0; i < body.Length; i += 4096)
                {
                    var n = Math.Min(4096, body.Length - i);
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"{n:x}\r\n"), timeout.Token);
                    await stream.WriteAsync(body.AsMemory(i, n), timeout.Token);
                    await stream.WriteAsync("\r\n"u8.ToArray(), timeout.Token);
                }
                await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), timeout.Token);
            }
            else if (body is not null)
            {
                await stream.WriteAsync(body, timeout.Token);
            }
        }
        catch (IOException)
        {
            // The agent may answer a refused body and hang up before it has read it all: the answer is still there.
        }
        var received = new MemoryStream();
        try
        {
            await stream.CopyToAsync(received, timeout.Token);
        }
        catch (IOException)
        {
            // A reset after the answer (the agent closed with part of our body unread).
        }
        return Parse(received.ToArray());
    }

    private static RawResponse Parse(byte[] raw)
    {
        var end = raw.AsSpan().IndexOf("\r\n\r\n"u8);
        if (end < 0) throw new ShouldAssertException($"no HTTP response, got: '{Encoding.UTF8.GetString(raw)}'");
        var lines = Encoding.ASCII.GetString(raw, 0, end).Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], CultureInfo.InvariantCulture);
        var chunked = lines.Skip(1).Any(l => l.StartsWith("Transfer-Encoding:", StringComparison.OrdinalIgnoreCase)
                                             && l.Contains("chunked", StringComparison.OrdinalIgnoreCase));
        var body = raw.AsSpan(end + 4);
        if (!chunked) return new RawResponse(status, Encoding.UTF8.GetString(body));
        var decoded = new MemoryStream();
        while (true)
        {
            var lineEnd = body.IndexOf("\r\n"u8);
            var size = int.Parse(Encoding.ASCII.GetString(body[..lineEnd]).Split(';')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size == 0) break;
            decoded.Write(body.Slice(lineEnd + 2, size));
            body = body[(lineEnd + 2 + size + 2)..];
        }
        return new RawResponse(status, Encoding.UTF8.GetString(decoded.ToArray()));
    }
}
