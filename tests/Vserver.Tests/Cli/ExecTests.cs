using System.Buffers.Binary;
using System.Net.WebSockets;
using System.Text;
using Shouldly;
using Vserver.Api;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

public class ExecTests
{
    private static Task SendAsync(WebSocket ws, byte stream, ReadOnlySpan<byte> payload, CancellationToken ct)
    {
        var frame = new byte[payload.Length + 1];
        frame[0] = stream;
        payload.CopyTo(frame.AsSpan(1));
        return ws.SendAsync(frame, WebSocketMessageType.Binary, true, ct);
    }

    private static Task SendExitAsync(WebSocket ws, int code, CancellationToken ct)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(payload, code);
        return SendAsync(ws, ExecStream.Exit, payload, ct);
    }

    /// <summary>Reads client frames until stdin's empty frame; returns stdin's bytes and any other frames.</summary>
    private static async Task<(byte[] Stdin, List<byte[]> Other)> ReadStdinAsync(WebSocket ws, CancellationToken ct)
    {
        var stdin = new MemoryStream();
        var other = new List<byte[]>();
        var buffer = new byte[70000];
        while (true)
        {
            var message = new MemoryStream();
            WebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(buffer, ct);
                message.Write(buffer, 0, result.Count);
            }
            while (!result.EndOfMessage);
            var bytes = message.ToArray();
            if (bytes[0] != ExecStream.Stdin)
            {
                other.Add(bytes);
                continue;
            }
            if (bytes.Length == 1) return (stdin.ToArray(), other);
            stdin.Write(bytes, 1, bytes.Length - 1);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(137)]
    public async Task The_remote_exit_code_is_passed_through(int exitCode)
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, ct) => SendExitAsync(ws, exitCode, ct);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "web1", "--", "sh", "-c", $"exit {exitCode}")).ShouldBe(exitCode);

        agent.ExecRequests.ShouldHaveSingleItem().Command.ShouldBe(["sh", "-c", $"exit {exitCode}"]);
        agent.Requests.ShouldHaveSingleItem().Path.ShouldBe("/v1/guests/web1/exec");
        cli.Err.ToString().ShouldBeEmpty();
    }

    [Fact]
    public async Task Stdin_goes_up_and_stdout_and_stderr_come_back_byte_for_byte()
    {
        var input = new byte[100_000];
        new Random(1).NextBytes(input);
        await using var agent = FakeAgent.Start();
        agent.Exec = async (ws, _, ct) =>
        {
            var (stdin, _) = await ReadStdinAsync(ws, ct);
            // like cat: echo stdin back, in chunks, with a binary message on stderr in between
            for (var offset = 0; offset < stdin.Length; offset += 30_000)
                await SendAsync(ws, ExecStream.Stdout, stdin.AsSpan(offset, Math.Min(30_000, stdin.Length - offset)), ct);
            await SendAsync(ws, ExecStream.Stderr, new byte[] { 0, 0xff, 0xfe, (byte)'\n' }, ct);
            await SendExitAsync(ws, 0, ct);
        };
        var cli = new CliHarness { Stdin = new MemoryStream(input) };

        (await cli.RunAsync(agent.SocketPath, "exec", "web1", "--", "cat")).ShouldBe(0);

        cli.Stdout.ToArray().ShouldBe(input);
        cli.Stderr.ToArray().ShouldBe(new byte[] { 0, 0xff, 0xfe, (byte)'\n' });
        var request = agent.ExecRequests.ShouldHaveSingleItem();
        request.Tty.ShouldBeFalse();
        request.Rows.ShouldBe(0);
    }

    [Fact]
    public async Task An_error_frame_prints_one_line_and_exits_125()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = async (ws, _, ct) =>
        {
            await SendAsync(ws, ExecStream.Error, Encoding.UTF8.GetBytes("nosuchcmd: command not found in web1\n"), ct);
            await SendExitAsync(ws, 125, ct);
        };
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "web1", "--", "nosuchcmd")).ShouldBe(125);

        cli.ErrLines.ShouldBe(["vsctl: nosuchcmd: command not found in web1"]);
    }

    [Fact]
    public async Task A_coded_refusal_gets_vsctls_advice()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = async (ws, _, ct) =>
        {
            var detail = new ErrorResponse { Error = "guest 'web1' is paused", Code = ErrorCodes.Paused, Fields = new Dictionary<string, string> { ["guest"] = "web1" } };
            await SendAsync(ws, ExecStream.ErrorDetail, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(detail, ApiJson.Default.ErrorResponse), ct);
            await SendAsync(ws, ExecStream.Error, Encoding.UTF8.GetBytes("guest 'web1' is paused"), ct);
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        };
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "web1", "--", "true")).ShouldBe(125);

        cli.ErrLines.ShouldBe(["vsctl: guest 'web1' is paused; resume it with: vsctl resume web1"]);
    }

    [Fact]
    public async Task A_session_closed_without_exit_status_is_125()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, ct) => ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, ct);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "web1", "--", "true")).ShouldBe(125);

        cli.ErrLines.ShouldBe(["vsctl: the agent ended the exec session without an exit status"]);
    }

    [Fact]
    public async Task A_refused_upgrade_reports_what_the_agent_says_about_the_guest()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = null; // upgrade refused with 409
        agent.Handler = _ => FakeResponse.Error(404, "no guest named web9");
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "web9", "--", "true")).ShouldBe(1);

        cli.ErrLines.ShouldBe(["vsctl: no guest named web9"]);
    }

    [Fact]
    public async Task Tty_without_a_terminal_says_so_and_asks_for_a_default_size()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, ct) => SendExitAsync(ws, 0, ct);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "exec", "-t", "-e", "A=1", "-e", "B=x=y", "-w", "/tmp", "web1", "--", "ls", "-l")).ShouldBe(0);

        cli.ErrLines.ShouldHaveSingleItem().ShouldStartWith("vsctl: stdin is not a terminal");
        cli.Terminal.RawModeEntered.ShouldBe(0);
        var request = agent.ExecRequests.ShouldHaveSingleItem();
        request.Command.ShouldBe(["ls", "-l"]);
        request.Tty.ShouldBeTrue();
        (request.Rows, request.Cols).ShouldBe((24, 80));
        request.Env.ShouldBe(new Dictionary<string, string> { ["A"] = "1", ["B"] = "x=y" });
        request.Cwd.ShouldBe("/tmp");
    }

    [Fact]
    public async Task Tty_on_a_terminal_uses_raw_mode_and_restores_it()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, ct) => SendExitAsync(ws, 3, ct);
        var cli = new CliHarness();
        cli.Terminal.StdinIsTerminal = true;
        cli.Terminal.WindowSize = (50, 132);

        (await cli.RunAsync(agent.SocketPath, "exec", "-t", "web1", "--", "sh")).ShouldBe(3);

        cli.Terminal.RawModeEntered.ShouldBe(1);
        cli.Terminal.RawModeRestored.ShouldBe(1);
        var request = agent.ExecRequests.ShouldHaveSingleItem();
        (request.Tty, request.Rows, request.Cols).ShouldBe((true, 50, 132));
        cli.Err.ToString().ShouldBeEmpty();
    }

    [Fact]
    public async Task Raw_mode_is_restored_when_the_session_breaks()
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, _) =>
        {
            ws.Abort();
            return Task.CompletedTask;
        };
        var cli = new CliHarness();
        cli.Terminal.StdinIsTerminal = true;

        (await cli.RunAsync(agent.SocketPath, "exec", "-t", "web1", "--", "sh")).ShouldBe(125);

        cli.Terminal.RawModeRestored.ShouldBe(1);
        cli.ErrLines.ShouldHaveSingleItem().ShouldStartWith("vsctl: ");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Enter_runs_a_login_shell_with_a_tty_only_on_a_terminal(bool terminal)
    {
        await using var agent = FakeAgent.Start();
        agent.Exec = (ws, _, ct) => SendExitAsync(ws, 0, ct);
        var cli = new CliHarness();
        cli.Terminal.StdinIsTerminal = terminal;

        (await cli.RunAsync(agent.SocketPath, "enter", "web1")).ShouldBe(0);

        var request = agent.ExecRequests.ShouldHaveSingleItem();
        request.Command.ShouldBe(EnterCommand.Shell);
        request.Command[^1].ShouldContain("exec su -l root");
        request.Tty.ShouldBe(terminal);
        cli.Err.ToString().ShouldBeEmpty();
    }
}
