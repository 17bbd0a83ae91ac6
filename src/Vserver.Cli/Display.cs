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

    public static string Text(string? value) => string.IsNullOrEmpty(value) ? None : value;

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

    /// <summary>Aligned <c>key: value</c> lines.</summary>
    public static void KeyValues(TextWriter output, IEnumerable<(string Key, string Value)> lines)
    {
        var list = lines.ToList();
        var width = list.Count == 0 ? 0 : list.Max(l => l.Key.Length) + 1;
        foreach (var (key, value) in list) output.WriteLine($"{(key + ":").PadRight(width)} {value}");
    }

    /// <summary>Indented camelCase JSON through the source-generated contract (no reflection).</summary>
    public static void Json<T>(TextWriter output, T value, JsonTypeInfo<T> type)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            JsonSerializer.Serialize(writer, value, type);
        }
        output.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
    }
}
