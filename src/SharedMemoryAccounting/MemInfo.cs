using System.Globalization;

namespace SharedMemoryAccounting;

/// <summary>
/// /proc/meminfo, parsed: every line in the kernel's order, values in bytes (kB lines) or plain counts
/// (HugePages_*). Keeping the order and the unit lets a guest's view be rendered in the same shape.
/// </summary>
public sealed class MemInfo
{
    private readonly Dictionary<string, long> _values;

    private MemInfo(IReadOnlyList<MemInfoLine> lines)
    {
        Lines = lines;
        _values = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in lines) _values[line.Key] = line.Value;
    }

    public IReadOnlyList<MemInfoLine> Lines { get; }

    /// <summary>A field's value (bytes for kB lines), 0 when the kernel does not have it.</summary>
    public long this[string key] => _values.GetValueOrDefault(key);

    public bool Has(string key) => _values.ContainsKey(key);

    public long TotalBytes => this["MemTotal"];
    public long FreeBytes => this["MemFree"];
    /// <summary>What the kernel estimates can be given to new work without swapping (MemAvailable).</summary>
    public long AvailableBytes => Has("MemAvailable") ? this["MemAvailable"] : FreeBytes + this["Cached"] + this["Buffers"];
    /// <summary>MemTotal - MemFree: everything not free, page cache included.</summary>
    public long UsedBytes => TotalBytes - FreeBytes;
    /// <summary>Page cache (and buffers) that no process maps.</summary>
    public long UnmappedCacheBytes => Math.Max(0, this["Buffers"] + this["Cached"] - this["Mapped"]);
    /// <summary>Memory the kernel holds for itself: slab, stacks, page tables, per-cpu and vmalloc areas.</summary>
    public long KernelBytes => this["Slab"] + this["KernelStack"] + this["PageTables"] + this["SecPageTables"] + this["Percpu"]
        + this["VmallocUsed"];

    /// <exception cref="FormatException">The text is not /proc/meminfo (no MemTotal, or a line without a number).</exception>
    public static MemInfo Parse(string text)
    {
        var lines = new List<MemInfoLine>();
        foreach (var raw in text.Split('\n'))
        {
            if (raw.Length == 0) continue;
            var colon = raw.IndexOf(':');
            if (colon <= 0) throw new FormatException($"meminfo line without 'Key:': '{raw}'");
            var key = raw[..colon];
            var rest = raw[(colon + 1)..].Trim();
            var kb = rest.EndsWith(" kB", StringComparison.Ordinal);
            var number = kb ? rest[..^3].Trim() : rest;
            if (!long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
                throw new FormatException($"meminfo line '{raw}' has no number");
            lines.Add(new MemInfoLine(key, kb ? value * 1024 : value, kb));
        }
        var info = new MemInfo(lines);
        if (!info.Has("MemTotal")) throw new FormatException("meminfo has no MemTotal line");
        return info;
    }
}

/// <summary>One /proc/meminfo line: bytes when <paramref name="Kb"/> (the kernel prints kB), else a count.</summary>
public sealed record MemInfoLine(string Key, long Value, bool Kb);
