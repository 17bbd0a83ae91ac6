using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>The host's mount table as this process sees it (/proc/self/mountinfo).</summary>
public static class HostMounts
{
    /// <summary>Whether something is mounted exactly at <paramref name="path"/> (mountinfo escapes space, tab, newline
    /// and backslash as octal).</summary>
    public static bool IsMountpoint(string path) => MountLine(path) is not null;

    /// <summary>The source of the topmost mount at <paramref name="path"/> (a loop mount's /dev/loopN), or null if
    /// nothing is mounted there.</summary>
    public static string? SourceOf(string path)
    {
        var fields = MountLine(path);
        if (fields is null) return null;
        // Optional fields end at "-"; filesystem type and source follow.
        var dash = Array.IndexOf(fields, "-", 6);
        return dash > 0 && dash + 2 < fields.Length ? fields[dash + 2] : null;
    }

    /// <summary>Every mount point and its source, in mountinfo's order (parents before children).</summary>
    public static IReadOnlyList<(string MountPoint, string Source)> All()
    {
        var mounts = new List<(string, string)>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-", 6);
            if (fields.Length > 4 && dash > 0 && dash + 2 < fields.Length) mounts.Add((Unescape(fields[4]), fields[dash + 2]));
        }
        return mounts;
    }

    private static string Unescape(string field) =>
        System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-3][0-7]{2})",
            m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

    /// <summary>The last (topmost) mountinfo line for <paramref name="path"/>, split at spaces.</summary>
    private static string[]? MountLine(string path)
    {
        var escaped = path.Replace("\\", "\\134", StringComparison.Ordinal).Replace(" ", "\\040", StringComparison.Ordinal)
            .Replace("\t", "\\011", StringComparison.Ordinal).Replace("\n", "\\012", StringComparison.Ordinal);
        string[]? found = null;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && fields[4] == escaped) found = fields;
        }
        return found;
    }

    /// <summary>Detaches whatever is mounted at <paramref name="path"/>, stacked mounts included; nothing mounted is fine.</summary>
    public static void Unmount(string path)
    {
        for (var i = 0; i < 8 && IsMountpoint(path); i++)
            if (Libc.Umount2(path, Libc.MNT_DETACH) != 0)
                throw new IOException($"umount {path}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
    }
}
