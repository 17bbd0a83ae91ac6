using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>What an operator checks on a running vserver: who it thinks it is, what it sees, what it can touch.</summary>
public sealed class VserverTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    [Fact]
    public void Hostname_and_process_list_show_only_the_vserver()
    {
        Host.Vsctl("create", "web1").ShouldSucceed();
        Host.Vsctl("start", "web1").ShouldSucceed();

        Host.Vsctl("exec", "web1", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("web1");
        var ps = Host.Vsctl("exec", "web1", "--", "ps", "-o", "pid,comm").ShouldSucceed().Stdout;
        var rows = ps.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => l.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries)).ToList();
        rows.ShouldContain(r => r[0] == "1" && r[1] == "init", ps);
        rows.ShouldContain(r => r[1] == "syslogd", ps);
        rows.ShouldAllBe(r => r[1] != "vserverd" && r[1] != "dotnet", ps);
        rows.Count.ShouldBeLessThan(8, ps);
        // The guest's root is its own overlay, and /proc/self/cgroup shows it at the root of its cgroup namespace.
        Host.Vsctl("exec", "web1", "--", "cat", "/proc/self/cgroup").ShouldSucceed().Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).ShouldAllBe(l => l.EndsWith(":/"));
        Host.Vsctl("exec", "web1", "--", "cat", "/proc/kcore").Stdout.Length.ShouldBe(0);
    }

    [Fact]
    public void Root_inside_an_unprivileged_vserver_is_an_id_of_its_own_range_outside()
    {
        Host.Vsctl("create", "userns1").ShouldSucceed();
        Host.Vsctl("start", "userns1").ShouldSucceed();
        var info = JsonDocument.Parse(Host.Vsctl("status", "userns1", "-f", "json").ShouldSucceed().Stdout).RootElement;
        info.TryGetProperty("privileged", out _).ShouldBeFalse();
        var hostBase = info.GetProperty("hostIdBase").GetInt64();
        hostBase.ShouldBeGreaterThanOrEqualTo(65536);

        Host.Vsctl("exec", "userns1", "--", "id", "-u").ShouldSucceed().Stdout.Trim().ShouldBe("0");
        Host.Vsctl("exec", "userns1", "--", "cat", "/proc/self/uid_map").ShouldSucceed().Stdout.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .ShouldBe(["0", hostBase.ToString(System.Globalization.CultureInfo.InvariantCulture), "65536"]);
        // The guest's init, seen from the host, runs as the range's first id, not as root.
        var initPid = info.GetProperty("initPid").GetInt32();
        File.ReadAllLines($"/proc/{initPid}/status").Single(l => l.StartsWith("Uid:", StringComparison.Ordinal))
            .Split('\t', StringSplitOptions.RemoveEmptyEntries)[1].ShouldBe(hostBase.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // The image's files look root-owned inside (idmapped lower layer), and what the guest writes is owned by its range.
        Host.Vsctl("exec", "userns1", "--", "stat", "-c", "%u:%g", "/bin/busybox").ShouldSucceed().Stdout.Trim().ShouldBe("0:0");
        Host.Vsctl("exec", "userns1", "--", "sh", "-c", "echo x > /root-file && echo y > /tmp/alice-file && chown 1000:1000 /tmp/alice-file").ShouldSucceed();
        Host.Vsctl("exec", "userns1", "--", "stat", "-c", "%u", "/tmp/alice-file").ShouldSucceed().Stdout.Trim().ShouldBe("1000");
        var upper = Path.Combine(Host.GuestDir("userns1"), "upper");
        OwnerOf(Path.Combine(upper, "root-file")).ShouldBe(hostBase);
        OwnerOf(Path.Combine(upper, "tmp", "alice-file")).ShouldBe(hostBase + 1000);
        OwnerOf(Path.Combine(Host.Root, "images", "busybox", "rootfs", "bin", "busybox")).ShouldBe(0, "the shared image stays root-owned");
        // Every capability inside its own user namespace but those that act only on the host's kernel (LXC's drop
        // list: SYS_MODULE 16, SYS_RAWIO 17, SYS_TIME 25, MAC_OVERRIDE 32, MAC_ADMIN 33); no_new_privs and the filter on.
        var status = Host.Vsctl("exec", "userns1", "--", "cat", "/proc/self/status").ShouldSucceed().Stdout;
        Convert.ToUInt64(Field(status, "CapEff"), 16).ShouldBe(((1UL << 41) - 1) & ~(1UL << 16 | 1UL << 17 | 1UL << 25 | 1UL << 32 | 1UL << 33));
        Field(status, "NoNewPrivs").ShouldBe("1");
        Field(status, "Seccomp").ShouldBe("2");
    }

    [Fact]
    public void A_privileged_vserver_is_host_root_with_a_reduced_capability_set()
    {
        Host.Vsctl("create", "priv1", "--privileged").ShouldSucceed().Stdout.ShouldContain("privileged");
        Host.Vsctl("start", "priv1").ShouldSucceed();
        Host.Vsctl("list").ShouldSucceed().Stdout.Split('\n').Single(l => l.StartsWith("priv1 ", StringComparison.Ordinal))
            .TrimEnd().ShouldEndWith("yes");
        Host.Vsctl("exec", "priv1", "--", "cat", "/proc/self/uid_map").ShouldSucceed().Stdout.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .ShouldBe(["0", "0", "4294967295"]);
        var status = Host.Vsctl("exec", "priv1", "--", "cat", "/proc/self/status").ShouldSucceed().Stdout;
        var bounding = Convert.ToUInt64(Field(status, "CapBnd"), 16);
        (bounding & (1UL << 16)).ShouldBe(0UL, "CAP_SYS_MODULE must be dropped");
        (bounding & (1UL << 21)).ShouldBe(0UL, "CAP_SYS_ADMIN must be dropped");
        (bounding & (1UL << 0)).ShouldNotBe(0UL, "CAP_CHOWN must stay");
        Field(status, "NoNewPrivs").ShouldBe("0");
        Field(status, "Seccomp").ShouldBe("2");
    }

    private static string Field(string status, string key) =>
        status.Split('\n').Single(l => l.StartsWith(key + ":", StringComparison.Ordinal)).Split(':', 2)[1].Trim();

    private static long OwnerOf(string path) =>
        long.Parse(TestHost.Run("stat", "-c", "%u", path).ShouldSucceed().Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void A_file_written_in_one_vserver_is_invisible_in_another_from_the_same_image()
    {
        Host.Vsctl("create", "iso-a").ShouldSucceed();
        Host.Vsctl("create", "iso-b").ShouldSucceed();
        Host.Vsctl("start", "iso-a").ShouldSucceed();
        Host.Vsctl("start", "iso-b").ShouldSucceed();

        Host.Vsctl("exec", "iso-a", "--", "sh", "-c", "echo secret > /etc/only-in-a").ShouldSucceed();
        Host.Vsctl("exec", "iso-a", "--", "cat", "/etc/only-in-a").ShouldSucceed().Stdout.Trim().ShouldBe("secret");
        Host.Vsctl("exec", "iso-b", "--", "cat", "/etc/only-in-a").Code.ShouldBe(1);
        File.Exists(Path.Combine(Host.Root, "images", "busybox", "rootfs", "etc", "only-in-a")).ShouldBeFalse("the image layer must stay untouched");
        File.Exists(Path.Combine(Host.GuestDir("iso-a"), "upper", "etc", "only-in-a")).ShouldBeTrue("writes land in the guest's own layer");
    }

    [Fact]
    public void Exec_passes_the_exit_code_through_and_streams_stdin()
    {
        Host.Vsctl("create", "exec1").ShouldSucceed();
        Host.Vsctl("start", "exec1").ShouldSucceed();

        Host.Vsctl("exec", "exec1", "--", "sh", "-c", "exit 7").Code.ShouldBe(7);
        Host.VsctlWith("hello from stdin\n", "exec", "exec1", "--", "cat").ShouldSucceed().Stdout.ShouldBe("hello from stdin\n");
        var both = Host.Vsctl("exec", "exec1", "--", "sh", "-c", "echo out; echo err >&2");
        both.Stdout.ShouldBe("out\n");
        both.Stderr.ShouldBe("err\n");
        Host.Vsctl("exec", "exec1", "--", "no-such-program").Code.ShouldBe(127);
    }

    [Fact]
    public void List_and_status_show_what_the_operator_asked_for()
    {
        Host.Vsctl("create", "listed", "--memory", "96M", "--cpus", "0.5", "--pids", "100").ShouldSucceed();
        Host.Vsctl("start", "listed").ShouldSucceed();

        var json = JsonDocument.Parse(Host.Vsctl("list", "-f", "json").ShouldSucceed().Stdout);
        var guest = json.RootElement.EnumerateArray().Single(g => g.GetProperty("name").GetString() == "listed");
        guest.GetProperty("state").GetString().ShouldBe("running");
        guest.GetProperty("kind").GetString().ShouldBe("vserver");
        guest.GetProperty("memoryBytes").GetInt64().ShouldBe(96L << 20);
        guest.GetProperty("ipv4").GetString()!.ShouldStartWith(Host.SubnetPrefix + ".");

        var table = Host.Vsctl("list").ShouldSucceed().Stdout.Split('\n');
        table[0].ShouldStartWith("NAME");
        foreach (var column in new[] { "TYPE", "STATE", "IPV4", "MEMORY", "CPUS", "IMAGE" }) table[0].ShouldContain(column);
        var row = table.Single(l => l.StartsWith("listed ", StringComparison.Ordinal));
        row.ShouldContain("running");
        row.ShouldContain("96M");
        row.IndexOf("running", StringComparison.Ordinal).ShouldBe(table[0].IndexOf("STATE", StringComparison.Ordinal), "columns are aligned");

        var status = Host.Vsctl("status", "listed").ShouldSucceed().Stdout;
        status.ShouldContain("running");
        status.ShouldContain("busybox");
    }

    [Fact]
    public void Set_changes_limits_live_and_keeps_them()
    {
        Host.Vsctl("create", "tuned", "--memory", "64M", "--pids", "100").ShouldSucceed();
        Host.Vsctl("start", "tuned").ShouldSucceed();
        var memoryLimit = Path.Combine("/sys/fs/cgroup/memory", Host.CgroupParent, "tuned", "memory.limit_in_bytes");
        File.ReadAllText(memoryLimit).Trim().ShouldBe((64L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));

        Host.Vsctl("set", "tuned", "--memory", "128M", "--pids", "50", "--cpus", "1").ShouldSucceed();

        File.ReadAllText(memoryLimit).Trim().ShouldBe((128L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.ReadAllText(Path.Combine("/sys/fs/cgroup/pids", Host.CgroupParent, "tuned", "pids.max")).Trim().ShouldBe("50");
        File.ReadAllText(Path.Combine("/sys/fs/cgroup/cpu", Host.CgroupParent, "tuned", "cpu.cfs_quota_us")).Trim().ShouldBe("100000");
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(Host.GuestDir("tuned"), "guest.json")));
        config.RootElement.GetProperty("limits").GetProperty("memoryBytes").GetInt64().ShouldBe(128L << 20);

        // A restart keeps the new limits.
        Host.Vsctl("restart", "tuned").ShouldSucceed();
        File.ReadAllText(memoryLimit).Trim().ShouldBe((128L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Pause_freezes_every_process_and_resume_thaws_them()
    {
        Host.Vsctl("create", "frozen").ShouldSucceed();
        Host.Vsctl("start", "frozen").ShouldSucceed();

        Host.Vsctl("pause", "frozen").ShouldSucceed();
        File.ReadAllText(Path.Combine("/sys/fs/cgroup/freezer", Host.CgroupParent, "frozen", "freezer.state")).Trim().ShouldBe("FROZEN");
        Host.Vsctl("status", "frozen").Stdout.ShouldContain("paused");
        Host.Vsctl("exec", "frozen", "--", "true").ShouldFailWith("paused");

        Host.Vsctl("resume", "frozen").ShouldSucceed();
        Host.Vsctl("exec", "frozen", "--", "true").ShouldSucceed();
    }

    [Fact]
    public void Stop_ends_every_process_and_start_brings_the_vserver_back()
    {
        Host.Vsctl("create", "cycle").ShouldSucceed();
        Host.Vsctl("start", "cycle").ShouldSucceed();
        var pid = JsonDocument.Parse(Host.Vsctl("status", "cycle", "-f", "json").Stdout).RootElement.GetProperty("initPid").GetInt32();
        Directory.Exists($"/proc/{pid}").ShouldBeTrue();

        // A service that needs a moment to flush when told to stop gets it: the stop waits for it, and only then ends
        // an init that has nothing left to do.
        Host.Vsctl("exec", "cycle", "--", "sh", "-c",
            "(trap 'sleep 0.5; echo flushed > /root/flushed; exit 0' TERM; while :; do sleep 0.1; done) >/dev/null 2>&1 &").ShouldSucceed();
        Host.Vsctl("stop", "cycle").ShouldSucceed();
        Directory.Exists($"/proc/{pid}").ShouldBeFalse("init must be gone after stop");
        File.ReadAllText(Path.Combine(Host.GuestDir("cycle"), "upper", "root", "flushed")).ShouldBe("flushed\n");
        Host.Vsctl("status", "cycle").Stdout.ShouldContain("its services had exited");
        Host.CgroupExists("cycle").ShouldBeFalse("a stopped guest holds no cgroup");
        Host.Vsctl("status", "cycle").Stdout.ShouldContain("stopped");

        Host.Vsctl("start", "cycle").ShouldSucceed();
        Host.Vsctl("exec", "cycle", "--", "true").ShouldSucceed();
        Host.Vsctl("destroy", "cycle", "--force").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("cycle");
    }
}
