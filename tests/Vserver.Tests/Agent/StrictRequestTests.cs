using System.Text;
using System.Text.Json;
using HybridHypervisor;
using HybridHypervisor.Model;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using SharedMemoryAccounting;
using Shouldly;
using Vserver.Agent;
using Vserver.Api;
using Xunit;
using static Vserver.Api.ErrorCodes;

namespace Vserver.Tests.Agent;

/// <summary>
/// Nothing at the door is taken on trust: unknown and misspelled fields, NUL bytes, wrong types, query strings the
/// route does not have, and requests Kestrel itself refuses are all answered in one line naming what is wrong, with a
/// code (and the field), and nothing is made. Through the agent's real pipeline over a fleet of fakes.
/// </summary>
public sealed class StrictRequestTests : IAsyncLifetime
{
    private DoorAgent _agent = null!;

    public async ValueTask InitializeAsync() => _agent = await DoorAgent.StartAsync();

    public async ValueTask DisposeAsync() => await _agent.DisposeAsync();

    /// <summary>A route's pattern with a valid name where it has one, and a method for it.</summary>
    private static string Target(string pattern) =>
        pattern.Replace("{name}", "web1", StringComparison.Ordinal).Replace("{hostPort}", "8080", StringComparison.Ordinal)
            .Replace("{protocol}", "tcp", StringComparison.Ordinal);

    /// <summary>What a refusal at the door must be: the status, one line, the code and fields, no .NET type, and nothing made.</summary>
    private async Task<ErrorResponse> RefusedAsync(string method, string target, string? body, int status, string code, IReadOnlyList<string> before)
    {
        var calls = _agent.Vservers.Calls.Count;
        var answer = await _agent.SendAsync(method, target, body);
        var what = $"{method} {target} {body}: {answer}";
        answer.Status.ShouldBe(status, what);
        var error = answer.Error;
        error.Code.ShouldBe(code, what);
        error.Error.ShouldNotBeNullOrWhiteSpace(what);
        error.Error.ShouldNotContain('\n', customMessage: what);
        error.Error.ShouldNotContain('\0', customMessage: what);
        foreach (var internalName in new[] { "Vserver.", "HybridHypervisor.", "System.", "Nullable", "Microsoft." })
            error.Error.ShouldNotContain(internalName, Case.Sensitive, what);
        _agent.Snapshot().ShouldBe(before, what);
        _agent.Vservers.Calls.Count.ShouldBe(calls, what);
        return error;
    }

    [Fact]
    public async Task A_misspelled_field_is_refused_by_name_and_makes_no_guest()
    {
        var before = _agent.Snapshot();
        var error = await RefusedAsync("POST", "/v1/guests", """{"name":"j3","memory":"256M"}""", 400, InvalidValue, before);
        error.Error.ShouldBe("unknown field 'memory' in the request body; this request takes: name, image, memoryBytes, memoryMinBytes, cpus, pids, ipv4, dns, restart, command, privileged, allowSyscalls, kind, kernel, vcpus, diskBytes, autostart");
        error.Fields.ShouldBe(new Dictionary<string, string> { ["field"] = "memory", ["value"] = "", ["reason"] = Reasons.UnknownField });
        _agent.Fleet.List().ShouldBeEmpty();
    }

    [Fact]
    public async Task An_unknown_field_is_refused_at_every_route_that_takes_a_body()
    {
        var routes = _agent.Routes().Where(r => r.Body is not null).ToList();
        routes.Count.ShouldBeGreaterThanOrEqualTo(12, "every body route: create, limits, host, host check, failpoints, ports, save, promote, demote, restore, images, kernels");
        var before = _agent.Snapshot();
        foreach (var (method, pattern, _) in routes)
        {
            var error = await RefusedAsync(method, Target(pattern), """{"zzUnknown":1}""", 400, InvalidValue, before);
            error.Error.ShouldStartWith("unknown field 'zzUnknown' in the request body; this request takes", Case.Sensitive, pattern);
            error.Fields!["field"].ShouldBe("zzUnknown");
            error.Fields["reason"].ShouldBe(Reasons.UnknownField);
        }
    }

