namespace Vserver.Api;

/// <summary>How much the agent takes from a client in one piece. Anything larger is refused before it is buffered, so
/// a client cannot make the agent (which runs as root and holds every guest) swallow memory.</summary>
public static class ApiLimits
{
    /// <summary>A request body; larger ones get 413. The largest real request, a create with a long command, is a
    /// few KiB. For a chunked body Kestrel counts the chunk framing too.</summary>
    public const int MaxRequestBodyBytes = 64 * 1024;

    /// <summary>The exec WebSocket's first message, the <see cref="ExecRequest"/>: it is a request body by another
    /// road, so the same cap.</summary>
    public const int MaxExecRequestBytes = MaxRequestBodyBytes;

    /// <summary>Every later exec message (stdin, resize). vsctl sends at most 32 KiB + 1; the room above that is for
    /// other clients.</summary>
    public const int MaxExecMessageBytes = 1024 * 1024;
}
