using System.Text;

namespace Vserver.Isolation.Cgroups;

/// <summary>A cgroup or cgroup2 mount from /proc/self/mountinfo.</summary>
/// <param name="MountPoint">Where it is mounted, e.g. <c>/sys/fs/cgroup/memory</c>.</param>
/// <param name="Root">The cgroup (inside the hierarchy) that is mounted there, usually <c>/</c>.</param>
/// <param name="FileSystemType"><c>cgroup</c> (v1) or <c>cgroup2</c>.</param>
/// <param name="Controllers">v1: the controllers bound to this hierarchy (e.g. <c>cpu</c>, <c>cpuacct</c>,
/// <c>name=systemd</c>); empty for cgroup2.</param>
public sealed record CgroupMount(string MountPoint, string Root, string FileSystemType, IReadOnlyList<string> Controllers)
{
    /// <summary>Super-block options that are not controller names.</summary>
    private static readonly HashSet<string> NonControllerOptions = new(StringComparer.Ordinal)
    {
        "rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods",
        "nsdelegate", "memory_localevents", "memory_recursiveprot", "memory_hugetlb_accounting", "pids_localevents",
    };

    /// <summary>
    /// Parses mountinfo text (proc(5) format:
    /// <c>ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS</c>)
    /// and returns the cgroup and cgroup2 mounts in order. Malformed lines are skipped.
    /// </summary>
    public static IReadOnlyList<CgroupMount> ParseMountInfo(string mountInfo)
    {
        ArgumentNullException.ThrowIfNull(mountInfo);
        var mounts = new List<CgroupMount>();
        foreach (string line in mountInfo.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int separator = fields.Length < 7 ? -1 : Array.IndexOf(fields, "-", 6);
            if (separator < 0 || separator + 1 >= fields.Length)
            {
                continue;
            }

            string fsType = fields[separator + 1];
            if (fsType != "cgroup" && fsType != "cgroup2")
            {
                continue;
            }

            string superOptions = separator + 3 < fields.Length ? fields[separator + 3] : string.Empty;
            IReadOnlyList<string> controllers = fsType == "cgroup"
                ? superOptions.Split(',', StringSplitOptions.RemoveEmptyEntries)
                    .Where(o => !NonControllerOptions.Contains(o) && (!o.Contains('=', StringComparison.Ordinal) || o.StartsWith("name=", StringComparison.Ordinal)))
                    .ToArray()
                : [];
            mounts.Add(new CgroupMount(Unescape(fields[4]), Unescape(fields[3]), fsType, controllers));
        }

        return mounts;
    }

    /// <summary>Decodes the octal escapes mountinfo uses for space, tab, newline and backslash (<c>\040</c> ...).</summary>
    internal static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var sb = new StringBuilder(field.Length);
        for (int i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1) && IsOctal(field, i + 2) && IsOctal(field, i + 3))
            {
                sb.Append((char)(((field[i + 1] - '0') * 64) + ((field[i + 2] - '0') * 8) + (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }

        return sb.ToString();
    }

    private static bool IsOctal(string s, int index) => index < s.Length && s[index] is >= '0' and <= '7';
}
