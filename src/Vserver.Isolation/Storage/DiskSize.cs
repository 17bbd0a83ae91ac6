using System.Globalization;

namespace Vserver.Isolation.Storage;

/// <summary>Disk sizes in messages.</summary>
public static class DiskSize
{
    /// <summary>"41M", "1G", "1536K" or bytes: the largest unit that divides the size exactly.</summary>
    public static string Format(long bytes)
    {
        foreach (var (unit, factor) in new[] { ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10) })
            if (bytes >= factor && bytes % factor == 0) return (bytes / factor).ToString(CultureInfo.InvariantCulture) + unit;
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
