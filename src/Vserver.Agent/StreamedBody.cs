using Microsoft.AspNetCore.Http.Features;

namespace Vserver.Agent;

/// <summary>
/// Marks a route whose request body is a stream of any length (an image archive), not a JSON request: the 64 KiB cap
/// of every other body (<see cref="Vserver.Api.ApiLimits.MaxRequestBodyBytes"/>) does not apply to it, and its
/// handler reads the body synchronously on a thread of its own (the unpacking reads as it writes files).
/// </summary>
internal sealed class StreamedBody
{
    public static bool On(HttpContext context) => context.GetEndpoint()?.Metadata.GetMetadata<StreamedBody>() is not null;

    /// <summary>Before a refusal of a streamed route: the upload is read to its end and dropped, so the client, still
    /// sending, gets the answer instead of a broken connection. Nothing for any other route.</summary>
    public static async Task DrainAsync(HttpContext context)
    {
        if (!On(context)) return;
        Allow(context);
        var buffer = new byte[1 << 16];
        try
        {
            while (await context.Request.Body.ReadAsync(buffer, context.RequestAborted) > 0)
            {
            }
        }
        catch (IOException)
        {
            // The client went away (or sent a malformed body): there is nobody to answer.
        }
    }

    /// <summary>Lifts the cap and the minimum data rate for this request (before its body is read) and allows
    /// synchronous reads and writes.</summary>
    public static void Allow(HttpContext context)
    {
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size) size.MaxRequestBodySize = null;
        // The body is read as fast as the files are written: a disk busy for a few seconds must not cut the upload.
        if (context.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.IHttpMinRequestBodyDataRateFeature>() is { } rate) rate.MinDataRate = null;
        if (context.Features.Get<IHttpBodyControlFeature>() is { } control) control.AllowSynchronousIO = true;
    }
}
