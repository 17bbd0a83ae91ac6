namespace Vserver.Isolation.Images;

/// <summary>How a tar archive is compressed.</summary>
public enum ArchiveCompression { None, Gzip, Xz, Zstd, Bzip2 }

/// <summary>
/// Which format an archive is, from its first bytes (never from its name: a file called .tar.gz may be anything), and
/// the host tools that undo and do each compression.
/// </summary>
public static class ArchiveFormat
{
    /// <summary>As many bytes as <see cref="Sniff"/> and <see cref="IsTarHeader"/> look at.</summary>
    public const int HeadBytes = 512;

    /// <summary>The compression of a stream that starts with <paramref name="head"/>: a compressor's magic number, or a
    /// tar header (<see cref="ArchiveCompression.None"/>); null for anything else.</summary>
    public static ArchiveCompression? Sniff(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b])) return ArchiveCompression.Gzip;
        if (head.StartsWith((ReadOnlySpan<byte>)[0xfd, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00])) return ArchiveCompression.Xz;
        if (head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xb5, 0x2f, 0xfd])) return ArchiveCompression.Zstd;
        if (head.Length >= 4 && head.StartsWith("BZh"u8) && head[3] is >= (byte)'1' and <= (byte)'9') return ArchiveCompression.Bzip2;
        if (IsTarHeader(head)) return ArchiveCompression.None;
        return null;
    }

    /// <summary>Whether <paramref name="block"/> is a ustar header: POSIX ("ustar\0" "00") or GNU ("ustar  \0").</summary>
    public static bool IsTarHeader(ReadOnlySpan<byte> block) =>
        block.Length >= 265 && (block[257..265].SequenceEqual("ustar\u000000"u8) || block[257..265].SequenceEqual("ustar  \u0000"u8));

    /// <summary>What an archive that <see cref="Sniff"/> does not know seems to be, for the refusal.</summary>
    public static string Describe(ReadOnlySpan<byte> head)
    {
        if (head.Length == 0) return "it is empty";
        string? known = head switch
        {
            _ when head.StartsWith("PK\u0003\u0004"u8) => "a zip file",
            _ when head.StartsWith((ReadOnlySpan<byte>)[(byte)'7', (byte)'z', 0xbc, 0xaf]) => "a 7-zip file",
            _ when head.StartsWith("Rar!"u8) => "a RAR file",
            _ when head.StartsWith((ReadOnlySpan<byte>)[(byte)'Q', (byte)'F', (byte)'I', 0xfb]) => "a qcow2 disk image",
            _ when head.StartsWith("hsqs"u8) => "a squashfs image",
            _ when head.StartsWith((ReadOnlySpan<byte>)[0x04, 0x22, 0x4d, 0x18]) => "lz4 compressed (not supported: recompress with zstd)",
            _ when head.StartsWith((ReadOnlySpan<byte>)[0x5d, 0x00, 0x00]) => "lzma compressed (not supported: recompress with xz)",
            _ when head[0] is (byte)'{' or (byte)'[' => "JSON text (an OCI layout is a directory, or a tar of one)",
            _ when head.Length >= 265 && head[257..262].SequenceEqual("ustar"u8) => "a tar header of an unknown ustar version",
            _ => null,
        };
        var bytes = Convert.ToHexStringLower(head[..Math.Min(8, head.Length)]);
        return known is null ? $"it starts with bytes {bytes}" : $"it looks like {known} (it starts with bytes {bytes})";
    }

    /// <summary>The compression's name on the wire (the export's <c>compression</c> parameter).</summary>
    public static string Name(ArchiveCompression compression) => compression switch
    {
        ArchiveCompression.None => "none",
        ArchiveCompression.Gzip => "gzip",
        ArchiveCompression.Xz => "xz",
        ArchiveCompression.Zstd => "zstd",
        ArchiveCompression.Bzip2 => "bzip2",
        _ => throw new ArgumentOutOfRangeException(nameof(compression)),
    };

    public static ArchiveCompression? FromName(string name) =>
        Enum.GetValues<ArchiveCompression>().Select(c => (ArchiveCompression?)c).FirstOrDefault(c => Name(c!.Value) == name);

    /// <summary>The program that undoes or does the compression as a filter on stdin/stdout, and its arguments.</summary>
    internal static (string Program, string[] Args) Filter(ArchiveCompression compression, bool compress) => compression switch
    {
        ArchiveCompression.Gzip => ("gzip", compress ? ["-c", "-n"] : ["-d", "-c"]),
        ArchiveCompression.Xz => ("xz", compress ? ["-c", "-T0"] : ["-d", "-c"]),
        ArchiveCompression.Zstd => ("zstd", compress ? ["-c", "-q", "-T0"] : ["-d", "-c", "-q"]),
        ArchiveCompression.Bzip2 => ("bzip2", compress ? ["-c"] : ["-d", "-c"]),
        _ => throw new ArgumentOutOfRangeException(nameof(compression)),
    };
}
