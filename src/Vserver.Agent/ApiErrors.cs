using HybridHypervisor;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>Turns the fleet's refusals into HTTP status codes with a one-line message for the operator.</summary>
internal static class ApiErrors
{
    public static async Task Middleware(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
        }
        catch (FleetException e)
        {
            await Write(context, e.Kind switch
            {
                FleetError.Invalid => StatusCodes.Status400BadRequest,
                FleetError.NotFound => StatusCodes.Status404NotFound,
                FleetError.Conflict => StatusCodes.Status409Conflict,
                _ => StatusCodes.Status500InternalServerError,
            }, e.Message);
        }
        catch (BadHttpRequestException e)
        {
            await Write(context, StatusCodes.Status400BadRequest, $"bad request: {e.Message}");
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            Console.Error.WriteLine($"vserverd: {context.Request.Method} {context.Request.Path}: {e}");
            await Write(context, StatusCodes.Status500InternalServerError, e.Message);
        }
    }

    public static Task Write(HttpContext context, int status, string message)
    {
        if (context.Response.HasStarted) return Task.CompletedTask;
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorResponse { Error = message }, ApiJson.Default.ErrorResponse);
    }
}
