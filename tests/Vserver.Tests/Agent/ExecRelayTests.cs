using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using HybridHypervisor.Guests;
using Shouldly;
using Vserver.Agent;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Agent;

/// <summary>The agent's end of an exec session when the client goes away: the command is hung up and the log gets one
/// line, never a stack trace; a client that stays to the exit frame hangs nothing up.</summary>
public sealed class ExecRelayTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_client_whose_connection_drops_hangs_the_command_up_and_the_log_says_one_line()
    {
        await using var pair = await SocketPair.OpenAsync();
        var log = new List<string>();
        var process = new FakeGuestProcess();
        var relay = RunRelay(pair, log, process);
        await pair.Client.SendAsync(Request(["sleep", "1000"]), WebSocketMessageType.Text, true, Ct);
        await process.Started.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        pair.DropClient();
        await relay.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        process.Hangups.ShouldBe(1);
        log.ShouldBe(["exec in web1: the client went away (its connection dropped); hung up `sleep 1000`, which ended with 129"]);
    }

    [Fact]
    public async Task A_client_that_closes_before_the_exit_hangs_the_command_up()
    {
        await using var pair = await SocketPair.OpenAsync();
        var log = new List<string>();
        var process = new FakeGuestProcess();
        var relay = RunRelay(pair, log, process);
        await pair.Client.SendAsync(Request(["sh", "-c", "trap '' HUP; sleep 1000"]), WebSocketMessageType.Text, true, Ct);
        await process.Started.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        await pair.Client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, Ct);
        await relay.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        process.Hangups.ShouldBe(1);
        log.ShouldHaveSingleItem().ShouldBe(
            "exec in web1: the client went away (it closed the session); hung up `sh -c 'trap '\\'''\\'' HUP; sleep 1000'`, which ended with 129");
    }

    [Fact]
    public async Task A_client_that_goes_before_sending_its_request_is_one_line_too()
    {
        await using var pair = await SocketPair.OpenAsync();
        var log = new List<string>();
        var process = new FakeGuestProcess();
        var relay = RunRelay(pair, log, process);

        pair.DropClient();
        await relay.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        process.Started.Task.IsCompleted.ShouldBeFalse();
        log.ShouldBe(["exec in web1: the client went away before the command started (its connection dropped)"]);
    }

    /// <summary>After the exit frame the client closes the session, or (as vsctl does, exiting with the command's code at
    /// once) drops its connection without a close handshake: either way the exec ran to its end.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_that_reads_the_exit_and_leaves_hangs_nothing_up_and_logs_nothing(bool drops)
    {
        await using var pair = await SocketPair.OpenAsync();
        var log = new List<string>();
        var process = new FakeGuestProcess();
        var relay = RunRelay(pair, log, process);
        await pair.Client.SendAsync(Request(["true"]), WebSocketMessageType.Text, true, Ct);
        await process.Started.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        process.Exit(0);
        var buffer = new byte[64];
        var frame = await pair.Client.ReceiveAsync(buffer, Ct);
        buffer[0].ShouldBe(ExecStream.Exit);
        frame.Count.ShouldBe(5);
        if (drops) pair.DropClient();
        else await pair.Client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, Ct);
        await relay.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        process.Hangups.ShouldBe(0);
        log.ShouldBeEmpty("an exec that ran to its end is not a client that went away");
    }

    [Theory]
    [InlineData(new[] { "sleep", "1000" }, "`sleep 1000`")]
    [InlineData(new[] { "echo", "" }, "`echo ''`")]
    [InlineData(new[] { "printf", "\u001b]0;owned\u0007\n" }, "`printf '\\x1b]0;owned\\x07\\x0a'`")]
    public void A_command_in_the_log_is_quoted_and_its_control_characters_escaped(string[] command, string expected) =>
        ExecRelay.DescribeCommand(command).ShouldBe(expected);

    [Fact]
    public void A_long_command_in_the_log_is_cut()
    {
        var described = ExecRelay.DescribeCommand(["echo", new string('x', 500)]);
        described.Length.ShouldBe(102);
        described.ShouldEndWith("…`");
    }

    private static Task RunRelay(SocketPair pair, List<string> log, FakeGuestProcess process)
    {
        var relay = new ExecRelay(pair.Server, "web1", line => { lock (log) log.Add(line); });
        return Task.Run(async () =>
        {
            try
            {
                await relay.RunAsync((_, _) =>
                {
                    process.Started.TrySetResult();
                    return Task.FromResult<IGuestProcess>(process);
                }, pair.ServerAborted);
            }
            finally
            {
                relay.Dispose();
            }
        }, Ct);
    }

    private static byte[] Request(string[] command) =>
        JsonSerializer.SerializeToUtf8Bytes(new ExecRequest { Command = command }, ApiJson.Default.ExecRequest);

    /// <summary>A command that ends only when told to, or with 129 when hung up, as a shell's sleep would.</summary>
    private sealed class FakeGuestProcess : IGuestProcess
    {
        private readonly TaskCompletionSource<int> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly AnonymousPipe _stdout = new();
        private int _hangups;

        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Hangups => Volatile.Read(ref _hangups);
        public Stream Stdin { get; } = Stream.Null;
        public Stream Stdout => _stdout.Reader;
        public Stream? Stderr => null;
        public Task<int> ExitCode => _exit.Task;

        public void Hangup()
        {
            Interlocked.Increment(ref _hangups);
            Exit(129);
        }

        public void Exit(int code)
        {
            _stdout.CloseWriter();
            _exit.TrySetResult(code);
        }

        public void Resize(int rows, int cols) { }

        public void Dispose() => _stdout.Dispose();
    }

    /// <summary>A stream that ends (reads 0) once its writer is closed.</summary>
    private sealed class AnonymousPipe : IDisposable
    {
        private readonly System.IO.Pipes.AnonymousPipeServerStream _server = new(System.IO.Pipes.PipeDirection.In);
        private System.IO.Pipes.AnonymousPipeClientStream? _client;

        public AnonymousPipe() => _client = new(System.IO.Pipes.PipeDirection.Out, _server.ClientSafePipeHandle);

        public Stream Reader => _server;

        public void CloseWriter()
        {
            _client?.Dispose();
            _client = null;
        }

        public void Dispose()
        {
            CloseWriter();
            _server.Dispose();
        }
    }

    /// <summary>Two ends of a WebSocket over loopback TCP; the server's token is cancelled when its client drops, as
    /// Kestrel's RequestAborted is.</summary>
    private sealed class SocketPair : IAsyncDisposable
    {
        private readonly Socket _clientSocket;
        private readonly Socket _serverSocket;
        private readonly CancellationTokenSource _aborted = new();

        private SocketPair(Socket client, Socket server)
        {
            _clientSocket = client;
            _serverSocket = server;
            Client = WebSocket.CreateFromStream(new NetworkStream(client, ownsSocket: false), isServer: false, null, Timeout.InfiniteTimeSpan);
            Server = WebSocket.CreateFromStream(new NetworkStream(server, ownsSocket: false), isServer: true, null, Timeout.InfiniteTimeSpan);
        }

        public WebSocket Client { get; }
        public WebSocket Server { get; }
        public CancellationToken ServerAborted => _aborted.Token;

        public static async Task<SocketPair> OpenAsync()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var accept = listener.AcceptAsync(Ct).AsTask();
            await client.ConnectAsync(listener.LocalEndPoint!, Ct);
            return new SocketPair(client, await accept);
        }

        public void DropClient()
        {
            _clientSocket.Dispose();
            _aborted.Cancel();
        }

        public ValueTask DisposeAsync()
        {
            Client.Dispose();
            Server.Dispose();
            _clientSocket.Dispose();
            _serverSocket.Dispose();
            _aborted.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
