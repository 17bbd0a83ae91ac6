using System.Globalization;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>Checks of operator input done before any request; failures are <see cref="UsageException"/> (exit 2).</summary>
internal static class Input
{
    public static long? Size(string option, string? text)
    {
        if (text is null) return null;
        return ByteSize.TryParse(text, out var bytes, out var error) ? bytes : throw new UsageException($"{option}: {error}");
    }

    public static double? Cpus(string option, string? text) => PositiveNumber(option, text, "number of CPUs", "0.5 or 2");

    /// <summary>A positive decimal in the invariant culture (<c>1.5</c>, never <c>1,5</c>).</summary>
    public static double? PositiveNumber(string option, string? text, string what, string example)
    {
        if (text is null) return null;
        if (TryDecimal(text, out var value) && value > 0) return value;
        throw new UsageException($"{option}: invalid {what} '{text}': give a positive number, e.g. {example}");
    }

    /// <summary>Seconds, fractions allowed, up to a day; zero only where it means something (<paramref name="allowZero"/>).</summary>
    public static TimeSpan? Seconds(string option, string? text, bool allowZero, string example)
    {
        if (text is null) return null;
        if (TryDecimal(text, out var seconds) && (seconds > 0 || (allowZero && seconds == 0)) && seconds <= 24 * 3600)
            return TimeSpan.FromSeconds(seconds);
        throw new UsageException($"{option}: invalid time '{text}': give seconds, e.g. {example}");
    }

    private static bool TryDecimal(string text, out double value) =>
        double.TryParse(text.Trim(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);

    public static int? PositiveInt(string option, string? text, string what)
    {
        if (text is null) return null;
        if (int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0) return value;
        throw new UsageException($"{option}: invalid {what} '{text}': give a positive whole number");
    }

    public static int? NonNegativeInt(string option, string? text, string what)
    {
        if (text is null) return null;
        if (int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value)) return value;
        throw new UsageException($"{option}: invalid {what} '{text}': give a whole number (0 or more)");
    }

    public static string? OneOf(string option, string? text, params string[] allowed)
    {
        if (text is null || allowed.Contains(text, StringComparer.Ordinal)) return text;
        throw new UsageException($"{option}: invalid value '{text}': use {string.Join(", ", allowed.SkipLast(1))} or {allowed[^1]}");
    }

    /// <summary>A value that must not be empty when given (null: not given).</summary>
    public static string? NotEmpty(string option, string? text, string what) =>
        text is null ? null : text.Trim().Length > 0 ? text.Trim() : throw new UsageException($"{option} needs {(what[0] is 'a' or 'e' or 'i' or 'o' or 'u' ? "an" : "a")} {what}");

    /// <summary>Comma-separated A.B.C.D addresses (null: not given); <paramref name="alternative"/> names the word that
    /// stands for none, for the message.</summary>
    public static IReadOnlyList<string>? Addresses(string option, string? text, string alternative)
    {
        if (text is null) return null;
        var words = text.Split(',', StringSplitOptions.TrimEntries);
        foreach (var w in words)
            if (!System.Net.IPAddress.TryParse(w, out var a) || a.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
                || a.ToString() != w || w.Count(c => c == '.') != 3)
                throw new UsageException($"{option}: '{Escaped.Text(w)}' is not an IPv4 address; give A.B.C.D[,A.B.C.D] or {alternative}");
        return words;
    }

    public static bool? OnOff(string option, string? text) => OneOf(option, text, "on", "off") is { } v ? v == "on" : null;

    /// <summary>The output format of list/status/info: table (or text) by default, json on request.</summary>
    public static bool IsJson(string? format, string textName) =>
        OneOf("--format", format ?? textName, textName, "json") == "json";

    /// <summary>The name of an image or kernel to build or remove, checked before anything is sent or announced: no such
    /// name can exist, and advice that spells it could never work.</summary>
    public static string StoreName(string kind, string name) =>
        Names.IsValid(name) ? name : throw new UsageException($"invalid name {Escaped.Name(name)}: {Names.Rule(kind)}");

    public static IReadOnlyList<string> Command(string option, string text)
    {
        IReadOnlyList<string> words;
        try
        {
            words = ShellWords.Split(text);
        }
        catch (FormatException e)
        {
            throw new UsageException($"{option}: {e.Message}");
        }
        return words.Count > 0 ? words : throw new UsageException($"{option}: the command is empty");
    }
}
