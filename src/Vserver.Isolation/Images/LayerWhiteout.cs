namespace Vserver.Isolation.Images;

/// <summary>What a layer's entry named <c>.wh.*</c> asks for.</summary>
public enum WhiteoutKind
{
    /// <summary>An ordinary entry.</summary>
    None,
    /// <summary><c>DIR/.wh.NAME</c>: DIR/NAME of the layers below is gone.</summary>
    Remove,
    /// <summary><c>DIR/.wh..wh..opq</c>: DIR shows none of what the layers below have in it.</summary>
    Opaque,
    /// <summary>Another <c>.wh..wh.*</c> name: aufs bookkeeping (hard-link directories) older layers carry; no file.</summary>
    Bookkeeping,
}

/// <summary>
/// The OCI image spec's whiteouts (image-spec layer.md): a layer removes what the layers below it have by naming it
/// with a <c>.wh.</c> prefix, and hides a whole directory's lower contents with <c>.wh..wh..opq</c>. Whiteouts apply to
/// the layers below only, never to entries of their own layer, whatever their order in the tar.
/// </summary>
public static class LayerWhiteout
{
    public const string Prefix = ".wh.";
    public const string OpaqueMarker = ".wh..wh..opq";

    /// <summary>What the normalized path <paramref name="path"/> (see <see cref="ArchivePath"/>) is, and the path it
    /// acts on (the removed entry, or the opaque directory; "" is the root). A whiteout for '.' or '..' is refused.</summary>
    public static (WhiteoutKind Kind, string Target) Classify(string path)
    {
        var leaf = ArchivePath.Leaf(path);
        if (!leaf.StartsWith(Prefix, StringComparison.Ordinal)) return (WhiteoutKind.None, path);
        var dir = ArchivePath.Parent(path);
        if (leaf == OpaqueMarker) return (WhiteoutKind.Opaque, dir);
        if (leaf.StartsWith(Prefix + Prefix, StringComparison.Ordinal)) return (WhiteoutKind.Bookkeeping, path);
        var name = leaf[Prefix.Length..];
        if (name is "" or "." or "..")
            throw new ArchiveException(ArchiveReasons.UnsafePath, $"entry '{ArchivePath.Shown(path)}' is a whiteout of '{name}', which names no file", path);
        return (WhiteoutKind.Remove, ArchivePath.Join(dir, name));
    }
}
