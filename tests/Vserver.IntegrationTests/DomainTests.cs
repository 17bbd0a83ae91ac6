using System.Diagnostics;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>Domains booted for real (TCG on these machines): each test uses its own domain names.</summary>
public sealed class DomainTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private TestHost Host => shared.Host;

    private JsonElement Status(string guest) => JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    private string ConsoleLog(string guest)
    {
        var path = Path.Combine(Host.GuestDir(guest), "console.log");
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    /// <summary>Polls until the condition holds; fails with what was last seen.</summary>
    private static void Eventually(Func<bool> condition, string what, int seconds = 60, Func<string>? seen = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds)) throw new ShouldAssertException($"{what} did not happen within {seconds} s; seen: {seen?.Invoke()}");
            Thread.Sleep(100);
        }
    }

    private void CreateAndStart(string name, params string[] extra)
    {
        Host.Vsctl(["create", name, "--kind", "domain", .. extra.Contains("--memory") ? extra : [.. extra, "--memory", "128M"]]).ShouldSucceed();
        Host.Vsctl("start", name).ShouldSucceed();
    }

    /// <summary>exec waits for the guest agent itself, so the first one also waits for the boot.</summary>
    private string Exec(string name, params string[] command) => Host.Vsctl(["exec", name, "--", .. command]).ShouldSucceed().Stdout;

    [Fact]
    public void A_domain_boots_its_own_kernel_and_the_console_log_shows_the_banner_and_init()
    {
        CreateAndStart("dom-boot");
        var version = File.ReadAllText(Path.Combine(Host.Root, "kernels", "default", "version")).Trim();
        Exec("dom-boot", "uname", "-r").Trim().ShouldBe(version);
        version.ShouldNotBe(Environment.OSVersion.Version.ToString());
        TestHost.Run("uname", "-r").Stdout.Trim().ShouldNotBe(version);
        Exec("dom-boot", "hostname").Trim().ShouldBe("dom-boot");

        var log = ConsoleLog("dom-boot");
        log.ShouldContain($"Linux version {version}");
        log.ShouldContain("vserver-initramfs: modules loaded");
        log.ShouldContain("busybox init: /etc/init.d/rcS starting on dom-boot");

        var status = Status("dom-boot");
        status.GetProperty("kind").GetString().ShouldBe("domain");
        status.GetProperty("state").GetString().ShouldBe("running");
        status.GetProperty("accelerator").GetString().ShouldNotBeNullOrEmpty();
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^dom-boot\s+domain\s+running");

        // stdout, stderr and the exit code come back apart, as from a vserver.
        var r = Host.Vsctl("exec", "dom-boot", "--", "sh", "-c", "echo out; echo err >&2; exit 7");
        r.Code.ShouldBe(7);
        r.Stdout.ShouldBe("out\n");
        r.Stderr.ShouldContain("err");
        Host.Vsctl("exec", "dom-boot", "--", "/no/such/program").Code.ShouldBe(127);
        Host.VsctlWith("hello from stdin\n", "exec", "dom-boot", "--", "cat").ShouldSucceed().Stdout.ShouldBe("hello from stdin\n");

        // stop is an ACPI power-down the guest acts on; the domain powers itself off.
        Host.Vsctl("stop", "dom-boot").ShouldSucceed();
        var stopped = Status("dom-boot");
        stopped.GetProperty("state").GetString().ShouldBe("stopped");
        stopped.GetProperty("lastExit").GetProperty("description").GetString().ShouldBe("the guest powered off");
        Host.QemuPids("dom-boot").ShouldBeEmpty();

        Host.Vsctl("destroy", "dom-boot").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dom-boot");
    }

    [Fact]
    public void Pause_stops_the_guests_clock_driven_output_and_resume_continues_it()
    {
        CreateAndStart("dom-pause");
        // A ticker on the serial console: one line every 0.2 s, independent of any exec session.
        Exec("dom-pause", "sh", "-c", "setsid sh -c 'while :; do echo tick; sleep 0.2; done' </dev/null >/dev/console 2>&1 &");
        int Ticks() => ConsoleLog("dom-pause").Split('\n').Count(l => l.TrimEnd('\r') == "tick");
        Eventually(() => Ticks() >= 3, "ticks on the console", seen: () => ConsoleLog("dom-pause")[^200..]);

        Host.Vsctl("pause", "dom-pause").ShouldSucceed();
        Status("dom-pause").GetProperty("state").GetString().ShouldBe("paused");
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^dom-pause\s+domain\s+paused");
        Thread.Sleep(300);
        var paused = Ticks();
        Thread.Sleep(1500);
        Ticks().ShouldBe(paused, "the guest printed while paused");
        Host.Vsctl("exec", "dom-pause", "--", "true").ShouldFailWith("paused");

        Host.Vsctl("resume", "dom-pause").ShouldSucceed();
        Eventually(() => Ticks() >= paused + 3, "ticks after resume");
        Status("dom-pause").GetProperty("state").GetString().ShouldBe("running");
        Host.Vsctl("destroy", "--force", "dom-pause").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dom-pause");
    }

    [Fact]
    public void Save_writes_the_running_domain_to_a_file_and_restore_brings_it_back_with_its_files()
    {
        CreateAndStart("dom-save");
        Exec("dom-save", "sh", "-c", "echo kept-across-save > /root/marker; echo in-memory > /dev/shm/marker");
        var address = Status("dom-save").GetProperty("ipv4").GetString();
        var file = Path.Combine(Host.Dir, "dom-save.state");

        Host.Vsctl("save", "dom-save", file).ShouldSucceed();
        File.Exists(file).ShouldBeTrue();
        Host.QemuPids("dom-save").ShouldBeEmpty();
        Host.Vsctl("status", "dom-save").ShouldFailWith("no guest named 'dom-save'");
        Host.ShouldHaveNoTraceOf("dom-save");

        Host.Vsctl("restore", file).ShouldSucceed();
        var status = Status("dom-save");
        status.GetProperty("state").GetString().ShouldBe("running");
        status.GetProperty("ipv4").GetString().ShouldBe(address);
        Exec("dom-save", "cat", "/root/marker").ShouldBe("kept-across-save\n");
        // /dev/shm is memory only: it is back because the memory is.
        Exec("dom-save", "cat", "/dev/shm/marker").ShouldBe("in-memory\n");

        // A second restore of the same file finds the name taken; nothing of the running one is touched.
        Host.Vsctl("restore", file).ShouldFailWith("already exists");
        Exec("dom-save", "cat", "/root/marker").ShouldBe("kept-across-save\n");
        Host.Vsctl("destroy", "--force", "dom-save").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dom-save");
    }

    [Fact]
    public void A_file_that_is_not_a_save_file_is_refused_and_leaves_nothing()
    {
        var junk = Path.Combine(Host.Dir, "junk.state");
        File.WriteAllText(junk, "not a save file\n");
        Host.Vsctl("restore", junk).ShouldFailWith("is not a vserver save file");
        var truncated = Path.Combine(Host.Dir, "truncated.state");
        File.WriteAllText(truncated, "VSERVER-SAVE 1\n{\"config\":{\"name\":\"dom-cut\",\"kind\":\"domain\",\"image\":\"busybox\"},\"accelerator\":\"tcg\"}\nQEVM");
        Host.Vsctl("restore", truncated).ShouldFailWith("is incomplete");
        Host.Vsctl("restore", Path.Combine(Host.Dir, "missing.state")).ShouldFailWith("does not exist");
        Host.ShouldHaveNoTraceOf("dom-cut");
    }

    [Fact]
    public void A_vserver_and_a_domain_on_one_host_reach_each_other()
    {
        // Privileged: busybox ping needs a raw socket, which an unprivileged vserver's root does not get.
        Host.Vsctl("create", "reach-vs", "--privileged").ShouldSucceed();
        Host.Vsctl("start", "reach-vs").ShouldSucceed();
        CreateAndStart("reach-dom");
        var vs = Status("reach-vs").GetProperty("ipv4").GetString()!;
        var dom = Status("reach-dom").GetProperty("ipv4").GetString()!;
        Exec("reach-dom", "ip", "-4", "-o", "addr", "show", "eth0").ShouldContain($"{dom}/24");

        Exec("reach-dom", "ping", "-c", "1", "-W", "5", vs).ShouldContain("1 packets received");
        Host.Vsctl("exec", "reach-vs", "--", "ping", "-c", "1", "-W", "5", dom).ShouldSucceed().Stdout.ShouldContain("1 packets received");
        // And a TCP service in the domain answers the vserver.
        Exec("reach-dom", "sh", "-c", "setsid nc -ll -p 80 -e echo hello-from-domain </dev/null >/dev/null 2>&1 &");
        Eventually(() => Host.Vsctl("exec", "reach-vs", "--", "nc", "-w", "3", dom, "80").Stdout.Trim() == "hello-from-domain", "an answer from the domain's port 80");
        Host.Vsctl("destroy", "--force", "reach-dom").ShouldSucceed();
        Host.Vsctl("destroy", "--force", "reach-vs").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("reach-dom");
    }

    [Fact]
    public void Memory_is_a_live_balloon_target_within_the_domains_maximum()
    {
        CreateAndStart("dom-mem", "--memory", "256M");
        long MemTotalKib() => long.Parse(Exec("dom-mem", "sh", "-c", "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo").Trim(),
            System.Globalization.CultureInfo.InvariantCulture);
        var before = MemTotalKib();
        Host.Vsctl("set", "dom-mem", "--memory", "160M").ShouldSucceed();
        // The balloon driver hands the pages back to the host: the guest sees less memory in total.
        Eventually(() => MemTotalKib() < before - 64 * 1024, "the balloon inflating", seen: () => $"{MemTotalKib()} kB, was {before} kB");
        Status("dom-mem").GetProperty("memoryBytes").GetInt64().ShouldBe(160L << 20);
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Host.GuestDir("dom-mem"), "guest.json"))).RootElement
            .GetProperty("limits").GetProperty("memoryBytes").GetInt64().ShouldBe(160L << 20);
        Host.Vsctl("set", "dom-mem", "--memory", "512M").ShouldFailWith("above domain 'dom-mem''s maximum of 256M");
        Host.Vsctl("destroy", "--force", "dom-mem").ShouldSucceed();
    }

    private long MemTotalKib(string name) => long.Parse(Exec(name, "sh", "-c", "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo").Trim(),
        System.Globalization.CultureInfo.InvariantCulture);

    private JsonElement StatRow(string name) => JsonDocument.Parse(Host.Vsctl("stat", "-f", "json", name).ShouldSucceed().Stdout).RootElement
        .GetProperty("guests").EnumerateArray().Single();

    [Fact]
    public void Under_pressure_a_domains_balloon_shrinks_to_its_guarantee_and_grows_back_after()
    {
        CreateAndStart("dom-squeeze", "--memory", "256M", "--memory-min", "128M");
        var full = MemTotalKib("dom-squeeze");
        Status("dom-squeeze").GetProperty("memoryMinBytes").GetInt64().ShouldBe(128L << 20);
        try
        {
            // The highest threshold the agent takes, the pool's whole capacity: more than the pool ever has free
            // while anything runs, so it is under pressure at the agent's next look.
            var capacity = JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement
                .GetProperty("pool").GetProperty("capacityBytes").GetInt64();
            Host.Vsctl("host", "set", "--min-free", capacity.ToString(System.Globalization.CultureInfo.InvariantCulture)).ShouldSucceed();
            Eventually(() => StatRow("dom-squeeze").GetProperty("balloonBytes").GetInt64() == 128L << 20, "the balloon reaching the 128M guarantee",
                seen: () => StatRow("dom-squeeze").ToString());
            Eventually(() => MemTotalKib("dom-squeeze") <= full - 100 * 1024, "the guest seeing less memory", seen: () => $"{MemTotalKib("dom-squeeze")} kB of {full}");
            var stat = JsonDocument.Parse(Host.Vsctl("stat", "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("host");
            stat.GetProperty("underPressure").GetBoolean().ShouldBeTrue();
            stat.GetProperty("notes").EnumerateArray().Select(n => n.GetString()).ShouldContain(n => n!.Contains("domain dom-squeeze held at 128M of 256M"));
        }
        finally
        {
            Host.Vsctl("host", "set", "--min-free", "0").ShouldSucceed();
        }
        Eventually(() => StatRow("dom-squeeze").GetProperty("balloonBytes").GetInt64() == 256L << 20, "the balloon going back to 256M",
            seen: () => StatRow("dom-squeeze").ToString());
        Eventually(() => MemTotalKib("dom-squeeze") >= full, "the guest seeing all its memory again", seen: () => $"{MemTotalKib("dom-squeeze")} kB of {full}");
        // The floor is the floor: the operator cannot set the target below it either.
        Host.Vsctl("set", "dom-squeeze", "--memory", "100M").ShouldFailWith("below the domain's guarantee of 128M");
        Host.Vsctl("destroy", "--force", "dom-squeeze").ShouldSucceed();
    }

    [Fact]
    public void Ksm_switched_on_merges_a_domains_identical_pages_and_the_savings_are_shown()
    {
        const string Run = "/sys/kernel/mm/ksm/run";
        var before = File.ReadAllText(Run).Trim();
        CreateAndStart("dom-ksm", "--memory", "256M");
        Exec("dom-ksm", "true");
        JsonElement Pool() => JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("pool");
        try
        {
            Host.Vsctl("host", "set", "--ksm", "on").ShouldSucceed();
            File.ReadAllText(Run).Trim().ShouldBe("1");
            Pool().GetProperty("ksm").GetBoolean().ShouldBeTrue();
            Eventually(() => Pool().GetProperty("ksmSavedBytes").GetInt64() > 1L << 20, "KSM saving memory", seconds: 120,
                seen: () => Pool().ToString());
            Eventually(() => StatRow("dom-ksm").GetProperty("ksmBytes").GetInt64() > 0, "the domain's merged pages", seconds: 30,
                seen: () => StatRow("dom-ksm").ToString());
            Host.Vsctl("stat").ShouldSucceed().Stdout.ShouldContain("KSM");
        }
        finally
        {
            Host.Vsctl("host", "set", "--ksm", "off").ShouldSucceed();
            // Off unmerges (run = 2); leave KSM as this host had it before the test.
            if (before == "1") File.WriteAllText(Run, "1");
        }
        File.ReadAllText(Run).Trim().ShouldNotBe("1");
        Host.Vsctl("destroy", "--force", "dom-ksm").ShouldSucceed();
    }

    [Fact]
    public void Qemu_killed_under_a_running_domain_marks_it_crashed_and_the_restart_policy_brings_it_back()
    {
        CreateAndStart("dom-crash", "--restart", "on-failure");
        Exec("dom-crash", "true");
        var pid = Host.QemuPids("dom-crash").ShouldHaveSingleItem();
        TestHost.Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)).ShouldSucceed();
        // Counted when the restart begins; running once the new QEMU is up.
        Eventually(() => Status("dom-crash") is var s && s.GetProperty("restartCount").GetInt32() >= 1 && s.GetProperty("state").GetString() == "running",
            "a restart after the crash");
        Status("dom-crash").GetProperty("lastExit").GetProperty("description").GetString()!.ShouldStartWith("crashed: QEMU was killed by signal 9");
        Host.QemuPids("dom-crash").ShouldHaveSingleItem().ShouldNotBe(pid);
        Exec("dom-crash", "true");

        // Without a restart policy it stays down, shown as crashed.
        Host.Vsctl("create", "dom-down", "--kind", "domain", "--memory", "128M").ShouldSucceed();
        Host.Vsctl("start", "dom-down").ShouldSucceed();
        TestHost.Run("kill", "-9", Host.QemuPids("dom-down").ShouldHaveSingleItem().ToString(System.Globalization.CultureInfo.InvariantCulture)).ShouldSucceed();
        Eventually(() => Status("dom-down").GetProperty("state").GetString() == "crashed", "the domain shown as crashed");
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^dom-down\s+domain\s+crashed");
        Host.Vsctl("destroy", "--force", "dom-crash").ShouldSucceed();
        Host.Vsctl("destroy", "dom-down").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dom-crash");
        Host.ShouldHaveNoTraceOf("dom-down");
    }

    [Fact]
    public void Ten_domains_from_one_image_share_one_base_disk_and_add_ten_small_overlays()
    {
        var names = Enumerable.Range(0, 10).Select(i => $"dom-ten-{i}").ToList();
        foreach (var n in names) Host.Vsctl("create", n, "--kind", "domain", "--disk", "1G").ShouldSucceed();
        var baseDisk = new FileInfo(Path.Combine(Host.Root, "images", "busybox", "disk.ext4"));
        baseDisk.Exists.ShouldBeTrue();
        Directory.EnumerateFiles(Host.Root, "*.ext4", SearchOption.AllDirectories).Count().ShouldBe(1, "one base disk, not one per domain");
        long Allocated(string path) => long.Parse(TestHost.Run("stat", "-c", "%b", path).ShouldSucceed().Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512;
        var overlays = names.Select(n => Allocated(Path.Combine(Host.GuestDir(n), "disk.qcow2"))).ToList();
        // Each overlay holds only the grown filesystem's metadata: far less than a copy of the base.
        overlays.ShouldAllBe(size => size < Math.Max(4L << 20, baseDisk.Length / 4));
        overlays.Sum().ShouldBeLessThan(baseDisk.Length);
        foreach (var n in names) Host.Vsctl("destroy", n).ShouldSucceed();
        foreach (var n in names) Host.ShouldHaveNoTraceOf(n);
    }

    [Fact]
    public void Bad_domain_requests_get_one_clear_line_and_leave_nothing()
    {
        Host.Vsctl("create", "bad-kern", "--kind", "domain", "--kernel", "nosuch").ShouldFailWith("unknown kernel 'nosuch'");
        Host.Vsctl("create", "bad-disk", "--kind", "domain", "--disk", "1M").ShouldFailWith("is smaller than image busybox needs");
        Host.Vsctl("create", "bad-cpus", "--kind", "domain", "--vcpus", (Environment.ProcessorCount + 1).ToString(System.Globalization.CultureInfo.InvariantCulture))
            .ShouldFailWith("invalid vcpus");
        Host.Vsctl("create", "bad-mem", "--kind", "domain", "--memory", "100T").ShouldFailWith("more than this host has");
        Host.Vsctl("create", "bad-opt", "--kind", "domain", "--privileged").ShouldFailWith("is for vservers");
        Host.Vsctl("create", "bad-kind", "--kind", "vm").Code.ShouldNotBe(0);
        foreach (var n in new[] { "bad-kern", "bad-disk", "bad-cpus", "bad-mem", "bad-opt", "bad-kind" })
        {
            Host.Vsctl("status", n).ShouldFailWith("no guest named");
            Host.ShouldHaveNoTraceOf(n);
        }

        // QEMU that dies at start: its own complaint reaches the operator, and nothing keeps running.
        Host.Vsctl("create", "bad-qemu", "--kind", "domain", "--memory", "128M").ShouldSucceed();
        File.WriteAllText(Path.Combine(Host.GuestDir("bad-qemu"), "disk.qcow2"), "this is not a qcow2 image");
        var start = Host.Vsctl("start", "bad-qemu");
        start.Code.ShouldNotBe(0);
        start.Stderr.ShouldContain("QEMU");
        start.Stderr.ShouldContain("qcow2");
        start.Stderr.Trim().Split('\n').Length.ShouldBe(1);
        Host.QemuPids("bad-qemu").ShouldBeEmpty();
        Status("bad-qemu").GetProperty("state").GetString().ShouldBe("stopped");
        Host.Vsctl("destroy", "bad-qemu").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("bad-qemu");

        // Domain-only verbs on a vserver say so.
        Host.Vsctl("create", "bad-vs").ShouldSucceed();
        Host.Vsctl("save", "bad-vs", Path.Combine(Host.Dir, "vs.state")).ShouldFailWith("is a vserver");
        Host.Vsctl("destroy", "bad-vs").ShouldSucceed();
    }

    [Fact]
    public void The_host_reports_the_accelerator_domains_get()
    {
        var info = Host.Vsctl("host").ShouldSucceed().Stdout;
        info.ShouldMatch(@"(?m)^accelerator:?\s+(kvm|tcg \(emulated: .+\))");
        Host.Vsctl("kernel", "list").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^default\s+6\.");
    }
}
