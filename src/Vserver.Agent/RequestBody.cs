using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using HybridHypervisor;
using Vserver.Api;
using static Vserver.Api.ErrorCodes;

namespace Vserver.Agent;

/// <summary>
/// The one check of a request body's shape, made against the contract's own metadata (the <see cref="JsonTypeInfo"/>
/// of the record the route takes) before the body is bound: JSON that parses, an object where the contract has one,
/// only the fields it has and each once, a value of each field's type and range, no null where none may be, every
/// required field, and no NUL in any string (no name, path, argument or variable can hold one). The first problem is a
/// <see cref="FleetException"/>: <see cref="ErrorCodes.InvalidValue"/> naming the field (its JSON path, e.g.
/// <c>command[1]</c>) when one is at fault, else <see cref="ErrorCodes.BadRequest"/>; the message names no .NET type.
/// </summary>
internal static class RequestBody
{
    /// <summary>Nesting deeper than any request of the contract has, by far; deeper bodies are refused as they parse.</summary>
    public const int MaxDepth = 16;

    /// <summary>Null when <paramref name="body"/> is a valid <paramref name="type"/>; else why not.</summary>
    public static FleetException? Check(ReadOnlyMemory<byte> body, JsonTypeInfo type)
    {
        if (body.IsEmpty) return BadRequest("this request needs a JSON body");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = MaxDepth });
        }
        catch (JsonException e)
        {
            return BadRequest($"invalid JSON body at line {(e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1}: {ReaderMessage(e.Message)}");
        }
        catch (ArgumentException e)
        {
            // Invalid UTF-8 surfaces as an ArgumentException from the reader's transcoding.
            return BadRequest($"invalid JSON body: {ReaderMessage(e.Message)}; send UTF-8");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                return BadRequest($"the request body must be a JSON object, not {KindName(document.RootElement.ValueKind)}");
            try
            {
                return CheckValue(document.RootElement, type, "", nullable: false);
            }
            catch (InvalidOperationException)
            {
                // JSON's \u escapes can spell half a UTF-16 surrogate pair, which parses but is no text.
                return BadRequest("invalid JSON body: a string or field name holds an unpaired UTF-16 surrogate (\\ud800 to \\udfff without its pair)");
            }
        }
    }

    private static FleetException? CheckValue(JsonElement value, JsonTypeInfo type, string path, bool nullable)
    {
        if (value.ValueKind == JsonValueKind.Null)
            return nullable ? null : Invalid(path, "null", Reasons.Malformed, $"field '{path}' cannot be null; give {Expected(type)} or leave it out");
        return type.Kind switch
        {
            JsonTypeInfoKind.Object => CheckObject(value, type, path),
            JsonTypeInfoKind.Enumerable => CheckArray(value, type, path),
            JsonTypeInfoKind.Dictionary => CheckDictionary(value, type, path),
            _ => CheckScalar(value, type, path),
        };
    }

    private static FleetException? CheckObject(JsonElement value, JsonTypeInfo type, string path)
    {
        if (value.ValueKind != JsonValueKind.Object) return WrongType(value, type, path);
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var member in value.EnumerateObject())
        {
            var field = Join(path, member.Name);
            // The agent reads names as the serializer does (web defaults: case does not matter), so "Name" and "name"
            // are one field, given twice.
            var property = type.Properties.FirstOrDefault(p => string.Equals(p.Name, member.Name, StringComparison.OrdinalIgnoreCase));
            if (property is null)
                return Invalid(field, "", Reasons.UnknownField,
                    $"unknown field '{Shown(field)}'{(path.Length > 0 ? "" : " in the request body")}; {Accepted(type, path)}");
            if (!seen.Add(property.Name))
                return Invalid(field, "", Reasons.Duplicate, $"field '{Shown(field)}' is given twice; give it once");
            if (CheckValue(member.Value, type.Options.GetTypeInfo(property.PropertyType), field, property.IsSetNullable) is { } error) return error;
        }
        foreach (var property in type.Properties)
            if (property.IsRequired && !seen.Contains(property.Name))
                return Invalid(Join(path, property.Name), "", Reasons.Missing, $"field '{Join(path, property.Name)}' is missing: this request needs it");
        return null;
    }

    private static FleetException? CheckArray(JsonElement value, JsonTypeInfo type, string path)
    {
        if (value.ValueKind != JsonValueKind.Array) return WrongType(value, type, path);
        var element = type.Options.GetTypeInfo(type.ElementType!);
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            // Collection elements carry no nullability the serializer could enforce: no element of the contract's
            // lists (commands, syscalls, names) may be null.
            if (CheckValue(item, element, $"{path}[{i}]", nullable: false) is { } error) return error;
            i++;
        }
        return null;
    }

    private static FleetException? CheckDictionary(JsonElement value, JsonTypeInfo type, string path)
    {
        if (value.ValueKind != JsonValueKind.Object) return WrongType(value, type, path);
        var element = type.Options.GetTypeInfo(type.ElementType!);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var member in value.EnumerateObject())
        {
            var field = Join(path, member.Name);
            if (member.Name.Contains('\0', StringComparison.Ordinal))
                return Invalid(path, member.Name, Reasons.Malformed, $"a key of '{path}' contains a NUL byte ('{Shown(member.Name)}'); no name can hold one");
            if (!seen.Add(member.Name))
                return Invalid(field, "", Reasons.Duplicate, $"key '{Shown(member.Name)}' of '{path}' is given twice; give it once");
            if (CheckValue(member.Value, element, field, nullable: false) is { } error) return error;
        }
        return null;
    }

    private static FleetException? CheckScalar(JsonElement value, JsonTypeInfo type, string path)
    {
        var t = Nullable.GetUnderlyingType(type.Type) ?? type.Type;
        if (t == typeof(string))
        {
            if (value.ValueKind != JsonValueKind.String) return WrongType(value, type, path);
            var text = value.GetString()!;
            return text.Contains('\0', StringComparison.Ordinal)
                ? Invalid(path, text, Reasons.Malformed, $"field '{Shown(path)}' contains a NUL byte ('{Shown(text)}'); no name, path, argument or variable can hold one")
                : null;
        }
        if (t == typeof(bool))
            return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : WrongType(value, type, path);
        if (t == typeof(int))
            return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out _) ? null : OutOfRange(value, type, path, int.MinValue, int.MaxValue);
        if (t == typeof(long))
            return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _) ? null : OutOfRange(value, type, path, long.MinValue, long.MaxValue);
        if (t == typeof(double))
            return value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var d) && double.IsFinite(d) ? null : WrongType(value, type, path);
        // A type the contract does not use in requests: the serializer decides.
        return null;
    }

    private static FleetException OutOfRange(JsonElement value, JsonTypeInfo type, string path, long minimum, long maximum)
    {
        if (value.ValueKind != JsonValueKind.Number) return WrongType(value, type, path);
        var text = value.GetRawText();
        var min = minimum.ToString(CultureInfo.InvariantCulture);
        var max = maximum.ToString(CultureInfo.InvariantCulture);
        var fields = Fields(path, text, Reasons.OutOfRange);
        fields["minimum"] = min;
        fields["maximum"] = max;
        return new FleetException(FleetError.Invalid, InvalidValue, fields,
            $"field '{Shown(path)}' must be a whole number from {min} to {max}, not {Shown(text)}");
    }

    private static FleetException WrongType(JsonElement value, JsonTypeInfo type, string path) =>
        Invalid(path, value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText(), Reasons.Malformed,
            $"field '{Shown(path)}' must be {Expected(type)}, not {KindName(value.ValueKind)}{(value.ValueKind is JsonValueKind.String or JsonValueKind.Number ? $" {Shown(Cut(value.GetRawText()))}" : "")}");

    /// <summary>What a value of this type is, in JSON's words.</summary>
    internal static string Expected(JsonTypeInfo type)
    {
        var t = Nullable.GetUnderlyingType(type.Type) ?? type.Type;
        return type.Kind switch
        {
            JsonTypeInfoKind.Object => "an object",
            JsonTypeInfoKind.Enumerable => $"an array of {Plural(type.Options.GetTypeInfo(type.ElementType!))}",
            JsonTypeInfoKind.Dictionary => $"an object of {Plural(type.Options.GetTypeInfo(type.ElementType!))}",
            _ when t == typeof(string) => "a string",
            _ when t == typeof(bool) => "true or false",
            _ when t == typeof(int) || t == typeof(long) => "a whole number",
            _ when t == typeof(double) => "a number",
            _ => "a value",
        };
    }

    private static string Plural(JsonTypeInfo type) => Expected(type) switch
    {
        "a string" => "strings",
        "a whole number" => "whole numbers",
        "a number" => "numbers",
        "true or false" => "true or false values",
        var other => other,
    };

    private static string KindName(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "the string",
        JsonValueKind.Number => "the number",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    /// <summary>What the request takes at <paramref name="path"/>: its fields, as the message of an unknown one ends.</summary>
    private static string Accepted(JsonTypeInfo type, string path) =>
        type.Properties.Count == 0
            ? $"{(path.Length > 0 ? $"'{path}'" : "this request")} takes no fields"
            : $"{(path.Length > 0 ? $"'{path}'" : "this request")} takes: {string.Join(", ", type.Properties.Select(p => p.Name))}";

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    /// <summary>A value as a message may quote it: escaped (<see cref="ApiErrors.Quote"/>) and cut short.</summary>
    private static string Shown(string text) => ApiErrors.Quote(text);

    private static string Cut(string text) => text.Length > 40 ? text[..40] + "..." : text;

    /// <summary>The reader's own words without the position and path it appends (the message gives them its way).</summary>
    private static string ReaderMessage(string message)
    {
        foreach (var tail in new[] { " Path: ", " LineNumber: " })
        {
            var at = message.IndexOf(tail, StringComparison.Ordinal);
            if (at >= 0) message = message[..at];
        }
        return message.TrimEnd();
    }

    private static Dictionary<string, string> Fields(string field, string value, string reason) => new(StringComparer.Ordinal)
    {
        ["field"] = field,
        ["value"] = value.Length > 200 ? value[..200] : value,
        ["reason"] = reason,
    };

    private static FleetException Invalid(string field, string value, string reason, string message) =>
        new(FleetError.Invalid, InvalidValue, Fields(field, value, reason), message);

    private static FleetException BadRequest(string message) =>
        new(FleetError.Invalid, ErrorCodes.BadRequest, new Dictionary<string, string>(), message);

    /// <summary>Reads a request body of at most <paramref name="limit"/> bytes.</summary>
    public static async Task<byte[]> ReadAsync(Stream body, int limit, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        while (true)
        {
            var n = await body.ReadAsync(chunk, ct);
            if (n == 0) return buffer.ToArray();
            if (buffer.Length + n > limit)
                throw new BadHttpRequestException("request body too large", StatusCodes.Status413PayloadTooLarge);
            buffer.Write(chunk, 0, n);
        }
    }
}
