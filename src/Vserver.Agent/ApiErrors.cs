using System.Text.Json;
using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>Turns the fleet's refusals into HTTP status codes with a one-line message for the operator and the code and
/// fields the fleet gave them. Every error leaves as <c>{"error": "...", "code": "...", "fields": {...}}</c> (an
/// <see cref="ErrorResponse"/>), also those the framework would send with an empty body (no such route, wrong method, a
/// body that is too large or no JSON), which get <see cref="ErrorCodes.BadRequest"/>.</summary>
internal static class ApiErrors
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
            Console.Error.WriteLine($"vserverd: {context.Request.Method} {context.Request.Path}: {e}");
            await Write(context, StatusCodes.Status500InternalServerError, e.Message, ErrorCodes.Failed);
            return;
        }
        var status = context.Response.StatusCode;
        if (status >= 400 && !context.Response.HasStarted && context.Response.ContentType is null && context.Response.ContentLength is null)
            await Write(context, status, EmptyErrorMessage(status, context.Request.Method, context.Request.Path.Value ?? "/"));
    }

    /// <summary>What a request the framework refused (binding, body, media type) gets as its message.</summary>
    internal static string BadRequestMessage(BadHttpRequestException e, bool missingBody) => e.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => BodyTooLarge,
        StatusCodes.Status415UnsupportedMediaType => "the request body must be JSON, sent with Content-Type: application/json",
        _ when e.InnerException is JsonException json => $"invalid JSON body: {json.Message}",
        _ when missingBody => "this request needs a JSON body",
        _ => $"bad request: {e.Message}",
    };

    /// <summary>The route takes a JSON body and the request came without one (the framework's own words for that
    /// speak of inferred parameters and services).</summary>
    private static bool MissingBody(HttpContext context) =>
        context.GetEndpoint()?.Metadata.GetMetadata<Microsoft.AspNetCore.Http.Metadata.IAcceptsMetadata>() is { RequestType: not null }
        && context.Request.ContentLength is null or 0
        && !context.Request.Headers.TransferEncoding.Any(v => v?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true);

    /// <summary>A message for an error response that left the pipeline without a body.</summary>
    internal static string EmptyErrorMessage(int status, string method, string path) => status switch
    {
        StatusCodes.Status404NotFound => $"no such API endpoint: {method} {path} (see the routes under /v1)",
        StatusCodes.Status405MethodNotAllowed => $"{path} does not take {method}",
        StatusCodes.Status413PayloadTooLarge => BodyTooLarge,
        StatusCodes.Status415UnsupportedMediaType => "the request body must be JSON, sent with Content-Type: application/json",
        _ => $"{method} {path} failed with HTTP {status}",
    };

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

    /// <summary>One line, of a length a terminal can show: messages may quote what a client sent.</summary>
    internal static string OneLine(string message)
    {
        var text = message.Length > MaxMessageLength ? message[..MaxMessageLength] + "..." : message;
        return string.Create(text.Length, text, (span, source) =>
        {
            for (var i = 0; i < source.Length; i++) span[i] = char.IsControl(source[i]) ? ' ' : source[i];
        });
    }
}
