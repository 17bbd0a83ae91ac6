using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>Overlayfs whiteouts: a character device 0/0 in the upper layer hides the lower layer's entry of that name.</summary>
public static class OverlayWhiteouts
{
    /// <summary>Makes the overlay of <paramref name="upper"/> over <paramref name="lower"/> show exactly the upper tree:
    /// a whiteout for every entry of the lower layer the upper one lacks, descending where both have a real directory
    /// (they merge there). Whiteouts belong to <paramref name="owner"/> (the guest's root).</summary>
    public static void Hide(string lower, string upper, uint owner)
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(lower))
        {
            var there = Path.Combine(upper, Path.GetFileName(entry));
            var upperInfo = new FileInfo(there);
            if (!upperInfo.Exists && !Directory.Exists(there) && upperInfo.LinkTarget is null)
            {
                if (Libc.Mknod(there, Libc.S_IFCHR, 0) != 0) throw SystemCallException.FromLastError($"mknod whiteout {there}");
                FileOwner.Chown(there, owner, owner);
            }
            else if (IsRealDirectory(new FileInfo(entry)) && IsRealDirectory(upperInfo))
            {
                Hide(entry, there, owner);
            }
        }
    }

    private static bool IsRealDirectory(FileInfo info) => info.Attributes.HasFlag(FileAttributes.Directory) && info.LinkTarget is null;
}
