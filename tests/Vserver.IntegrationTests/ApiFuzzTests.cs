using System.Globalization;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>
/// Generated bodies, query strings, paths and headers thrown at every endpoint of a real agent (with its own roots,
/// bridge, subnet and cgroup parent, and the busybox image, so that a generated create can succeed and a generated
/// start run). Every answer must be an answer: never a 5xx, never an error without its one-line JSON body; the agent
/// must go on answering, its log must hold no stack trace and no raw control character, and once the guests the
/// requests made are destroyed nothing of them may be left on the host. Each class of request runs for a bounded
/// time (about 75 s in all) from a fixed seed (VSERVER_PROPERTY_SEED picks another); a failure names the request.
/// </summary>
public sealed partial class ApiFuzzTests : IAsyncLifetime
{
    private static readonly TimeSpan ClassBudget = TimeSpan.FromSeconds(15);
    private const ulong DefaultSeed = 20_260_419;

    private TestHost _host = null!;

    public async ValueTask InitializeAsync() => _host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync() => await _host.DisposeAsync();

    // ---- the agent's routes, from its source ----

    /// <summary>A route as the agent maps it: its method (null: any, a WebSocket route) and pattern under /v1.</summary>
    public sealed record Route(string? Method, string Pattern);

    [GeneratedRegex(@"v1\.Map(Get|Post|Patch|Delete|Put)?\(\s*""([^""]+)""")]
    private static partial Regex MapCall();

