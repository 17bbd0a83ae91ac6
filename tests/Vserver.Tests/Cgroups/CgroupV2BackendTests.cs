using Errno = Vserver.Isolation.Interop.Errno;
using Shouldly;
using Vserver.Isolation.Cgroups;
using Xunit;

namespace Vserver.Tests.Cgroups;

public sealed class CgroupV2BackendTests : IDisposable
{
    private readonly FakeCgroupV2Kernel kernel = new();
    private readonly CgroupV2Hierarchy hierarchy;

    public CgroupV2BackendTests()
    {
        hierarchy = new CgroupV2Hierarchy(kernel.Root, kernel) { Timeout = TimeSpan.FromMilliseconds(300) };
    }

    public void Dispose() => kernel.Dispose();

    private string At(string relative) => Path.Combine(kernel.Root, relative);

    [Fact]
    public void Create_enables_controllers_in_every_ancestor_but_not_the_leaf()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        cg.Path.ShouldBe("vserver/web1");
        hierarchy.Version.ShouldBe(CgroupVersion.V2);
        FakeCgroupV2Kernel.Controllers(At("cgroup.subtree_control")).ShouldBe(["cpu", "memory", "pids", "cpuset"], ignoreOrder: true);
        FakeCgroupV2Kernel.Controllers(At("vserver/cgroup.subtree_control")).ShouldBe(["cpu", "memory", "pids", "cpuset"], ignoreOrder: true);
        FakeCgroupV2Kernel.Controllers(At("vserver/web1/cgroup.subtree_control")).ShouldBeEmpty();
        kernel.WritesTo("cgroup.subtree_control").ShouldBe(["+cpu +memory +pids +cpuset", "+cpu +memory +pids +cpuset"]);
        File.Exists(At("vserver/web1/memory.max")).ShouldBeTrue("the leaf got the memory controller from its parent");
        cg.ProcsFiles.ShouldBe([At("vserver/web1/cgroup.procs")]);
    }

    [Fact]
    public void Create_is_idempotent_and_does_not_rewrite_enabled_controllers()
    {
        hierarchy.Create("vserver/web1");
        int writes = kernel.Writes.Count;

        ICgroup again = hierarchy.Create("/vserver/web1/");

        again.Path.ShouldBe("vserver/web1");
        kernel.Writes.Count.ShouldBe(writes);
        hierarchy.Exists("vserver/web1").ShouldBeTrue();
        hierarchy.Open("vserver/web1").ShouldNotBeNull().Path.ShouldBe("vserver/web1");
        hierarchy.Open("vserver/other").ShouldBeNull();
        hierarchy.Exists("vserver/other").ShouldBeFalse();
    }

    [Fact]
    public void Create_skips_cpuset_when_the_root_does_not_offer_it()
    {
        using var k = new FakeCgroupV2Kernel("cpu io memory pids");
        var h = new CgroupV2Hierarchy(k.Root, k);

        h.Create("g");

        FakeCgroupV2Kernel.Controllers(Path.Combine(k.Root, "cgroup.subtree_control")).ShouldBe(["cpu", "memory", "pids"], ignoreOrder: true);
    }

    [Fact]
    public void Create_names_the_missing_controller()
    {
        using var k = new FakeCgroupV2Kernel("cpu io memory");
        var h = new CgroupV2Hierarchy(k.Root, k);

        var ex = Should.Throw<CgroupException>(() => h.Create("vserver/web1"));

        ex.Message.ShouldContain("pids");
        ex.Message.ShouldContain(Path.Combine(k.Root, "cgroup.controllers"));
    }

    [Fact]
    public void Create_under_a_parent_with_processes_reports_the_no_internal_process_rule()
    {
        hierarchy.Create("vserver");
        FakeCgroupKernel.Put(At("vserver/cgroup.procs"), "4242\n");

        var ex = Should.Throw<CgroupException>(() => hierarchy.Create("vserver/web1"));

        ex.Errno.ShouldBe(Errno.EBUSY);
        ex.Message.ShouldStartWith($"write '{At("vserver/cgroup.subtree_control")}': EBUSY (");
    }

    [Fact]
    public void Apply_writes_every_limit_file()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");

        cg.Apply(new CgroupLimits(MemoryBytes: 64L << 20, Cpus: 0.5, Pids: 20));

        FakeCgroupKernel.Get(At("vserver/web1/memory.max")).ShouldBe("67108864");
        FakeCgroupKernel.Get(At("vserver/web1/memory.swap.max")).ShouldBe("0");
        FakeCgroupKernel.Get(At("vserver/web1/cpu.max")).ShouldBe("50000 100000");
        FakeCgroupKernel.Get(At("vserver/web1/pids.max")).ShouldBe("20");
    }

    [Fact]
    public void The_guarantee_is_memory_low_and_memory_stat_carries_swap()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        cg.Apply(new CgroupLimits(MemoryBytes: 64L << 20, MemoryLowBytes: 16L << 20));
        FakeCgroupKernel.Get(At("vserver/web1/memory.low")).ShouldBe("16777216");
        cg.Apply(CgroupLimits.Unlimited);
        FakeCgroupKernel.Get(At("vserver/web1/memory.low")).ShouldBe("0");

        FakeCgroupKernel.Put(At("vserver/web1/memory.stat"), "anon 100\nfile 300\nfile_mapped 120\n");
        FakeCgroupKernel.Put(At("vserver/web1/memory.swap.current"), "7\n");
        var stat = cg.ReadMemoryStat();
        stat["anon"].ShouldBe(100);
        stat["swap"].ShouldBe(7);
        Should.Throw<ArgumentOutOfRangeException>(() => cg.Apply(new CgroupLimits(MemoryBytes: 1L << 20, MemoryLowBytes: 2L << 20)));
    }

    [Fact]
    public void Apply_with_nulls_sets_unlimited()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        cg.Apply(new CgroupLimits(64L << 20, 0.5, 20));

        cg.Apply(CgroupLimits.Unlimited);

        FakeCgroupKernel.Get(At("vserver/web1/memory.max")).ShouldBe("max");
        FakeCgroupKernel.Get(At("vserver/web1/memory.swap.max")).ShouldBe("max");
        FakeCgroupKernel.Get(At("vserver/web1/cpu.max")).ShouldBe("max 100000");
        FakeCgroupKernel.Get(At("vserver/web1/pids.max")).ShouldBe("max");
    }

    [Theory]
    [InlineData(2.0, "200000 100000")]
    [InlineData(1.25, "125000 100000")]
    [InlineData(0.001, "1000 100000")]
    [InlineData(0.000001, "1000 100000")]
    public void Apply_converts_cpus_to_a_quota(double cpus, string expected)
    {
        ICgroup cg = hierarchy.Create("g");

        cg.Apply(new CgroupLimits(Cpus: cpus));

        FakeCgroupKernel.Get(At("g/cpu.max")).ShouldBe(expected);
    }

    [Fact]
    public void Apply_skips_swap_when_swap_accounting_is_absent()
    {
        ICgroup cg = hierarchy.Create("g");
        File.Delete(At("g/memory.swap.max"));

        cg.Apply(new CgroupLimits(MemoryBytes: 1 << 20));

        kernel.WritesTo("memory.swap.max").ShouldBeEmpty();
        FakeCgroupKernel.Get(At("g/memory.max")).ShouldBe("1048576");
    }

    [Theory]
    [InlineData(-1L, null, null)]
    [InlineData(null, 0.0, null)]
    [InlineData(null, double.NaN, null)]
    [InlineData(null, null, 0)]
    public void Apply_rejects_invalid_values_before_writing(long? memory, double? cpus, int? pids)
    {
        ICgroup cg = hierarchy.Create("g");
        int writes = kernel.Writes.Count;

        Should.Throw<ArgumentOutOfRangeException>(() => cg.Apply(new CgroupLimits(memory, cpus, pids)));

        kernel.Writes.Count.ShouldBe(writes);
    }

    [Fact]
    public void ReadStats_parses_the_v2_files()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        FakeCgroupKernel.Put(At("vserver/web1/memory.current"), "1234567\n");
        FakeCgroupKernel.Put(At("vserver/web1/memory.peak"), "7654321\n");
        FakeCgroupKernel.Put(At("vserver/web1/memory.max"), "67108864\n");
        FakeCgroupKernel.Put(At("vserver/web1/memory.events"), "low 0\nhigh 0\nmax 12\noom 4\noom_kill 3\noom_group_kill 0\n");
        FakeCgroupKernel.Put(At("vserver/web1/pids.current"), "7\n");
        FakeCgroupKernel.Put(At("vserver/web1/pids.max"), "20\n");
        FakeCgroupKernel.Put(At("vserver/web1/cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n");
        FakeCgroupKernel.Put(At("vserver/web1/cgroup.events"), "populated 1\nfrozen 1\n");

        CgroupStats stats = cg.ReadStats();

        stats.ShouldBe(new CgroupStats(1234567, 7654321, 67108864, 3, 7, 20, TimeSpan.FromSeconds(1.5), Frozen: true));
    }

    [Fact]
    public void ReadStats_maps_max_to_null_and_falls_back_when_memory_peak_is_missing()
    {
        ICgroup cg = hierarchy.Create("g");
        FakeCgroupKernel.Put(At("g/memory.current"), "4096\n");
        File.Delete(At("g/memory.peak"));

        CgroupStats stats = cg.ReadStats();

        stats.MemoryLimitBytes.ShouldBeNull();
        stats.PidsLimit.ShouldBeNull();
        stats.MemoryPeakBytes.ShouldBe(4096);
        stats.Frozen.ShouldBeFalse();
    }

    [Fact]
    public void AddProcess_moves_the_process_and_Pids_lists_it()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        ICgroup other = hierarchy.Create("vserver/web2");
        other.AddProcess(100);
        cg.AddProcess(100);
        cg.AddProcess(50);

        cg.Pids().ShouldBe([50, 100]);
        other.Pids().ShouldBeEmpty();
        FakeCgroupKernel.Get(At("vserver/web1/cgroup.procs")).ShouldBe("100\n50\n");
    }

    [Fact]
    public void Pids_includes_descendant_cgroups()
    {
        ICgroup parent = hierarchy.Create("vserver/web1");
        ICgroup a = hierarchy.Create("vserver/web1/inner/a");
        ICgroup b = hierarchy.Create("vserver/web1/inner/b");
        a.AddProcess(77);
        b.AddProcess(5);

        parent.Pids().ShouldBe([5, 77]);
    }

    [Fact]
    public void AddProcess_into_a_cgroup_with_children_controllers_fails_with_EBUSY_and_a_hint()
    {
        ICgroup parent = hierarchy.Create("vserver");
        hierarchy.Create("vserver/web1");

        var ex = Should.Throw<CgroupException>(() => parent.AddProcess(9));

        ex.Message.ShouldStartWith($"write '{At("vserver/cgroup.procs")}': EBUSY (cgroup v2 does not allow");
    }

    [Fact]
    public void Freeze_and_Thaw_write_cgroup_freeze_and_wait_for_cgroup_events()
    {
        ICgroup cg = hierarchy.Create("g");

        cg.Freeze();
        cg.ReadStats().Frozen.ShouldBeTrue();
        cg.Thaw();

        kernel.WritesTo("cgroup.freeze").ShouldBe(["1", "0"]);
        cg.ReadStats().Frozen.ShouldBeFalse();
    }

    [Fact]
    public void Freeze_times_out_with_ETIMEDOUT_and_thaws_again()
    {
        ICgroup cg = hierarchy.Create("g");
        kernel.FreezerCompletes = false;

        var ex = Should.Throw<CgroupException>(cg.Freeze);

        ex.Errno.ShouldBe(Errno.ETIMEDOUT);
        ex.Message.ShouldStartWith($"freeze '{At("g")}': ETIMEDOUT (");
        kernel.WritesTo("cgroup.freeze").ShouldBe(["1", "0"]);
    }

    [Fact]
    public void Destroy_uses_cgroup_kill_and_removes_the_tree()
    {
        ICgroup cg = hierarchy.Create("vserver/web1");
        hierarchy.Create("vserver/web1/a").AddProcess(11);
        ICgroup b = hierarchy.Create("vserver/web1/b");
        b.AddProcess(12);
        b.AddProcess(13);

        cg.Destroy();

        kernel.WritesTo("cgroup.kill").ShouldBe(["1"]);
        kernel.Killed.ShouldBe([11, 12, 13], ignoreOrder: true);
        Directory.Exists(At("vserver/web1")).ShouldBeFalse();
        Directory.Exists(At("vserver")).ShouldBeTrue();
        hierarchy.Exists("vserver/web1").ShouldBeFalse();

        cg.Destroy(); // idempotent
    }

    [Fact]
    public void Destroy_without_cgroup_kill_thaws_first_then_signals_each_process()
    {
        ICgroup cg = hierarchy.Create("g");
        cg.AddProcess(21);
        cg.Freeze();
        File.Delete(At("g/cgroup.kill"));

        cg.Destroy();

        kernel.Killed.ShouldBe([21]);
        kernel.WritesTo("cgroup.freeze").ShouldBe(["1", "0"]);
        kernel.Log.IndexOf("cgroup.freeze=0").ShouldBeLessThan(kernel.Log.IndexOf("kill 21"));
        Directory.Exists(At("g")).ShouldBeFalse();
    }

    [Fact]
    public void Destroy_reports_survivors_with_ETIMEDOUT()
    {
        ICgroup cg = hierarchy.Create("g");
        File.Delete(At("g/cgroup.kill"));
        var stubborn = new StubbornKernel(kernel);
        var h = new CgroupV2Hierarchy(kernel.Root, stubborn) { Timeout = TimeSpan.FromMilliseconds(100) };
        cg.AddProcess(31);

        var ex = Should.Throw<CgroupException>(h.Open("g")!.Destroy);

        ex.Errno.ShouldBe(Errno.ETIMEDOUT);
        ex.Message.ShouldContain("31");
        Directory.Exists(At("g")).ShouldBeTrue();
    }

    [Fact]
    public void Destroy_of_a_missing_cgroup_is_a_no_op()
    {
        Should.NotThrow(() => hierarchy.Open("vserver/web1")?.Destroy());
        new CgroupV2Hierarchy(kernel.Root, kernel).Create("x").Destroy();
        Directory.Exists(At("x")).ShouldBeFalse();
    }

    [Theory]
    [InlineData("")]
    [InlineData("/")]
    [InlineData("vserver/../etc")]
    [InlineData("a//b")]
    [InlineData("./a")]
    public void Invalid_paths_are_rejected(string path)
    {
        Should.Throw<ArgumentException>(() => hierarchy.Create(path));
    }

    /// <summary>Processes that ignore SIGKILL (e.g. stuck in D state).</summary>
    private sealed class StubbornKernel(FakeCgroupKernel inner) : CgroupFileSystem
    {
        public override int TryRead(string path, out string content) => inner.TryRead(path, out content);

        public override int TryWrite(string path, string value) => inner.TryWrite(path, value);

        public override int TryKill(int pid) => 0;
    }
}
