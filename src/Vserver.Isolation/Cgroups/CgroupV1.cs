using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>A guest cgroup spread over the v1 controller hierarchies.</summary>
internal sealed class CgroupV1 : ICgroup
{
    private readonly CgroupV1Hierarchy hierarchy;
    private readonly CgroupFileSystem fs;
    private readonly string[] dirs;

    public CgroupV1(CgroupV1Hierarchy hierarchy, string path)
    {
        this.hierarchy = hierarchy;
        fs = hierarchy.Fs;
        Path = path;
        MemoryDir = DirOf("memory")!;
        CpuDir = DirOf("cpu")!;
        PidsDir = DirOf("pids")!;
        FreezerDir = DirOf("freezer")!;
        CpuacctDir = DirOf("cpuacct");
        dirs = hierarchy.MountPoints.Select(m => CgroupPath.Join(m, path)).ToArray();
        ProcsFiles = dirs.Select(d => CgroupPath.Join(d, "cgroup.procs")).ToArray();
    }

    public string Path { get; }

    public IReadOnlyList<string> ProcsFiles { get; }

    internal string MemoryDir { get; }

    internal string CpuDir { get; }

    internal string PidsDir { get; }

    internal string FreezerDir { get; }

    internal string? CpuacctDir { get; }

    public void AddProcess(int pid)
    {
        foreach (string procs in ProcsFiles)
        {
            fs.Write(procs, CgroupParsing.Format(pid), CgroupHints.AddProcess);
        }
    }

    public void Apply(CgroupLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        limits.Validate();
        ApplyMemory(limits.MemoryBytes);
        fs.Write(MemoryFile("memory.soft_limit_in_bytes"), limits.MemoryLowBytes is { } low ? CgroupParsing.Format(low) : "-1", CgroupHints.Limit);
        ApplyCpu(limits.CpuQuotaMicroseconds);
        fs.Write(PidsFile("pids.max"), limits.Pids is { } pids ? CgroupParsing.Format(pids) : "max", CgroupHints.Limit);
    }

    public void Freeze()
    {
        string state = FreezerFile;
        fs.Write(state, "FROZEN");
        // Reading freezer.state makes the kernel re-check whether FREEZING has become FROZEN.
        if (!CgroupWait.Until(() => ReadFreezerState(state) == "FROZEN", hierarchy.Timeout))
        {
            _ = fs.TryWrite(state, "THAWED");
            throw CgroupException.FromErrno("freeze", FreezerDir, Errno.ETIMEDOUT,
                $"freezer.state did not reach FROZEN within {CgroupWait.Describe(hierarchy.Timeout)}; thawed again");
        }
    }

    public void Thaw()
    {
        string state = FreezerFile;
        fs.Write(state, "THAWED");
        if (!CgroupWait.Until(() => ReadFreezerState(state) == "THAWED", hierarchy.Timeout))
        {
            throw CgroupException.FromErrno("thaw", FreezerDir, Errno.ETIMEDOUT,
                $"freezer.state is {ReadFreezerState(state)} after {CgroupWait.Describe(hierarchy.Timeout)}; is an ancestor frozen?");
        }
    }

    public IReadOnlyList<int> Pids()
    {
        var pids = new List<int>();
        CgroupTree.CollectPids(fs, fs.DirectoryExists(PidsDir) ? PidsDir : MemoryDir, pids);
        return pids.Distinct().Order().ToArray();
    }

    public CgroupStats ReadStats()
    {
        long usage = ReadLong(MemoryFile("memory.usage_in_bytes"));
        long peak = ReadLong(MemoryFile("memory.max_usage_in_bytes"));
        long? limit = CgroupParsing.ParseV1Limit(fs.Read(MemoryFile("memory.limit_in_bytes")), MemoryFile("memory.limit_in_bytes"));
        long oomKills = CgroupParsing.ParseFlatKeyed(fs.Read(MemoryFile("memory.oom_control"))).GetValueOrDefault("oom_kill");
        int pids = (int)ReadLong(PidsFile("pids.current"));
        long? pidsLimit = CgroupParsing.ParseMaxOrLong(fs.Read(PidsFile("pids.max")), PidsFile("pids.max"));
        TimeSpan cpu = CpuacctDir is null
            ? TimeSpan.Zero
            : TimeSpan.FromTicks(ReadLong(CgroupPath.Join(CpuacctDir, "cpuacct.usage")) / TimeSpan.NanosecondsPerTick);
        return new CgroupStats(
            usage,
            peak,
            limit,
            oomKills,
            pids,
            pidsLimit is { } pl ? (int)Math.Min(pl, int.MaxValue) : null,
            cpu,
            ReadFreezerState(FreezerFile) == "FROZEN");
    }

    /// <summary>memory.stat of the whole subtree: v1's total_* counters, with the prefix dropped (cache, rss,
    /// mapped_file, shmem, swap, active_anon, ...).</summary>
    public IReadOnlyDictionary<string, long> ReadMemoryStat()
    {
        var stat = CgroupParsing.ParseFlatKeyed(fs.Read(MemoryFile("memory.stat")));
        var totals = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (key, value) in stat)
        {
            if (key.StartsWith("total_", StringComparison.Ordinal))
            {
                totals[key["total_".Length..]] = value;
            }
        }

