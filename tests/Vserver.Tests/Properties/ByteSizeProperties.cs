using System.Numerics;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Properties;

/// <summary>ByteSize.TryParse/Parse/Format against an independent reading of sizes done with exact integer arithmetic.</summary>
public sealed partial class ByteSizeProperties
{
    /// <summary>The largest size TryParse accepts (it refuses anything above as "too large").</summary>
    private const long Cap = long.MaxValue / 2;

    private static readonly (string Unit, long Multiplier)[] Units =
    [
        ("", 1), ("b", 1), ("B", 1),
        ("K", 1L << 10), ("k", 1L << 10), ("KB", 1L << 10), ("KiB", 1L << 10), ("kib", 1L << 10),
        ("M", 1L << 20), ("m", 1L << 20), ("MB", 1L << 20), ("MiB", 1L << 20),
        ("G", 1L << 30), ("g", 1L << 30), ("GB", 1L << 30), ("GiB", 1L << 30),
        ("T", 1L << 40), ("t", 1L << 40), ("TB", 1L << 40), ("TiB", 1L << 40),
    ];

    private static readonly Gen<string> Digits =
        Gen.Frequency((5, Generators.StringOf(Gen.Elements("0123456789".ToCharArray()), 1, 6)),
            (3, Generators.StringOf(Gen.Elements("0123456789".ToCharArray()), 7, 20)),
            (2, Generators.StringOf(Gen.Elements("0123456789".ToCharArray()), 21, 34)));

    /// <summary>A number, an optional fraction of up to 3 digits, and a unit: what an operator writes, up to absurd sizes.</summary>
    private static readonly Gen<(string Text, string Integer, string Fraction, long Multiplier)> NumberWithUnit =
        Generators.Tuple(Gen.Elements(Units), Gen.Choose(-3, 3),
                Gen.Frequency((3, Gen.Constant("")), (1, Generators.StringOf(Gen.Elements("0123456789".ToCharArray()), 1, 3))))
            .SelectMany(t => Gen.Frequency(
                (4, Digits),
                // Just below, at and just above the largest size accepted, in this unit.
                (1, Gen.Constant((Cap / t.Item1.Multiplier + t.Item2).ToString(System.Globalization.CultureInfo.InvariantCulture))))
            .Select(n => (n + (t.Item3.Length > 0 ? "." + t.Item3 : "") + t.Item1.Unit, n, t.Item3, t.Item1.Multiplier)));

    /// <summary>Strings that look like sizes, almost look like sizes, or are noise.</summary>
    private static readonly Gen<string> SizeLike = Gen.Frequency(
        (3, NumberWithUnit.Select(n => n.Text)),
        (3, NumberWithUnit.SelectMany(n => Generators.Mutate(n.Text, Generators.HostileChar))),
        (2, Generators.HostileString),
        (1, Gen.Elements("", " ", "-", "-0", "+5M", "0x10", "1e3", "1E3K", ".", ".5K", "5.", "1,5G", "1 M", "1..5M", "∞", "NaN",
            "M", "KB", "5MM", "5P", "5 ", "\t5M\n", "79228162514264337593543950335T", "9223372036854775807", "4611686018427387904",
            "4611686018427387903", "4194304T", "4194303.99T")));

    /// <summary>Values near unit boundaries and the cap, where rounding goes wrong first.</summary>
    private static readonly Gen<long> InterestingLong = Gen.Frequency(
        (3, Gen.Choose(0, 62).SelectMany(bit => Gen.Choose(-3, 3).Select(d => Math.Max(0, (1L << bit) + d)))),
        (2, Generators.Tuple(Gen.Choose(0, 4), Gen.Choose(1, 1023), Gen.Choose(-60, 60))
            .Select(t => Math.Max(0, t.Item2 * (1L << (10 * t.Item1)) + t.Item3 * (1L << (10 * t.Item1)) / 1000))),
        (2, Gen.Choose(0, 1 << 30).SelectMany(d => Gen.Elements(Cap - d, Cap + d, long.MaxValue - d, Cap - d * 4096L))),
        (3, Gen.Zip(Gen.Choose(0, int.MaxValue), Gen.Choose(0, int.MaxValue)).Select(t => ((long)t.Item1 << 32 | (uint)t.Item2) & long.MaxValue)
            .SelectMany(v => Gen.Choose(0, 63).Select(shift => v >> shift))));

    [Fact]
    public void TryParse_never_throws_and_what_it_accepts_formats_and_parses_back()
    {
        PropertyRun.Check(Prop.ForAll(SizeLike.Arb(), text =>
        {
            var ok = ByteSize.TryParse(text, out var bytes, out var error);
            if (!ok) return (error.StartsWith("invalid size", StringComparison.Ordinal) && bytes == 0).Label($"refused {PropertyRun.Show(text)}: {error}");
            if (bytes is < 0 or > Cap || error.Length != 0) return false.Label($"accepted {PropertyRun.Show(text)} as {bytes}, error '{error}'");
            return FormatsAndParsesBack(bytes).Label($"accepted {PropertyRun.Show(text)} as {bytes}, formatted as {ByteSize.Format(bytes)}");
        }));
    }