    [Theory]
    [InlineData("""{"name":"j4","image":"busybox","command":["/bin/sh","-c","echo\u0000hi"]}""", "command[2]", "contains a NUL byte")]
    [InlineData("""{"name":"j4\u0000"}""", "name", "contains a NUL byte")]
    [InlineData("""{"name":"j4","ipv4":"10.251.0.9\u0000"}""", "ipv4", "contains a NUL byte")]
    [InlineData("""{"name":"j4","command":["/bin/sh",null]}""", "command[1]", "cannot be null")]
    [InlineData("""{"name":null}""", "name", "cannot be null")]
    [InlineData("""{"image":"busybox"}""", "name", "is missing")]
    [InlineData("""{"name":"j4","name":"j5"}""", "name", "is given twice")]
    [InlineData("""{"name":"j4","Name":"j5"}""", "Name", "is given twice")]
    [InlineData("""{"name":"j4","memoryBytes":"256M"}""", "memoryBytes", "must be a whole number, not the string \"256M\"")]
    [InlineData("""{"name":"j4","memoryBytes":1e30}""", "memoryBytes", "must be a whole number from -9223372036854775808 to 9223372036854775807, not 1e30")]
    [InlineData("""{"name":"j4","pids":1.5}""", "pids", "must be a whole number from -2147483648 to 2147483647, not 1.5")]
    [InlineData("""{"name":"j4","cpus":"NaN"}""", "cpus", "must be a number, not the string \"NaN\"")]
    [InlineData("""{"name":"j4","privileged":"yes"}""", "privileged", "must be true or false")]
    [InlineData("""{"name":"j4","command":"/bin/sh"}""", "command", "must be an array of strings, not the string")]
    [InlineData("""{"name":"j4","command":[1]}""", "command[0]", "must be a string, not the number 1")]
    public async Task A_create_body_of_the_wrong_shape_is_refused_naming_the_field(string body, string field, string fragment)
    {
        var error = await RefusedAsync("POST", "/v1/guests", body, 400, InvalidValue, _agent.Snapshot());
        error.Fields!["field"].ShouldBe(field);
        error.Error.ShouldContain(fragment, Case.Sensitive);
        error.Error.ShouldContain($"'{field}'", Case.Sensitive);
    }

    [Theory]
    [InlineData("""{"name":""", "invalid JSON body at line 1, column 9")]
    [InlineData("""[{"name":"j4"}]""", "the request body must be a JSON object, not an array")]
    [InlineData("null", "the request body must be a JSON object, not null")]
    [InlineData("""{"name":"j4"} trailing""", "invalid JSON body at line 1")]
    [InlineData("""{"name":"\ud800"}""", "invalid JSON body: a string or field name holds an unpaired UTF-16 surrogate")]
    [InlineData("""{"\udc00":1}""", "invalid JSON body: a string or field name holds an unpaired UTF-16 surrogate")]
    public async Task A_body_that_is_no_json_object_is_refused_as_a_bad_request(string body, string fragment)
    {
        var error = await RefusedAsync("POST", "/v1/guests", body, 400, ErrorCodes.BadRequest, _agent.Snapshot());
        error.Error.ShouldStartWith(fragment, Case.Sensitive);
    }

    [Fact]
    public async Task Deep_nesting_is_refused_before_it_is_walked()
    {
        var body = "{\"name\":\"j4\",\"command\":" + new string('[', 5000) + new string(']', 5000) + "}";
        var error = await RefusedAsync("POST", "/v1/guests", body, 400, ErrorCodes.BadRequest, _agent.Snapshot());
        error.Error.ShouldContain("depth");
    }

    [Theory]
    [InlineData("""{"command":["sh","-c","echo\u0000x"]}""", "command", "holds a NUL byte")]
    [InlineData("""{"command":["env"],"env":{"A=B":"c"}}""", "env", "invalid environment variable name 'A=B'")]
    [InlineData("""{"command":["env"],"env":{"":"c"}}""", "env", "invalid environment variable name ''")]
    [InlineData("""{"command":["env"],"env":{"A":"b\u0000c"}}""", "env", "holds a NUL byte")]
    [InlineData("""{"command":["pwd"],"cwd":"tmp"}""", "cwd", "invalid working directory 'tmp'")]
    [InlineData("""{"command":["pwd"],"cwd":"/tmp\u0000/x"}""", "cwd", "invalid working directory '/tmp\\u0000/x'")]
    [InlineData("""{"command":[]}""", "command", "no command given")]
    public void An_exec_of_what_no_program_can_be_given_is_refused(string json, string field, string fragment)
    {
        // Exec's request arrives over a WebSocket; its shape is checked by RequestBody, its meaning by the validator.
        var request = JsonSerializer.Deserialize(json, AgentJson.TypeInfo<ExecRequest>())!;
        var error = GuestConfigValidator.ExecError(request.Command, request.Env, request.Cwd).ShouldNotBeNull();
        error.Field.ShouldBe(field);
        error.Message.ShouldContain(fragment, Case.Sensitive);
        error.Message.ShouldNotContain('\0');
        GuestConfigValidator.ExecError(["sh", "-c", "echo 'a\nb'"], new Dictionary<string, string> { ["A"] = "b=c" }, "/tmp").ShouldBeNull(
            "newlines in arguments and '=' in values are fine");
    }

