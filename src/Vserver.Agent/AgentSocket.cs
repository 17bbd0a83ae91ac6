using System.Runtime.InteropServices;

namespace Vserver.Agent;

/// <summary>Who may connect to the agent's socket: root only (0600), or root and the group named
/// <see cref="AgentSocket.GroupName"/> (root:vserver 0660) when the host has that group.</summary>
internal sealed record SocketAccess(UnixFileMode Mode, uint? Gid, string Description);

/// <summary>
/// The agent's API socket and its run directory. Whoever can connect can start anything on this host as root, so
/// the socket is never reachable with looser permissions than <see cref="Decide"/> says, not even for a moment.
/// </summary>
internal static partial class AgentSocket
{
    public const string GroupName = "vserver";
    public const UnixFileMode RootOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode RootAndGroup = RootOnly | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>The socket's mode and group, given the gid of group <see cref="GroupName"/> or null when there is none.</summary>
    public static SocketAccess Decide(uint? groupGid) =>
        groupGid is { } gid
            ? new SocketAccess(RootAndGroup, gid, $"mode 0660, root and group {GroupName}")
            : new SocketAccess(RootOnly, null, $"mode 0600, root only: there is no group {GroupName}");

    /// <summary>The run directory's mode with write access for group and others taken away: whoever may create
    /// entries there could replace the socket with one of their own.</summary>
    public static UnixFileMode WithoutForeignWrite(UnixFileMode mode) => mode & ~(UnixFileMode.GroupWrite | UnixFileMode.OtherWrite);

    /// <summary>Takes write access for group and others off the run directory; returns the mode it had when that
    /// changed something, else null.</summary>
    public static UnixFileMode? SecureRunDirectory(string runRoot)
    {
        var mode = File.GetUnixFileMode(runRoot);
        var safe = WithoutForeignWrite(mode);
        if (safe == mode) return null;
        File.SetUnixFileMode(runRoot, safe);
        return mode;
    }

    /// <summary>
    /// Where Kestrel binds: RUN/.bind/sock, in a directory only root may enter.
    /// bind(2) creates the socket file with the process umask, and Kestrel gives no say in its mode. Narrowing the umask
    /// around the bind would do it, but umask is per process and the fleet's threads (restarts scheduled at start-up)
    /// may be creating guest directories at that moment. So the socket is born inside a 0700 directory, where nobody
    /// but root can reach it whatever its mode, gets its owner and mode there, and only then is renamed into place
    /// (<see cref="Publish"/>): rename is atomic, so RUN/agent.sock never exists with other permissions. The path is no
    /// longer than RUN/agent.sock, so it fits sun_path whenever the final one does.
    /// </summary>
    public static string PrepareBindPath(string runRoot)
    {
        var dir = Path.Combine(runRoot, ".bind");
        // Left behind by an agent that died between bind and rename; we hold the agent lock, so it is no one's.
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        else File.Delete(dir);
        // mkdir fails if anything appeared meanwhile: the directory we bind in is one we made.
        if (Mkdir(dir, (uint)PrivateDirectory) != 0)
            throw new IOException($"cannot create {dir}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        File.SetUnixFileMode(dir, PrivateDirectory);
        return Path.Combine(dir, "sock");
    }

    /// <summary>Gives the bound socket its group and mode, then renames it to <paramref name="socketPath"/>.</summary>
    public static void Publish(string bindPath, string socketPath, SocketAccess access)
    {
        if (access.Gid is { } gid)
        {
            // -1: the owner stays root.
            if (Chown(bindPath, uint.MaxValue, gid) != 0)
                throw new IOException($"give {bindPath} to group {GroupName} (gid {gid}): chown '{bindPath}': {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        File.SetUnixFileMode(bindPath, access.Mode);
        File.Move(bindPath, socketPath, overwrite: true);
        Directory.Delete(Path.GetDirectoryName(bindPath)!);
    }

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chown(string path, uint owner, uint group);

    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mkdir(string path, uint mode);
}