    [Fact]
    public void A_number_with_a_unit_is_exactly_number_times_unit_or_refused_as_too_large()
    {
        PropertyRun.Check(Prop.ForAll(NumberWithUnit.Arb(), n =>
        {
            var scale = BigInteger.Pow(10, n.Fraction.Length);
            var numerator = BigInteger.Parse(n.Integer + n.Fraction, System.Globalization.CultureInfo.InvariantCulture) * n.Multiplier;
            var label = $"{n.Text} (exactly {numerator}/{scale})";
            bool ok;
            long bytes;
            string error;
            try
            {
                ok = ByteSize.TryParse(n.Text, out bytes, out error);
            }
            catch (Exception e)
            {
                return false.Label($"{label}: TryParse threw {e.GetType().Name}: {e.Message}");
            }
            if (numerator > Cap * scale)
                return (!ok && error.StartsWith("invalid size", StringComparison.Ordinal)).Label($"{label}: above the cap, but ok={ok} bytes={bytes}");
            return (ok && bytes == RoundHalfEven(numerator, scale)).Label($"{label}: ok={ok} bytes={bytes} error='{error}'");
        }));
    }

    [Fact]
    public void Format_writes_a_size_that_means_the_value_to_within_its_rounding()
    {
        PropertyRun.Check(Prop.ForAll(InterestingLong.Arb(), v => FormatsAndParsesBack(v).Label($"{v} formatted as {ByteSize.Format(v)}")));
    }

    [Fact]
    public void Whole_and_half_units_format_exactly_and_parse_back_to_the_same_value()
    {
        // N or N.5 of the largest unit that fits: Format has to write these exactly, and Parse has to read them back exactly.
        var exact = Generators.Tuple(Gen.Choose(0, 4), Gen.Choose(1, 1023), Gen.Elements(0, 1), Gen.Choose(0, 1 << 22)).Select(t =>
        {
            var (unit, n, half, big) = t;
            if (unit == 0) return (long)n;
            var m = 1L << (10 * unit);
            var whole = unit == 4 ? Math.Max(n, big) : n;
            return whole * m + half * m / 2;
        }).Where(v => v <= Cap);
        PropertyRun.Check(Prop.ForAll(exact.Arb(), v =>
        {
            var text = ByteSize.Format(v);
            var denoted = Denoted(text);
            return (denoted is { } d && d.Numerator == v * d.Scale && ByteSize.TryParse(text, out var back, out _) && back == v)
                .Label($"{v} formatted as {text}, which parses to {(ByteSize.TryParse(text, out var b, out var e) ? b : e)}");
        }));
    }

    /// <summary>Format(v) is display text: at most one decimal of the largest unit that fits, so exact only for whole or
    /// tenth units. It must read back (by Parse and by an independent reader) to within half a tenth of that unit, or be
    /// refused as too large only when the rounded value lies above the cap.</summary>
    private static bool FormatsAndParsesBack(long v)
    {
        var text = ByteSize.Format(v);
        if (Denoted(text) is not { } d) return false;
        var unit = text.Length > 0 && char.IsAsciiLetter(text[^1]) ? Units.First(u => u.Unit == text[^1..]).Multiplier : 1;
        var tolerance = new BigInteger(unit) * d.Scale / 20;
        if (BigInteger.Abs(d.Numerator - new BigInteger(v) * d.Scale) > tolerance + d.Scale) return false;
        if (!ByteSize.TryParse(text, out var back, out var error))
            return error.Contains("too large", StringComparison.Ordinal) && d.Numerator > Cap * d.Scale;
        return back == RoundHalfEven(d.Numerator, d.Scale);
    }

    /// <summary>What Format's output means, read without ByteSize: digits, at most one decimal, one of K, M, G, T.</summary>
    private static (BigInteger Numerator, BigInteger Scale)? Denoted(string text)
    {
        var m = FormatShape().Match(text);
        if (!m.Success) return null;
        var multiplier = m.Groups[3].Value switch { "" => 1L, "K" => 1L << 10, "M" => 1L << 20, "G" => 1L << 30, _ => 1L << 40 };
        var fraction = m.Groups[2].Value;
        return (BigInteger.Parse(m.Groups[1].Value + fraction, System.Globalization.CultureInfo.InvariantCulture) * multiplier,
            BigInteger.Pow(10, fraction.Length));
    }

    private static BigInteger RoundHalfEven(BigInteger numerator, BigInteger scale)
    {
        var q = BigInteger.DivRem(numerator, scale, out var r);
        return (2 * r).CompareTo(scale) switch { > 0 => q + 1, 0 => q.IsEven ? q : q + 1, _ => q };
    }

    [GeneratedRegex(@"^(0|[1-9][0-9]*)(?:\.([0-9]))?([KMGT]?)\z")]
    private static partial Regex FormatShape();
}
