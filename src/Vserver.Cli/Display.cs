using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>How values look in vsctl's text output.</summary>
internal static class Display
{
    public const string None = "-";

    /// <summary>A size like 256M; negative ones too (the pool's free memory can be).</summary>
    public static string Bytes(long? bytes) => bytes is { } b ? ByteSize.Format(b) : None;

    /// <summary>What share <paramref name="part"/> is of <paramref name="whole"/>, rounded: <c>29%</c>.</summary>
    public static string Percent(long part, long whole) =>
        whole > 0 ? Math.Round(100.0 * part / whole).ToString("0", CultureInfo.InvariantCulture) + "%" : None;

    /// <summary><c>4G of 14G (29%)</c>.</summary>
    public static string Share(long part, long whole) => $"{Bytes(part)} of {Bytes(whole)} ({Percent(part, whole)})";

    public static string Number(double? value) => value is { } v ? v.ToString("0.###", CultureInfo.InvariantCulture) : None;

    public static string Number(long? value) => value is { } v ? v.ToString(CultureInfo.InvariantCulture) : None;

    public static string Text(string? value) => string.IsNullOrEmpty(value) ? None : Escaped.Text(value);

    /// <summary>A name from the agent, as a word that can be typed back (<see cref="Escaped.Name"/>).</summary>
    public static string Name(string? value) => string.IsNullOrEmpty(value) ? None : Escaped.Name(value);

    /// <summary>Local wall-clock time with its offset, and how long ago: <c>2025-03-01 14:02:11 +01:00 (5m ago)</c>.</summary>
    public static string Time(DateTimeOffset? value, TimeProvider clock)
    {
        if (value is not { } t) return None;
        var local = TimeZoneInfo.ConvertTime(t, clock.LocalTimeZone);
        return $"{local.ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture)} ({Ago(clock.GetUtcNow() - t)})";
    }

    public static string Ago(TimeSpan age) => age switch
    {
        { TotalSeconds: < 1 } => "just now",
        { TotalMinutes: < 1 } => $"{(int)age.TotalSeconds}s ago",
        { TotalHours: < 1 } => $"{(int)age.TotalMinutes}m ago",
        { TotalDays: < 1 } => $"{(int)age.TotalHours}h ago",
        _ => $"{(int)age.TotalDays}d ago",
    };

    /// <summary>Aligned <c>key: value</c> lines; a value's control characters escaped.</summary>
    public static void KeyValues(TextWriter output, IEnumerable<(string Key, string Value)> lines)
    {
        var list = lines.ToList();
        var width = list.Count == 0 ? 0 : list.Max(l => l.Key.Length) + 1;
        foreach (var (key, value) in list) output.WriteLine($"{(key + ":").PadRight(width)} {Escaped.Text(value)}");
    }

    /// <summary>
    /// The relaxed encoder leaves invisible formatting characters (U+202E, the right-to-left override, among them) raw
    /// in strings. Outside its strings JSON is plain ASCII, so each such character is inside one, where \uXXXX means
    /// the same character.
    /// </summary>
    private static string JsonInert(string json)
    {
        if (!Escaped.NeedsEscape(json)) return json;
        var text = new StringBuilder(json.Length + 16);
        foreach (var c in json)
        {
            if (Escaped.IsUnsafe(c) && c is not ('\n' or '\r' or ' ')) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            else text.Append(c);
        }
        return text.ToString();
    }

    /// <summary>Indented camelCase JSON through the source-generated contract (no reflection).</summary>
    public static void Json<T>(TextWriter output, T value, JsonTypeInfo<T> type)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            JsonSerializer.Serialize(writer, value, type);
        }
        output.WriteLine(JsonInert(Encoding.UTF8.GetString(buffer.WrittenSpan)));
    }
}
