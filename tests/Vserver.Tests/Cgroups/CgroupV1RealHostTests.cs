using Errno = Vserver.Isolation.Interop.Errno;
using System.Diagnostics;
using Shouldly;
using Vserver.Isolation.Cgroups;
using Xunit;

namespace Vserver.Tests.Cgroups;

/// <summary>Runs against the host's real cgroup v1 hierarchy (needs root; skipped elsewhere).</summary>
public sealed class CgroupV1RealHostTests : IDisposable
{
    private const long MiB = 1L << 20;

    private readonly string parent = "vstest-" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<Process> processes = [];
    private readonly List<string> shmFiles = [];
    private ICgroupHierarchy? hierarchy;

    public void Dispose()
    {
        foreach (string f in shmFiles)
        {
            File.Delete(f);
        }

        try
        {
            hierarchy?.Open(parent)?.Destroy();
        }
        finally
        {
            foreach (Process p in processes)
            {
                if (!p.HasExited)
                {
                    p.Kill();
                    p.WaitForExit(5000);
                }

                p.Dispose();
            }
        }
    }

    private CgroupV1Hierarchy RequireV1Root()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            Assert.Skip("needs root");
        }

        ICgroupHierarchy h = CgroupHierarchy.Detect();
        hierarchy = h;
        if (h is not CgroupV1Hierarchy v1)
        {
            Assert.Skip("host uses cgroup v2");
            throw new InvalidOperationException();
        }

        return v1;
    }

    private Process Start(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        Process p = Process.Start(psi)!;
        processes.Add(p);
        return p;
    }

    private static string ReadFile(string path) => File.ReadAllText(path).Trim();

    private static string ProcState(int pid) =>
        File.ReadAllLines($"/proc/{pid}/status").Single(l => l.StartsWith("State:", StringComparison.Ordinal))["State:".Length..].Trim();

    [Fact]
    public void Full_lifecycle_on_the_real_v1_hierarchy()
    {
        CgroupV1Hierarchy h = RequireV1Root();
        string path = parent + "/g1";
        string Dir(string controller) => Path.Combine(h.ControllerMounts[controller], path);

        ICgroup cg = h.Create(path);
        cg.Apply(new CgroupLimits(64 * MiB, 0.5, 20));

        ReadFile(Path.Combine(Dir("memory"), "memory.limit_in_bytes")).ShouldBe("67108864");
        if (File.Exists(Path.Combine(Dir("memory"), "memory.memsw.limit_in_bytes")))
        {
            ReadFile(Path.Combine(Dir("memory"), "memory.memsw.limit_in_bytes")).ShouldBe("67108864");
        }

        ReadFile(Path.Combine(Dir("cpu"), "cpu.cfs_quota_us")).ShouldBe("50000");
        ReadFile(Path.Combine(Dir("cpu"), "cpu.cfs_period_us")).ShouldBe("100000");
        ReadFile(Path.Combine(Dir("pids"), "pids.max")).ShouldBe("20");
        if (h.ControllerMounts.TryGetValue("cpuset", out string? cpusetMount))
        {
            ReadFile(Path.Combine(Dir("cpuset"), "cpuset.cpus")).ShouldBe(ReadFile(Path.Combine(cpusetMount, "cpuset.cpus")));
            ReadFile(Path.Combine(Dir("cpuset"), "cpuset.mems")).ShouldBe(ReadFile(Path.Combine(cpusetMount, "cpuset.mems")));
        }

        // live changes in both directions keep memsw == limit without tripping the kernel's memsw >= limit rule
        cg.Apply(new CgroupLimits(128 * MiB, 1, 10));
        ReadFile(Path.Combine(Dir("memory"), "memory.limit_in_bytes")).ShouldBe("134217728");
        cg.Apply(new CgroupLimits(32 * MiB, 2, 10));
        ReadFile(Path.Combine(Dir("memory"), "memory.limit_in_bytes")).ShouldBe("33554432");
        ReadFile(Path.Combine(Dir("cpu"), "cpu.cfs_quota_us")).ShouldBe("200000");
        cg.Apply(CgroupLimits.Unlimited);
        cg.ReadStats().MemoryLimitBytes.ShouldBeNull();
        ReadFile(Path.Combine(Dir("cpu"), "cpu.cfs_quota_us")).ShouldBe("-1");
        ReadFile(Path.Combine(Dir("pids"), "pids.max")).ShouldBe("max");
        cg.Apply(new CgroupLimits(64 * MiB, 0.5, 20));

        Process sleeper = Start("sleep", "30");
        foreach (string procs in cg.ProcsFiles)
        {
            File.WriteAllText(procs, sleeper.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        cg.Pids().ShouldBe([sleeper.Id]);
        string[] membership = File.ReadAllLines($"/proc/{sleeper.Id}/cgroup");
        foreach (string controller in (string[])["memory", "cpu", "pids", "freezer"])
        {
            membership.ShouldContain(l => l.Split(':')[1].Split(',').Contains(controller) && l.EndsWith("/" + path, StringComparison.Ordinal), controller);
        }

        CgroupStats stats = cg.ReadStats();
        stats.Pids.ShouldBe(1);
        stats.PidsLimit.ShouldBe(20);
        stats.MemoryLimitBytes.ShouldBe(64 * MiB);
        stats.Frozen.ShouldBeFalse();

        cg.Freeze();
        ReadFile(Path.Combine(Dir("freezer"), "freezer.state")).ShouldBe("FROZEN");
        cg.ReadStats().Frozen.ShouldBeTrue();
        ProcState(sleeper.Id).ShouldStartWith("D"); // frozen tasks sit in uninterruptible sleep

        cg.Thaw();
        ReadFile(Path.Combine(Dir("freezer"), "freezer.state")).ShouldBe("THAWED");
        cg.ReadStats().Frozen.ShouldBeFalse();

        cg.Freeze(); // Destroy must cope with a frozen guest
        cg.Destroy();

        sleeper.WaitForExit(5000).ShouldBeTrue();
        sleeper.ExitCode.ShouldBe(128 + 9);
        foreach (string mount in h.ControllerMounts.Values)
        {
            Directory.Exists(Path.Combine(mount, path)).ShouldBeFalse(mount);
        }

        h.Exists(path).ShouldBeFalse();
        h.Exists(parent).ShouldBeTrue();
        cg.Destroy();
    }

    [Fact]
    public void Lowering_the_limit_below_real_usage_fails_with_EBUSY()
    {
        CgroupV1Hierarchy h = RequireV1Root();
        string path = parent + "/busy";
        string shm = $"/dev/shm/{parent}-busy";
        shmFiles.Add(shm);
        ICgroup cg = h.Create(path);
        cg.Apply(new CgroupLimits(64 * MiB, null, 20));

        // the shell joins the cgroup, then fills 40 MiB of tmpfs; shmem cannot be reclaimed without swap room
        Process sh = Start("sh", "-c", $"read go; head -c {40 * MiB} /dev/zero > {shm}; echo done; exec sleep 30");
        cg.AddProcess(sh.Id);
        sh.StandardInput.WriteLine("go");
        sh.StandardInput.Flush();
        sh.StandardOutput.ReadLine().ShouldBe("done");
        cg.ReadStats().MemoryBytes.ShouldBeGreaterThan(40 * MiB);

        var ex = Should.Throw<CgroupException>(() => cg.Apply(new CgroupLimits(16 * MiB, null, 20)));

        ex.Errno.ShouldBe(Errno.EBUSY);
        ex.Message.ShouldMatch(@"^write '/.*/busy/memory\.(memsw\.)?limit_in_bytes': EBUSY \(usage is above the new limit\)$");

        cg.Destroy();
        sh.WaitForExit(5000).ShouldBeTrue();
    }
}
