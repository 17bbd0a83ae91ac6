namespace Vserver.Isolation.Cgroups;

/// <summary>Validation and joining of relative cgroup paths.</summary>
internal static class CgroupPath
{
    /// <summary>Normalizes <c>/vserver/web1/</c> to <c>vserver/web1</c>; rejects empty, <c>.</c>, <c>..</c> and empty segments.</summary>
    public static string Normalize(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string trimmed = path.Trim('/');
        if (trimmed.Length == 0)
        {
            throw new ArgumentException("cgroup path must name a cgroup below the hierarchy root (e.g. \"vserver/web1\")", nameof(path));
        }

        foreach (string segment in trimmed.Split('/'))
        {
            if (segment.Length == 0 || segment == "." || segment == ".." || segment.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException($"invalid cgroup path '{path}': empty, '.', '..' or NUL segments are not allowed", nameof(path));
            }
        }

        return trimmed;
    }

    public static string[] Segments(string normalizedPath) => normalizedPath.Split('/');

    public static string Join(string directory, string relative) => System.IO.Path.Combine(directory, relative);
}
