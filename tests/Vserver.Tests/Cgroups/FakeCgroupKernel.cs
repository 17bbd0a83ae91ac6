using Errno = Vserver.Isolation.Interop.Errno;
using Vserver.Isolation.Cgroups;

namespace Vserver.Tests.Cgroups;

/// <summary>
/// A temp-directory cgroupfs: real file I/O through the production code paths, plus the few kernel
/// behaviours the backends rely on (interface files appear on mkdir, rmdir ignores them, writes to
/// some files have side effects or are refused with the errno the kernel would return).
/// </summary>
internal abstract class FakeCgroupKernel : CgroupFileSystem, IDisposable
{
    protected FakeCgroupKernel()
    {
        Root = Path.Combine(Path.GetTempPath(), "vserver-cgfake-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);
    }

    public string Root { get; }

    /// <summary>Every write the code under test attempted, in order (also refused ones).</summary>
    public List<(string Path, string Value)> Writes { get; } = [];

    public List<int> Killed { get; } = [];

    /// <summary>Writes ("file=value", file name only) and kills ("kill PID") in the order they happened.</summary>
    public List<string> Log { get; } = [];

    /// <summary>When true, freezer writes take effect at once (as if no task resisted).</summary>
    public bool FreezerCompletes { get; set; } = true;

    public IEnumerable<string> WritesTo(string fileName) =>
        Writes.Where(w => Path.GetFileName(w.Path) == fileName).Select(w => w.Value);

    public override int TryWrite(string path, string value)
    {
        Writes.Add((path, value));
        Log.Add($"{Path.GetFileName(path)}={value}");
        if (!File.Exists(path))
        {
            return Directory.Exists(path) ? 21 /* EISDIR */ : Errno.ENOENT;
        }

        int? handled = OnWrite(path, value);
        return handled ?? base.TryWrite(path, value);
    }

    public override int TryMakeDirectory(string path)
    {
        int errno = base.TryMakeDirectory(path);
        if (errno == 0)
        {
            Populate(path);
        }

        return errno;
    }

    public override int TryRemoveDirectory(string path)
    {
        if (!Directory.Exists(path))
        {
            return Errno.ENOENT;
        }

        if (Directory.GetDirectories(path).Length > 0)
        {
            return Errno.EBUSY;
        }

        string procs = Path.Combine(path, "cgroup.procs");
        if (File.Exists(procs) && File.ReadAllText(procs).Trim().Length > 0)
        {
            return Errno.EBUSY;
        }

        foreach (string file in Directory.GetFiles(path))
        {
            File.Delete(file);
        }

        return base.TryRemoveDirectory(path);
    }

    /// <summary>The process dies at once: it leaves every cgroup.procs of the fake tree.</summary>
    public override int TryKill(int pid)
    {
        Killed.Add(pid);
        Log.Add($"kill {pid}");
        RemovePidEverywhere(pid);
        return 0;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public static void Put(string path, string content) => File.WriteAllText(path, content);

    public static string Get(string path) => File.ReadAllText(path);

    protected abstract void Populate(string dir);

    /// <summary>Returns an errno or 0 when the fake handled the write itself, null to store the value as is.</summary>
    protected virtual int? OnWrite(string path, string value) => null;

    protected void RemovePidEverywhere(int pid)
    {
        foreach (string procs in Directory.GetFiles(Root, "cgroup.procs", SearchOption.AllDirectories))
        {
            var left = File.ReadAllLines(procs).Where(l => l.Trim().Length > 0 && l.Trim() != pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            File.WriteAllText(procs, string.Concat(left.Select(l => l + "\n")));
        }
    }

    /// <summary>Kernel semantics of a cgroup.procs write: the pid moves here from any sibling cgroup of the same hierarchy.</summary>
    protected int MoveProcess(string hierarchyRoot, string procsFile, string value)
    {
        foreach (string procs in Directory.GetFiles(hierarchyRoot, "cgroup.procs", SearchOption.AllDirectories))
        {
            var left = File.ReadAllLines(procs).Where(l => l.Trim().Length > 0 && l.Trim() != value.Trim());
            File.WriteAllText(procs, string.Concat(left.Select(l => l + "\n")));
        }

        File.AppendAllText(procsFile, value.Trim() + "\n");
        return 0;
    }
}

/// <summary>A fake cgroup2 mount.</summary>
internal sealed class FakeCgroupV2Kernel : FakeCgroupKernel
{
    public FakeCgroupV2Kernel(string controllers = "cpuset cpu io memory pids")
    {
        Put(Path.Combine(Root, "cgroup.controllers"), controllers + "\n");
        Put(Path.Combine(Root, "cgroup.subtree_control"), string.Empty);
        Put(Path.Combine(Root, "cgroup.procs"), "1\n");
        Put(Path.Combine(Root, "cpu.stat"), "usage_usec 0\n");
    }

    public static string[] Controllers(string file) =>
        File.ReadAllText(file).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    protected override void Populate(string dir)
    {
        string parent = Path.GetDirectoryName(dir)!;
        string[] enabled = Controllers(Path.Combine(parent, "cgroup.subtree_control"));
        Put(Path.Combine(dir, "cgroup.controllers"), string.Join(' ', enabled) + "\n");
        Put(Path.Combine(dir, "cgroup.subtree_control"), string.Empty);
        Put(Path.Combine(dir, "cgroup.procs"), string.Empty);
        Put(Path.Combine(dir, "cgroup.events"), "populated 0\nfrozen 0\n");
        Put(Path.Combine(dir, "cgroup.freeze"), "0\n");
        Put(Path.Combine(dir, "cgroup.kill"), string.Empty);
        Put(Path.Combine(dir, "cpu.stat"), "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
        if (enabled.Contains("memory"))
        {
            Put(Path.Combine(dir, "memory.max"), "max\n");
            Put(Path.Combine(dir, "memory.low"), "0\n");
            Put(Path.Combine(dir, "memory.stat"), "anon 0\nfile 0\nfile_mapped 0\nshmem 0\n");
            Put(Path.Combine(dir, "memory.swap.max"), "max\n");
            Put(Path.Combine(dir, "memory.current"), "0\n");
            Put(Path.Combine(dir, "memory.peak"), "0\n");
            Put(Path.Combine(dir, "memory.events"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
        }

        if (enabled.Contains("cpu"))
        {
            Put(Path.Combine(dir, "cpu.max"), "max 100000\n");
        }

        if (enabled.Contains("pids"))
        {
            Put(Path.Combine(dir, "pids.max"), "max\n");
            Put(Path.Combine(dir, "pids.current"), "0\n");
        }
    }

    protected override int? OnWrite(string path, string value)
    {
        string dir = Path.GetDirectoryName(path)!;
        switch (Path.GetFileName(path))
        {
            case "cgroup.subtree_control":
                {
                    string[] available = Controllers(Path.Combine(dir, "cgroup.controllers"));
                    var enabled = Controllers(path).ToList();
                    if (dir != Root && File.ReadAllText(Path.Combine(dir, "cgroup.procs")).Trim().Length > 0)
                    {
                        return Errno.EBUSY;
                    }

                    foreach (string token in value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    {
                        string name = token[1..];
                        if (!available.Contains(name))
                        {
                            return Errno.ENOENT;
                        }

                        if (token[0] == '+' && !enabled.Contains(name))
                        {
                            enabled.Add(name);
                        }
                        else if (token[0] == '-')
                        {
                            enabled.Remove(name);
                        }
                        else if (token[0] != '+')
                        {
                            return Errno.EINVAL;
                        }
                    }

                    Put(path, string.Join(' ', enabled) + "\n");
                    return 0;
                }

            case "cgroup.freeze":
                Put(path, value + "\n");
                if (FreezerCompletes)
                {
                    Put(Path.Combine(dir, "cgroup.events"), $"populated 0\nfrozen {value.Trim()}\n");
                }

                return 0;

            case "cgroup.kill":
                foreach (string procs in Directory.GetFiles(dir, "cgroup.procs", SearchOption.AllDirectories))
                {
                    Killed.AddRange(File.ReadAllLines(procs).Where(l => l.Length > 0).Select(int.Parse));
                    Put(procs, string.Empty);
                }

                return 0;

            case "cgroup.procs":
                // No internal processes: a non-root cgroup that enables controllers for children takes no tasks.
                if (dir != Root && Controllers(Path.Combine(dir, "cgroup.subtree_control")).Length > 0)
                {
                    return Errno.EBUSY;
                }

                return MoveProcess(Root, path, value);

            default:
                return null;
        }
    }
}

/// <summary>Fake cgroup v1 mounts, one directory per hierarchy, with the memsw &gt;= limit rule.</summary>
internal sealed class FakeCgroupV1Kernel : FakeCgroupKernel
{
    public const string Unlimited = "9223372036854771712";

    /// <param name="hierarchies">Each entry is one mount: its controllers, e.g. "cpu,cpuacct".</param>
    public FakeCgroupV1Kernel(params string[] hierarchies)
    {
        if (hierarchies.Length == 0)
        {
            hierarchies = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd"];
        }

        foreach (string h in hierarchies)
        {
            string mount = Path.Combine(Root, h.Replace("name=", string.Empty, StringComparison.Ordinal));
            Directory.CreateDirectory(mount);
            Mounts[h] = mount;
            foreach (string controller in h.Split(','))
            {
                ControllerMounts[controller] = mount;
            }

            Put(Path.Combine(mount, "cgroup.procs"), "1\n");
            if (h.Split(',').Contains("cpuset"))
            {
                Put(Path.Combine(mount, "cpuset.cpus"), "0-3\n");
                Put(Path.Combine(mount, "cpuset.mems"), "0\n");
            }
        }
    }

    /// <summary>Mount spec → directory.</summary>
    public Dictionary<string, string> Mounts { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, string> ControllerMounts { get; } = new(StringComparer.Ordinal);

    /// <summary>A /proc/self/mountinfo text describing the fake mounts.</summary>
    public string MountInfo() => string.Concat(Mounts.Select((m, i) =>
        $"{40 + i} 31 0:{50 + i} / {m.Value} rw,nosuid,nodev,noexec,relatime shared:{10 + i} - cgroup cgroup rw,{m.Key}\n"));

    public string Dir(string controller, string relative) => Path.Combine(ControllerMounts[controller], relative);

    protected override void Populate(string dir)
    {
        string mount = Mounts.Values.Single(m => dir.StartsWith(m + "/", StringComparison.Ordinal));
        string[] controllers = Mounts.Single(m => m.Value == mount).Key.Split(',');
        Put(Path.Combine(dir, "cgroup.procs"), string.Empty);
        Put(Path.Combine(dir, "tasks"), string.Empty);
        Put(Path.Combine(dir, "notify_on_release"), "0\n");
        if (controllers.Contains("memory"))
        {
            Put(Path.Combine(dir, "memory.limit_in_bytes"), Unlimited + "\n");
            Put(Path.Combine(dir, "memory.soft_limit_in_bytes"), Unlimited + "\n");
            Put(Path.Combine(dir, "memory.stat"), "cache 0\nrss 0\nmapped_file 0\ntotal_cache 0\ntotal_rss 0\ntotal_mapped_file 0\n");
            Put(Path.Combine(dir, "memory.memsw.limit_in_bytes"), Unlimited + "\n");
            Put(Path.Combine(dir, "memory.usage_in_bytes"), "0\n");
            Put(Path.Combine(dir, "memory.max_usage_in_bytes"), "0\n");
            Put(Path.Combine(dir, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
        }

        if (controllers.Contains("cpu"))
        {
            Put(Path.Combine(dir, "cpu.cfs_period_us"), "100000\n");
            Put(Path.Combine(dir, "cpu.cfs_quota_us"), "-1\n");
        }

        if (controllers.Contains("cpuacct"))
        {
            Put(Path.Combine(dir, "cpuacct.usage"), "0\n");
        }

        if (controllers.Contains("pids"))
        {
            Put(Path.Combine(dir, "pids.max"), "max\n");
            Put(Path.Combine(dir, "pids.current"), "0\n");
        }

        if (controllers.Contains("freezer"))
        {
            Put(Path.Combine(dir, "freezer.state"), "THAWED\n");
        }

        if (controllers.Contains("cpuset"))
        {
            Put(Path.Combine(dir, "cpuset.cpus"), "\n");
            Put(Path.Combine(dir, "cpuset.mems"), "\n");
        }
    }

    protected override int? OnWrite(string path, string value)
    {
        string dir = Path.GetDirectoryName(path)!;
        switch (Path.GetFileName(path))
        {
            case "memory.limit_in_bytes":
                {
                    long limit = Bytes(value);
                    string memsw = Path.Combine(dir, "memory.memsw.limit_in_bytes");
                    if (File.Exists(memsw) && limit > long.Parse(Get(memsw), System.Globalization.CultureInfo.InvariantCulture))
                    {
                        return Errno.EINVAL;
                    }

                    if (long.Parse(Get(Path.Combine(dir, "memory.usage_in_bytes")), System.Globalization.CultureInfo.InvariantCulture) > limit)
                    {
                        return Errno.EBUSY;
                    }

                    Put(path, limit.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
                    return 0;
                }

            case "memory.memsw.limit_in_bytes":
                {
                    long memsw = Bytes(value);
                    if (memsw < long.Parse(Get(Path.Combine(dir, "memory.limit_in_bytes")), System.Globalization.CultureInfo.InvariantCulture))
                    {
                        return Errno.EINVAL;
                    }

                    Put(path, memsw.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
                    return 0;
                }

            case "freezer.state":
                if (value is not ("FROZEN" or "THAWED"))
                {
                    return Errno.EINVAL;
                }

                Put(path, (FreezerCompletes || value == "THAWED" ? value : "FREEZING") + "\n");
                return 0;

            case "cgroup.procs":
                {
                    string mount = Mounts.Values.Single(m => path.StartsWith(m + "/", StringComparison.Ordinal));
                    string cpus = Path.Combine(dir, "cpuset.cpus");
                    if (File.Exists(cpus) && Get(cpus).Trim().Length == 0)
                    {
                        return Errno.ENOSPC;
                    }

                    return MoveProcess(mount, path, value);
                }

            default:
                return null;
        }
    }

    private static long Bytes(string value) =>
        value.Trim() == "-1" ? long.Parse(Unlimited, System.Globalization.CultureInfo.InvariantCulture) : long.Parse(value, System.Globalization.CultureInfo.InvariantCulture);
}
