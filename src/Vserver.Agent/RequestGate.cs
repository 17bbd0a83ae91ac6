using System.Globalization;
using System.Reflection;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing.Patterns;
using Vserver.Api;
using HybridHypervisor;
using HybridHypervisor.Model;
using static Vserver.Api.ErrorCodes;

namespace Vserver.Agent;

/// <summary>
/// Checks every request makes before any route runs: a body within <see cref="ApiLimits.MaxRequestBodyBytes"/> (when
/// its length is announced; a chunked body is cut off by Kestrel's MaxRequestBodySize as it is read), a guest or image
/// name in the path that is a valid name, so that no route ever turns '..', '/', NUL and the like into a path; only the
/// query parameters the route has, each once and of its type; and a JSON body of the shape the route takes
/// (<see cref="RequestBody"/>). Whatever is refused here was refused before anything was done.
/// </summary>
internal static class RequestGate
{
    public static async Task Middleware(HttpContext context, RequestDelegate next)
    {
        if (context.Request.ContentLength > ApiLimits.MaxRequestBodyBytes && !StreamedBody.On(context))
        {
            await ApiErrors.Write(context, StatusCodes.Status413PayloadTooLarge, ApiErrors.BodyTooLarge);
            return;
        }
        if (NameError(context) is { } invalid)
        {
            await StreamedBody.DrainAsync(context);
            await ApiErrors.Write(context, FleetException.Invalid(invalid));
            return;
        }
        if (context.GetEndpoint() is RouteEndpoint endpoint)
        {
            if (QueryError(context.Request, endpoint) is { } queryError)
            {
                await StreamedBody.DrainAsync(context);
                await ApiErrors.Write(context, queryError);
                return;
            }
            if (endpoint.Metadata.GetMetadata<IAcceptsMetadata>() is { RequestType: { } bodyType } && await BodyErrorAsync(context, bodyType) is { } bodyError)
            {
                await ApiErrors.Write(context, bodyError);
                return;
            }
        }
        await next(context);
    }

    /// <summary>Routing has run by now: the {name} of the matched route, checked with the rule names are created by.</summary>
    private static SettingError? NameError(HttpContext context)
    {
        if (context.GetEndpoint() is not RouteEndpoint { RoutePattern: var pattern }) return null;
        if (!context.Request.RouteValues.TryGetValue("name", out var value)) return null;
        var kind = KindOf(pattern);
        // A broken guest whose directory bears no valid name can be destroyed by that name, exactly as listed: the name
        // comes from the directory, not from the request (the fleet finds it among its broken guests or answers 404).
        if (kind == "guest" && HttpMethods.IsDelete(context.Request.Method) && pattern.PathSegments.Count == 3 && value is string name
            && context.RequestServices.GetService<Fleet>()?.IsBroken(name) == true)
            return null;
        return GuestConfigValidator.NameError(value as string, kind);
    }

    /// <summary>What a route's {name} names, from the literal segment before it: /v1/images/{name} names an image, /v1/kernels/{name} a kernel,
    /// /v1/guests/{name}/... a guest.</summary>
    internal static string KindOf(RoutePattern pattern)
    {
        for (var i = 1; i < pattern.PathSegments.Count; i++)
        {
            if (!pattern.PathSegments[i].Parts.Any(p => p is RoutePatternParameterPart { Name: "name" })) continue;
            return pattern.PathSegments[i - 1].Parts switch
            {
                [RoutePatternLiteralPart { Content: "images" }] => "image",
                [RoutePatternLiteralPart { Content: "kernels" }] => "kernel",
                _ => "guest",
            };
        }
        return "guest";
    }

    /// <summary>A query parameter a route takes: its name on the wire and its type (bool, int, string or string[]).</summary>
    internal sealed record QueryParameter(string Name, Type Type);

