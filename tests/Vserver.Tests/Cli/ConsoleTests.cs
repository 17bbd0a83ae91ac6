using System.Net.WebSockets;
using System.Text;
using Shouldly;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>`vsctl console` against a fake agent's console WebSocket: detach key, stdin's end, the agent closing, refusals.</summary>
public class ConsoleTests
{
    private const string Connected = "vsctl: connected to the console of vm1; detach with Ctrl-]";
    private const string Detached = "vsctl: detached from vm1";

    private static Task SendAsync(WebSocket ws, byte stream, string text, CancellationToken ct)
    {
        var payload = Encoding.UTF8.GetBytes(text);
        var frame = new byte[payload.Length + 1];
        frame[0] = stream;
        payload.CopyTo(frame, 1);
        return ws.SendAsync(frame, WebSocketMessageType.Binary, true, ct);
    }

    /// <summary>What the client typed, until it closed (detached): the console's side of the session.</summary>
    private static async Task<string> ReadUntilCloseAsync(WebSocket ws, Func<string, Task>? onInput, CancellationToken ct)
    {
        var typed = new StringBuilder();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var message = new MemoryStream();
            WebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer, ct);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
                    return typed.ToString();
                }
                message.Write(buffer, 0, result.Count);
            }
            while (!result.EndOfMessage);
            var bytes = message.ToArray();
            bytes[0].ShouldBe(ExecStream.Stdin);
            var text = Encoding.UTF8.GetString(bytes, 1, bytes.Length - 1);
            typed.Append(text);
            if (onInput is not null) await onInput(text);
        }
    }

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public async Task Ctrl_close_bracket_in_the_input_detaches_and_nothing_after_it_is_sent()
    {
        await using var agent = FakeAgent.Start();
        var typed = new TaskCompletionSource<string>();
        agent.Console = async (ws, ct) =>
        {
            await SendAsync(ws, ExecStream.Stdout, "Debian GNU/Linux 12 vm1 ttyS0\r\n", ct);
            typed.SetResult(await ReadUntilCloseAsync(ws, null, ct));
        };
        var cli = new CliHarness { Stdin = new MemoryStream([.. Bytes("echo hi\n"), 0x1d, .. Bytes("reboot\n")]) };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(0);

        (await typed.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken)).ShouldBe("echo hi\n");
        Encoding.UTF8.GetString(cli.Stdout.ToArray()).ShouldBe("Debian GNU/Linux 12 vm1 ttyS0\r\n");
        cli.ErrLines.ShouldBe([Connected, Detached]);
        agent.Requests.ShouldHaveSingleItem().ShouldBe(new FakeRequest("CONSOLE", "/v1/guests/vm1/console", ""));
    }

    [Fact]
    public async Task At_the_end_of_piped_input_the_answer_is_still_shown_then_it_detaches()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            await ReadUntilCloseAsync(ws, async input =>
            {
                // a slow guest: the answer comes well after vsctl read the end of its input
                await Task.Delay(300, ct);
                await SendAsync(ws, ExecStream.Stdout, $"{input.TrimEnd()}\r\n6.1.0-28-cloud-amd64\r\n# ", ct);
            }, ct);
        };
        var cli = new CliHarness { Stdin = new MemoryStream(Bytes("uname -r\n")) };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(0);

        Encoding.UTF8.GetString(cli.Stdout.ToArray()).ShouldBe("uname -r\r\n6.1.0-28-cloud-amd64\r\n# ");
        cli.ErrLines.ShouldBe([Connected, Detached]);
    }

    [Fact]
    public async Task Linger_zero_detaches_at_the_end_of_input_without_waiting_for_output()
    {
        await using var agent = FakeAgent.Start();
        var typed = new TaskCompletionSource<string>();
        agent.Console = async (ws, ct) =>
        {
            typed.SetResult(await ReadUntilCloseAsync(ws, async _ =>
            {
                await Task.Delay(1000, ct);
                await SendAsync(ws, ExecStream.Stdout, "too late\r\n", ct);
            }, ct));
        };
        var cli = new CliHarness { Stdin = new MemoryStream(Bytes("poweroff\n")) };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1", "--linger", "0")).ShouldBe(0);

        cli.Stdout.ToArray().ShouldBeEmpty();
        cli.ErrLines.ShouldBe([Connected, Detached]);
    }

    [Fact]
    public async Task The_agent_closing_the_console_ends_the_session_with_exit_0()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            await SendAsync(ws, ExecStream.Stdout, "reboot: Power down\r\n", ct);
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        };
        var cli = new CliHarness { Stdin = new NeverEndingStream() };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(0);

        Encoding.UTF8.GetString(cli.Stdout.ToArray()).ShouldBe("reboot: Power down\r\n");
        cli.ErrLines.ShouldBe([Connected, "vsctl: the console of vm1 closed"]);
    }

    [Fact]
    public async Task A_refusal_is_one_line_and_exit_code_1()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            await SendAsync(ws, ExecStream.Error, "domain 'vm1' is not running; start it with: vsctl start vm1", ct);
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        };
        var cli = new CliHarness { Stdin = new NeverEndingStream() };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(1);

        cli.ErrLines.ShouldBe(["vsctl: domain 'vm1' is not running; start it with: vsctl start vm1"]);
        cli.Stdout.ToArray().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_coded_refusal_gets_vsctls_advice()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            var detail = new ErrorResponse { Error = "domain 'vm1' is not running", Code = ErrorCodes.NotRunning, Fields = new Dictionary<string, string> { ["guest"] = "vm1" } };
            await ws.SendAsync((byte[])[ExecStream.ErrorDetail, .. System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(detail, ApiJson.Default.ErrorResponse)],
                WebSocketMessageType.Binary, true, ct);
            await SendAsync(ws, ExecStream.Error, "domain 'vm1' is not running", ct);
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        };
        var cli = new CliHarness { Stdin = new NeverEndingStream() };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(1);

        cli.ErrLines.ShouldBe(["vsctl: domain 'vm1' is not running; start it with: vsctl start vm1"]);
    }

    [Fact]
    public async Task A_quiet_console_still_attaches_and_forwards_input()
    {
        await using var agent = FakeAgent.Start();
        var typed = new TaskCompletionSource<string>();
        agent.Console = async (ws, ct) => typed.SetResult(await ReadUntilCloseAsync(ws, null, ct));
        var cli = new CliHarness { Stdin = new MemoryStream([.. Bytes("\n"), 0x1d]) };

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(0);

        (await typed.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken)).ShouldBe("\n");
        cli.ErrLines.ShouldBe([Connected, Detached]);
    }

    [Fact]
    public async Task On_a_terminal_raw_mode_is_entered_after_attaching_and_restored_on_detach()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            await SendAsync(ws, ExecStream.Stdout, "login: ", ct);
            await ReadUntilCloseAsync(ws, null, ct);
        };
        var cli = new CliHarness { Stdin = new MemoryStream([0x1d]) };
        cli.Terminal.StdinIsTerminal = true;

        (await cli.RunAsync(agent.SocketPath, "console", "vm1")).ShouldBe(0);

        cli.Terminal.RawModeEntered.ShouldBe(1);
        cli.Terminal.RawModeRestored.ShouldBe(1);
        cli.ErrLines.ShouldBe([Connected, Detached]);
    }

    [Fact]
    public async Task A_refused_console_never_touches_the_terminal()
    {
        await using var agent = FakeAgent.Start();
        agent.Console = async (ws, ct) =>
        {
            await SendAsync(ws, ExecStream.Error, "'web1' is a vserver: it has no serial console; enter it with: vsctl enter web1", ct);
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        };
        var cli = new CliHarness();
        cli.Terminal.StdinIsTerminal = true;

        (await cli.RunAsync(agent.SocketPath, "console", "web1")).ShouldBe(1);

        cli.Terminal.RawModeEntered.ShouldBe(0);
        cli.ErrLines.ShouldBe(["vsctl: 'web1' is a vserver: it has no serial console; enter it with: vsctl enter web1"]);
    }

    /// <summary>A stdin that is still open: a read waits until the session gives up on it.</summary>
    private sealed class NeverEndingStream : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return 0;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
