using Shouldly;
using Vserver.Isolation.Cgroups;
using Xunit;

namespace Vserver.Tests.Cgroups;

public sealed class CgroupParsingTests
{
    private const string HybridMountInfo = """
        22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        37 31 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """;

    [Fact]
    public void ParseMountInfo_returns_cgroup_mounts_with_their_controllers()
    {
        IReadOnlyList<CgroupMount> mounts = CgroupMount.ParseMountInfo(HybridMountInfo);

        mounts.Count.ShouldBe(8);
        mounts[0].ShouldBe(mounts[0] with { MountPoint = "/sys/fs/cgroup/cpu", Root = "/", FileSystemType = "cgroup" });
        mounts[0].Controllers.ShouldBe(["cpu"]);
        mounts.Single(m => m.MountPoint == "/sys/fs/cgroup/systemd").Controllers.ShouldBe(["name=systemd"]);
        CgroupMount unified = mounts.Single(m => m.FileSystemType == "cgroup2");
        unified.MountPoint.ShouldBe("/sys/fs/cgroup/unified");
        unified.Controllers.ShouldBeEmpty();
    }

    [Fact]
    public void ParseMountInfo_handles_optional_fields_comounts_flags_and_escapes()
    {
        const string text =
            "34 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 master:3 - cgroup cgroup rw,cpu,cpuacct\n" +
            "35 25 0:30 /docker/abc /mnt/my\\040cgroups/mem rw,relatime shared:11 - cgroup cgroup rw,noprefix,memory,release_agent=/x,clone_children\n" +
            "garbage line\n" +
            "36 25 0:31 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

        IReadOnlyList<CgroupMount> mounts = CgroupMount.ParseMountInfo(text);

        mounts.Count.ShouldBe(3);
        mounts[0].MountPoint.ShouldBe("/sys/fs/cgroup/cpu,cpuacct");
        mounts[0].Controllers.ShouldBe(["cpu", "cpuacct"]);
        mounts[1].MountPoint.ShouldBe("/mnt/my cgroups/mem");
        mounts[1].Root.ShouldBe("/docker/abc");
        mounts[1].Controllers.ShouldBe(["memory"]);
        mounts[2].FileSystemType.ShouldBe("cgroup2");
    }

    [Fact]
    public void Flat_keyed_and_cpu_max_parsers()
    {
        var kv = CgroupParsing.ParseFlatKeyed("oom_kill_disable 0\nunder_oom 0\noom_kill 17\n");
        kv["oom_kill"].ShouldBe(17);

        CgroupParsing.ParseCpuMax("max 100000\n", "cpu.max").ShouldBe((null, 100000L));
        CgroupParsing.ParseCpuMax("50000 100000\n", "cpu.max").ShouldBe((50000L, 100000L));
        CgroupParsing.ParseV1Limit("9223372036854771712\n", "x").ShouldBeNull();
        CgroupParsing.ParseV1Limit("67108864\n", "x").ShouldBe(67108864);
        CgroupParsing.ParseMaxOrLong("max\n", "x").ShouldBeNull();
        CgroupParsing.ParsePidList("1\n22\n\n333\n").ShouldBe([1, 22, 333]);
        Should.Throw<CgroupException>(() => CgroupParsing.ParseLong("abc", "/f")).Message.ShouldContain("'/f'");
    }

    [Fact]
    public void CgroupLimits_quota()
    {
        new CgroupLimits(Cpus: 0.5).CpuQuotaMicroseconds.ShouldBe(50000);
        new CgroupLimits(Cpus: 3).CpuQuotaMicroseconds.ShouldBe(300000);
        new CgroupLimits().CpuQuotaMicroseconds.ShouldBeNull();
    }

    [Fact]
    public void Native_write_reports_the_real_errno()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vserver-cgerr-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string missing = Path.Combine(dir, "memory.max");

            var ex = Should.Throw<CgroupException>(() => CgroupFileSystem.Native.Write(missing, "1"));

            ex.Message.ShouldBe($"write '{missing}': ENOENT (No such file or directory)");
            File.Exists(missing).ShouldBeFalse("cgroup writes must never create files");

            var isDir = Should.Throw<CgroupException>(() => CgroupFileSystem.Native.Write(dir, "1"));
            isDir.ErrnoName.ShouldBe("EISDIR");

            string file = Path.Combine(dir, "f");
            File.WriteAllText(file, "9223372036854771712\n");
            CgroupFileSystem.Native.Write(file, "max");
            CgroupFileSystem.Native.Read(file).ShouldBe("max");
            CgroupFileSystem.Native.ReadIfExists(missing).ShouldBeNull();
            CgroupFileSystem.Native.MakeDirectory(Path.Combine(dir, "d")).ShouldBeTrue();
            CgroupFileSystem.Native.MakeDirectory(Path.Combine(dir, "d")).ShouldBeFalse();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Detect_prefers_cgroup2_when_the_root_lists_memory()
    {
        using var k = new FakeCgroupV2Kernel();

        ICgroupHierarchy h = CgroupHierarchy.Detect(k.Root, HybridMountInfo, k);

        h.Version.ShouldBe(CgroupVersion.V2);
        ((CgroupV2Hierarchy)h).Root.ShouldBe(k.Root);
    }

    [Fact]
    public void Detect_falls_back_to_v1_mounts_when_the_cgroup2_root_lacks_memory()
    {
        using var v2 = new FakeCgroupV2Kernel("hugetlb");
        using var v1 = new FakeCgroupV1Kernel();

        ICgroupHierarchy h = CgroupHierarchy.Detect(v2.Root, v1.MountInfo(), v1);

        h.Version.ShouldBe(CgroupVersion.V1);
        ((CgroupV1Hierarchy)h).ControllerMounts["pids"].ShouldBe(v1.ControllerMounts["pids"]);
    }

    [Fact]
    public void Detect_explains_what_is_missing()
    {
        using var v2 = new FakeCgroupV2Kernel("hugetlb");
        string noMemory = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";

        var ex = Should.Throw<CgroupException>(() => CgroupHierarchy.Detect(v2.Root, noMemory, v2));

        ex.Message.ShouldStartWith("No usable cgroup hierarchy.");
        ex.Message.ShouldContain("lists 'hugetlb' without memory");
        ex.Message.ShouldContain("/sys/fs/cgroup/cpu (cpu)");
        ex.Message.ShouldContain("mount -t cgroup2");

        var none = Should.Throw<CgroupException>(() => CgroupHierarchy.Detect("/nonexistent-cgroup-root", string.Empty));
        none.Message.ShouldContain("'/nonexistent-cgroup-root/cgroup.controllers' does not exist");
    }

    [Fact]
    public void Detect_on_this_host_finds_a_memory_controller()
    {
        ICgroupHierarchy h = CgroupHierarchy.Detect();

        if (h is CgroupV1Hierarchy v1)
        {
            File.Exists(Path.Combine(v1.ControllerMounts["memory"], "memory.limit_in_bytes")).ShouldBeTrue();
        }
        else
        {
            File.ReadAllText(Path.Combine(((CgroupV2Hierarchy)h).Root, "cgroup.controllers")).ShouldContain("memory");
        }
    }
}
