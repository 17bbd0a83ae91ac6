using System.Globalization;

namespace HybridHypervisor.Model;

/// <summary>The host's RAM as the kernel reports it (MemTotal in /proc/meminfo).</summary>
public static class HostMemory
{
    private static readonly Lazy<long> Total = new(() => Read("MemTotal"));

    public static long TotalBytes => Total.Value;

    public static long Read(string field) => Field(File.ReadAllText("/proc/meminfo"), field);

    /// <summary>A field of a text in /proc/meminfo format (`MemTotal:  24682416 kB`), in bytes.</summary>
    public static long Field(string meminfo, string field)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (!line.StartsWith(field + ":", StringComparison.Ordinal)) continue;
            var kib = line[(field.Length + 1)..].Trim().Split(' ')[0];
            return long.Parse(kib, CultureInfo.InvariantCulture) * 1024;
        }
        throw new InvalidOperationException($"/proc/meminfo has no {field} line");
    }
}
