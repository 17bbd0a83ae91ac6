using HybridHypervisor.Domains;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Domains.Qmp;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Storage;

namespace Vserver.IntegrationTests;

/// <summary>
/// A real domain under QEMU (TCG, microvm): the kernel and initramfs of images/kernel/build.sh, a qcow2 overlay over
/// the busybox image's ext4 base, the guest agent on virtio-serial and QMP. No vserverd: QEMU is started directly.
/// QEMU is killed by its pid and the temp dir removed on dispose, whatever happened.
/// </summary>
public sealed class TestDomain : IAsyncDisposable
{
    public const string GuestIp = "10.0.2.15/24";
    public const string Gateway = "10.0.2.2";

    private readonly Process _qemu;
    private readonly Stopwatch _sinceStart;

    public string Dir { get; }
    public string Hostname { get; }
    public string AgentSocket => Path.Combine(Dir, "agent.sock");
    public string QmpSocket => Path.Combine(Dir, "qmp.sock");
    public string ConsoleLog => Path.Combine(Dir, "console.log");
    public TimeSpan SinceStart => _sinceStart.Elapsed;
    public Process Qemu => _qemu;

    private TestDomain(string dir, string hostname, Process qemu, Stopwatch sinceStart)
    {
        Dir = dir;
        Hostname = hostname;
        _qemu = qemu;
        _sinceStart = sinceStart;
    }

    /// <param name="parameters">The vserver.* kernel parameters beyond the hostname (the network by default).</param>
    /// <param name="prepareRootfs">Changes the busybox image's tree before it becomes the disk.</param>
    public static TestDomain Boot(BuiltKernel kernel, string? parameters = null, Action<string>? prepareRootfs = null)
    {
        var dir = Directory.CreateTempSubdirectory("vsdomain-").FullName;
        try
        {
            var imageDir = Path.Combine(dir, "images", "busybox");
            var rootfs = Path.Combine(imageDir, "rootfs");
            Directory.CreateDirectory(rootfs);
            TestHost.Run("sh", Path.Combine(BuiltKernel.RepoDir, "images", "busybox", "build.sh"), rootfs).ShouldSucceed();
            prepareRootfs?.Invoke(rootfs);
            var (basePath, baseSize) = BaseDisk.EnsureBase(imageDir, rootfs);
            var overlay = Path.Combine(dir, "root.qcow2");
            DomainDisk.Create(basePath, overlay, baseSize);

            var hostname = "ga-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
            var psi = new ProcessStartInfo("qemu-system-x86_64") { UseShellExecute = false, RedirectStandardInput = true };
            foreach (var a in new[]
            {
                "-M", "microvm,acpi=on", "-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", $"file:{Path.Combine(dir, "console.log")}",
                "-kernel", kernel.Vmlinux, "-initrd", kernel.Initrd,
                "-append", $"console=ttyS0 root=/dev/vda rw tsc_early_khz={TscKhz()} panic=-1 " +
                           $"{parameters ?? $"vserver.ip={GuestIp} vserver.gw={Gateway}"} vserver.hostname={hostname}",
                "-drive", $"id=root,file={overlay},format=qcow2,if=none", "-device", "virtio-blk-device,drive=root",
                "-netdev", "user,id=net0,restrict=on", "-device", "virtio-net-device,netdev=net0",
                "-chardev", $"socket,id=agent,path={Path.Combine(dir, "agent.sock")},server=on,wait=off",
                "-device", "virtio-serial-device",
                "-device", $"virtserialport,chardev=agent,name={GuestAgentProtocol.PortName}",
                "-qmp", $"unix:{Path.Combine(dir, "qmp.sock")},server=on,wait=off",
            })
                psi.ArgumentList.Add(a);
            var sw = Stopwatch.StartNew();
            var qemu = Process.Start(psi)!;
            return new TestDomain(dir, hostname, qemu, sw);
        }
        catch
        {
            Directory.Delete(dir, recursive: true);
            throw;
        }
    }

