using System.Globalization;

namespace Vserver.Isolation.Cgroups;

/// <summary>Parsers for the cgroupfs file formats.</summary>
internal static class CgroupParsing
{
    /// <summary>v1 reports "unlimited" as PAGE_COUNTER_MAX * PAGE_SIZE (9223372036854771712 on 4 KiB pages).</summary>
    public const long V1UnlimitedThreshold = 1L << 62;

    public static long ParseLong(string text, string path)
    {
        string t = text.Trim();
        return long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw new CgroupException($"parse '{path}': expected an integer, got '{t}'");
    }

    /// <summary>"max" → null, otherwise the number (v2 memory.max, pids.max, ...).</summary>
    public static long? ParseMaxOrLong(string text, string path) =>
        text.Trim() == "max" ? null : ParseLong(text, path);

    /// <summary>v1 byte limits: huge values mean unlimited.</summary>
    public static long? ParseV1Limit(string text, string path)
    {
        long value = ParseLong(text, path);
        return value >= V1UnlimitedThreshold || value < 0 ? null : value;
    }

    /// <summary>Parses "key value" lines (memory.events, cpu.stat, cgroup.events, memory.oom_control, memory.stat).</summary>
    public static Dictionary<string, long> ParseFlatKeyed(string text)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && long.TryParse(parts[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                result[parts[0]] = value;
            }
        }

        return result;
    }

    /// <summary>Parses v2 cpu.max ("50000 100000" or "max 100000").</summary>
    public static (long? QuotaMicroseconds, long PeriodMicroseconds) ParseCpuMax(string text, string path)
    {
        string[] parts = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is < 1 or > 2)
        {
            throw new CgroupException($"parse '{path}': expected 'QUOTA PERIOD', got '{text.Trim()}'");
        }

        long? quota = parts[0] == "max" ? null : ParseLong(parts[0], path);
        long period = parts.Length == 2 ? ParseLong(parts[1], path) : CgroupLimits.CpuPeriodMicroseconds;
        return (quota, period);
    }

    /// <summary>Parses a cgroup.procs / tasks file (one pid per line).</summary>
    public static List<int> ParsePidList(string text)
    {
        var pids = new List<int>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                pids.Add(pid);
            }
        }

        return pids;
    }

    /// <summary>Splits a space-separated controller list (cgroup.controllers, cgroup.subtree_control).</summary>
    public static HashSet<string> ParseControllerList(string text) =>
        new(text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);

    public static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);
}
