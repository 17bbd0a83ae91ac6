using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>
/// Kestrel answers a request it cannot parse (a NUL or control character in the target, a malformed header, a request
/// line or headers over its limits, a bad chunk) itself, before any middleware runs, with an empty body and
/// <c>Connection: close</c>; nothing in ASP.NET lets an application change that answer. So the agent filters what
/// leaves each connection: a response head that is all Kestrel wrote for it (a status of 400 or above,
/// <c>Content-Length: 0</c>, <c>Connection: close</c>, no body) gets the agent's error body, as every other error
/// has. The agent's own error responses always carry a body, so none of them matches.
/// </summary>
internal static class KestrelRefusals
{
    /// <summary>The connection middleware: every connection's output goes through a <see cref="RefusalWriter"/>.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Filter(KestrelServerLimits limits) => next => context =>
    {
        context.Transport = new FilteredTransport(context.Transport, limits);
        return next(context);
    };

    /// <summary>What the agent says for a status Kestrel answered on its own.</summary>
    internal static string Message(int status, KestrelServerLimits limits) => status switch
    {
        StatusCodes.Status400BadRequest =>
            "malformed HTTP request: the request line or a header is not valid HTTP/1.1 (percent-encode control characters and NUL in the path; headers are ASCII 'Name: value' lines; Content-Length and chunks must match the body)",
        StatusCodes.Status408RequestTimeout => "the request did not arrive in time; send it whole",
        StatusCodes.Status411LengthRequired => "this request needs a Content-Length or Transfer-Encoding: chunked",
        StatusCodes.Status413PayloadTooLarge => ApiErrors.BodyTooLarge,
        StatusCodes.Status414UriTooLong => $"request line too long: the method, path and query may be at most {limits.MaxRequestLineSize} bytes",
        StatusCodes.Status431RequestHeaderFieldsTooLarge =>
            $"request headers too large: the agent takes at most {limits.MaxRequestHeaderCount} headers of {limits.MaxRequestHeadersTotalSize} bytes in all",
        StatusCodes.Status501NotImplemented => "unsupported Transfer-Encoding: send the body with Content-Length or Transfer-Encoding: chunked",
        StatusCodes.Status505HttpVersionNotsupported => "unsupported HTTP version: the agent speaks HTTP/1.1",
        _ => $"the agent could not read this HTTP request (HTTP {status})",
    };

    /// <summary>The response to send instead of <paramref name="written"/>, or null to send it as it is.</summary>
    internal static byte[]? Rewrite(ReadOnlySpan<byte> written, KestrelServerLimits limits)
    {
        // "HTTP/1.1 400 " at least, and nothing after the head.
        if (written.Length < 16 || !written.StartsWith("HTTP/1."u8) || !written.EndsWith("\r\n\r\n"u8)) return null;
        if (written.IndexOf("\r\n\r\n"u8) != written.Length - 4) return null;
        if (!int.TryParse(written.Slice(9, 3), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var status)
            || status < 400)
            return null;
        var head = Encoding.ASCII.GetString(written[..^2]);
        var lines = head.Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        if (!lines.Any(l => l.Equals("Content-Length: 0", StringComparison.OrdinalIgnoreCase))
            || !lines.Any(l => l.Equals("Connection: close", StringComparison.OrdinalIgnoreCase)))
            return null;
        var body = JsonSerializer.SerializeToUtf8Bytes(new ErrorResponse { Error = Message(status, limits), Code = ErrorCodes.BadRequest },
            ApiJson.Default.ErrorResponse);
        var text = new StringBuilder();
        foreach (var line in lines)
        {
            if (line.Equals("Content-Length: 0", StringComparison.OrdinalIgnoreCase))
                text.Append("Content-Type: application/json; charset=utf-8\r\n").Append(System.Globalization.CultureInfo.InvariantCulture, $"Content-Length: {body.Length}\r\n");
            else
                text.Append(line).Append("\r\n");
        }
        text.Append("\r\n");
        return [.. Encoding.ASCII.GetBytes(text.ToString()), .. body];
    }

    private sealed class FilteredTransport(IDuplexPipe inner, KestrelServerLimits limits) : IDuplexPipe
    {
        public PipeReader Input => inner.Input;
        public PipeWriter Output { get; } = new RefusalWriter(inner.Output, limits);
    }

    /// <summary>Holds what Kestrel writes until it flushes, then passes it on, a bare refusal with the agent's body.
    /// Kestrel writes a response head and flushes it whole, so a flush is where a response can be told.</summary>
    private sealed class RefusalWriter(PipeWriter inner, KestrelServerLimits limits) : PipeWriter
    {
        private readonly ArrayBufferWriter<byte> _pending = new(4096);

        public override void Advance(int bytes) => _pending.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => _pending.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => _pending.GetSpan(sizeHint);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        // System.Text.Json asks, to flush a large body as it writes it.
        public override bool CanGetUnflushedBytes => true;

        public override long UnflushedBytes => _pending.WrittenCount + (inner.CanGetUnflushedBytes ? inner.UnflushedBytes : 0);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            Pass();
            return inner.FlushAsync(cancellationToken);
        }

        public override void Complete(Exception? exception = null)
        {
            Pass();
            inner.Complete(exception);
        }

        public override ValueTask CompleteAsync(Exception? exception = null)
        {
            Pass();
            return inner.CompleteAsync(exception);
        }

        private void Pass()
        {
            if (_pending.WrittenCount == 0) return;
            if (Rewrite(_pending.WrittenSpan, limits) is { } answer) inner.Write(answer);
            else inner.Write(_pending.WrittenSpan);
            _pending.ResetWrittenCount();
        }
    }
}
