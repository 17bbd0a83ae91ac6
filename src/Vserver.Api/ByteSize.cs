using System.Globalization;

namespace Vserver.Api;

/// <summary>
/// Sizes as operators write them: 256M, 1.5G, 4096 (bytes). Suffixes are binary (K = 1024). The one parser and
/// formatter of sizes for vsctl, the agent, the fleet and the memory pool: <see cref="Format"/> to show a size,
/// <see cref="FormatExact"/> where the text must mean exactly the bytes (advice to type back in),
/// <see cref="FormatRounded"/> for the pool's figures that stand side by side in one line.
/// </summary>
public static class ByteSize
{
    public static bool TryParse(string? text, out long bytes, out string error)
    {
        bytes = 0;
        error = "";
        var s = (text ?? "").Trim();
        if (s.Length == 0)
        {
            error = "invalid size '': give a number with an optional K, M, G or T suffix, e.g. 256M";
            return false;
        }
        if (s.StartsWith('-'))
        {
            error = $"invalid size '{text}': a size cannot be negative";
            return false;
        }
        var unitStart = s.Length;
        while (unitStart > 0 && char.IsAsciiLetter(s[unitStart - 1])) unitStart--;
        var number = s[..unitStart];
        var unit = s[unitStart..].ToUpperInvariant();
        long multiplier = unit switch
        {
            "" or "B" => 1,
            "K" or "KB" or "KIB" => 1L << 10,
            "M" or "MB" or "MIB" => 1L << 20,
            "G" or "GB" or "GIB" => 1L << 30,
            "T" or "TB" or "TIB" => 1L << 40,
            _ => 0,
        };
        if (multiplier == 0 || !decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value))
        {
            error = $"invalid size '{text}': give a number with an optional K, M, G or T suffix, e.g. 256M";
            return false;
        }
        // Compared before multiplying too: a decimal holds numbers whose product with the unit overflows it (29 digits and a T).
        if (value > long.MaxValue / multiplier || value * multiplier > long.MaxValue / 2)
        {
            error = $"invalid size '{text}': too large";
            return false;
        }
        bytes = (long)decimal.Round(value * multiplier);
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes, out var error) ? bytes : throw new FormatException(error);

    /// <summary>Shortest exact-enough form: 256M, 1.5G, 512K, 100 (bytes); a negative size with a minus sign.</summary>
    public static string Format(long bytes)
    {
        if (bytes < 0) return "-" + Format(bytes == long.MinValue ? long.MaxValue : -bytes);
        string[] units = ["", "K", "M", "G", "T"];
        double value = bytes;
        var i = 0;
        // Rounded to a tenth first: 1048575 is 1023.99K, which shows as 1M, not as 1024K.
        while (Math.Round(value, 1) >= 1024 && i < units.Length - 1)
        {
            value /= 1024;
            i++;
        }
        return Math.Round(value, 1).ToString("0.#", CultureInfo.InvariantCulture) + units[i];
    }

    /// <summary>"41M", "1G", "1536K" or bytes: the largest unit that divides the size exactly, so that it parses back
    /// to the same number.</summary>
    public static string FormatExact(long bytes)
    {
        foreach (var (unit, factor) in new[] { ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10) })
            if (bytes >= factor && bytes % factor == 0) return (bytes / factor).ToString(CultureInfo.InvariantCulture) + unit;
        return bytes.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>"300M", "1.0G", "7.5G", "2.0T": whole MiB below a GiB, tenths of a GiB from one GiB up and tenths of a
    /// TiB from one TiB up, a negative size with a minus sign (none on a size that rounds to 0M). The memory pool's
    /// messages use it, so that figures in one line read alike ("1.7G of 2.0G").</summary>
    public static string FormatRounded(long bytes)
    {
        const long GiB = 1L << 30;
        const long TiB = 1L << 40;
        // long.MinValue has no positive counterpart; a byte less changes nothing at this rounding.
        var abs = bytes == long.MinValue ? long.MaxValue : Math.Abs(bytes);
        var text = abs switch
        {
            // 1023.95G and up rounds to 1024.0G: say 1.0T instead.
            >= TiB - GiB / 20 => (abs / (double)TiB).ToString("0.0", CultureInfo.InvariantCulture) + "T",
            >= GiB => (abs / (double)GiB).ToString("0.0", CultureInfo.InvariantCulture) + "G",
            _ => (abs >> 20).ToString(CultureInfo.InvariantCulture) + "M",
        };
        return bytes < 0 && text != "0M" ? "-" + text : text;
    }
}