        return totals;
    }

    public void Destroy()
    {
        string[] existing = dirs.Where(fs.DirectoryExists).ToArray();
        if (existing.Length == 0)
        {
            return;
        }

        bool haveFreezer = fs.DirectoryExists(FreezerDir);
        if (AllPids().Count > 0 && haveFreezer)
        {
            // Freeze, SIGKILL everything, thaw: no task can fork between listing and killing.
            // Frozen tasks only die once thawed, so the thaw below is what lets them go.
            if (fs.TryWrite(FreezerFile, "FROZEN") == 0)
            {
                _ = CgroupWait.Until(() => ReadFreezerState(FreezerFile) != "FREEZING", TimeSpan.FromTicks(Math.Min(hierarchy.Timeout.Ticks, TimeSpan.TicksPerSecond * 2)));
            }

            foreach (int pid in AllPids())
            {
                _ = fs.TryKill(pid);
            }
        }

        if (haveFreezer)
        {
            ThawTree(FreezerDir);
        }

        CgroupTree.KillUntilEmpty(fs, existing[0], AllPids, hierarchy.Timeout);
        foreach (string dir in existing)
        {
            CgroupTree.RemoveTree(fs, dir, hierarchy.Timeout);
        }
    }

    private string FreezerFile => CgroupPath.Join(FreezerDir, "freezer.state");

    /// <summary>Pids in any managed hierarchy (a half-joined process may be in only some of them).</summary>
    private IReadOnlyList<int> AllPids()
    {
        var pids = new List<int>();
        foreach (string dir in dirs)
        {
            CgroupTree.CollectPids(fs, dir, pids);
        }

        return pids.Distinct().Order().ToArray();
    }

    /// <summary>Writes THAWED into every frozen cgroup of the freezer subtree, parents first.</summary>
    private void ThawTree(string dir)
    {
        string state = CgroupPath.Join(dir, "freezer.state");
        string? current = fs.ReadIfExists(state)?.Trim();
        if (current is null)
        {
            return;
        }

        if (current != "THAWED")
        {
            _ = fs.TryWrite(state, "THAWED");
        }

        foreach (string child in fs.SubDirectories(dir))
        {
            ThawTree(child);
        }
    }

    /// <summary>
    /// Sets memory.limit_in_bytes and, when swap accounting exists, memory.memsw.limit_in_bytes to the
    /// same value (no swap beyond the limit). The kernel requires memsw >= limit at every moment, so
    /// memsw is written first when the new value is at least the current memsw (raising), and last
    /// when it is below (lowering).
    /// </summary>
    private void ApplyMemory(long? bytes)
    {
        string limitFile = MemoryFile("memory.limit_in_bytes");
        string memswFile = MemoryFile("memory.memsw.limit_in_bytes");
        string value = bytes is { } b ? CgroupParsing.Format(b) : "-1";
        if (!fs.FileExists(memswFile))
        {
            fs.Write(limitFile, value, CgroupHints.Limit);
            return;
        }

        long currentMemsw = ReadLong(memswFile);
        long target = bytes ?? long.MaxValue;
        if (target >= currentMemsw)
        {
            fs.Write(memswFile, value, CgroupHints.MemorySwap);
            fs.Write(limitFile, value, CgroupHints.MemorySwap);
        }
        else
        {
            fs.Write(limitFile, value, CgroupHints.MemorySwap);
            fs.Write(memswFile, value, CgroupHints.MemorySwap);
        }
    }

    private void ApplyCpu(long? quotaMicros)
    {
        string quotaFile = CgroupPath.Join(CpuDir, "cpu.cfs_quota_us");
        string periodFile = CgroupPath.Join(CpuDir, "cpu.cfs_period_us");
        string period = CgroupParsing.Format(CgroupLimits.CpuPeriodMicroseconds);
        if (quotaMicros is { } quota)
        {
            fs.Write(periodFile, period, CgroupHints.Cpu);
            fs.Write(quotaFile, CgroupParsing.Format(quota), CgroupHints.Cpu);
        }
        else
        {
            fs.Write(quotaFile, "-1", CgroupHints.Cpu);
            fs.Write(periodFile, period, CgroupHints.Cpu);
        }
    }

    private string? ReadFreezerState(string stateFile) => fs.ReadIfExists(stateFile)?.Trim();

    private long ReadLong(string file) => CgroupParsing.ParseLong(fs.Read(file), file);

    private string MemoryFile(string name) => CgroupPath.Join(MemoryDir, name);

    private string PidsFile(string name) => CgroupPath.Join(PidsDir, name);

    private string? DirOf(string controller) =>
        hierarchy.ControllerMounts.TryGetValue(controller, out string? mount) ? CgroupPath.Join(mount, Path) : null;
}
