using System.Text.Json.Nodes;
using HybridHypervisor.Domains.Qmp;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Qmp;

/// <summary>QmpClient's protocol logic against a scripted fake QMP peer on a unix socket (no QEMU).</summary>
public sealed class QmpClientTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(QmpClient Client, FakeQmpConnection Peer)> ConnectAsync(FakeQmpServer server)
    {
        var connect = QmpClient.ConnectAsync(server.SocketPath, Timeout, Ct);
        var peer = await server.AcceptAndNegotiateAsync();
        return (await connect, peer);
    }

    [Fact]
    public async Task The_handshake_reads_the_greeting_and_negotiates_capabilities()
    {
        await using var server = FakeQmpServer.Start();
        var connect = QmpClient.ConnectAsync(server.SocketPath, Timeout, Ct);
        using var peer = await server.AcceptAsync();
        await peer.SendAsync(FakeQmpServer.Greeting);
        var caps = await peer.ReadCommandAsync();
        caps["execute"]!.GetValue<string>().ShouldBe("qmp_capabilities");
        caps.ContainsKey("arguments").ShouldBeFalse();
        caps["id"].ShouldNotBeNull();
        connect.IsCompleted.ShouldBeFalse(); // not connected until QEMU accepted the capabilities
        await peer.ReplyAsync(caps, new JsonObject());

        await using var client = await connect;
        client.Version.ShouldBe(new QmpVersion(7, 2, 22, "Fake 7.2"));
        client.Version.ToString().ShouldBe("7.2.22");
        client.Version.AtLeast(7, 2).ShouldBeTrue();
        client.Version.AtLeast(8, 2).ShouldBeFalse();
        client.OfferedCapabilities.ShouldBe(["oob"]);
        client.IsConnected.ShouldBeTrue();
        client.CloseReason.ShouldBeNull();
    }

    [Fact]
    public async Task Connect_retries_until_the_socket_appears()
    {
        var dir = FakeQmpServer.NewTempDir();
        var connect = QmpClient.ConnectAsync(Path.Combine(dir, "qmp.sock"), Timeout, Ct);
        await Task.Delay(150, Ct);
        connect.IsCompleted.ShouldBeFalse();
        await using var server = FakeQmpServer.Start(dir);
        using var peer = await server.AcceptAndNegotiateAsync();
        await using var client = await connect;
        client.IsConnected.ShouldBeTrue();
    }

    [Fact]
    public async Task Connect_gives_up_with_a_timeout_naming_the_socket()
    {
        var dir = FakeQmpServer.NewTempDir();
        try
        {
            var path = Path.Combine(dir, "never.sock");
            var e = await Should.ThrowAsync<TimeoutException>(() => QmpClient.ConnectAsync(path, TimeSpan.FromMilliseconds(200), Ct));
            e.Message.ShouldContain(path);
            e.Message.ShouldContain("did not accept a connection");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_peer_that_never_greets_times_out()
    {
        await using var server = FakeQmpServer.Start();
        var connect = QmpClient.ConnectAsync(server.SocketPath, TimeSpan.FromMilliseconds(300), Ct);
        using var peer = await server.AcceptAsync();
        var e = await Should.ThrowAsync<TimeoutException>(() => connect);
        e.Message.ShouldContain("no QMP greeting");
    }

    [Fact]
    public async Task A_peer_that_is_not_QMP_is_rejected()
    {
        await using var server = FakeQmpServer.Start();
        var connect = QmpClient.ConnectAsync(server.SocketPath, Timeout, Ct);
        using var peer = await server.AcceptAsync();
        await peer.SendAsync("""{"hello": "world"}""");
        var e = await Should.ThrowAsync<QmpProtocolException>(() => connect);
        e.Message.ShouldContain("expected a QMP greeting");
        e.Message.ShouldContain("hello");
    }

    [Fact]
    public async Task Replies_out_of_order_reach_their_own_commands()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var a = client.ExecuteAsync("cmd-a", null, Ct);
        var b = client.ExecuteAsync("cmd-b", new JsonObject { ["x"] = 1 }, Ct);
        var c = client.ExecuteAsync("cmd-c", null, Ct);
        var received = new Dictionary<string, JsonObject>();
        for (var i = 0; i < 3; i++)
        {
            var cmd = await peer.ReadCommandAsync();
            received[cmd["execute"]!.GetValue<string>()] = cmd;
        }
        received.Values.Select(v => v["id"]!.ToJsonString()).Distinct().Count().ShouldBe(3);
        received["cmd-b"]["arguments"]!["x"]!.GetValue<int>().ShouldBe(1);

        await peer.ReplyAsync(received["cmd-c"], "C");
        await peer.ReplyAsync(received["cmd-a"], new JsonObject { ["v"] = "A" });
        (await c)!.GetValue<string>().ShouldBe("C");
        (await a)!["v"]!.GetValue<string>().ShouldBe("A");
        b.IsCompleted.ShouldBeFalse();
        await peer.ReplyAsync(received["cmd-b"], new JsonArray(1, 2));
        var bv = (await b)!.AsArray();
        bv.Count.ShouldBe(2);
        bv.Parent.ShouldBeNull(); // detached from the reply document
    }

    [Fact]
    public async Task Many_commands_from_many_threads_are_each_answered_correctly()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;
        const int n = 200;

        var calls = Enumerable.Range(0, n).Select(i => Task.Run(async () =>
        {
            var r = await client.ExecuteAsync("echo", new JsonObject { ["n"] = i }, Ct);
            return (i, r!.GetValue<int>());
        }, Ct)).ToArray();

        var commands = new List<JsonObject>();
        for (var i = 0; i < n; i++) commands.Add(await peer.ReadCommandAsync());
        commands.Select(c => c["id"]!.ToJsonString()).Distinct().Count().ShouldBe(n);
        foreach (var cmd in commands.OrderBy(_ => Random.Shared.Next()))
            await peer.ReplyAsync(cmd, cmd["arguments"]!["n"]!.GetValue<int>());

        foreach (var (asked, answered) in await Task.WhenAll(calls)) answered.ShouldBe(asked);
    }

    [Fact]
    public async Task An_error_reply_throws_QmpException_with_class_and_description()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var status = client.QueryStatusAsync(Ct);
        var cmd = await peer.ReadCommandAsync();
        await peer.ReplyErrorAsync(cmd, "GenericError", "something broke");
        var e = await Should.ThrowAsync<QmpException>(() => status);
        e.Message.ShouldBe("QMP query-status failed: GenericError: something broke");
        e.Command.ShouldBe("query-status");
        e.ErrorClass.ShouldBe("GenericError");
        e.Description.ShouldBe("something broke");
        client.IsConnected.ShouldBeTrue(); // an error reply is not a broken connection
    }

    [Fact]
    public async Task An_event_between_replies_goes_to_the_event_channel_in_order()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var stop = client.StopAsync(Ct);
        var cmd = await peer.ReadCommandAsync();
        await peer.SendEventAsync("STOP");
        await peer.ReplyAsync(cmd, new JsonObject());
        await stop;
        // QEMU sent STOP before the reply, so it is already readable when the command completes.
        client.Events.TryRead(out var ev).ShouldBeTrue();
        ev!.Name.ShouldBe(QmpEventNames.Stop);
        ev.Data.ShouldBeNull();
        ev.Timestamp.ShouldBe(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000).AddTicks(1_234_560));

        var status = client.QueryStatusAsync(Ct);
        cmd = await peer.ReadCommandAsync();
        await peer.SendEventAsync("SHUTDOWN", new JsonObject { ["guest"] = true, ["reason"] = "guest-shutdown" });
        await peer.SendEventAsync("BALLOON_CHANGE", new JsonObject { ["actual"] = 1L << 30 }, seconds: -1, micros: -1);
        await peer.ReplyAsync(cmd, new JsonObject { ["status"] = "shutdown", ["singlestep"] = false, ["running"] = false });
        (await status).ShouldBe(new QmpStatus(QmpRunState.Shutdown, "shutdown", false));

        var shutdown = await client.Events.ReadAsync(Ct);
        shutdown.Name.ShouldBe("SHUTDOWN");
        shutdown.DataString("reason").ShouldBe("guest-shutdown");
        shutdown.Data!["guest"]!.GetValue<bool>().ShouldBeTrue();
        var balloon = await client.Events.ReadAsync(Ct);
        balloon.Name.ShouldBe("BALLOON_CHANGE");
        balloon.Data!["actual"]!.GetValue<long>().ShouldBe(1L << 30);
        balloon.Timestamp.ShouldBe(DateTimeOffset.UnixEpoch); // QEMU's -1/-1 "no clock"
    }

    [Fact]
    public async Task Events_arrive_without_any_command_in_flight()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        await peer.SendEventAsync("GUEST_PANICKED", new JsonObject { ["action"] = "pause" });
        var ev = await client.Events.ReadAsync(Ct).AsTask().WaitAsync(Timeout, Ct);
        ev.Name.ShouldBe(QmpEventNames.GuestPanicked);
        ev.DataString("action").ShouldBe("pause");
    }

    [Fact]
    public async Task Closing_mid_command_fails_it_and_completes_the_event_stream()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;

        var status = client.QueryStatusAsync(Ct);
        var other = client.ExecuteAsync("query-balloon", null, Ct);
        await peer.ReadCommandAsync();
        await peer.ReadCommandAsync();
        await peer.SendEventAsync("RESET", new JsonObject { ["guest"] = false, ["reason"] = "host-qmp-system-reset" });
        await peer.SendRawAsync("""{"return": {}, "id": 99""" ); // half a message, then gone
        peer.Dispose();

        var e = await Should.ThrowAsync<QmpConnectionClosedException>(() => status);
        e.Message.ShouldStartWith("QEMU's QMP connection closed (QEMU exited?");
        e.Message.ShouldEndWith("while waiting for query-status");
        e.Command.ShouldBe("query-status");
        (await Should.ThrowAsync<QmpConnectionClosedException>(() => other)).Message.ShouldContain("query-balloon");

        // The event sent before the close is still delivered; then the stream ends.
        var events = new List<QmpEvent>();
        await foreach (var ev in client.Events.ReadAllAsync(Ct)) events.Add(ev);
        events.Select(x => x.Name).ShouldBe(["RESET"]);
        await client.Completion.WaitAsync(Timeout, Ct);
        client.IsConnected.ShouldBeFalse();
        client.CloseReason.ShouldBe("end of stream");

        var late = await Should.ThrowAsync<QmpConnectionClosedException>(() => client.ContAsync(Ct));
        late.Message.ShouldContain("cannot send cont");
    }

    [Fact]
    public async Task A_line_that_is_not_JSON_closes_the_connection_as_a_protocol_violation()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var pending = client.ExecuteAsync("query-status", null, Ct);
        await peer.ReadCommandAsync();
        await peer.SendAsync("this is not json");
        var e = await Should.ThrowAsync<QmpConnectionClosedException>(() => pending);
        e.Message.ShouldContain("not JSON");
        e.Message.ShouldContain("this is not json");
        await client.Completion.WaitAsync(Timeout, Ct);
    }

    [Fact]
    public async Task Large_split_and_coalesced_messages_are_framed_correctly()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var big = client.ExecuteAsync("query-qmp-schema", null, Ct);
        var small = client.ExecuteAsync("query-status", null, Ct);
        var bigCmd = await peer.ReadCommandAsync();
        var smallCmd = await peer.ReadCommandAsync();

        var payload = new string('x', 3 * 1024 * 1024);
        var bigReply = new JsonObject { ["return"] = payload, ["id"] = bigCmd["id"]!.DeepClone() }.ToJsonString();
        var smallReply = new JsonObject { ["return"] = "ok", ["id"] = smallCmd["id"]!.DeepClone() }.ToJsonString();
        // The big reply in pieces, its tail sharing one write with an event and the next reply, plus blank lines.
        await peer.SendRawAsync(bigReply[..1000]);
        await peer.SendRawAsync(bigReply[1000..^10]);
        await peer.SendRawAsync(bigReply[^10..] + "\r\n\r\n" + """{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}""" + "\r\n" + smallReply + "\r\n");

        (await big)!.GetValue<string>().Length.ShouldBe(payload.Length);
        (await small)!.GetValue<string>().ShouldBe("ok");
        (await client.Events.ReadAsync(Ct)).Name.ShouldBe("RESUME");
    }

    [Fact]
    public async Task A_cancelled_command_is_abandoned_and_its_late_reply_ignored()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var slow = client.ExecuteAsync("slow", null, cts.Token);
        var slowCmd = await peer.ReadCommandAsync();
        await cts.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => slow);

        var next = client.ExecuteAsync("next", null, Ct);
        var nextCmd = await peer.ReadCommandAsync();
        await peer.ReplyAsync(slowCmd, "late");
        await peer.ReplyAsync(nextCmd, "fresh");
        (await next)!.GetValue<string>().ShouldBe("fresh");
        client.IsConnected.ShouldBeTrue();
    }

    [Fact]
    public async Task Disposing_fails_pending_commands_and_completes_events()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        using var __ = peer;

        var pending = client.QueryStatusAsync(Ct);
        await peer.ReadCommandAsync();
        await client.DisposeAsync();
        var e = await Should.ThrowAsync<QmpConnectionClosedException>(() => pending);
        e.Message.ShouldBe("the QMP client was disposed while waiting for query-status");
        await client.Events.Completion.WaitAsync(Timeout, Ct);
        client.CloseReason.ShouldBe("disposed");
        (await peer.ReadLineAsync()).ShouldBeNull(); // the socket was closed
        await client.DisposeAsync(); // twice is fine
        await Should.ThrowAsync<QmpConnectionClosedException>(() => client.QuitAsync(Ct)); // disposal is not a successful quit
    }

    [Fact]
    public async Task Quit_counts_a_close_before_the_reply_as_success()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;

        var quit = client.QuitAsync(Ct);
        (await peer.ReadCommandAsync())["execute"]!.GetValue<string>().ShouldBe("quit");
        await peer.SendEventAsync("SHUTDOWN", new JsonObject { ["guest"] = false, ["reason"] = "host-qmp-quit" });
        peer.Dispose();
        await quit;
        await client.Completion.WaitAsync(Timeout, Ct);
        (await client.Events.ReadAsync(Ct)).DataString("reason").ShouldBe("host-qmp-quit");
    }

    [Fact]
    public async Task Typed_helpers_send_QEMUs_command_names_and_arguments_and_parse_replies()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        async Task<JsonObject> Expect(Task call, string execute, JsonNode? reply)
        {
            var cmd = await peer.ReadCommandAsync();
            cmd["execute"]!.GetValue<string>().ShouldBe(execute);
            await peer.ReplyAsync(cmd, reply);
            await call;
            return cmd;
        }

        await Expect(client.StopAsync(Ct), "stop", new JsonObject());
        await Expect(client.ContAsync(Ct), "cont", new JsonObject());
        await Expect(client.SystemPowerdownAsync(Ct), "system_powerdown", new JsonObject());
        await Expect(client.SystemResetAsync(Ct), "system_reset", new JsonObject());
        await Expect(client.MigrateCancelAsync(Ct), "migrate_cancel", new JsonObject());

        var balloon = await Expect(client.BalloonAsync(512L << 20, Ct), "balloon", new JsonObject());
        balloon["arguments"]!["value"]!.GetValue<long>().ShouldBe(512L << 20);

        var qb = client.QueryBalloonAsync(Ct);
        await Expect(qb, "query-balloon", new JsonObject { ["actual"] = 1L << 31 });
        (await qb).ShouldBe(1L << 31);

        var migrate = await Expect(client.MigrateAsync("exec:cat > '/x y'", Ct), "migrate", new JsonObject());
        migrate["arguments"]!["uri"]!.GetValue<string>().ShouldBe("exec:cat > '/x y'");

        var setp = await Expect(client.MigrateSetParametersAsync(maxBandwidthBytesPerSecond: 10L << 30, ct: Ct), "migrate-set-parameters", new JsonObject());
        setp["arguments"]!.ToJsonString().ShouldBe("""{"max-bandwidth":10737418240}""");

        var qm = client.QueryMigrateAsync(Ct);
        await Expect(qm, "query-migrate", new JsonObject
        {
            ["status"] = "active", ["total-time"] = 12,
            ["ram"] = new JsonObject { ["total"] = 1000, ["transferred"] = 400, ["remaining"] = 600 },
        });
        var info = await qm;
        (info.Status, info.TotalBytes, info.TransferredBytes, info.RemainingBytes, info.TotalTimeMs).ShouldBe(("active", 1000L, 400L, 600L, 12L));
        info.IsFinished.ShouldBeFalse();

        var none = client.QueryMigrateAsync(Ct);
        await Expect(none, "query-migrate", new JsonObject());
        (await none).Status.ShouldBeNull();

        var failed = client.QueryMigrateAsync(Ct);
        await Expect(failed, "query-migrate", new JsonObject { ["status"] = "failed", ["error-desc"] = "disk full" });
        (await failed).ShouldSatisfyAllConditions(f => f.IsFailed.ShouldBeTrue(), f => f.ErrorDescription.ShouldBe("disk full"));

        var hmp = client.HumanMonitorCommandAsync("info status", Ct);
        var hmpCmd = await Expect(hmp, "human-monitor-command", "VM status: paused\r\n");
        hmpCmd["arguments"]!["command-line"]!.GetValue<string>().ShouldBe("info status");
        (await hmp).ShouldBe("VM status: paused\r\n");

        var st = client.QueryStatusAsync(Ct);
        await Expect(st, "query-status", new JsonObject { ["status"] = "some-future-state", ["running"] = true });
        (await st).ShouldBe(new QmpStatus(QmpRunState.Unknown, "some-future-state", true));
    }

    [Fact]
    public async Task Arguments_are_serialized_not_adopted()
    {
        await using var server = FakeQmpServer.Start();
        var (client, peer) = await ConnectAsync(server);
        await using var _ = client;
        using var __ = peer;

        var args = new JsonObject { ["value"] = 5 };
        var one = client.ExecuteAsync("a", args, Ct);
        var two = client.ExecuteAsync("b", args, Ct); // the same object again: still parentless
        args.Parent.ShouldBeNull();
        var c1 = await peer.ReadCommandAsync();
        var c2 = await peer.ReadCommandAsync();
        c1["arguments"]!.ToJsonString().ShouldBe("""{"value":5}""");
        c2["arguments"]!.ToJsonString().ShouldBe("""{"value":5}""");
        await peer.ReplyAsync(c1, null);
        await peer.ReplyAsync(c2, null);
        await one;
        await two;
    }

    [Theory]
    [InlineData("/var/lib/vserver/d1/state", "exec:cat > '/var/lib/vserver/d1/state'", "exec:cat '/var/lib/vserver/d1/state'")]
    [InlineData("/tmp/it's $(rm -rf) `x`", "exec:cat > '/tmp/it'\"'\"'s $(rm -rf) `x`'", "exec:cat '/tmp/it'\"'\"'s $(rm -rf) `x`'")]
    public void Migration_file_uris_quote_the_path_for_the_shell(string path, string to, string from)
    {
        QmpMigrationUri.ToFile(path).ShouldBe(to);
        QmpMigrationUri.FromFile(path).ShouldBe(from);
    }

    [Fact]
    public void Migration_file_uris_need_an_absolute_path() =>
        Should.Throw<ArgumentException>(() => QmpMigrationUri.ToFile("relative/state"));
}
