using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Storage;

/// <summary>The host's mount table as this process sees it (/proc/self/mountinfo).</summary>
public static class HostMounts
{
    /// <summary>Whether something is mounted exactly at <paramref name="path"/>.</summary>
    public static bool IsMountpoint(string path) => Entries().Any(m => m.MountPoint == path);

    /// <summary>The source of the topmost mount at <paramref name="path"/> (a loop mount's /dev/loopN), or null if
    /// nothing is mounted there.</summary>
    public static string? SourceOf(string path) => Entries().LastOrDefault(m => m.MountPoint == path).Source;

    /// <summary>Every mount point and its source, in mountinfo's order (parents before children).</summary>
    public static IReadOnlyList<(string MountPoint, string Source)> All() =>
        Entries().Where(m => m.Source is not null).Select(m => (m.MountPoint, m.Source!)).ToList();

    /// <summary>/proc/self/mountinfo, line by line: the mount point (field 5, unescaped: mountinfo writes space, tab,
    /// newline and backslash as octal) and the source (the second field after the "-" that ends the optional fields).</summary>
    private static IEnumerable<(string MountPoint, string? Source)> Entries()
    {
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length <= 4) continue;
            var dash = Array.IndexOf(fields, "-", 6);
            yield return (Unescape(fields[4]), dash > 0 && dash + 2 < fields.Length ? fields[dash + 2] : null);
        }
    }

    private static string Unescape(string field) =>
        System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-3][0-7]{2})",
            m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

    /// <summary>Detaches whatever is mounted at <paramref name="path"/>, stacked mounts included; nothing mounted is fine.</summary>
    public static void Unmount(string path)
    {
        for (var i = 0; i < 8 && IsMountpoint(path); i++)
            if (Libc.Umount2(path, Libc.MNT_DETACH) != 0)
                throw new IOException($"umount {path}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
    }
}
