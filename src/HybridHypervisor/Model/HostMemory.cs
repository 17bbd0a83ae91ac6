using System.Globalization;

namespace HybridHypervisor.Model;

/// <summary>The host's RAM as the kernel reports it (MemTotal in /proc/meminfo).</summary>
public static class HostMemory
{
    private static readonly Lazy<long> Total = new(() => Read("MemTotal"));

    public static long TotalBytes => Total.Value;

    public static long Read(string field)
    {
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (!line.StartsWith(field + ":", StringComparison.Ordinal)) continue;
            var kib = line[(field.Length + 1)..].Trim().Split(' ')[0];
            return long.Parse(kib, CultureInfo.InvariantCulture) * 1024;
        }
        throw new InvalidOperationException($"/proc/meminfo has no {field} line");
    }
}
