namespace Vserver.Isolation.Images;

/// <summary>Why an archive was refused, for a program: the <c>reason</c> field of the refusal (see
/// Vserver.Api.ErrorCodes.BadArchive).</summary>
public static class ArchiveReasons
{
    /// <summary>The archive (or a compressed stream, or an OCI blob) ends before it should.</summary>
    public const string Truncated = "truncated";
    /// <summary>A header, checksum, JSON document or digest that is wrong.</summary>
    public const string Corrupt = "corrupt";
    /// <summary>A path that leaves the image root ('..', absolute) or lies beneath a link the archive made.</summary>
    public const string UnsafePath = "unsafe_path";
    /// <summary>A character or block device outside /dev.</summary>
    public const string DeviceNode = "device_node";
    /// <summary>A kind of tar entry an image cannot hold (sparse, multi-volume) or an OCI layer of an unknown type.</summary>
    public const string Unsupported = "unsupported";
    /// <summary>Neither a tar archive (plain or compressed) nor an OCI layout.</summary>
    public const string UnknownFormat = "unknown_format";
    /// <summary>An OCI index without an image for this host's platform (or with several and no tag to pick one).</summary>
    public const string NoPlatform = "no_platform";
}

/// <summary>An archive that cannot become an image: one line saying what is wrong with it (and where, when an entry is
/// at fault), its <see cref="Reason"/> (one of <see cref="ArchiveReasons"/>) and the entry's name.</summary>
public sealed class ArchiveException(string reason, string message, string? entry = null) : Exception(message)
{
    public string Reason { get; } = reason;
    public string? Entry { get; } = entry;
}
