using FsCheck;
using FsCheck.Fluent;

namespace Vserver.Tests.Properties;

/// <summary>Generators shared by the property tests: hostile strings and well-formed pieces to mutate.</summary>
internal static class Generators
{
    /// <summary>Characters that tend to break parsers of names, paths, numbers and addresses.</summary>
    private static readonly char[] Awkward =
    [
        '\0', '/', '\\', '.', '-', '_', '+', ':', '%', ',', ' ', '\t', '\n', '\r', '\v', '\f', '\u0085', '\u00a0', '\u2028',
        '\ufeff', '\u200b', 'é', 'ı', 'İ', '\u212a' /* Kelvin sign, lower-cases to k */, 'Ａ', '１', '٣', '\ud800', '\udc00',
        'e', 'E', 'x', 'X', 'K', 'M', 'G', 'T', 'b', 'B', 'i', '"', '\'', '*', '?', '$', '^', '[', ']', '{', '}', '#',
    ];

    private const string LabelChars = "abcdefghijklmnopqrstuvwxyz0123456789-";
    private const string LabelEnds = "abcdefghijklmnopqrstuvwxyz0123456789";

    public static Gen<char> AnyChar { get; } = Gen.Choose(0, 0xffff).Select(i => (char)i);

    public static Gen<char> HostileChar { get; } = Gen.Frequency(
        (4, Gen.Elements(LabelChars.ToCharArray())),
        (3, Gen.Elements(Awkward)),
        (1, Gen.Elements("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".ToCharArray())),
        (1, AnyChar));

    public static Gen<string> StringOf(Gen<char> chars, int minLength, int maxLength) =>
        Gen.Choose(minLength, maxLength).SelectMany(n => Gen.ArrayOf(chars, n)).Select(a => new string(a));

    /// <summary>Lengths 0..300, mostly short, built from hostile and arbitrary UTF-16 characters (lone surrogates included).</summary>
    public static Gen<string> HostileString { get; } = Gen.Frequency(
        (6, StringOf(HostileChar, 0, 12)),
        (3, StringOf(HostileChar, 0, 80)),
        (1, StringOf(HostileChar, 0, 300)),
        (1, StringOf(AnyChar, 0, 40)),
        (1, Gen.Elements("", ".", "..", "/", "../etc", "a/b", "a\0b", "\0", " ", "con", "-", "--", "a..b", "null")));

    /// <summary>A DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'.</summary>
    public static Gen<string> ValidLabel { get; } =
        Gen.Frequency((3, Gen.Choose(1, 12)), (1, Gen.Choose(1, 63)), (1, Gen.Elements(1, 2, 62, 63))).SelectMany(n =>
            n == 1
                ? Gen.Elements(LabelEnds.ToCharArray()).Select(c => c.ToString())
                : Tuple(
                    Gen.Elements(LabelEnds.ToCharArray()),
                    Gen.ArrayOf(Gen.Elements(LabelChars.ToCharArray()), n - 2),
                    Gen.Elements(LabelEnds.ToCharArray()))
                  .Select(t => t.Item1 + new string(t.Item2) + t.Item3));

    /// <summary>Insert, replace, delete or append a character, or glue on something; applied 1..3 times.</summary>
    public static Gen<string> Mutate(string s, Gen<char> chars)
    {
        Gen<string> Once(string t) =>
            Tuple(Gen.Choose(0, 6), Gen.Choose(0, Math.Max(0, t.Length)), chars).SelectMany(m =>
            {
                var (op, at, c) = m;
                var i = Math.Min(at, t.Length);
                return op switch
                {
                    0 => Gen.Constant(t.Insert(i, c.ToString())),
                    1 when t.Length > 0 => Gen.Constant(t.Remove(Math.Min(i, t.Length - 1), 1).Insert(Math.Min(i, t.Length - 1), c.ToString())),
                    2 when t.Length > 0 => Gen.Constant(t.Remove(Math.Min(i, t.Length - 1), 1)),
                    3 => Gen.Constant(t + c),
                    4 => Gen.Constant(c + t),
                    5 => Gen.Elements(t + t, t + "." + t, t + "/" + t, t.ToUpperInvariant(), " " + t + " ", t + "\n", t + "\0"),
                    _ => Gen.Constant(t),
                };
            });
        return Gen.Choose(1, 3).SelectMany(n =>
        {
            var g = Gen.Constant(s);
            for (var k = 0; k < n; k++) g = g.SelectMany(Once);
            return g;
        });
    }

    public static Gen<(T1, T2, T3)> Tuple<T1, T2, T3>(Gen<T1> g1, Gen<T2> g2, Gen<T3> g3) =>
        g1.SelectMany(a => g2.SelectMany(b => g3.Select(c => (a, b, c))));

    public static Gen<(T1, T2, T3, T4)> Tuple<T1, T2, T3, T4>(Gen<T1> g1, Gen<T2> g2, Gen<T3> g3, Gen<T4> g4) =>
        Tuple(g1, g2, g3).SelectMany(t => g4.Select(d => (t.Item1, t.Item2, t.Item3, d)));

    /// <summary>A generator with no shrinking: the inputs here are cheap to read as they are.</summary>
    public static Arbitrary<T> Arb<T>(this Gen<T> gen) => FsCheck.Fluent.Arb.From(gen);
}
