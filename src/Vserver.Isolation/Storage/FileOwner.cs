using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

public static class FileOwner
{
    /// <summary>The owner of <paramref name="path"/> itself (a final link not followed), or null when it cannot be read.</summary>
    public static uint? Of(string path) =>
        Libc.Fstatat(Libc.AT_FDCWD, path, out var stat, Libc.AT_SYMLINK_NOFOLLOW) == 0 ? stat.Uid : null;

    /// <summary>lchown(2): never follows a final symlink; null leaves that id as it is. Fails with errno and path.</summary>
    public static void Chown(string path, uint? uid, uint? gid, string? operation = null)
    {
        if (Libc.Lchown(path, uid ?? uint.MaxValue, gid ?? uint.MaxValue) != 0)
            throw SystemCallException.FromLastError(operation ?? $"chown {path} to {(uid is { } u ? u : "-")}:{(gid is { } g ? g : "-")}");
    }
}
