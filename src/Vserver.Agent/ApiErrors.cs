using System.Text.Json;
using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>Turns the fleet's refusals into HTTP status codes with a one-line message for the operator and the code and
/// fields the fleet gave them. Every error leaves as <c>{"error": "...", "code": "...", "fields": {...}}</c> (an
/// <see cref="ErrorResponse"/>), also those the framework would send with an empty body (no such route, wrong method, a
/// body that is too large or no JSON), which get <see cref="ErrorCodes.BadRequest"/>.</summary>
internal static partial class ApiErrors
{
    public static readonly string BodyTooLarge =
        $"request body too large: the agent accepts at most {ApiLimits.MaxRequestBodyBytes} bytes ({ApiLimits.MaxRequestBodyBytes / 1024} KiB)";

    private const int MaxMessageLength = 2000;

    public static async Task Middleware(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
        }
        catch (FleetException e)
        {
            await Write(context, e);
            return;
        }
        catch (BadHttpRequestException e)
        {
            await Write(context, e.StatusCode, BadRequestMessage(e, MissingBody(context)));
            return;
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            // The agent's own failure, not the client's: one line that says where, never a stack trace in the log.
            Console.Error.WriteLine($"vserverd: {LogLine(context.Request.Method)} {LogLine(context.Request.Path.Value ?? "/")}: {Failure(e)}");
            await Write(context, StatusCodes.Status500InternalServerError, e.Message, ErrorCodes.Failed);
            return;
        }
        var status = context.Response.StatusCode;
        if (status >= 400 && !context.Response.HasStarted && context.Response.ContentType is null && context.Response.ContentLength is null)
            await Write(context, status, EmptyErrorMessage(status, context.Request.Method, context.Request.Path.Value ?? "/"));
    }

    /// <summary>An unexpected exception as one log line: its type, message and the method that threw it.</summary>
    internal static string Failure(Exception e)
    {
        var site = e.TargetSite is { DeclaringType: { } type } method ? $" (in {type.FullName}.{method.Name})" : "";
        return LogLine($"{e.GetType().Name}: {e.Message}{site}");
    }

    /// <summary>Text from a request or an exception as the agent's log may print it: every control and invisible
    /// formatting character escaped (no raw newline, escape sequence or bidi override reaches an operator's terminal),
    /// and bounded.</summary>
    public static string LogLine(string text) => Escape(text.Length > MaxMessageLength ? text[..MaxMessageLength] + "..." : text, layoutAsSpace: false);

    /// <summary>A string from a request as a message quotes it: escaped as the log escapes it, and cut short past 64
    /// characters (never inside a surrogate pair) with its length said.</summary>
    public static string Quote(string? text)
    {
        if (text is null) return "";
        const int Shown = 64;
        if (text.Length <= Shown) return Escape(text, layoutAsSpace: false);
        var length = char.IsHighSurrogate(text[Shown - 1]) ? Shown - 1 : Shown;
        return $"{Escape(text[..length], layoutAsSpace: false)}... ({text.Length} characters)";
    }

    /// <summary>What a request the framework refused (binding, body, media type) gets as its message.</summary>
    internal static string BadRequestMessage(BadHttpRequestException e, bool missingBody) => e.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => BodyTooLarge,
        StatusCodes.Status415UnsupportedMediaType => "the request body must be JSON, sent with Content-Type: application/json",
        // RequestGate checks bodies and query strings first and says more; these are the framework's last words, told
        // without its .NET type names.
        _ when e.InnerException is JsonException json => json.Path is { Length: > 2 } path
            ? $"invalid JSON body at field '{Quote(path[2..])}'"
            : "invalid JSON body",
        _ when missingBody => "this request needs a JSON body",
        _ when BindingParameter().Match(e.Message) is { Success: true } m => $"invalid value for '{Quote(m.Groups[1].Value)}'",
        _ => "bad request: the agent could not read it",
    };

    /// <summary>The parameter's name in the framework's binding messages: <c>Failed to bind parameter "Nullable&lt;int&gt; timeout" from "abc".</c></summary>
    [System.Text.RegularExpressions.GeneratedRegex("parameter \"[^\"]* ([^\" ]+)\"")]
    private static partial System.Text.RegularExpressions.Regex BindingParameter();

    /// <summary>The route takes a JSON body and the request came without one (the framework's own words for that
    /// speak of inferred parameters and services).</summary>
    private static bool MissingBody(HttpContext context) =>
        context.GetEndpoint()?.Metadata.GetMetadata<Microsoft.AspNetCore.Http.Metadata.IAcceptsMetadata>() is { RequestType: not null }
        && context.Request.ContentLength is null or 0
        && !context.Request.Headers.TransferEncoding.Any(v => v?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true);

    /// <summary>A message for an error response that left the pipeline without a body.</summary>
    internal static string EmptyErrorMessage(int status, string method, string path) => status switch
    {
        StatusCodes.Status404NotFound => $"no such API endpoint: {Shown(method)} {Shown(path)} (see the routes under /v1)",
        StatusCodes.Status405MethodNotAllowed => $"{Shown(path)} does not take {Shown(method)}",
        StatusCodes.Status413PayloadTooLarge => BodyTooLarge,
        StatusCodes.Status415UnsupportedMediaType => "the request body must be JSON, sent with Content-Type: application/json",
        _ => $"{Shown(method)} {Shown(path)} failed with HTTP {status}",
    };

    /// <summary>A request's method or path as a message quotes it: escaped, and bounded (a path may be 8 KiB).</summary>
    private static string Shown(string text) => Escape(text.Length > 200 ? text[..200] + "..." : text, layoutAsSpace: false);

    /// <summary>Writes the fleet's refusal with the status of its kind, its code and fields.</summary>
    public static Task Write(HttpContext context, FleetException e) => Write(context, e.Kind switch
    {
        FleetError.Invalid => StatusCodes.Status400BadRequest,
        FleetError.NotFound => StatusCodes.Status404NotFound,
        FleetError.Conflict => StatusCodes.Status409Conflict,
        _ => StatusCodes.Status500InternalServerError,
    }, e.Message, e.Code, e.Fields);

    /// <summary>Writes an error; one without a code is a request the agent could not take as it came (see
    /// <see cref="ErrorCodes.BadRequest"/>).</summary>
    public static Task Write(HttpContext context, int status, string message, string? code = null, IReadOnlyDictionary<string, string>? fields = null)
    {
        if (context.Response.HasStarted) return Task.CompletedTask;
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(Body(message, code, fields), ApiJson.Default.ErrorResponse);
    }

    /// <summary>The body of an error: the fleet's refusal with its code and fields.</summary>
    public static ErrorResponse Body(FleetException e) => Body(e.Message, e.Code, e.Fields);

    private static ErrorResponse Body(string message, string? code, IReadOnlyDictionary<string, string>? fields) => new()
    {
        Error = OneLine(message),
        Code = code ?? ErrorCodes.BadRequest,
        Fields = fields is { Count: > 0 } ? fields.ToDictionary(f => f.Key, f => OneLine(f.Value), StringComparer.Ordinal) : null,
    };

    /// <summary>One line, of a length a terminal can show: a line break or tab (of a host tool's output, say) becomes a
    /// space, any other control or formatting character is escaped; messages may quote what a client sent.</summary>
    internal static string OneLine(string message) =>
        Escape(message.Length > MaxMessageLength ? message[..MaxMessageLength] + "..." : message, layoutAsSpace: true);

    private static string Escape(string text, bool layoutAsSpace)
    {
        if (!text.Any(NeedsEscape)) return text;
        var result = new System.Text.StringBuilder(text.Length + 16);
        foreach (var ch in text)
        {
            if (!NeedsEscape(ch)) result.Append(ch);
            else if (layoutAsSpace && ch is '\n' or '\r' or '\t') result.Append(' ');
            else result.Append(System.Globalization.CultureInfo.InvariantCulture, $"\\u{(int)ch:x4}");
        }
        return result.ToString();
    }

    private static bool NeedsEscape(char ch) =>
        char.IsControl(ch) || char.GetUnicodeCategory(ch) is System.Globalization.UnicodeCategory.Format
            or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator;
}