    /// <summary>The host TSC rate in kHz, found as images/kernel/boot-test.sh does: under TCG on microvm the guest
    /// kernel has nothing to calibrate against and hangs in about a third of the boots without tsc_early_khz.</summary>
    public static long TscKhz()
    {
        const string sysfs = "/sys/devices/system/cpu/cpu0/tsc_freq_khz";
        if (File.Exists(sysfs)) return long.Parse(File.ReadAllText(sysfs).Trim(), CultureInfo.InvariantCulture);
        var dmesg = TestHost.Run("dmesg").Stdout.Split('\n');
        foreach (var marker in new[] { "tsc: Refined TSC clocksource calibration: ", "tsc: Detected " })
        {
            var line = dmesg.LastOrDefault(l => l.Contains(marker, StringComparison.Ordinal));
            if (line is not null)
                return (long)Math.Round(double.Parse(line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].Split(' ')[0],
                    CultureInfo.InvariantCulture) * 1000);
        }
        var mhz = File.ReadAllLines("/proc/cpuinfo").First(l => l.StartsWith("cpu MHz", StringComparison.Ordinal)).Split(':')[1].Trim();
        return (long)Math.Round(double.Parse(mhz, CultureInfo.InvariantCulture) * 1000);
    }

    public string Console() => File.Exists(ConsoleLog) ? File.ReadAllText(ConsoleLog) : "(no console log)";

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_qemu.HasExited)
            {
                _qemu.Kill();
                await _qemu.WaitForExitAsync();
            }
        }
        finally
        {
            _qemu.Dispose();
            Directory.Delete(Dir, recursive: true);
        }
    }
}

/// <summary>One booted domain with a connected guest agent client, shared by the tests of <see cref="GuestAgentTests"/>.</summary>
public sealed class AgentDomain(BuiltKernel kernel) : IAsyncLifetime
{
    public TestDomain Domain { get; private set; } = null!;
    public GuestAgentClient Agent { get; private set; } = null!;
    public string Release { get; private set; } = "";
    public TimeSpan ToHello { get; private set; }