    [Theory]
    [InlineData("""{"command":["sh"],"bogus":1}""", "unknown field 'bogus'")]
    [InlineData("""{"command":["sh"],"env":{"a":1}}""", "field 'env.a' must be a string")]
    [InlineData("""{"tty":true}""", "field 'command' is missing")]
    public void An_exec_request_of_the_wrong_shape_is_refused_as_a_body_would_be(string json, string fragment)
    {
        var error = RequestBody.Check(Encoding.UTF8.GetBytes(json), AgentJson.Options.GetTypeInfo(typeof(ExecRequest))).ShouldNotBeNull();
        error.Code.ShouldBe(InvalidValue);
        error.Message.ShouldContain(fragment, Case.Sensitive);
    }

    [Theory]
    [InlineData("POST", "/v1/guests/web1/stop?timeout=abc", "query parameter 'timeout' must be a whole number, not 'abc'", "timeout", Reasons.Malformed)]
    [InlineData("POST", "/v1/guests/web1/stop?timeout=1&timeout=2", "query parameter 'timeout' is given 2 times; give it once", "timeout", Reasons.Duplicate)]
    [InlineData("DELETE", "/v1/guests/web1?forse=true", "unknown query parameter 'forse'; DELETE /v1/guests/{name} takes force", "forse", Reasons.UnknownField)]
    [InlineData("DELETE", "/v1/guests/web1?force=yes", "query parameter 'force' must be true or false, not 'yes'", "force", Reasons.Malformed)]
    [InlineData("POST", "/v1/guests?dry_run=maybe", "query parameter 'dry_run' must be true or false, not 'maybe'", "dry_run", Reasons.Malformed)]
    [InlineData("GET", "/v1/host?x=%0A%1B%5B31m", "unknown query parameter 'x'; GET /v1/host takes none", "x", Reasons.UnknownField)]
    [InlineData("GET", "/v1/guests?%1B%5B2J=1", "unknown query parameter '\\u001b[2J'; GET /v1/guests takes none", "\\u001b[2J", Reasons.UnknownField)]
    public async Task A_query_string_the_route_does_not_take_is_refused_by_name(string method, string target, string message, string field, string reason)
    {
        var body = method == "POST" && target.StartsWith("/v1/guests?", StringComparison.Ordinal) ? """{"name":"j5"}""" : null;
        var error = await RefusedAsync(method, target, body, 400, InvalidValue, _agent.Snapshot());
        error.Error.ShouldBe(message);
        error.Fields!["field"].ShouldBe(field);
        error.Fields["reason"].ShouldBe(reason);
    }

    [Fact]
    public async Task A_well_formed_request_still_goes_through()
    {
        (await _agent.SendAsync("POST", "/v1/guests?dry_run=true", """{"name":"ok1","memoryBytes":268435456}""")).Status.ShouldBe(200);
        (await _agent.SendAsync("POST", "/v1/guests", """{"Name":"ok1","command":["/bin/sh","-c","echo 'a\nb'"]}""")).Status.ShouldBe(201);
        (await _agent.SendAsync("POST", "/v1/guests/ok1/start?wait=false")).Status.ShouldBe(200);
        (await _agent.SendAsync("POST", "/v1/guests/ok1/stop?timeout=3")).Status.ShouldBe(200);
        (await _agent.SendAsync("PATCH", "/v1/guests/ok1/limits", """{"cpus":0.01,"pids":10}""")).Status.ShouldBe(200);
        (await _agent.SendAsync("DELETE", "/v1/guests/ok1?force=true")).Status.ShouldBe(204);
    }

    // ---- Kestrel's own refusals ----

