namespace Vserver.Cli;

/// <summary>vsctl's own side of an exec or console session: reading its stdin, writing its stdout and stderr.</summary>
internal static class LocalStreams
{
    /// <summary>The next chunk of stdin into <paramref name="into"/>; 0 at its end.</summary>
    public static async Task<int> ReadAsync(Stream stdin, Memory<byte> into, CancellationToken ct)
    {
        try
        {
            return await stdin.ReadAsync(into, ct);
        }
        catch (IOException)
        {
            return 0; // an unreadable stdin is an empty one
        }
    }

    /// <summary>
    /// False when the local side is gone (a closed pipe: <c>vsctl exec ... | head</c>). Synchronous on purpose: one
    /// write(2) per frame, no thread-pool hop, and a slow reader slows the session down instead of piling up frames.
    /// </summary>
    public static bool Write(Stream target, ReadOnlySpan<byte> data)
    {
        try
        {
            target.Write(data);
            target.Flush();
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
