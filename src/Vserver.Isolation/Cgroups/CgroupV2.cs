using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>A leaf cgroup in the unified hierarchy.</summary>
internal sealed class CgroupV2 : ICgroup
{
    private readonly CgroupV2Hierarchy hierarchy;
    private readonly CgroupFileSystem fs;

    public CgroupV2(CgroupV2Hierarchy hierarchy, string path)
    {
        this.hierarchy = hierarchy;
        fs = hierarchy.Fs;
        Path = path;
        Dir = CgroupPath.Join(hierarchy.Root, path);
        ProcsFiles = [CgroupPath.Join(Dir, "cgroup.procs")];
    }

    public string Path { get; }

    /// <summary>Absolute directory of this cgroup.</summary>
    public string Dir { get; }

    public IReadOnlyList<string> ProcsFiles { get; }

    public void AddProcess(int pid) =>
        fs.Write(ProcsFiles[0], CgroupParsing.Format(pid), CgroupHints.AddProcess);

    public void Apply(CgroupLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        limits.Validate();

        fs.Write(File("memory.max"), limits.MemoryBytes is { } mem ? CgroupParsing.Format(mem) : "max", CgroupHints.Limit);
        fs.Write(File("memory.low"), limits.MemoryLowBytes is { } low ? CgroupParsing.Format(low) : "0", CgroupHints.Limit);

        // Mirror v1's memsw == limit: a memory-limited guest gets no swap on top (memory.swap.max
        // exists only with swap accounting).
        string swapMax = File("memory.swap.max");
        if (fs.FileExists(swapMax))
        {
            fs.Write(swapMax, limits.MemoryBytes is null ? "max" : "0", CgroupHints.Limit);
        }

        fs.Write(File("cpu.max"), $"{limits.CpuQuotaText} {CgroupLimits.CpuPeriodMicroseconds}", CgroupHints.Cpu);
        fs.Write(File("pids.max"), limits.Pids is { } pids ? CgroupParsing.Format(pids) : "max", CgroupHints.Limit);
    }

    public void Freeze()
    {
        string freeze = RequireFreezeFile();
        fs.Write(freeze, "1");
        if (!CgroupWait.Until(IsFrozen, hierarchy.Timeout))
        {
            _ = fs.TryWrite(freeze, "0");
            throw CgroupException.FromErrno("freeze", Dir, Errno.ETIMEDOUT,
                $"cgroup.events did not report 'frozen 1' within {CgroupWait.Describe(hierarchy.Timeout)}; thawed again");
        }
    }

    public void Thaw()
    {
        fs.Write(RequireFreezeFile(), "0");
        if (!CgroupWait.Until(() => !IsFrozen(), hierarchy.Timeout))
        {
            throw CgroupException.FromErrno("thaw", Dir, Errno.ETIMEDOUT,
                $"cgroup.events still reports 'frozen 1' after {CgroupWait.Describe(hierarchy.Timeout)}; is an ancestor frozen?");
        }
    }

    public IReadOnlyList<int> Pids()
    {
        var pids = new List<int>();
        CgroupTree.CollectPids(fs, Dir, pids);
        return pids.Distinct().Order().ToArray();
    }

    public CgroupStats ReadStats()
    {
        long current = ReadLong("memory.current");
        string? peakText = fs.ReadIfExists(File("memory.peak"));
        long peak = peakText is null ? current : CgroupParsing.ParseLong(peakText, File("memory.peak"));
        long? limit = CgroupParsing.ParseMaxOrLong(fs.Read(File("memory.max")), File("memory.max"));
        long oomKills = CgroupParsing.ParseFlatKeyed(fs.Read(File("memory.events"))).GetValueOrDefault("oom_kill");
        int pids = (int)ReadLong("pids.current");
        long? pidsLimit = CgroupParsing.ParseMaxOrLong(fs.Read(File("pids.max")), File("pids.max"));
        long usageMicros = CgroupParsing.ParseFlatKeyed(fs.Read(File("cpu.stat"))).GetValueOrDefault("usage_usec");
        return new CgroupStats(
            current,
            peak,
            limit,
            oomKills,
            pids,
            pidsLimit is { } pl ? (int)Math.Min(pl, int.MaxValue) : null,
            TimeSpan.FromTicks(usageMicros * TimeSpan.TicksPerMicrosecond),
            IsFrozen());
    }

    public IReadOnlyDictionary<string, long> ReadMemoryStat()
    {
        var stat = CgroupParsing.ParseFlatKeyed(fs.Read(File("memory.stat")));
        if (fs.ReadIfExists(File("memory.swap.current")) is { } swap)
        {
            stat["swap"] = CgroupParsing.ParseLong(swap, File("memory.swap.current"));
        }

        return stat;
    }

    public void Destroy()
    {
        if (!fs.DirectoryExists(Dir))
        {
            return;
        }

        // Frozen tasks cannot act on SIGKILL until thawed (v2 does let fatal signals through, but be safe).
        if (fs.FileExists(File("cgroup.freeze")) && IsFrozen())
        {
            _ = fs.TryWrite(File("cgroup.freeze"), "0");
        }

        string killFile = File("cgroup.kill");
        bool haveKill = fs.FileExists(killFile);
        CgroupTree.KillUntilEmpty(fs, Dir, Pids, hierarchy.Timeout, haveKill ? _ => KillViaKernel(killFile) : null);
        CgroupTree.RemoveTree(fs, Dir, hierarchy.Timeout);
    }

    /// <summary>cgroup.kill (Linux 5.14+) kills the whole subtree, race-free against forks.</summary>
    private void KillViaKernel(string killFile)
    {
        int errno = fs.TryWrite(killFile, "1");
        if (errno is not 0 and not Errno.ENOENT)
        {
            throw CgroupException.FromErrno("write", killFile, errno);
        }
    }

    private bool IsFrozen()
    {
        string? events = fs.ReadIfExists(File("cgroup.events"));
        return events is not null && CgroupParsing.ParseFlatKeyed(events).GetValueOrDefault("frozen") == 1;
    }

    private string RequireFreezeFile()
    {
        string freeze = File("cgroup.freeze");
        return fs.FileExists(freeze)
            ? freeze
            : throw CgroupException.FromErrno("open", freeze, Errno.ENOENT, "the cgroup v2 freezer needs Linux 5.2+, or the cgroup does not exist");
    }

    private long ReadLong(string name) => CgroupParsing.ParseLong(fs.Read(File(name)), File(name));

    private string File(string name) => CgroupPath.Join(Dir, name);
}
