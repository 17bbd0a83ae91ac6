using System.Text;

namespace Vserver.Isolation.Images;

/// <summary>
/// A member name of an archive as a path inside the image root: relative, '/'-separated, without empty or '.'
/// components; "" is the root itself. A name that would leave the root is refused, never rewritten: GNU tar strips a
/// leading '/' and goes on, but an archive that names /etc/shadow was not made from a root file system.
/// </summary>
public static class ArchivePath
{
    /// <summary>Longest name of one component (NAME_MAX) and of a whole path (PATH_MAX less its NUL).</summary>
    public const int MaxComponentBytes = 255, MaxPathBytes = 4095;

    /// <summary>The path below the root <paramref name="name"/> stands for, or null with why it cannot be unpacked.</summary>
    public static string? Normalize(string name, out string? error)
    {
        error = null;
        if (name.Length == 0)
        {
            error = "an entry has an empty name";
            return null;
        }
        if (name.Contains('\0', StringComparison.Ordinal))
        {
            error = $"entry '{Shown(name)}' has a NUL byte in its name";
            return null;
        }
        if (name[0] == '/')
        {
            error = $"entry '{Shown(name)}' is an absolute path (an image archive names its files relative to its root, as tar -C ROOT -c . does)";
            return null;
        }
        var parts = new List<string>();
        foreach (var part in name.Split('/'))
        {
            if (part.Length == 0 || part == ".") continue;
            if (part == "..")
            {
                error = $"entry '{Shown(name)}' climbs out of the image root ('..')";
                return null;
            }
            if (Encoding.UTF8.GetByteCount(part) > MaxComponentBytes)
            {
                error = $"entry '{Shown(name)}' has a component longer than {MaxComponentBytes} bytes";
                return null;
            }
            parts.Add(part);
        }
        var path = string.Join('/', parts);
        if (Encoding.UTF8.GetByteCount(path) > MaxPathBytes)
        {
            error = $"entry '{Shown(name)}' is longer than {MaxPathBytes} bytes";
            return null;
        }
        return path;
    }

    /// <summary>The directory part of a normalized path ("" for a name at the root).</summary>
    public static string Parent(string path) => path.LastIndexOf('/') is var at and >= 0 ? path[..at] : "";

    /// <summary>The last component of a normalized path.</summary>
    public static string Leaf(string path) => path.LastIndexOf('/') is var at and >= 0 ? path[(at + 1)..] : path;

    /// <summary><paramref name="name"/> under <paramref name="dir"/> (the root is "").</summary>
    public static string Join(string dir, string name) => dir.Length == 0 ? name : $"{dir}/{name}";

    /// <summary>Whether <paramref name="path"/> is <paramref name="dir"/> or lies beneath it.</summary>
    public static bool IsWithin(string path, string dir) =>
        dir.Length == 0 || path == dir || (path.Length > dir.Length && path[dir.Length] == '/' && path.StartsWith(dir, StringComparison.Ordinal));

    /// <summary>A name as a message quotes it: control characters escaped, cut short past 200 characters.</summary>
    public static string Shown(string name)
    {
        var text = name.Length > 200 ? name[..200] + "..." : name;
        if (!text.Any(char.IsControl)) return text;
        var result = new StringBuilder(text.Length + 8);
        foreach (var ch in text)
            result.Append(char.IsControl(ch) ? $"\\x{(int)ch:x2}" : ch.ToString());
        return result.ToString();
    }
}