    public async ValueTask InitializeAsync()
    {
        Domain = TestDomain.Boot(kernel);
        try
        {
            Agent = await GuestAgentClient.ConnectAsync(Domain.AgentSocket, CancellationToken.None);
            Release = await Agent.WaitReadyAsync(TimeSpan.FromSeconds(60), CancellationToken.None);
            ToHello = Domain.SinceStart;
        }
        catch (Exception e)
        {
            var console = Domain.Console();
            await DisposeAsync();
            throw new InvalidOperationException($"the domain's guest agent did not come up: {e.Message}\n--- console ---\n{console}", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Agent is not null) await Agent.DisposeAsync();
        await Domain.DisposeAsync();
    }
}

public sealed record GuestResult(int Code, string Stdout, string Stderr);

public sealed class GuestAgentTests(BuiltKernel kernel, AgentDomain domain) : IClassFixture<AgentDomain>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static void Log(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    private async Task<GuestResult> RunAsync(GuestCommand command, byte[]? stdin = null)
    {
        using var process = await domain.Agent.StartAsync(command, Ct);
        var stdout = ReadAllAsync(process.Stdout);
        var stderr = process.Stderr is null ? Task.FromResult<byte[]>([]) : ReadAllAsync(process.Stderr);
        if (stdin is not null) await process.Stdin.WriteAsync(stdin, Ct);
        await process.Stdin.DisposeAsync();
        var code = await process.ExitCode.WaitAsync(TimeSpan.FromSeconds(60), Ct);
        return new GuestResult(code, Encoding.UTF8.GetString(await stdout), Encoding.UTF8.GetString(await stderr));
    }

    private static async Task<byte[]> ReadAllAsync(Stream s)
    {
        using var ms = new MemoryStream();
        await s.CopyToAsync(ms, Ct);
        return ms.ToArray();
    }

    [Fact]
    public async Task Uname_through_the_agent_is_the_built_kernel_not_the_hosts()
    {
        Log($"QEMU start to HELLO: {domain.ToHello.TotalMilliseconds:0} ms");
        domain.Release.ShouldBe(kernel.Version);
        var uname = await RunAsync(new GuestCommand(["uname", "-r"]));
        uname.ShouldBe(new GuestResult(0, kernel.Version + "\n", ""));
        uname.Stdout.Trim().ShouldNotBe(TestHost.Run("uname", "-r").Stdout.Trim());
        // The command runs in the guest's root, not the initramfs: the busybox image's os-release is there.
        (await RunAsync(new GuestCommand(["cat", "/etc/os-release"]))).Stdout.ShouldContain("vserver image");
    }

    [Fact]
    public async Task Cat_echoes_stdin_back_and_measures_throughput()
    {
        (await RunAsync(new GuestCommand(["cat"]), "hello guest\n"u8.ToArray())).ShouldBe(new GuestResult(0, "hello guest\n", ""));

        var data = new byte[4 * 1024 * 1024];
        RandomNumberGenerator.Fill(data);
        var sw = Stopwatch.StartNew();
        using var process = await domain.Agent.StartAsync(new GuestCommand(["cat"]), Ct);
        var output = ReadAllAsync(process.Stdout);
        await process.Stdin.WriteAsync(data, Ct);
        await process.Stdin.DisposeAsync();
        var echoed = await output.WaitAsync(TimeSpan.FromSeconds(120), Ct);
        (await process.ExitCode).ShouldBe(0);
        sw.Stop();
        echoed.Length.ShouldBe(data.Length);
        SHA256.HashData(echoed).ShouldBe(SHA256.HashData(data));
        Log($"cat of 4 MiB in and out: {sw.ElapsedMilliseconds} ms = {data.Length / 1048576.0 / sw.Elapsed.TotalSeconds:0.00} MiB/s each way");
    }

    [Fact]
    public async Task Stdout_and_stderr_arrive_separately_and_exit_codes_are_the_shells()
    {
        (await RunAsync(new GuestCommand(["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"])))
            .ShouldBe(new GuestResult(0, "to-out\nmore-out\n", "to-err\n"));
        (await RunAsync(new GuestCommand(["sh", "-c", "exit 7"]))).Code.ShouldBe(7);
        (await RunAsync(new GuestCommand(["sh", "-c", "kill -TERM $$"]))).Code.ShouldBe(128 + 15);
    }

    [Fact]
    public async Task A_missing_program_is_127_with_the_guests_message()
    {
        var e = await Should.ThrowAsync<GuestCommandException>(() => domain.Agent.StartAsync(new GuestCommand(["no-such-program"]), Ct));
        e.ExitCode.ShouldBe(127);
        e.Message.ShouldBe("exec: no-such-program: No such file or directory");
        var notExecutable = await Should.ThrowAsync<GuestCommandException>(() => domain.Agent.StartAsync(new GuestCommand(["/etc/passwd"]), Ct));
        notExecutable.ExitCode.ShouldBe(126);
        var badCwd = await Should.ThrowAsync<GuestCommandException>(() => domain.Agent.StartAsync(new GuestCommand(["true"], Cwd: "/nonexistent"), Ct));
        badCwd.Message.ShouldBe("chdir: /nonexistent: No such file or directory");
    }

    [Fact]
    public async Task Env_and_cwd_reach_the_command()
    {
        var r = await RunAsync(new GuestCommand(["sh", "-c", "echo $GREETING $HOME $PATH; pwd"],
            new Dictionary<string, string> { ["GREETING"] = "hi" }, Cwd: "/etc"));
        r.ShouldBe(new GuestResult(0, "hi /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/etc\n", ""));
    }

    [Fact]
    public async Task Two_sessions_run_at_once_and_one_waiting_does_not_block_the_other()
    {
        using var waiting = await domain.Agent.StartAsync(new GuestCommand(["sh", "-c", "read line; echo got $line"]), Ct);
        var waitingOut = ReadAllAsync(waiting.Stdout);
        // While the first blocks on its stdin, a second session starts, runs and ends.
        (await RunAsync(new GuestCommand(["echo", "second"]))).ShouldBe(new GuestResult(0, "second\n", ""));
        waiting.HasExited.ShouldBeFalse();
        await waiting.Stdin.WriteAsync("first\n"u8.ToArray(), Ct);
        (await waiting.ExitCode.WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBe(0);
        Encoding.UTF8.GetString(await waitingOut).ShouldBe("got first\n");
    }

    [Fact]
    public async Task Hangup_ends_a_running_command_with_sighup()
    {
        using var sleeper = await domain.Agent.StartAsync(new GuestCommand(["sleep", "1000"]), Ct);
        sleeper.Hangup();
        (await sleeper.ExitCode.WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBe(128 + 1);
    }

    [Fact]
    public async Task A_tty_session_sees_a_pts_terminal_of_the_requested_size()
    {
        var r = await RunAsync(new GuestCommand(["sh", "-c", "tty; stty size"], Tty: true, Rows: 33, Cols: 101));
        r.Code.ShouldBe(0);
        r.Stdout.ShouldMatch(@"^/dev/pts/\d+\r\n33 101\r\n$");
    }

    [Fact]
    public async Task The_initramfs_configured_eth0_and_the_hostname_from_the_command_line()
    {
        var addr = await RunAsync(new GuestCommand(["ip", "-4", "addr", "show", "eth0"]));
        addr.Code.ShouldBe(0, addr.ToString());
        addr.Stdout.ShouldContain($"inet {TestDomain.GuestIp} ");
        (await RunAsync(new GuestCommand(["ip", "route", "show", "default"]))).Stdout.ShouldContain($"default via {TestDomain.Gateway} dev eth0");
        (await RunAsync(new GuestCommand(["hostname"]))).Stdout.ShouldBe(domain.Domain.Hostname + "\n");
        (await RunAsync(new GuestCommand(["sh", "-c", "grep -E ' /dev/(pts|shm) ' /proc/mounts | cut -d' ' -f2,3"])))
            .Stdout.ShouldBe("/dev/pts devpts\n/dev/shm tmpfs\n");
    }

    [Fact]
    public async Task Exec_round_trip_latency_of_true()
    {
        var times = new List<double>();
        for (var i = 0; i < 20; i++)
        {
            var sw = Stopwatch.StartNew();
            (await RunAsync(new GuestCommand(["true"]))).Code.ShouldBe(0);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        Log($"exec `true` round trip: median {(times[9] + times[10]) / 2:0.0} ms, min {times[0]:0.0}, max {times[^1]:0.0} (20 runs)");
    }
}

/// <summary>The ACPI power button: QMP system_powerdown makes the guest agent run /sbin/poweroff, and QEMU exits.</summary>
public sealed class GuestPowerButtonTests(BuiltKernel kernel)
{
    [Fact]
    public async Task System_powerdown_over_qmp_shuts_the_busybox_guest_down()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var domain = TestDomain.Boot(kernel);
        await using (var agent = await GuestAgentClient.ConnectAsync(domain.AgentSocket, ct))
        {
            // Up means the button and evdev modules are loaded and the agent is watching /dev/input.
            await agent.WaitReadyAsync(TimeSpan.FromSeconds(60), ct);
        }
        await using var qmp = await QmpClient.ConnectAsync(domain.QmpSocket, TimeSpan.FromSeconds(10), ct);
        var sw = Stopwatch.StartNew();
        await qmp.SystemPowerdownAsync(ct);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            await domain.Qemu.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ShouldAssertException($"QEMU still runs 30 s after system_powerdown\n--- console ---\n{domain.Console()}");
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"system_powerdown to QEMU exit: {sw.ElapsedMilliseconds} ms");
        domain.Qemu.ExitCode.ShouldBe(0);
        domain.Console().ShouldContain("vsguest: power button pressed: running /sbin/poweroff");
    }
}
