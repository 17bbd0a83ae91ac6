using System.Globalization;

namespace SharedMemoryAccounting;

/// <summary>Sizes in messages: "512M", "1.5G".</summary>
public static class Size
{
    public static string Format(long bytes)
    {
        const long GiB = 1L << 30;
        var sign = bytes < 0 ? "-" : "";
        var abs = Math.Abs(bytes);
        return abs >= GiB
            ? sign + (abs / (double)GiB).ToString("0.0", CultureInfo.InvariantCulture) + "G"
            : sign + (abs >> 20).ToString(CultureInfo.InvariantCulture) + "M";
    }
}
