using Errno = Vserver.Isolation.Interop.Errno;
using Shouldly;
using Vserver.Isolation.Cgroups;
using Xunit;

namespace Vserver.Tests.Cgroups;

public sealed class CgroupV1BackendTests : IDisposable
{
    private const long MiB = 1L << 20;

    private readonly FakeCgroupV1Kernel kernel = new();
    private readonly CgroupV1Hierarchy hierarchy;

    public CgroupV1BackendTests()
    {
        hierarchy = CgroupV1Hierarchy.FromMounts(CgroupMount.ParseMountInfo(kernel.MountInfo()), kernel);
    }

    public void Dispose() => kernel.Dispose();

    private string Memory(string file) => kernel.Dir("memory", Path.Combine("vserver/web1", file));

    [Fact]
    public void FromMounts_picks_the_managed_controllers()
    {
        hierarchy.Version.ShouldBe(CgroupVersion.V1);
        hierarchy.ControllerMounts.Keys.ShouldBe(["memory", "cpu", "pids", "freezer", "cpuacct", "cpuset"], ignoreOrder: true);
        hierarchy.ControllerMounts["memory"].ShouldBe(kernel.ControllerMounts["memory"]);
    }

    [Fact]
    public void Create_makes_the_directory_in_every_managed_hierarchy_and_one_procs_file_each()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        foreach (string controller in (string[])["memory", "cpu", "cpuacct", "pids", "freezer", "cpuset"])
        {
            Directory.Exists(kernel.Dir(controller, "vserver/web1")).ShouldBeTrue(controller);
        }