    /// <summary>Every route the agent maps (src/Vserver.Agent: Endpoints, PortEndpoints), read from the source, so a
    /// route added later is fuzzed too.</summary>
    public static IReadOnlyList<Route> Routes()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vserver.sln"))) dir = dir.Parent;
        dir.ShouldNotBeNull("the repository (Vserver.sln) above the test binaries");
        return Directory.EnumerateFiles(Path.Combine(dir.FullName, "src", "Vserver.Agent"), "*.cs")
            .SelectMany(f => MapCall().Matches(File.ReadAllText(f)))
            .Select(m => new Route(m.Groups[1].Success ? m.Groups[1].Value.ToUpperInvariant() : null, "/v1" + m.Groups[2].Value))
            .Where(r => !Ends.Contains(r))
            .Distinct()
            .ToList();
    }

    /// <summary>Routes that end the agent when they succeed, as they are meant to (tests/NetworkOwnershipTests drives
    /// them): a fuzzed one would stop the agent under every request after it.</summary>
    private static readonly Route[] Ends = [new("POST", "/v1/host/teardown")];

    [GeneratedRegex(@"^/v1/guests/fz\d/wait")]
    private static partial Regex LongPoll();

    /// <summary>Every field name of the contract's requests, as the wire spells them.</summary>
    private static readonly string[] ContractFields = typeof(GuestSpec).Assembly.GetTypes()
        .Where(t => t.Name.EndsWith("Request", StringComparison.Ordinal) || t == typeof(GuestSpec) || t == typeof(PortInfo))
        .SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        .Select(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name))
        .Distinct()
        .Order(StringComparer.Ordinal)
        .ToArray();

    // ---- generators ----

    /// <summary>The guests the generated requests name: these may come to exist (and run); "ghost" never does.</summary>
    private static readonly string[] Guests = ["fz1", "fz2", "fz3", "ghost"];

    private static Gen<string> Str(params string[] values) => Gen.Elements(values);

    private static Gen<(A, B, C)> Zip<A, B, C>(Gen<A> a, Gen<B> b, Gen<C> c) =>
        a.SelectMany(x => b.SelectMany(y => c.Select(z => (x, y, z))));

    private static Gen<(A, B, C, D)> Zip<A, B, C, D>(Gen<A> a, Gen<B> b, Gen<C> c, Gen<D> d) =>
        Zip(a, b, c).SelectMany(t => d.Select(w => (t.Item1, t.Item2, t.Item3, w)));

    private static Gen<string> JsonString(Gen<string> text) => text.Select(t => JsonSerializer.Serialize(t));

    private static readonly Gen<string> Numbers = Str("0", "-1", "1", "2", "0.5", "1.5", "0.0001", "1e-300", "1e300", "1e30", "4194304", "268435456",
        "2147483647", "2147483648", "-2147483649", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "47001", "65536", "86401");

    private static readonly Gen<string> Texts = Gen.OneOf(
        Str("", "fz1", "fz2", "busybox", "default", "fzk", "no", "always", "on-failure", "vserver", "domain", "keyctl", "/dev/zero", "/etc/shadow", "/",
            "relative/file", "/tmp/fz-save", "../../etc", "..", "a\u0000b", "\u001b[31mred", "line\nbreak", "\u202eevil", "été", "256M", "NaN", "true",
            "10.0.0.1", "tcp", "udp", "sctp"),
        Gen.Choose(64, 3000).Select(n => new string('x', n)),
        Gen.Choose(0, 255).Select(n => $"10.{n % 7}.0.{n}"));

    private static Gen<string> Scalar() => Gen.Frequency(
        (4, Numbers),
        (4, JsonString(Texts)),
        (1, Str("true", "false", "null")));

    private static Gen<string> JsonValue(int depth) => depth <= 0
        ? Scalar()
        : Gen.Frequency(
            (5, Scalar()),
            (1, Gen.Choose(0, 4).SelectMany(n => Gen.ArrayOf(JsonValue(depth - 1), n)).Select(a => "[" + string.Join(",", a) + "]")),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(Member(depth - 1), n)).Select(m => "{" + string.Join(",", m) + "}")));

    private static readonly Gen<string> FieldNames = Gen.Frequency(
        (6, Gen.Elements(ContractFields)),
        (1, Str("memory", "zz", "Name", "NAME", "name\u0000", "", "__proto__", "memory_bytes", "cmd", "ip")));

    private static Gen<string> Member(int depth) =>
        Gen.Zip(FieldNames, JsonValue(depth)).Select(t => $"{JsonSerializer.Serialize(t.Item1)}:{t.Item2}");

    /// <summary>A create as vsctl would send it, often valid for this host, then perhaps mutated.</summary>
    private Gen<string> GuestSpecs()
    {
        var prefix = _host.SubnetPrefix;
        var fields = new (string Name, Gen<string> Value)[]
        {
            ("image", Gen.Frequency((5, Gen.Constant("\"busybox\"")), (1, JsonString(Texts)))),
            ("memoryBytes", Str("268435456", "4194304", "3145728", "0", "-1", "9223372036854775807", "1000000000000000", "\"256M\"")),
            ("memoryMinBytes", Str("0", "67108864", "9223372036854775807", "-5")),
            ("cpus", Str("0.5", "1", "0.0001", "0", "-1", "1e300", "\"NaN\"")),
            ("pids", Str("64", "0", "-1", "2147483647")),
            ("ipv4", Gen.Frequency((3, Gen.Choose(0, 256).Select(n => $"\"{prefix}.{n}\"")), (1, JsonString(Texts)))),
            ("restart", Str("\"no\"", "\"always\"", "\"on-failure\"", "\"sometimes\"")),
            ("command", Str("[\"/bin/sh\",\"-c\",\"sleep 3600\"]", "[\"true\"]", "[]", "[\"/bin/sh\",null]", "[\"a\\u0000b\"]", "\"sleep\"", "[\"\"]")),
            ("privileged", Str("true", "false", "\"yes\"")),
            ("allowSyscalls", Str("[\"keyctl\"]", "[\"reboot\"]", "[\"fake\"]", "[null]")),
            ("kind", Str("\"vserver\"", "\"domain\"", "\"vm\"")),
            ("kernel", Str("\"default\"", "\"fzk\"")),
            ("vcpus", Str("1", "0", "1000")),
            ("diskBytes", Str("67108864", "1", "9223372036854775807")),
            ("autostart", Str("true", "false")),
        };
        var name = Gen.Frequency((6, Gen.Elements(Guests)), (1, JsonString(Texts).Select(t => t[1..^1])));
        var chosen = Gen.SubListOf(fields).SelectMany(list =>
            list.Count == 0
                ? Gen.Constant(Array.Empty<string>())
                : Gen.CollectToArray(list, f => f.Value.Select(v => $"\"{f.Name}\":{v}")));
        var mutation = Gen.Frequency(
            (4, Gen.Constant("")),
            (1, Member(1).Select(m => "," + m)),
            (1, Gen.Constant(",\"memory\":\"256M\"")),
            (1, Gen.Constant(",\"name\":\"fz2\"")));
        return Zip(name, chosen, mutation).Select(t =>
            "{" + string.Join(",", new[] { $"\"name\":{JsonSerializer.Serialize(t.Item1)}" }.Concat(t.Item2)) + t.Item3 + "}");
    }

    private static readonly Gen<string> DeepNesting = Gen.Choose(10, 3000).SelectMany(depth => Gen.Elements(
        "{\"name\":\"fz1\",\"command\":" + new string('[', depth) + new string(']', depth) + "}",
        new string('[', depth) + new string(']', depth),
        string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth)));

    private static readonly Gen<string> Broken = Str("", "{", "{\"name\":", "nul", "{\"name\":\"fz1\"} x", "{'name':'fz1'}", "\u00ff\u00fe", "{\"name\":\"\\ud800\"}",
        "{\"name\":\"fz1\",}", "[1,2]", "\"just a string\"", "42");

    public sealed record FuzzRequest(string Method, string Target, IReadOnlyList<string> Headers, byte[]? Body)
    {
        public override string ToString() =>
            $"{Method} {Target} [{string.Join(" | ", Headers.Select(h => h.Length > 80 ? h[..80] + "..." : h))}] {(Body is null ? "" : Shown(Encoding.UTF8.GetString(Body)))}";

        private static string Shown(string s) => (s.Length > 300 ? s[..300] + "..." : s).Replace("\0", "\\0", StringComparison.Ordinal);
    }

    private static string Concrete(string pattern, string name) =>
        pattern.Replace("{name}", name, StringComparison.Ordinal).Replace("{hostPort}", "47001", StringComparison.Ordinal)
            .Replace("{protocol}", "tcp", StringComparison.Ordinal);

    private static Gen<string> MethodFor(Route route) => Gen.Frequency(
        (8, Gen.Constant(route.Method ?? "GET")),
        (1, Str("GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "TRACE", "get")));

    private static FuzzRequest Json(string method, string target, string body, params string[] headers) =>
        new(method, target, ["Content-Type: application/json", .. headers], Encoding.UTF8.GetBytes(body));

    /// <summary>Bodies: a create as vsctl sends it (valid or mutated), objects of the contract's and unknown fields with
    /// values of every type and size, any JSON, deep nesting, broken JSON; at every route.</summary>
    private Gen<FuzzRequest> Bodies(IReadOnlyList<Route> routes) => Gen.Elements(routes.ToArray()).SelectMany(route =>
        Zip(MethodFor(route), Gen.Elements(Guests), Gen.Frequency(
                (4, GuestSpecs()),
                (4, Gen.Choose(0, 6).SelectMany(n => Gen.ArrayOf(Member(2), n)).Select(m => "{" + string.Join(",", m) + "}")),
                (1, JsonValue(3)),
                (1, DeepNesting),
                (1, Broken)),
            Str("", "", "", "?dry_run=true", "?dry_run=false"))
            .Select(t => Json(t.Item1, Concrete(route.Pattern, t.Item2) + (route.Pattern == "/v1/guests" ? t.Item4 : ""), t.Item3)));

    private static readonly Gen<string> QueryKeys = Str("force", "wait", "timeout", "dry_run", "name", "TIMEOUT", "forse", "x", "", "%00", "%1B%5B2J", "a%0Ab",
        "name[]", new string('k', 300));

    private static readonly Gen<string> QueryValues = Gen.OneOf(
        Str("true", "false", "True", "1", "0", "-1", "3", "86401", "2147483648", "99999999999999999999", "abc", "", "%0A", "%1B%5B2J", "%00", "1e3", "+5",
            " 5", "fz1", "ghost", "..%2F..%2Fetc", "%C3%A9"),
        Gen.Choose(100, 2000).Select(n => new string('v', n)));

    /// <summary>Query strings: known and unknown parameters, of every type, doubled, encoded; at every route.</summary>
    private static Gen<FuzzRequest> Queries(IReadOnlyList<Route> routes) => Gen.Elements(routes.ToArray()).SelectMany(route =>
        Zip(MethodFor(route), Gen.Elements(Guests),
                Gen.Choose(1, 4).SelectMany(n => Gen.ArrayOf(Zip(QueryKeys, QueryValues, Gen.Elements(true, true, false)), n)))
            .Select(t =>
            {
                var query = string.Join("&", t.Item3.Select(q => q.Item3 ? $"{q.Item1}={q.Item2}" : q.Item1));
                var target = Concrete(route.Pattern, t.Item2) + "?" + query;
                return t.Item1 is "POST" or "PATCH"
                    ? Json(t.Item1, target, route.Pattern == "/v1/guests" ? "{\"name\":\"fz3\"}" : "{}")
                    : new FuzzRequest(t.Item1, target, [], null);
            }));

    private static readonly Gen<string> Segments = Gen.OneOf(
        Gen.Elements(Guests),
        Str("..", "%2e%2e", "..%2F..%2Fetc", "a%2Fb", "%2Fetc%2Fpasswd", "%00", "a%00b", "Web1", "%C3%A9t%C3%A9", "web1%0A", "%1B%5B31m", "-a", "a-",
            "a.b", "a_b", "%20", "%", "%zz", "busybox", "default", ""),
        Gen.Choose(60, 9000).Select(n => new string('a', n)));

    /// <summary>Paths: crafted names, encodings, lengths and methods, at every route.</summary>
    private static Gen<FuzzRequest> Paths(IReadOnlyList<Route> routes) => Gen.Elements(routes.ToArray()).SelectMany(route =>
        Zip(MethodFor(route), Segments, Str("", "", "/", "/extra", "//", "/.."))
            .Select(t =>
            {
                var target = Concrete(route.Pattern, t.Item2) + t.Item3;
                return t.Item1 is "POST" or "PATCH" ? Json(t.Item1, target, "{}") : new FuzzRequest(t.Item1, target, [], null);
            }));

    private static readonly Gen<string[]> HeaderSets = Gen.OneOf(
        Str("X-Fz: a\u0001b", "X-Fz: \u00e9t\u00e9", "Bad Header: 1", ": empty", "X-Fz:", "Accept: */*", "Accept-Encoding: gzip, br",
                "Expect: 100-continue", "Connection: Upgrade", "Upgrade: websocket", "Host: second", "Content-Length: abc", "Content-Length: -1",
                "Content-Length: 2", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked", "X-HTTP-Method-Override: DELETE", "Cookie: a=b",
                "Authorization: Bearer x", "Content-Encoding: gzip", "X-Forwarded-For: 1.2.3.4")
            .Select(h => new[] { h }),
        Gen.Choose(10_000, 40_000).Select(n => new[] { "X-Big: " + new string('h', n) }),
        Gen.Choose(90, 150).Select(n => Enumerable.Range(0, n).Select(i => $"X-H{i}: {i}").ToArray()));

    private static readonly Gen<string> ContentTypes = Str("application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
        "application/json; charset=\"bogus\"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/*",
        "application/problem+json", "", "application/json; charset=latin1");

    /// <summary>Headers: control characters, non-ASCII, lying or doubled lengths, transfer codings, content types, too many
    /// and too large; at every route.</summary>
    private static Gen<FuzzRequest> Headers(IReadOnlyList<Route> routes) => Gen.Elements(routes.ToArray()).SelectMany(route =>
        Zip(MethodFor(route), HeaderSets, ContentTypes)
            .Select(t =>
            {
                var body = route.Pattern == "/v1/guests" ? "{\"name\":\"fz2\"}" : "{}";
                string[] headers = [.. t.Item2, .. t.Item3.Length > 0 ? new[] { $"Content-Type: {t.Item3}" } : []];
                return new FuzzRequest(t.Item1, Concrete(route.Pattern, "fz2"), headers, t.Item1 is "POST" or "PATCH" ? Encoding.UTF8.GetBytes(body) : null);
            }));

    // ---- sending ----

    private sealed record FuzzAnswer(int Status, string Head, string Body);

    private async Task<FuzzAnswer?> SendAsync(FuzzRequest request)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(_host.Socket), timeout.Token);
        var head = new StringBuilder($"{request.Method} {request.Target} HTTP/1.1\r\n");
        if (!request.Headers.Any(h => h.StartsWith("Host:", StringComparison.Ordinal))) head.Append("Host: vserverd\r\n");
        head.Append("Connection: close\r\n");
        foreach (var h in request.Headers) head.Append(h).Append("\r\n");
        var chunked = request.Headers.Any(h => h == "Transfer-Encoding: chunked");
        var lengthGiven = request.Headers.Any(h => h.StartsWith("Content-Length:", StringComparison.Ordinal));
        if (request.Body is not null && !chunked && !lengthGiven) head.Append($"Content-Length: {request.Body.Length}\r\n");
        head.Append("\r\n");
        byte[] bytes = [.. Encoding.Latin1.GetBytes(head.ToString()), .. request.Body ?? []];
        if (chunked && request.Body is not null) bytes = [.. Encoding.Latin1.GetBytes(head.ToString()), .. Encoding.ASCII.GetBytes($"{request.Body.Length:x}\r\n"), .. request.Body, .. "\r\n0\r\n\r\n"u8];
        try
        {
            // The socket stays open for writing (Kestrel takes a half-close for the client's end and answers nothing), so
            // no generated request claims more body than it sends.
            await socket.SendAsync(bytes, SocketFlags.None, timeout.Token);
        }
        catch (SocketException)
        {
            // The agent may answer and hang up before it read all of a request it refuses.
        }
        var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0) received.Write(buffer, 0, n);
        }
        catch (SocketException)
        {
        }
        catch (OperationCanceledException)
        {
            // No answer within the timeout: judged below as no answer, with what came.
            return null;
        }
        var raw = received.ToArray();
        // An interim answer (100 Continue to an Expect header) comes before the real one.
        while (raw.AsSpan().StartsWith("HTTP/1.1 1"u8) && raw.AsSpan().IndexOf("\r\n\r\n"u8) is var interim and >= 0) raw = raw[(interim + 4)..];
        var end = raw.AsSpan().IndexOf("\r\n\r\n"u8);
        if (end < 0) return null;
        var headText = Encoding.ASCII.GetString(raw, 0, end);
        if (headText.Length < 12 || !int.TryParse(headText.AsSpan(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out var status)) return null;
        var body = raw.AsSpan(end + 4);
        if (headText.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            var decoded = new MemoryStream();
            while (body.Length > 0)
            {
                var lineEnd = body.IndexOf("\r\n"u8);
                if (lineEnd < 0) break;
                var size = int.Parse(Encoding.ASCII.GetString(body[..lineEnd]).Split(';')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (size == 0) break;
                decoded.Write(body.Slice(lineEnd + 2, size));
                body = body[(lineEnd + 2 + size + 2)..];
            }
            return new FuzzAnswer(status, headText, Encoding.UTF8.GetString(decoded.ToArray()));
        }
        return new FuzzAnswer(status, headText, Encoding.UTF8.GetString(body));
    }

    /// <summary>What is wrong with an answer, or null: no answer, a 5xx, an error without its one-line JSON body.</summary>
    private static string? Problem(FuzzRequest request, FuzzAnswer? answer)
    {
        if (answer is null) return "no HTTP answer (the agent hung up or timed out)";
        if (answer.Status >= 500) return $"HTTP {answer.Status} {answer.Body}";
        if (answer.Status < 400 || request.Method == "HEAD") return null;
        try
        {
            using var json = JsonDocument.Parse(answer.Body);
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return $"HTTP {answer.Status}: the error body is no object: {answer.Body}";
            var error = root.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
            var code = root.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            if (string.IsNullOrWhiteSpace(error)) return $"HTTP {answer.Status}: empty error: {answer.Body}";
            if (string.IsNullOrEmpty(code)) return $"HTTP {answer.Status}: no code: {answer.Body}";
            if (error.Any(char.IsControl)) return $"HTTP {answer.Status}: a control character in the error: {answer.Body}";
            foreach (var internalName in new[] { "Vserver.Api.", "HybridHypervisor.", "System.", "Nullable<", "Microsoft." })
                if (error.Contains(internalName, StringComparison.Ordinal)) return $"HTTP {answer.Status}: an internal type name in the error: {error}";
            return null;
        }
        catch (JsonException)
        {
            return $"HTTP {answer.Status}: the body is no JSON error: '{answer.Body}'";
        }
    }

    /// <summary>One class of requests, for <see cref="ClassBudget"/>: each sent, its answer judged, the agent asked whether
    /// it still answers every 50. Names the guests a create may have made, for the checks after.</summary>
    private async Task<(int Attempts, int Refused, int Accepted, List<string> Problems)> RunClassAsync(string name, Gen<FuzzRequest> gen, ulong seed)
    {
        var problems = new List<string>();
        int attempts = 0, refused = 0, accepted = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var round = 0;
        while (clock.Elapsed < ClassBudget)
        {
            // Drawn in batches from the seed (and the round), so a run is the same on every machine.
            // A wait on a guest that runs is a long poll (it answers when the guest stops): not sent.
            var batch = gen.Where(r => !LongPoll().IsMatch(r.Target)).Sample(30, new Rnd(seed + (ulong)round++), 50);
            foreach (var request in batch)
            {
                if (clock.Elapsed >= ClassBudget) break;
                foreach (var guest in Guests) _host.Seen(guest);
                var answer = await SendAsync(request);
                attempts++;
                if (Problem(request, answer) is { } problem) problems.Add($"{name}: {request}\n  -> {problem}");
                else if (answer!.Status >= 400) refused++;
                else accepted++;
            }
            var host = await SendAsync(new FuzzRequest("GET", "/v1/host", [], null));
            if (host?.Status != 200) problems.Add($"{name}: the agent stopped answering GET /v1/host after {attempts} requests: {host}");
            if (problems.Count > 20) break;
        }
        return (attempts, refused, accepted, problems);
    }

    [Fact]
    public async Task Generated_requests_at_every_endpoint_are_answered_in_one_line_and_leave_nothing_behind()
    {
        var routes = Routes();
        routes.Count.ShouldBeGreaterThanOrEqualTo(30, $"routes read from the agent's source: {string.Join(", ", routes)}");
        var seed = Environment.GetEnvironmentVariable("VSERVER_PROPERTY_SEED") is { Length: > 0 } text ? ulong.Parse(text, CultureInfo.InvariantCulture) : DefaultSeed;
        var classes = new (string Name, Gen<FuzzRequest> Gen)[]
        {
            ("bodies", Bodies(routes)),
            ("query strings", Queries(routes)),
            ("paths", Paths(routes)),
            ("headers", Headers(routes)),
        };
        var problems = new List<string>();
        var report = new StringBuilder($"API fuzz (seed {seed}) over {routes.Count} routes:\n");
        foreach (var (name, gen) in classes)
        {
            var (attempts, refused, accepted, found) = await RunClassAsync(name, gen, seed);
            report.Append(CultureInfo.InvariantCulture, $"  {name}: {attempts} attempts, {refused} refused cleanly (4xx with a one-line error), {accepted} accepted, {found.Count} wrong\n");
            problems.AddRange(found);
        }
        TestContext.Current.TestOutputHelper?.WriteLine(report.ToString());
        Console.WriteLine(report.ToString());
        problems.ShouldBeEmpty($"{report}\n{string.Join("\n", problems.Take(20))}");

        // The agent still answers, and its log holds no stack trace and no raw control character.
        using var client = _host.Client();
        (await client.HostAsync(TestContext.Current.CancellationToken)).AgentPid.ShouldBe(_host.AgentPid);
        var log = _host.AgentLog;
        log.ShouldNotContain("   at ", Case.Sensitive, "a stack trace in the agent's log:\n" + log);
        log.ShouldNotContain("unhandled exception", Case.Insensitive, "the agent's log:\n" + log);
        log.Replace("\n", "", StringComparison.Ordinal).Replace("\r", "", StringComparison.Ordinal).Any(ch => char.IsControl(ch) && ch != '\t')
            .ShouldBeFalse("a raw control character in the agent's log:\n" + log);

        // Nothing left behind: what the requests made is destroyed through the API, and then nothing of it may remain.
        foreach (var guest in (await client.ListAsync(TestContext.Current.CancellationToken)).Guests)
            await client.DestroyAsync(guest.Name, force: true, TestContext.Current.CancellationToken);
        await _host.ShouldHaveNothingOrphanedAsync();
        foreach (var guest in Guests) _host.ShouldHaveNoTraceOf(guest);
        var check = await RunCheckAsync();
        check.Orphans.ShouldBeEmpty(string.Join("\n", check.Orphans.Select(o => $"{o.Kind} {o.What}: {o.Why}")));
        // (A generated DELETE /v1/images/busybox may well have removed the one image: that is no leftover.)
        Directory.EnumerateFileSystemEntries(Path.Combine(_host.Root, "images")).Select(Path.GetFileName).Where(n => n != "busybox")
            .ShouldBeEmpty("no image, and no image begun, but the one built");
        (Directory.Exists(Path.Combine(_host.Root, "kernels")) ? Directory.EnumerateFileSystemEntries(Path.Combine(_host.Root, "kernels")) : [])
            .ShouldBeEmpty("no kernel built or begun");
    }

    private async Task<HostCheckReport> RunCheckAsync()
    {
        var answer = await SendAsync(Json("POST", "/v1/host/check", "{\"repair\":false}"));
        answer.ShouldNotBeNull();
        answer.Status.ShouldBe(200, answer.Body);
        return JsonSerializer.Deserialize(answer.Body, ApiJson.Default.HostCheckReport)!;
    }

    [Fact]
    public void Every_route_is_read_from_the_agents_source()
    {
        var routes = Routes();
        routes.ShouldContain(new Route("POST", "/v1/guests"));
        routes.ShouldContain(new Route("PATCH", "/v1/guests/{name}/limits"));
        routes.ShouldContain(new Route("DELETE", "/v1/guests/{name}/ports/{hostPort}/{protocol}"));
        routes.ShouldContain(new Route(null, "/v1/guests/{name}/exec"));
        ContractFields.ShouldContain("memoryBytes");
        ContractFields.ShouldContain("minFreeBytes");
        ContractFields.ShouldContain("hostPort");
    }
}
