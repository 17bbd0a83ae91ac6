using System.Diagnostics;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>How an exec client goes away in these tests.</summary>
public enum ClientExit
{
    /// <summary>`vsctl exec` killed with SIGKILL: the kernel closes its socket, no close frame.</summary>
    Killed,
    /// <summary>`vsctl exec` (no terminal) interrupted with SIGINT, as Ctrl-C in a shell pipeline would.</summary>
    Interrupted,
    /// <summary>A raw client (hand-made HTTP upgrade and frames) that closes its socket mid-command.</summary>
    Dropped,
    /// <summary>The same raw client asking for a terminal, then dropping.</summary>
    DroppedWithTerminal,
    /// <summary>A WebSocket client that ends the session with a close frame while the command runs.</summary>
    ClosedEarly,
}

/// <summary>What the command is: each marked by a sleep whose length no other process in the guest has.</summary>
public enum CommandShape
{
    /// <summary>`sleep N` itself.</summary>
    Sleep,
    /// <summary>A shell with a background child and a foreground child: the whole session must go.</summary>
    ShellWithChildren,
    /// <summary>A shell that ignores SIGHUP, which its sleep inherits: only the SIGKILL after the grace ends them.</summary>
    IgnoresHangup,
}

/// <summary>
/// One attack on exec and its checks, for either kind of guest: start a command through a client, make the client go
/// away, then check from outside that nothing of the command is left in the guest (its process list), nothing of
/// vsinit exec on the host, that the agent said one line and no stack trace, and that the guest and a bystander process
/// in it still run.
/// </summary>
internal sealed class ExecHangupAttack(TestHost host, string guest)
{
    /// <summary>The hangup's grace (5 s), the SIGKILL, and a margin for a loaded machine or TCG.</summary>
    private static readonly TimeSpan Gone = TimeSpan.FromSeconds(15);

    public static string[] Command(CommandShape shape, int marker) => shape switch
    {
        CommandShape.Sleep => ["sleep", $"{marker}"],
        CommandShape.ShellWithChildren => ["sh", "-c", $"sleep {marker} & sleep {marker}; echo never"],
        _ => ["sh", "-c", $"trap '' HUP; sleep {marker}; echo never"],
    };

    /// <summary>Runs one attempt and answers how long the command took to go after its client did, and the agent's line.</summary>
    public async Task<(TimeSpan Took, string Line)> RunAsync(ClientExit exit, CommandShape shape, int marker)
    {
        // A bystander from an exec that ended normally: what a command leaves running is the guest's, not the hangup's.
        var bystander = marker + 50000;
        host.Vsctl("exec", guest, "--", "sh", "-c", $"sleep {bystander} </dev/null >/dev/null 2>&1 &").ShouldSucceed();
        await WaitForAsync(() => SleepsInGuest(bystander).Count == 1, "the bystander to run");

        var logBefore = host.AgentLog.Length;
        var command = Command(shape, marker);
        var client = await StartClientAsync(exit, command);
        var clock = Stopwatch.StartNew();
        try
        {
            var expected = shape == CommandShape.ShellWithChildren ? 2 : 1;
            await WaitForAsync(() => SleepsInGuest(marker).Count == expected, $"{expected} `sleep {marker}` in {guest}");
            clock.Restart();
            await client.GoAwayAsync();
            await WaitForAsync(() => SleepsInGuest(marker).Count == 0, $"every `sleep {marker}` to end in {guest}", Gone);
        }
        finally
        {
            await client.DisposeAsync();
        }
        var took = clock.Elapsed;

        // The helper on the host goes with the command (its spec file too), and the agent says one line, no more.
        await WaitForAsync(() => TestHost.ProcessesNaming(Path.Combine(host.RunDir, "guests", guest, "exec-")).Count == 0,
            "vsinit exec to exit", Gone);
        Directory.GetFiles(Path.Combine(host.RunDir, "guests", guest), "exec-*").ShouldBeEmpty();
        await WaitForAsync(() => NewLog(logBefore).Any(l => l.Contains($"exec in {guest}", StringComparison.Ordinal)),
            "the agent's line about the exec", Gone);
        await Task.Delay(300); // a second line would come right after the first
        var lines = NewLog(logBefore).Where(l => l.Length > 0).ToList();
        var about = lines.Where(l => l.Contains($"exec in {guest}", StringComparison.Ordinal)).ToList();
        about.Count.ShouldBe(1, $"agent log since the attempt:\n{string.Join('\n', lines)}");
        about[0].ShouldContain("the client went away");
        lines.ShouldNotContain(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal) || l.Contains("Exception", StringComparison.Ordinal),
            $"agent log since the attempt:\n{string.Join('\n', lines)}");

