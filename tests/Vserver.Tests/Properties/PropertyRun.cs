using System.Globalization;
using System.Runtime.CompilerServices;
using FsCheck;
using Microsoft.FSharp.Core;

namespace Vserver.Tests.Properties;

/// <summary>Runs a property a fixed number of times from a fixed seed, so a failure reproduces on every machine.
/// Set VSERVER_PROPERTY_SEED (a decimal number) to explore other inputs; the seed in use is part of any failure message.</summary>
internal static class PropertyRun
{
    public const int Cases = 2000;
    private const ulong DefaultSeed = 20_260_301;

    public static ulong Seed =>
        Environment.GetEnvironmentVariable("VSERVER_PROPERTY_SEED") is { Length: > 0 } text
            ? ulong.Parse(text, CultureInfo.InvariantCulture)
            : DefaultSeed;

    public static void Check(Property property, int cases = Cases, [CallerMemberName] string name = "")
    {
        var seed = Seed;
        var config = Config.QuickThrowOnFailure
            .WithMaxTest(cases)
            .WithQuietOnSuccess(true)
            .WithName($"{name} (VSERVER_PROPERTY_SEED={seed})")
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(seed), FSharpOption<int>.None)));
        FsCheck.Check.One(config, property);
    }

    /// <summary>A string with its control, non-ASCII and separator characters spelled out, for failure labels.</summary>
    public static string Show(string? s)
    {
        if (s is null) return "<null>";
        var b = new System.Text.StringBuilder("\"");
        foreach (var c in s.Length > 400 ? s[..400] : s)
            b.Append(c is >= ' ' and <= '~' and not '"' and not '\\' ? c.ToString() : $"\\u{(int)c:x4}");
        if (s.Length > 400) b.Append($"...({s.Length} chars)");
        return b.Append('"').ToString();
    }
}
