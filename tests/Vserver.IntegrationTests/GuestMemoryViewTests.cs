using System.Globalization;
using System.Text;

namespace Vserver.IntegrationTests;

/// <summary>
/// Inside a vserver, free(1) (busybox's uses sysinfo(2)) and /proc/meminfo show the vserver's memory as the agent's
/// meminfo file for it says (RUN/guests/NAME/meminfo, rewritten in place), not the host's.
/// </summary>
public sealed class GuestMemoryViewTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    /// <summary>What the agent would write: a guest at 128M with swap, in the kernel's layout.</summary>
    private static string Meminfo(long totalKb, long freeKb) => string.Create(CultureInfo.InvariantCulture, $"""
        MemTotal:       {totalKb,8} kB
        MemFree:        {freeKb,8} kB
        MemAvailable:   {freeKb + 16384,8} kB
        Buffers:            2048 kB
        Cached:            16384 kB
        SwapCached:            0 kB
        SwapTotal:         32768 kB
        SwapFree:          16384 kB
        Shmem:              1024 kB

        """);

    private static string MeminfoPath(TestHost host, string guest) => Path.Combine(host.RunDir, "guests", guest, "meminfo");

    private static string NotifySocketPath(TestHost host, string guest) => Path.Combine(host.RunDir, "guests", guest, "notify.sock");

    /// <summary>As the agent does it: the same inode, which is what the guest has bound over its /proc/meminfo.</summary>
    private static void RewriteInPlace(string path, string text)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        var bytes = Encoding.ASCII.GetBytes(text);
        file.Write(bytes);
        file.SetLength(bytes.Length);
    }

    /// <summary>The figures of busybox free's row (Mem: total used free shared buff/cache available; Swap: total used free).</summary>
    private static long[] Row(string free, string label) =>
        [.. free.Split('\n').Single(l => l.StartsWith(label, StringComparison.Ordinal))[label.Length..]
            .Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(f => long.Parse(f, CultureInfo.InvariantCulture))];

    private static string WaitForFile(string path, string fragment)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        var text = "";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                text = File.ReadAllText(path);
                if (text.Contains(fragment, StringComparison.Ordinal)) return text;
            }
            catch (IOException)
            {
            }
            Thread.Sleep(100);
        }
        throw new ShouldAssertException($"{path} never showed \"{fragment}\"; last: {text}");
    }

    /// <summary>The monitor's pid, from the pid file (`INIT MONITOR`).</summary>
    private static int MonitorPid(TestHost host, string guest) =>
        int.Parse(File.ReadAllText(Path.Combine(host.RunDir, "guests", guest, "pid")).Split(' ')[1], CultureInfo.InvariantCulture);

    /// <summary>An adopted monitor is no child of the agent: whoever it was reparented to reaps it, a moment later.</summary>
    private static void ShouldEnd(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (Directory.Exists($"/proc/{pid}") && DateTime.UtcNow < deadline) Thread.Sleep(50);
        Directory.Exists($"/proc/{pid}").ShouldBeFalse($"the monitor {pid} must end with its guest");
    }

    [Theory]
    [InlineData("memview-userns", false)]
    [InlineData("memview-priv", true)]
    public void Free_and_proc_meminfo_show_the_agents_file_and_follow_its_rewrites(string name, bool privileged)
    {
        Host.Vsctl(["create", name, "--memory", "256M", .. privileged ? new[] { "--privileged" } : []]).ShouldSucceed();
        Host.Vsctl("start", name).ShouldSucceed();
        var meminfo = MeminfoPath(Host, name);
        File.Exists(NotifySocketPath(Host, name)).ShouldBeTrue("the monitor listens for the listeners of exec");

        // The limit is the total (from the start: the file vsinit binds already says so).
        var initial = Host.Vsctl("exec", name, "--", "free").ShouldSucceed().Stdout;
        Row(initial, "Mem:")[0].ShouldBe(262144, initial);

        // A command that outlives the exec that started it (a daemon): its sysinfo is still answered.
        Host.Vsctl("exec", name, "--", "sh", "-c",
            "(while :; do free > /tmp/free.txt; sleep 0.1; done) </dev/null >/dev/null 2>&1 &").ShouldSucceed();
        var daemonsView = Path.Combine(Host.GuestDir(name), "upper", "tmp", "free.txt");
        WaitForFile(daemonsView, " 262144 ");

        // A new limit reaches the file within the agent's next look, and every reader inside with it.
        Host.Vsctl("set", name, "--memory", "128M").ShouldSucceed();
        Row(WaitForFile(daemonsView, " 131072 "), "Mem:")[0].ShouldBe(131072);
        var free = Host.Vsctl("exec", name, "--", "free").ShouldSucceed().Stdout;
        Row(free, "Mem:")[0].ShouldBe(131072, free);
        var inside = Host.Vsctl("exec", name, "--", "cat", "/proc/meminfo").ShouldSucceed().Stdout;
        inside.ShouldStartWith("MemTotal:         131072 kB\n");
        inside.Split('\n').Select(l => l.Split(':')[0]).ShouldBe(File.ReadAllText(meminfo).Split('\n').Select(l => l.Split(':')[0]));

        // Read-only inside, for root of either kind of guest.
        var write = Host.Vsctl("exec", name, "--", "sh", "-c", "echo 'MemTotal: 1 kB' > /proc/meminfo");
        write.Code.ShouldNotBe(0, write.ToString());
        File.ReadAllText(meminfo).ShouldStartWith("MemTotal:         131072 kB\n");

        var monitor = MonitorPid(Host, name);
        Host.Vsctl("stop", name, "--timeout", "2").ShouldSucceed();
        ShouldEnd(monitor);
        File.Exists(NotifySocketPath(Host, name)).ShouldBeFalse("the monitor removes its socket");
        Host.Vsctl("destroy", name).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(name);
    }

    [Fact]
    public void Exec_still_works_when_the_monitor_cannot_be_reached()
    {
        Host.Vsctl("create", "memview-lost").ShouldSucceed();
        Host.Vsctl("start", "memview-lost").ShouldSucceed();
        File.Delete(NotifySocketPath(Host, "memview-lost"));

        // Its sysinfo(2) now gets ENOSYS (no listener for its filter), but the command runs, and promptly.
        var started = DateTime.UtcNow;
        Host.Vsctl("exec", "memview-lost", "--", "sh", "-c", "free >/dev/null; echo ran").ShouldSucceed().Stdout.ShouldBe("ran\n");
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(10));
        Host.Vsctl("exec", "memview-lost", "--", "cat", "/proc/meminfo").ShouldSucceed().Stdout.ShouldContain("MemTotal:");
        Host.Vsctl("destroy", "memview-lost", "--force").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("memview-lost");
    }

    [Fact]
    public async Task The_monitor_answers_while_no_agent_runs()
    {
        await using var host = await TestHost.StartAsync();
        // Init itself asks, over and over.
        host.Vsctl("create", "memview-alone", "--memory", "256M",
            "--cmd", "sh -c 'while :; do free > /tmp/free.txt; sleep 0.1; done'").ShouldSucceed();
        host.Vsctl("start", "memview-alone").ShouldSucceed();
        var initsView = Path.Combine(host.GuestDir("memview-alone"), "upper", "tmp", "free.txt");
        WaitForFile(initsView, " 262144 ");

        await host.KillAgentAsync();
        RewriteInPlace(MeminfoPath(host, "memview-alone"), Meminfo(131072, 65536));
        Row(WaitForFile(initsView, " 131072 "), "Mem:")[2].ShouldBe(65536);

        // A new agent adopts the guest and writes its file again: the guest's own limit is back.
        await host.StartAgentAsync();
        Row(WaitForFile(initsView, " 262144 "), "Mem:")[0].ShouldBe(262144);
        var free = host.Vsctl("exec", "memview-alone", "--", "free").ShouldSucceed().Stdout;
        Row(free, "Mem:")[0].ShouldBe(262144, free);
        var monitor = MonitorPid(host, "memview-alone");
        host.Vsctl("destroy", "memview-alone", "--force").ShouldSucceed();
        ShouldEnd(monitor);
        host.ShouldHaveNoTraceOf("memview-alone");
    }
}