    [Fact]
    public async Task A_request_kestrel_refuses_itself_gets_the_agents_error_body()
    {
        var limits = new KestrelServerLimits();
        var cases = new (byte[] Request, int Status, string Fragment)[]
        {
            (Encoding.Latin1.GetBytes("GET /v1/guests/a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), 400, "malformed HTTP request"),
            (Encoding.Latin1.GetBytes("GET /v1/host HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), 400, "malformed HTTP request"),
            (Encoding.Latin1.GetBytes("GET /v1/host HTTP/1.1\r\n\r\n"), 400, "malformed HTTP request"),
            (Encoding.Latin1.GetBytes($"GET /v1/host?{new string('a', 9000)} HTTP/1.1\r\nHost: x\r\n\r\n"), 414, $"at most {limits.MaxRequestLineSize} bytes"),
            (Encoding.Latin1.GetBytes($"GET /v1/host HTTP/1.1\r\nHost: x\r\nX-Big: {new string('a', 40_000)}\r\n\r\n"), 431, "request headers too large"),
            (Encoding.Latin1.GetBytes("POST /v1/guests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 400, ""),
        };
        foreach (var (request, status, fragment) in cases)
        {
            var answer = await _agent.SendRawAsync(request);
            var what = $"{Encoding.Latin1.GetString(request)[..Math.Min(60, request.Length)]}: {answer}";
            answer.Status.ShouldBe(status, what);
            answer.Head.ShouldContain("Content-Type: application/json", Case.Insensitive, what);
            answer.Error.Code.ShouldBe(ErrorCodes.BadRequest, what);
            answer.Error.Error.ShouldContain(fragment, Case.Sensitive, what);
        }
        (await _agent.SendAsync("GET", "/v1/host")).Status.ShouldBe(200, "the agent goes on serving");
    }

    [Fact]
    public void Only_a_bare_refusal_is_rewritten()
    {
        var limits = new KestrelServerLimits();
        var bare = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\nDate: x\r\nServer: Kestrel\r\n\r\n"u8;
        var rewritten = Encoding.ASCII.GetString(KestrelRefusals.Rewrite(bare, limits).ShouldNotBeNull());
        rewritten.ShouldStartWith("HTTP/1.1 400 Bad Request\r\n");
        rewritten.ShouldContain("\"code\":\"bad_request\"");
        var body = rewritten[(rewritten.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        rewritten.ShouldContain($"Content-Length: {Encoding.UTF8.GetByteCount(body)}\r\n");
        // The agent's own answers always carry a body or are not errors: left as they are.
        KestrelRefusals.Rewrite("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8, limits).ShouldBeNull();
        KestrelRefusals.Rewrite("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"error\":\"x\"}"u8, limits).ShouldBeNull();
        KestrelRefusals.Rewrite("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"u8, limits).ShouldBeNull("no Connection: close: not Kestrel's refusal");
        KestrelRefusals.Rewrite("\u0082\u0005HTTP/1.1 400"u8, limits).ShouldBeNull();
    }

    // ---- messages and the log ----

    [Fact]
    public async Task Names_and_paths_from_a_request_are_escaped_in_messages()
    {
        var before = _agent.Snapshot();
        var error = await RefusedAsync("GET", "/v1/guests/a%1B%5B31mred%0Ax", null, 400, InvalidValue, before);
        error.Error.ShouldContain(@"a\u001b[31mred\u000ax");
        var missing = await _agent.SendAsync("GET", "/v1/nothing%1B%5B2J%0A");
        missing.Status.ShouldBe(404);
        missing.Error.Error.ShouldBe(@"no such API endpoint: GET /v1/nothing\u001b[2J\u000a (see the routes under /v1)");
    }

    [Fact]
    public void The_log_and_messages_never_carry_raw_control_characters()
    {
        ApiErrors.LogLine("guest a\nb\u001b[31m\u202e").ShouldBe(@"guest a\u000ab\u001b[31m\u202e");
        ApiErrors.OneLine("mkfs failed:\nline two\u001b[2J").ShouldBe(@"mkfs failed: line two\u001b[2J");
        ApiErrors.Quote(new string('x', 100)).ShouldBe(new string('x', 64) + "... (100 characters)");
        var failure = ApiErrors.Failure(new InvalidOperationException("bad\nthing"));
        failure.ShouldStartWith(@"InvalidOperationException: bad\u000athing");
        failure.ShouldNotContain('\n');
    }

    // ---- ranges ----

    [Theory]
    [InlineData("""{"minFreeBytes":9223372036854775807}""", PoolSettingError.MinFree, "is out of range: give 0 to the pool's capacity of")]
    [InlineData("""{"minFreeBytes":109951162777600}""", PoolSettingError.MinFree, "(the pool never has more free)")]
    [InlineData("""{"minFreeBytes":-1}""", PoolSettingError.MinFree, "is out of range")]
    [InlineData("""{"reserveBytes":9223372036854775807}""", PoolSettingError.Reserve, "is out of range: give 0 to below the host's")]
    [InlineData("""{"overcommit":1000}""", PoolSettingError.Overcommit, "overcommit 1000 is out of range: give a ratio from 1")]
    public async Task Pool_settings_out_of_range_are_refused_with_the_range(string body, string field, string fragment)
    {
        var before = _agent.Snapshot();
        var error = await RefusedAsync("PATCH", "/v1/host", body, 400, InvalidValue, before);
        error.Error.ShouldContain(fragment, Case.Sensitive);
        error.Fields!["field"].ShouldBe(field);
        error.Fields["reason"].ShouldBe(Reasons.OutOfRange);
        error.Fields.ContainsKey("minimum").ShouldBeTrue();
        error.Fields.ContainsKey("maximum").ShouldBeTrue();
        _agent.Fleet.PoolInfo().Pool.MinFree.ShouldBeLessThan(HostMemory.TotalBytes, "the old settings hold");
    }

    [Fact]
    public void Min_free_may_be_the_capacity_and_no_more()
    {
        var total = 23L << 30;
        var capacity = new PoolSettings().For(total).Capacity;
        new PoolSettings { MinFreeBytes = capacity }.Error(total).ShouldBeNull();
        var error = new PoolSettings { MinFreeBytes = capacity + 1 }.Error(total).ShouldNotBeNull();
        error.Maximum.ShouldBe(capacity);
        error.Minimum.ShouldBe(0);
    }

    [Theory]
    [InlineData("""{"name":"c1","cpus":0.0001}""", "cpus", "invalid cpus 0.0001: give 0.01 to this host's")]
    [InlineData("""{"name":"c1","cpus":1e300}""", "cpus", "invalid cpus 1E+300: give 0.01 to")]
    [InlineData("""{"name":"c1","memoryBytes":9223372036854775807}""", "memoryBytes", "is more than this host has: give 4M to")]
    [InlineData("""{"name":"c1","memoryMinBytes":9223372036854775807}""", "memoryMinBytes", "is more than this host has")]
    public async Task Limits_out_of_range_are_refused_with_the_range_at_create_and_dry_run(string body, string field, string fragment)
    {
        foreach (var target in new[] { "/v1/guests", "/v1/guests?dry_run=true" })
        {
            var error = await RefusedAsync("POST", target, body, 400, InvalidValue, _agent.Snapshot());
            error.Error.ShouldContain(fragment, Case.Sensitive);
            error.Fields!["field"].ShouldBe(field);
            error.Fields.ContainsKey("maximum").ShouldBeTrue();
        }
    }

    [Theory]
    [InlineData("/v1/guests/web1/stop?timeout=2147483647", "invalid timeout 2147483647: give 0 to 86400 seconds")]
    [InlineData("/v1/guests/web1/stop?timeout=-1", "invalid timeout -1: give 0 to 86400 seconds")]
    public async Task Timeouts_out_of_range_are_refused_with_the_range(string target, string message)
    {
        var error = await RefusedAsync("POST", target, null, 400, InvalidValue, _agent.Snapshot());
        error.Error.ShouldBe(message);
        error.Fields!["maximum"].ShouldBe("86400");
    }

    [Fact]
    public async Task Set_refuses_a_cpu_share_below_what_a_cgroup_enforces()
    {
        (await _agent.SendAsync("POST", "/v1/guests", """{"name":"s1"}""")).Status.ShouldBe(201);
        var error = await RefusedAsync("PATCH", "/v1/guests/s1/limits", """{"cpus":0.0001}""", 400, InvalidValue, _agent.Snapshot());
        error.Error.ShouldContain("give 0.01 to");
        error.Fields!["minimum"].ShouldBe("0.01");
        _agent.Fleet.Get("s1").Config!.Limits.Cpus.ShouldBeNull("the refused value was not kept");
    }

    [Fact]
    public async Task No_refusal_at_the_door_writes_a_stack_trace_or_a_raw_name_to_the_log()
    {
        await _agent.SendAsync("POST", "/v1/guests", """{"name":"j\u001b[31m"}""");
        await _agent.SendAsync("POST", "/v1/guests/web1/stop?timeout=abc");
        await _agent.SendAsync("POST", "/v1/guests", """{"name":"j6","memory":1}""");
        foreach (var line in _agent.Log)
        {
            line.ShouldNotContain("   at ");
            line.ShouldNotContain('\u001b');
        }
    }
}