    /// <summary>The query parameters of a route handler, as minimal APIs bind them: its parameters of a simple type that
    /// are not in the route's path.</summary>
    internal static IReadOnlyList<QueryParameter> QueryParameters(RouteEndpoint endpoint)
    {
        var list = new List<QueryParameter>();
        foreach (var binding in endpoint.Metadata.GetOrderedMetadata<IParameterBindingMetadata>())
        {
            var parameter = binding.ParameterInfo;
            var type = Nullable.GetUnderlyingType(parameter.ParameterType) ?? parameter.ParameterType;
            if (type != typeof(bool) && type != typeof(int) && type != typeof(string) && type != typeof(string[])) continue;
            if (endpoint.RoutePattern.GetParameter(parameter.Name!) is not null) continue;
            list.Add(new QueryParameter(parameter.GetCustomAttribute<FromQueryAttribute>()?.Name ?? parameter.Name!, type));
        }
        return list;
    }

    /// <summary>The first query parameter the route does not take, takes once only, or cannot read; null when all is well.</summary>
    internal static FleetException? QueryError(HttpRequest request, RouteEndpoint endpoint)
    {
        if (request.Query.Count == 0) return null;
        var parameters = QueryParameters(endpoint);
        var route = $"{request.Method} {endpoint.RoutePattern.RawText}";
        foreach (var (key, values) in request.Query)
        {
            var parameter = parameters.FirstOrDefault(p => string.Equals(p.Name, key, StringComparison.OrdinalIgnoreCase));
            if (parameter is null)
                return Refused(key, "", Reasons.UnknownField, $"unknown query parameter '{ApiErrors.Quote(key)}'; {route} takes " +
                    (parameters.Count == 0 ? "none" : string.Join(", ", parameters.Select(p => p.Name))));
            if (parameter.Type == typeof(string[])) continue;
            if (values.Count > 1)
                return Refused(parameter.Name, values.ToString(), Reasons.Duplicate, $"query parameter '{parameter.Name}' is given {values.Count} times; give it once");
            var value = values.ToString();
            if (parameter.Type == typeof(bool) && !bool.TryParse(value, out _))
                return Refused(parameter.Name, value, Reasons.Malformed, $"query parameter '{parameter.Name}' must be true or false, not '{ApiErrors.Quote(value)}'");
            if (parameter.Type == typeof(int) && !int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
                return Refused(parameter.Name, value, Reasons.Malformed, $"query parameter '{parameter.Name}' must be a whole number, not '{ApiErrors.Quote(value)}'");
        }
        return null;
    }

    private static FleetException Refused(string field, string value, string reason, string message) =>
        new(FleetError.Invalid, InvalidValue, new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["field"] = field,
            ["value"] = value.Length > 200 ? value[..200] : value,
            ["reason"] = reason,
        }, message);

    /// <summary>A JSON body of the route's request type: read whole (within the cap), checked, and put back for the
    /// route to bind. A body that is not JSON at all is left to the framework, which answers 415.</summary>
    private static async Task<FleetException?> BodyErrorAsync(HttpContext context, Type bodyType)
    {
        var request = context.Request;
        var announced = request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0;
        if (!announced) return RequestBody.Check(ReadOnlyMemory<byte>.Empty, AgentJson.Options.GetTypeInfo(bodyType));
        if (!request.HasJsonContentType()) return null;
        if (request.GetTypedHeaders().ContentType?.Charset is { Length: > 0 } charset
            && !string.Equals(charset.Value, "utf-8", StringComparison.OrdinalIgnoreCase) && !string.Equals(charset.Value, "utf8", StringComparison.OrdinalIgnoreCase))
            return new FleetException(FleetError.Invalid, BadRequest, new Dictionary<string, string>(),
                $"the request body must be UTF-8 JSON, not charset '{ApiErrors.Quote(charset.Value!)}'");
        var body = await RequestBody.ReadAsync(request.Body, ApiLimits.MaxRequestBodyBytes, context.RequestAborted);
        if (RequestBody.Check(body, AgentJson.Options.GetTypeInfo(bodyType)) is { } error) return error;
        request.Body = new MemoryStream(body, writable: false);
        request.ContentLength = body.Length;
        request.Headers.TransferEncoding = default;
        return null;
    }
}
