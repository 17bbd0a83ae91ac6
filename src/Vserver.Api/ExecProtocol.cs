namespace Vserver.Api;

/// <summary>
/// `GET /v1/guests/{name}/exec` upgrades to a WebSocket (as Incus does for exec). The client's first message is an
/// <see cref="ExecRequest"/> as JSON text; after that every message is binary: one stream byte, then payload.
/// The request may be at most <see cref="ApiLimits.MaxExecRequestBytes"/> and every later message at most
/// <see cref="ApiLimits.MaxExecMessageBytes"/>; the agent answers a larger one with an <see cref="Error"/> message or
/// a close (MessageTooBig).
/// </summary>
public static class ExecStream
{
    /// <summary>client → agent: bytes for the command's stdin; an empty payload closes stdin.</summary>
    public const byte Stdin = 0;
    public const byte Stdout = 1;
    public const byte Stderr = 2;
    /// <summary>agent → client: 4-byte little-endian exit code, the last message.</summary>
    public const byte Exit = 3;
    /// <summary>client → agent: rows and columns, two little-endian u16.</summary>
    public const byte Resize = 4;
    /// <summary>agent → client: a UTF-8 error line; the exec did not run (exit code 125 follows).</summary>
    public const byte Error = 5;
    /// <summary>agent → client: the same error as an <see cref="ErrorResponse"/> in JSON, with its code and fields; sent
    /// just before the <see cref="Error"/> message it details (a client that does not know it skips it).</summary>
    public const byte ErrorDetail = 6;
}

public sealed record ExecRequest
{
    public required IReadOnlyList<string> Command { get; init; }
    public bool Tty { get; init; }
    public int Rows { get; init; }
    public int Cols { get; init; }
    public IReadOnlyDictionary<string, string>? Env { get; init; }
    public string? Cwd { get; init; }
}
