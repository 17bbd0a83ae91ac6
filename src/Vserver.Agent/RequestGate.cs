using Microsoft.AspNetCore.Routing.Patterns;
using Vserver.Api;
using HybridHypervisor;
using HybridHypervisor.Model;

namespace Vserver.Agent;

/// <summary>
/// Checks every request makes before any route runs: a body within <see cref="ApiLimits.MaxRequestBodyBytes"/> (when
/// its length is announced; a chunked body is cut off by Kestrel's MaxRequestBodySize as it is read), and a guest or
/// image name in the path that is a valid name, so that no route ever turns '..', '/', NUL and the like into a path.
/// </summary>
internal static class RequestGate
{
    public static Task Middleware(HttpContext context, RequestDelegate next)
    {
        if (context.Request.ContentLength > ApiLimits.MaxRequestBodyBytes)
            return ApiErrors.Write(context, StatusCodes.Status413PayloadTooLarge, ApiErrors.BodyTooLarge);
        if (NameError(context) is { } invalid)
            return ApiErrors.Write(context, FleetException.Invalid(invalid));
        return next(context);
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
}