        Directory.Exists(kernel.Dir("devices", "vserver")).ShouldBeFalse();
        Directory.Exists(kernel.Dir("name=systemd", "vserver")).ShouldBeFalse();
        cg.ProcsFiles.Count.ShouldBe(6);
        cg.ProcsFiles.ShouldContain(kernel.Dir("freezer", "vserver/web1/cgroup.procs"));
        cg.ProcsFiles.ShouldContain(kernel.Dir("cpuset", "vserver/web1/cgroup.procs"));
    }

    [Fact]
    public void Comounted_controllers_share_one_directory_and_one_procs_file()
    {
        using var k = new FakeCgroupV1Kernel("cpu,cpuacct", "memory", "pids", "freezer");
        var h = CgroupV1Hierarchy.FromMounts(CgroupMount.ParseMountInfo(k.MountInfo()), k);

        ICgroup cg = h.Create("g");

        cg.ProcsFiles.Count.ShouldBe(4);
        h.ControllerMounts["cpu"].ShouldBe(h.ControllerMounts["cpuacct"]);
        h.ControllerMounts.ContainsKey("cpuset").ShouldBeFalse();
    }

    [Fact]
    public void Create_copies_cpuset_cpus_and_mems_from_the_parent_parents_first()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        FakeCgroupKernel.Get(kernel.Dir("cpuset", "vserver/cpuset.cpus")).ShouldBe("0-3");
        FakeCgroupKernel.Get(kernel.Dir("cpuset", "vserver/cpuset.mems")).ShouldBe("0");
        FakeCgroupKernel.Get(kernel.Dir("cpuset", "vserver/web1/cpuset.cpus")).ShouldBe("0-3");
        FakeCgroupKernel.Get(kernel.Dir("cpuset", "vserver/web1/cpuset.mems")).ShouldBe("0");
        kernel.Writes.Where(w => w.Path.EndsWith("cpuset.cpus", StringComparison.Ordinal)).Select(w => w.Path)
            .ShouldBe([kernel.Dir("cpuset", "vserver/cpuset.cpus"), kernel.Dir("cpuset", "vserver/web1/cpuset.cpus")]);

        // the fake refuses tasks in an empty cpuset (ENOSPC), so this proves the copy is in place
        Should.NotThrow(() => cg.AddProcess(1234));
    }

    [Fact]
    public void Create_is_idempotent_and_keeps_a_configured_cpuset()
    {
        hierarchy.Create("vserver/web1");
        FakeCgroupKernel.Put(kernel.Dir("cpuset", "vserver/web1/cpuset.cpus"), "1\n");
        int writes = kernel.Writes.Count;

        hierarchy.Create("vserver/web1");

        kernel.Writes.Count.ShouldBe(writes);
        FakeCgroupKernel.Get(kernel.Dir("cpuset", "vserver/web1/cpuset.cpus")).ShouldBe("1\n");
    }

    [Fact]
    public void Apply_lowering_from_unlimited_writes_limit_before_memsw()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        cg.Apply(new CgroupLimits(64 * MiB, 0.5, 20));

        kernel.Writes.Where(w => w.Path.Contains("memory.", StringComparison.Ordinal) && !w.Path.EndsWith("memory.soft_limit_in_bytes", StringComparison.Ordinal)).ShouldBe(
        [
            (Memory("memory.limit_in_bytes"), "67108864"),
            (Memory("memory.memsw.limit_in_bytes"), "67108864"),
        ]);
        FakeCgroupKernel.Get(Memory("memory.limit_in_bytes")).Trim().ShouldBe("67108864");
        FakeCgroupKernel.Get(Memory("memory.memsw.limit_in_bytes")).Trim().ShouldBe("67108864");
    }

    [Fact]
    public void Apply_raising_writes_memsw_before_limit_and_unlimited_is_minus_one()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        cg.Apply(new CgroupLimits(64 * MiB));
        kernel.Writes.Clear();

        cg.Apply(new CgroupLimits(128 * MiB));
        cg.Apply(new CgroupLimits(32 * MiB));
        cg.Apply(CgroupLimits.Unlimited);

        kernel.Writes.Where(w => w.Path.Contains("memory.", StringComparison.Ordinal) && !w.Path.EndsWith("memory.soft_limit_in_bytes", StringComparison.Ordinal)).Select(w => $"{Path.GetFileName(w.Path)}={w.Value}").ShouldBe(
        [
            "memory.memsw.limit_in_bytes=134217728",
            "memory.limit_in_bytes=134217728",
            "memory.limit_in_bytes=33554432",
            "memory.memsw.limit_in_bytes=33554432",
            "memory.memsw.limit_in_bytes=-1",
            "memory.limit_in_bytes=-1",
        ]);
        cg.ReadStats().MemoryLimitBytes.ShouldBeNull();
    }

    [Fact]
    public void Apply_respects_a_memsw_that_is_higher_than_the_limit()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        FakeCgroupKernel.Put(Memory("memory.limit_in_bytes"), "67108864\n");
        FakeCgroupKernel.Put(Memory("memory.memsw.limit_in_bytes"), "268435456\n");

        Should.NotThrow(() => cg.Apply(new CgroupLimits(128 * MiB)));

        FakeCgroupKernel.Get(Memory("memory.limit_in_bytes")).Trim().ShouldBe("134217728");
        FakeCgroupKernel.Get(Memory("memory.memsw.limit_in_bytes")).Trim().ShouldBe("134217728");
    }

    [Fact]
    public void Apply_without_swap_accounting_only_writes_the_limit()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        File.Delete(Memory("memory.memsw.limit_in_bytes"));

        cg.Apply(new CgroupLimits(64 * MiB));

        kernel.WritesTo("memory.limit_in_bytes").ShouldBe(["67108864"]);
        kernel.WritesTo("memory.memsw.limit_in_bytes").ShouldBeEmpty();
    }

    [Fact]
    public void Apply_below_usage_reports_EBUSY_with_the_reason()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        FakeCgroupKernel.Put(Memory("memory.usage_in_bytes"), (100 * MiB).ToString(System.Globalization.CultureInfo.InvariantCulture));

        var ex = Should.Throw<CgroupException>(() => cg.Apply(new CgroupLimits(64 * MiB)));

        ex.Message.ShouldBe($"write '{Memory("memory.limit_in_bytes")}': EBUSY (usage is above the new limit)");
        ex.Errno.ShouldBe(Errno.EBUSY);
        ex.ErrnoName.ShouldBe("EBUSY");
        ex.Operation.ShouldBe("write");
        ex.Path.ShouldBe(Memory("memory.limit_in_bytes"));
    }

    [Fact]
    public void Apply_writes_cpu_period_then_quota_and_pids()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        cg.Apply(new CgroupLimits(Cpus: 0.5, Pids: 20));

        string cpu = kernel.Dir("cpu", "vserver/web1");
        kernel.Writes.Where(w => w.Path.StartsWith(cpu + "/", StringComparison.Ordinal)).ShouldBe(
        [
            (Path.Combine(cpu, "cpu.cfs_period_us"), "100000"),
            (Path.Combine(cpu, "cpu.cfs_quota_us"), "50000"),
        ]);
        FakeCgroupKernel.Get(kernel.Dir("pids", "vserver/web1/pids.max")).ShouldBe("20");

        cg.Apply(CgroupLimits.Unlimited);

        FakeCgroupKernel.Get(Path.Combine(cpu, "cpu.cfs_quota_us")).ShouldBe("-1");
        FakeCgroupKernel.Get(kernel.Dir("pids", "vserver/web1/pids.max")).ShouldBe("max");
    }

    [Fact]
    public void The_guarantee_is_the_soft_limit_and_memory_stat_is_the_subtrees_totals()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        cg.Apply(new CgroupLimits(MemoryBytes: 64L << 20, MemoryLowBytes: 16L << 20));
        FakeCgroupKernel.Get(Memory("memory.soft_limit_in_bytes")).ShouldBe("16777216");
        cg.Apply(CgroupLimits.Unlimited);
        FakeCgroupKernel.Get(Memory("memory.soft_limit_in_bytes")).ShouldBe("-1");

        FakeCgroupKernel.Put(Memory("memory.stat"), "cache 1\nrss 2\ntotal_cache 300\ntotal_rss 100\ntotal_swap 7\n");
        var stat = cg.ReadMemoryStat();
        stat["cache"].ShouldBe(300);
        stat["rss"].ShouldBe(100);
        stat["swap"].ShouldBe(7);
    }

    [Fact]
    public void ReadStats_parses_the_v1_files()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        FakeCgroupKernel.Put(Memory("memory.usage_in_bytes"), "1000000\n");
        FakeCgroupKernel.Put(Memory("memory.max_usage_in_bytes"), "2000000\n");
        FakeCgroupKernel.Put(Memory("memory.limit_in_bytes"), "67108864\n");
        FakeCgroupKernel.Put(Memory("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        FakeCgroupKernel.Put(kernel.Dir("pids", "vserver/web1/pids.current"), "3\n");
        FakeCgroupKernel.Put(kernel.Dir("pids", "vserver/web1/pids.max"), "20\n");
        FakeCgroupKernel.Put(kernel.Dir("cpuacct", "vserver/web1/cpuacct.usage"), "2500000000\n");
        FakeCgroupKernel.Put(kernel.Dir("freezer", "vserver/web1/freezer.state"), "FROZEN\n");

        cg.ReadStats().ShouldBe(new CgroupStats(1000000, 2000000, 67108864, 2, 3, 20, TimeSpan.FromSeconds(2.5), Frozen: true));
    }

    [Fact]
    public void ReadStats_treats_page_counter_max_as_unlimited()
    {
        ICgroup cg = hierarchy.Create("g");

        CgroupStats stats = cg.ReadStats();

        stats.MemoryLimitBytes.ShouldBeNull();
        stats.PidsLimit.ShouldBeNull();
        stats.Frozen.ShouldBeFalse();
    }

    [Fact]
    public void Freeze_and_Thaw_drive_freezer_state()
    {
        ICgroup cg = hierarchy.Create("g");

        cg.Freeze();
        FakeCgroupKernel.Get(kernel.Dir("freezer", "g/freezer.state")).Trim().ShouldBe("FROZEN");
        cg.Thaw();

        FakeCgroupKernel.Get(kernel.Dir("freezer", "g/freezer.state")).Trim().ShouldBe("THAWED");
    }

    [Fact]
    public void Freeze_stuck_in_FREEZING_times_out_and_thaws_again()
    {
        var h = new CgroupV1Hierarchy(kernel.ControllerMounts, kernel) { Timeout = TimeSpan.FromMilliseconds(100) };
        ICgroup cg = h.Create("g");
        kernel.FreezerCompletes = false;

        var ex = Should.Throw<CgroupException>(cg.Freeze);

        ex.Message.ShouldStartWith($"freeze '{kernel.Dir("freezer", "g")}': ETIMEDOUT (");
        FakeCgroupKernel.Get(kernel.Dir("freezer", "g/freezer.state")).Trim().ShouldBe("THAWED");
    }

    [Fact]
    public void Pids_reads_the_pids_hierarchy()
    {
        ICgroup cg = hierarchy.Create("g");
        FakeCgroupKernel.Put(kernel.Dir("pids", "g/cgroup.procs"), "30\n10\n");
        FakeCgroupKernel.Put(kernel.Dir("memory", "g/cgroup.procs"), "99\n");

        cg.Pids().ShouldBe([10, 30]);
    }

    [Fact]
    public void Destroy_freezes_kills_every_process_of_every_hierarchy_thaws_and_removes_all_directories()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        cg.AddProcess(501);
        FakeCgroupKernel.Put(kernel.Dir("memory", "vserver/web1/cgroup.procs"), "501\n502\n"); // 502 joined only memory

        cg.Destroy();

        kernel.Killed.Distinct().ShouldBe([501, 502], ignoreOrder: true);
        int freeze = kernel.Log.IndexOf("freezer.state=FROZEN");
        int thaw = kernel.Log.IndexOf("freezer.state=THAWED");
        freeze.ShouldBeGreaterThanOrEqualTo(0);
        freeze.ShouldBeLessThan(kernel.Log.IndexOf("kill 501"));
        thaw.ShouldBeGreaterThan(kernel.Log.IndexOf("kill 501"));
        foreach (string controller in (string[])["memory", "cpu", "cpuacct", "pids", "freezer", "cpuset"])
        {
            Directory.Exists(kernel.Dir(controller, "vserver/web1")).ShouldBeFalse(controller);
            Directory.Exists(kernel.Dir(controller, "vserver")).ShouldBeTrue(controller);
        }

        hierarchy.Exists("vserver/web1").ShouldBeFalse();
        cg.Destroy();
    }

    [Fact]
    public void Destroy_of_a_frozen_cgroup_thaws_it()
    {
        ICgroup cg = hierarchy.Create("g");
        cg.AddProcess(77);
        cg.Freeze();

        cg.Destroy();

        kernel.Killed.ShouldContain(77);
        kernel.Log.Last(l => l.StartsWith("freezer.state=", StringComparison.Ordinal)).ShouldBe("freezer.state=THAWED");
        Directory.Exists(kernel.Dir("freezer", "g")).ShouldBeFalse();
    }

    [Fact]
    public void Destroy_handles_a_half_created_cgroup_and_Open_finds_it()
    {
        Directory.CreateDirectory(kernel.Dir("memory", "half"));
        FakeCgroupKernel.Put(kernel.Dir("memory", "half/cgroup.procs"), string.Empty);

        hierarchy.Exists("half").ShouldBeTrue();
        hierarchy.Open("half").ShouldNotBeNull().Destroy();

        Directory.Exists(kernel.Dir("memory", "half")).ShouldBeFalse();
        hierarchy.Open("half").ShouldBeNull();
    }

    [Fact]
    public void Missing_required_controllers_are_named()
    {
        using var k = new FakeCgroupV1Kernel("cpu,cpuacct", "memory", "freezer");

        var ex = Should.Throw<CgroupException>(() => CgroupV1Hierarchy.FromMounts(CgroupMount.ParseMountInfo(k.MountInfo()), k));

        ex.Message.ShouldContain("controller(s) pids not mounted");
        ex.Message.ShouldContain($"memory at {k.ControllerMounts["memory"]}");
    }
}
