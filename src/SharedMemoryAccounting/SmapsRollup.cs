using System.Globalization;

namespace SharedMemoryAccounting;

/// <summary>
/// One process's /proc/PID/smaps_rollup, in bytes. Pss splits each page among the processes mapping it, so the
/// Pss of every process on the host adds up to the memory that is mapped at all.
/// </summary>
public sealed record SmapsRollup(long Rss, long Pss, long SharedClean, long SharedDirty, long PrivateClean, long PrivateDirty, long Swap)
{
    public static SmapsRollup Zero { get; } = new(0, 0, 0, 0, 0, 0, 0);

    /// <summary>Pages this process maps that some other process maps too.</summary>
    public long Shared => SharedClean + SharedDirty;

    public long Private => PrivateClean + PrivateDirty;

    public SmapsRollup Add(SmapsRollup other) => new(Rss + other.Rss, Pss + other.Pss, SharedClean + other.SharedClean,
        SharedDirty + other.SharedDirty, PrivateClean + other.PrivateClean, PrivateDirty + other.PrivateDirty, Swap + other.Swap);

    /// <summary>Parses smaps_rollup; an empty text (a kernel thread, or a process that just exited) is all zero.</summary>
    public static SmapsRollup Parse(string text)
    {
        long rss = 0, pss = 0, sharedClean = 0, sharedDirty = 0, privateClean = 0, privateDirty = 0, swap = 0;
        foreach (var line in text.Split('\n'))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0 || !line.EndsWith(" kB", StringComparison.Ordinal)) continue;
            if (!long.TryParse(line.AsSpan(colon + 1, line.Length - colon - 4).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var kb))
                continue;
            var bytes = kb * 1024;
            switch (line[..colon])
            {
                case "Rss": rss = bytes; break;
                case "Pss": pss = bytes; break;
                case "Shared_Clean": sharedClean = bytes; break;
                case "Shared_Dirty": sharedDirty = bytes; break;
                case "Private_Clean": privateClean = bytes; break;
                case "Private_Dirty": privateDirty = bytes; break;
                case "Swap": swap = bytes; break;
            }
        }
        return new SmapsRollup(rss, pss, sharedClean, sharedDirty, privateClean, privateDirty, swap);
    }
}