        // The guest is untouched: running, its init there, the bystander alive, no zombie left (the guest's init reaps
        // what the hangup ended in its own time: a zombie may stand for a moment, not for good), and exec still works.
        await WaitForAsync(() => !GuestProcesses().Any(p => p.Stat.StartsWith('Z')), $"no zombie left in {guest}", Gone);
        var ps = GuestProcesses();
        ps.ShouldContain(p => p.Pid == 1 && !p.Stat.StartsWith('Z'), $"ps in {guest}:\n{string.Join('\n', ps)}");
        var survivors = SleepsInGuest(bystander);
        survivors.Count.ShouldBe(1);
        host.Vsctl("exec", guest, "--", "kill", "-9", $"{survivors[0]}").ShouldSucceed();
        (await host.Client().GetAsync(guest)).State.ShouldBe("running");
        return (took, about[0]);
    }

    /// <summary>Pids of the guest's processes running exactly `sleep N`, from its own ps (a zombie runs nothing).</summary>
    private List<int> SleepsInGuest(int marker) =>
        GuestProcesses().Where(p => !p.Stat.StartsWith('Z') && p.Args == $"sleep {marker}").Select(p => p.Pid).ToList();

    private List<(int Pid, string Stat, string Args)> GuestProcesses()
    {
        var ps = host.Vsctl("exec", guest, "--", "ps", "-o", "pid,stat,args").ShouldSucceed().Stdout;
        return ps.Split('\n').Skip(1)
            .Select(l => l.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Where(f => f.Length == 3 && int.TryParse(f[0], out _))
            .Select(f => (int.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture), f[1], f[2]))
            .ToList();
    }

    private IEnumerable<string> NewLog(int from)
    {
        var log = host.AgentLog;
        return log[Math.Min(from, log.Length)..].Split('\n').Select(l => l.TrimEnd('\r'));
    }

    private static async Task WaitForAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > (timeout ?? TimeSpan.FromSeconds(60))) throw new ShouldAssertException($"waited {clock.Elapsed.TotalSeconds:0} s for {what}");
            await Task.Delay(100);
        }
    }

    private async Task<IExecClient> StartClientAsync(ClientExit exit, string[] command) => exit switch
    {
        ClientExit.Killed or ClientExit.Interrupted => VsctlClient.Start(host, guest, command, exit == ClientExit.Killed ? "KILL" : "INT"),
        ClientExit.Dropped or ClientExit.DroppedWithTerminal =>
            await RawClient.StartAsync(host.Socket, guest, new ExecRequest { Command = command, Tty = exit == ClientExit.DroppedWithTerminal, Rows = 24, Cols = 80 }),
        _ => await ClosingClient.StartAsync(host, guest, command),
    };

    private interface IExecClient : IAsyncDisposable
    {
        Task GoAwayAsync();
    }

    /// <summary>`vsctl exec` as a child process, sent a signal.</summary>
    private sealed class VsctlClient(Process process, string signal) : IExecClient
    {
        public static VsctlClient Start(TestHost host, string guest, string[] command, string signal)
        {
            var start = new ProcessStartInfo(Binaries.Vsctl)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var (k, v) in host.Env) start.Environment[k] = v;
            foreach (var a in (string[])["exec", guest, "--", .. command]) start.ArgumentList.Add(a);
            var process = Process.Start(start)!;
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return new VsctlClient(process, signal);
        }

        public async Task GoAwayAsync()
        {
            TestHost.Run("kill", $"-{signal}", $"{process.Id}").ShouldSucceed();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await process.WaitForExitAsync(timeout.Token);
        }

        public ValueTask DisposeAsync()
        {
            if (!process.HasExited) process.Kill();
            process.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>An exec client made by hand on the agent's socket: the HTTP upgrade, one masked frame with the request,
    /// then the socket closed without a WebSocket close, as a crashed client or a dropped connection leaves it.</summary>
    private sealed class RawClient(Socket socket) : IExecClient
    {
        public static async Task<RawClient> StartAsync(string socketPath, string guest, ExecRequest request)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            await socket.SendAsync(Encoding.ASCII.GetBytes(
                $"GET /v1/guests/{guest}/exec HTTP/1.1\r\nHost: vserverd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"));
            var head = new List<byte>();
            var one = new byte[1];
            while (head.Count < 4 || !head.TakeLast(4).SequenceEqual("\r\n\r\n"u8.ToArray()))
            {
                if (await socket.ReceiveAsync(one) == 0) throw new ShouldAssertException($"the agent closed during the upgrade: {Encoding.ASCII.GetString([.. head])}");
                head.Add(one[0]);
            }
            Encoding.ASCII.GetString([.. head]).ShouldStartWith("HTTP/1.1 101");
            await socket.SendAsync(MaskedFrame(JsonSerializer.SerializeToUtf8Bytes(request, ApiJson.Default.ExecRequest)));
            return new RawClient(socket);
        }

        /// <summary>A binary frame as a client must send it: FIN, masked.</summary>
        private static byte[] MaskedFrame(byte[] payload)
        {
            var frame = new List<byte> { 0x82 };
            if (payload.Length < 126) frame.Add((byte)(0x80 | payload.Length));
            else frame.AddRange([0x80 | 126, (byte)(payload.Length >> 8), (byte)payload.Length]);
            var mask = RandomNumberGenerator.GetBytes(4);
            frame.AddRange(mask);
            frame.AddRange(payload.Select((b, i) => (byte)(b ^ mask[i % 4])));
            return [.. frame];
        }

        public Task GoAwayAsync()
        {
            socket.Dispose();
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>A well-behaved WebSocket client that leaves early: a close frame while the command runs.</summary>
    private sealed class ClosingClient(WebSocket socket) : IExecClient
    {
        public static async Task<ClosingClient> StartAsync(TestHost host, string guest, string[] command) =>
            new(await host.Client().OpenExecAsync(guest, new ExecRequest { Command = command }));

        public async Task GoAwayAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "leaving", timeout.Token);
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>One agent and one running busybox vserver for the class.</summary>
public sealed class HangupVserver : IAsyncLifetime
{
    public const string Name = "hup";
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync();
        try
        {
            Host.Vsctl("create", Name).ShouldSucceed();
            Host.Vsctl("start", Name).ShouldSucceed();
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>
/// Exec clients that go away (killed, interrupted, dropped, closing early; with and without a terminal) against a
/// real agent and vserver: the command and what it started end (SIGHUP, SIGKILL after the grace), vsinit exec exits,
/// the log says one line, the guest and its other processes run on.
/// </summary>
public sealed class ExecHangupTests(HangupVserver fixture, ITestOutputHelper output) : IClassFixture<HangupVserver>
{
    private static int _nextMarker = 1000;

    public static TheoryData<ClientExit, CommandShape> Attacks()
    {
        var data = new TheoryData<ClientExit, CommandShape>();
        foreach (var exit in Enum.GetValues<ClientExit>())
            foreach (var shape in Enum.GetValues<CommandShape>())
                data.Add(exit, shape);
        return data;
    }

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task A_command_whose_client_goes_away_ends_and_leaves_nothing(ClientExit exit, CommandShape shape)
    {
        var marker = Interlocked.Increment(ref _nextMarker);
        var (took, line) = await new ExecHangupAttack(fixture.Host, HangupVserver.Name).RunAsync(exit, shape, marker);
        output.WriteLine($"{exit} {shape}: gone {took.TotalSeconds:0.0} s after the client; the agent: {line}");
        // SIGHUP ends what does not ignore it at once; what does is killed when the grace ends, not before.
        if (shape == CommandShape.IgnoresHangup) took.ShouldBeGreaterThan(TimeSpan.FromSeconds(4));
        else took.ShouldBeLessThan(TimeSpan.FromSeconds(4));
    }
}

/// <summary>One agent, the default kernel and one running domain for the class. The kernel is the run's
/// <see cref="BuiltKernel"/> (images/kernel/build.sh, with this tree's vsguest.c) put where `vsctl kernel build` puts
/// its output: building it again through the agent takes longer than vsctl's 90 s on a busy machine.</summary>
public sealed class HangupDomain(BuiltKernel kernel) : IAsyncLifetime
{
    public const string Name = "hup-dom";
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync();
        try
        {
            var kernels = Directory.CreateDirectory(Path.Combine(Host.Root, "kernels", "default")).FullName;
            foreach (var file in Directory.GetFiles(kernel.OutDir))
                File.Copy(file, Path.Combine(kernels, Path.GetFileName(file)));
            Host.Vsctl("create", Name, "--kind", "domain", "--memory", "128M").ShouldSucceed();
            Host.Vsctl("start", Name).ShouldSucceed();
            // The first exec waits for the guest agent, so for the boot.
            Host.Vsctl("exec", Name, "--", "true").ShouldSucceed();
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>The same attacks on a domain: the guest agent (vsguest) ends the command's session when the agent hangs it up.</summary>
public sealed class DomainExecHangupTests(HangupDomain fixture, ITestOutputHelper output) : IClassFixture<HangupDomain>
{
    private static int _nextMarker = 3000;

    public static TheoryData<ClientExit, CommandShape> Attacks() => new()
    {
        { ClientExit.Killed, CommandShape.ShellWithChildren },
        { ClientExit.Interrupted, CommandShape.Sleep },
        { ClientExit.Dropped, CommandShape.IgnoresHangup },
        { ClientExit.DroppedWithTerminal, CommandShape.ShellWithChildren },
    };

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task A_command_whose_client_goes_away_ends_and_leaves_nothing(ClientExit exit, CommandShape shape)
    {
        var marker = Interlocked.Increment(ref _nextMarker);
        var (took, line) = await new ExecHangupAttack(fixture.Host, HangupDomain.Name).RunAsync(exit, shape, marker);
        output.WriteLine($"{exit} {shape}: gone {took.TotalSeconds:0.0} s after the client; the agent: {line}");
        if (shape == CommandShape.IgnoresHangup) took.ShouldBeGreaterThan(TimeSpan.FromSeconds(4));
    }
}
