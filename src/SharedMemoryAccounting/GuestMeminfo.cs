using System.Globalization;
using System.Text;

namespace SharedMemoryAccounting;

/// <summary>
/// A vserver's own /proc/meminfo: its limit as MemTotal and its cgroup's charges as usage, in the host's line order
/// and format, so `free`, `top` and anything else reading /proc/meminfo (or sysinfo, answered from this file) see the
/// guest, not the host. The text has the same length for every value (numbers right-aligned to the widest the host
/// can have), so the file can be rewritten in place under a bind mount without a reader ever seeing it shorter.
/// </summary>
public static class GuestMeminfo
{
    /// <summary>Lines about the host's configuration rather than its usage: shown as the host has them.</summary>
    private static readonly HashSet<string> CopiedFromHost = new(StringComparer.Ordinal)
    {
        "VmallocTotal", "Hugepagesize", "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
    };

    /// <summary>The guest's memory as the host sees it through its cgroup; <paramref name="limit"/> null = unlimited (the host's MemTotal).</summary>
    public static string Render(MemInfo host, CgroupMemory guest, long? limit)
    {
        var total = Math.Min(limit ?? host.TotalBytes, host.TotalBytes);
        var used = Math.Clamp(guest.Usage, 0, total);
        var free = total - used;
        var cache = Math.Min(guest.Cache, used);
        var reclaimable = guest.ActiveFile + guest.InactiveFile + guest.SlabReclaimable;
        var values = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            ["MemTotal"] = total,
            ["MemFree"] = free,
            ["MemAvailable"] = Math.Min(total, free + reclaimable),
            ["Cached"] = cache,
            ["Active"] = guest.ActiveAnon + guest.ActiveFile,
            ["Inactive"] = guest.InactiveAnon + guest.InactiveFile,
            ["Active(anon)"] = guest.ActiveAnon,
            ["Inactive(anon)"] = guest.InactiveAnon,
            ["Active(file)"] = guest.ActiveFile,
            ["Inactive(file)"] = guest.InactiveFile,
            ["Unevictable"] = guest.Unevictable,
            ["Dirty"] = guest.Dirty,
            ["Writeback"] = guest.Writeback,
            ["AnonPages"] = guest.Anon,
            ["Mapped"] = guest.CacheMapped,
            ["Shmem"] = guest.Shmem,
            ["KReclaimable"] = guest.SlabReclaimable,
            ["Slab"] = guest.SlabReclaimable + guest.SlabUnreclaimable,
            ["SReclaimable"] = guest.SlabReclaimable,
            ["SUnreclaim"] = guest.SlabUnreclaimable,
            ["CommitLimit"] = total,
            ["Committed_AS"] = Math.Min(total, guest.Anon + guest.Shmem),
        };
        // Every number fits the width of the host's MemTotal: the guest's values never exceed it.
        var width = Math.Max(8, (host.TotalBytes / 1024).ToString(CultureInfo.InvariantCulture).Length);
        var sb = new StringBuilder(host.Lines.Count * 32);
        foreach (var line in host.Lines)
        {
            long value = CopiedFromHost.Contains(line.Key) ? line.Value : values.GetValueOrDefault(line.Key);
            var shown = line.Kb ? Math.Max(0, value) / 1024 : Math.Max(0, value);
            sb.Append((line.Key + ":").PadRight(16)).Append(shown.ToString(CultureInfo.InvariantCulture).PadLeft(width));
            sb.Append(line.Kb ? " kB\n" : "\n");
        }
        return sb.ToString();
    }
}
