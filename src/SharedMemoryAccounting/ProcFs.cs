using System.Globalization;

namespace SharedMemoryAccounting;

/// <summary>What the accounting reads from the kernel; <see cref="ProcFs"/> reads the real files.</summary>
public interface IMemoryReader
{
    MemInfo ReadMemInfo();

    /// <summary>Every process id on the host.</summary>
    IReadOnlyList<int> ProcessIds();

    /// <summary>A process's smaps_rollup; all zero for a kernel thread or a process that is gone.</summary>
    SmapsRollup ReadRollup(int pid);

    /// <summary>Pages KSM merged in a process (/proc/PID/ksm_merging_pages), 0 when unknown.</summary>
    long KsmMergingPages(int pid);

    KsmStatus ReadKsm();
}

/// <summary>KSM as /sys/kernel/mm/ksm shows it: whether it runs and how many pages it saves.</summary>
public sealed record KsmStatus(bool Available, bool Running, long PagesShared, long PagesSharing, long PageSize)
{
    /// <summary>pages_sharing counts the mappings that point at a shared page instead of a copy: that is what is saved.</summary>
    public long SavedBytes => PagesSharing * PageSize;
}

/// <summary>The real /proc and /sys/kernel/mm/ksm (roots changeable for tests).</summary>
public sealed class ProcFs(string procRoot = "/proc", string ksmRoot = "/sys/kernel/mm/ksm") : IMemoryReader
{
    public string KsmRoot { get; } = ksmRoot;

    public MemInfo ReadMemInfo() => MemInfo.Parse(File.ReadAllText(Path.Combine(procRoot, "meminfo")));

    public IReadOnlyList<int> ProcessIds()
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories(procRoot))
        {
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) pids.Add(pid);
        }
        return pids;
    }

    public SmapsRollup ReadRollup(int pid) =>
        ReadProcessFile(pid, "smaps_rollup") is { } text ? SmapsRollup.Parse(text) : SmapsRollup.Zero;

    public long KsmMergingPages(int pid) =>
        long.TryParse(ReadProcessFile(pid, "ksm_merging_pages")?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pages) ? pages : 0;

    /// <summary>A process's CPU time so far (utime + stime from /proc/PID/stat), null when it is gone.</summary>
    public TimeSpan? CpuTime(int pid)
    {
        if (ReadProcessFile(pid, "stat") is not { } stat) return null;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        if (fields.Length < 13
            || !long.TryParse(fields[11], NumberStyles.None, CultureInfo.InvariantCulture, out var utime)
            || !long.TryParse(fields[12], NumberStyles.None, CultureInfo.InvariantCulture, out var stime))
            return null;
        // USER_HZ is 100 on every Linux architecture .NET runs on.
        return TimeSpan.FromMilliseconds((utime + stime) * 10);
    }

    public KsmStatus ReadKsm()
    {
        long Read(string name) =>
            long.TryParse(ReadIfExists(Path.Combine(KsmRoot, name))?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0;
        var available = File.Exists(Path.Combine(KsmRoot, "run"));
        return new KsmStatus(available, available && Read("run") == 1, Read("pages_shared"), Read("pages_sharing"), Environment.SystemPageSize);
    }

    /// <summary>Starts KSM (run = 1) or stops it and gives every merged page back as a private copy (run = 2).</summary>
    public void SetKsm(bool on)
    {
        var run = Path.Combine(KsmRoot, "run");
        if (!File.Exists(run)) throw new IOException($"{run}: this kernel has no KSM (CONFIG_KSM)");
        File.WriteAllText(run, on ? "1" : "2");
    }

    private string? ReadProcessFile(int pid, string name) =>
        ReadIfExists(Path.Combine(procRoot, pid.ToString(CultureInfo.InvariantCulture), name));

    private static string? ReadIfExists(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Processes come and go while we walk /proc: a vanished one has nothing to count.
            return null;
        }
    }
}
