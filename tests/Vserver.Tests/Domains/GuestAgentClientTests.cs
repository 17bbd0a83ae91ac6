using System.Net.Sockets;
using HybridHypervisor.Domains.GuestAgent;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Domains;

/// <summary>GuestAgentClient against a scripted fake guest agent on a unix socket (no QEMU, no guest).</summary>
public sealed class GuestAgentClientTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string _dir = Directory.CreateTempSubdirectory("vsga-").FullName;
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public GuestAgentClientTests()
    {
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(1);
    }

    private string SocketPath => Path.Combine(_dir, "agent.sock");

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        Directory.Delete(_dir, recursive: true);
        await Task.CompletedTask;
    }

    private async Task<(GuestAgentClient Client, FakeGuest Guest)> ConnectAsync()
    {
        var accept = _listener.AcceptAsync(Ct).AsTask();
        var client = await GuestAgentClient.ConnectAsync(SocketPath, Ct);
        return (client, new FakeGuest(await accept));
    }

    [Fact]
    public async Task WaitReady_pings_until_hello_and_returns_the_kernel_release()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var ready = client.WaitReadyAsync(TimeSpan.FromSeconds(5), Ct);
        // Not up yet: the first pings go unanswered, as while the guest boots.
        (await guest.ReadAsync()).Type.ShouldBe(GuestFrameType.Ping);
        (await guest.ReadAsync()).Type.ShouldBe(GuestFrameType.Ping);
        ready.IsCompleted.ShouldBeFalse();
        await guest.HelloAsync(1, "6.1.0-test");
        (await ready).ShouldBe("6.1.0-test");
        client.LastHello!.Instance.ShouldBe(1ul);
    }

    [Fact]
    public async Task WaitReady_times_out_with_a_message_that_says_what_did_not_answer()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var e = await Should.ThrowAsync<TimeoutException>(() => client.WaitReadyAsync(TimeSpan.FromSeconds(1), Ct));
        e.Message.ShouldContain("the guest agent did not answer within 1 s");
        e.Message.ShouldContain(GuestAgentProtocol.PortName);
    }

    [Fact]
    public async Task Error_becomes_an_exception_with_the_guests_message_and_code()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var start = client.StartAsync(new GuestCommand(["nope"]), Ct);
        var open = await guest.ReadAsync();
        open.Type.ShouldBe(GuestFrameType.Open);
        GuestAgentProtocol.DecodeOpen(open.Payload).Argv.ShouldBe(["nope"]);
        await guest.SendAsync(GuestFrameType.Error, open.Session, [127, 0, 0, 0, .. "exec: nope: No such file or directory"u8]);
        var e = await Should.ThrowAsync<GuestCommandException>(() => start);
        (e.ExitCode, e.Message).ShouldBe((127, "exec: nope: No such file or directory"));
    }

    [Fact]
    public async Task Output_arrives_per_stream_is_acked_and_ends_before_the_exit_code()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var start = client.StartAsync(new GuestCommand(["sh"]), Ct);
        var session = (await guest.ReadAsync()).Session;
        await guest.SendAsync(GuestFrameType.Started, session, [42, 0, 0, 0]);
        using var process = (GuestAgentProcess)await start;
        process.GuestPid.ShouldBe(42);
        await guest.SendAsync(GuestFrameType.Stdout, session, "out"u8.ToArray());
        var buffer = new byte[16];
        (await process.Stdout.ReadAsync(buffer, Ct)).ShouldBe(3);
        // The reader drained its pipe: the guest gets its window back at once.
        var ack = await guest.ReadAsync();
        (ack.Type, ack.Session, GuestAgentProtocol.DecodeU32(ack.Type, ack.Payload)).ShouldBe((GuestFrameType.Ack, session, 3u));

        await guest.SendAsync(GuestFrameType.Stderr, session, "err"u8.ToArray());
        await guest.SendAsync(GuestFrameType.Stdout, session, "more"u8.ToArray());
        await guest.SendAsync(GuestFrameType.Exit, session, [7, 0, 0, 0]);
        (await new StreamReader(process.Stdout).ReadToEndAsync(Ct)).ShouldBe("more");
        (await new StreamReader(process.Stderr!).ReadToEndAsync(Ct)).ShouldBe("err");
        (await process.ExitCode).ShouldBe(7);
    }

    [Fact]
    public async Task Stdin_waits_for_the_guests_window_and_dispose_sends_eof()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var start = client.StartAsync(new GuestCommand(["cat"]), Ct);
        var session = (await guest.ReadAsync()).Session;
        await guest.SendAsync(GuestFrameType.Started, session, [1, 0, 0, 0]);
        using var process = await start;

        var write = process.Stdin.WriteAsync(new byte[GuestAgentProtocol.Window + 10], Ct).AsTask();
        var received = 0;
        while (received < GuestAgentProtocol.Window) received += (await guest.ReadAsync()).Payload.Length;
        received.ShouldBe(GuestAgentProtocol.Window);
        await Task.Delay(200, Ct);
        write.IsCompleted.ShouldBeFalse("a full window must stop the writer until the guest acknowledges");
        await guest.SendAsync(GuestFrameType.InputAck, session, BitConverter.GetBytes(100));
        await write;
        (await guest.ReadAsync()).Payload.Length.ShouldBe(10);
        await process.Stdin.DisposeAsync();
        var eof = await guest.ReadAsync();
        (eof.Type, eof.Payload.Length).ShouldBe((GuestFrameType.Stdin, 0));
    }

    [Fact]
    public async Task A_new_agent_instance_ends_open_sessions_with_255_and_says_why()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        await guest.HelloAsync(1, "k");
        var start = client.StartAsync(new GuestCommand(["sleep", "100"]), Ct);
        var session = (await guest.ReadAsync()).Session;
        await guest.SendAsync(GuestFrameType.Started, session, [5, 0, 0, 0]);
        using var process = await start;
        await guest.HelloAsync(1, "k"); // the same agent answering a ping changes nothing
        await Task.Delay(100, Ct);
        process.HasExited.ShouldBeFalse();

        await guest.HelloAsync(2, "k");
        (await process.ExitCode.WaitAsync(TimeSpan.FromSeconds(5), Ct)).ShouldBe(255);
        (await new StreamReader(process.Stderr!).ReadToEndAsync(Ct)).ShouldContain("the guest agent restarted");
    }

    [Fact]
    public async Task A_closed_connection_ends_sessions_and_fails_later_starts()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        var start = client.StartAsync(new GuestCommand(["sleep", "100"]), Ct);
        var session = (await guest.ReadAsync()).Session;
        await guest.SendAsync(GuestFrameType.Started, session, [5, 0, 0, 0]);
        using var process = await start;
        guest.Dispose();

        (await process.ExitCode.WaitAsync(TimeSpan.FromSeconds(5), Ct)).ShouldBe(255);
        (await new StreamReader(process.Stdout).ReadToEndAsync(Ct)).ShouldBeEmpty();
        (await new StreamReader(process.Stderr!).ReadToEndAsync(Ct)).ShouldContain("connection closed");
        await Should.ThrowAsync<GuestAgentException>(() => client.StartAsync(new GuestCommand(["true"]), Ct));
        client.IsConnected.ShouldBeFalse();
    }

    [Theory]
    [InlineData(2, GuestFrameType.Hangup, 5000u)]
    [InlineData(1, GuestFrameType.Signal, 1u)]
    public async Task A_hangup_asks_the_guest_to_end_the_session_with_a_grace_or_an_old_agent_for_SIGHUP(
        int version, GuestFrameType expected, uint value)
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var ready = client.WaitReadyAsync(TimeSpan.FromSeconds(5), Ct);
        (await guest.ReadAsync()).Type.ShouldBe(GuestFrameType.Ping);
        await guest.HelloAsync(1, "6.1.0-test", version);
        await ready;
        var start = client.StartAsync(new GuestCommand(["sleep", "1000"]), Ct);
        var open = await guest.ReadAsync();
        await guest.SendAsync(GuestFrameType.Started, open.Session, [42, 0, 0, 0]);
        using var process = await start;

        process.Hangup();
        process.Hangup(); // once is enough: the guest keeps the first deadline
        var frame = await guest.ReadAsync();
        (frame.Type, frame.Session, GuestAgentProtocol.DecodeU32(frame.Type, frame.Payload)).ShouldBe((expected, open.Session, value));
        await guest.SendAsync(GuestFrameType.Exit, open.Session, [129, 0, 0, 0]);
        (await process.ExitCode).ShouldBe(129);
        process.Dispose(); // ended: nothing more to send
        var next = client.StartAsync(new GuestCommand(["true"]), Ct);
        (await guest.ReadAsync()).Type.ShouldBe(GuestFrameType.Open); // no second HANGUP or SIGNAL before it
    }

    [Fact]
    public async Task An_oversize_frame_closes_the_connection()
    {
        var (client, guest) = await ConnectAsync();
        await using var _ = client;
        using var __ = guest;
        var bad = new byte[GuestAgentProtocol.HeaderSize];
        bad[0] = (byte)GuestFrameType.Stdout;
        BitConverter.GetBytes(GuestAgentProtocol.MaxPayload + 1).CopyTo(bad, 5);
        await guest.Socket.SendAsync(bad, Ct);
        for (var i = 0; i < 100 && client.IsConnected; i++) await Task.Delay(20, Ct);
        client.CloseReason.ShouldNotBeNull().ShouldContain("claims 65537 bytes");
    }

    private sealed class FakeGuest(Socket socket) : IDisposable
    {
        private readonly List<byte> _buffer = [];

        public Socket Socket { get; } = socket;

        public async Task SendAsync(GuestFrameType type, uint session, byte[] payload) =>
            await Socket.SendAsync(GuestAgentProtocol.Encode(type, session, payload), Ct);

        public Task HelloAsync(ulong instance, string release, int version = 1) =>
            SendAsync(GuestFrameType.Hello, 0, GuestAgentProtocol.EncodeHello(new GuestHello(version, instance, release)));

        public async Task<(GuestFrameType Type, uint Session, byte[] Payload)> ReadAsync()
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            var chunk = new byte[70000];
            while (true)
            {
                var all = _buffer.ToArray();
                if (GuestAgentProtocol.TryReadFrame(all, out var h))
                {
                    _buffer.RemoveRange(0, h.FrameSize);
                    return (h.Type, h.Session, all.AsSpan(GuestAgentProtocol.HeaderSize, h.Length).ToArray());
                }
                var n = await Socket.ReceiveAsync(chunk, timeout.Token);
                if (n == 0) throw new EndOfStreamException("the client closed the connection");
                _buffer.AddRange(chunk.AsSpan(0, n));
            }
        }

        public void Dispose() => Socket.Dispose();
    }
}
