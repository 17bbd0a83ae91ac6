using Vserver.Isolation.Images;

namespace Vserver.Isolation.Guests;

/// <summary>
/// Which program a guest's init path names, looked up in its layers (the writable one first, then the image's, as the
/// overlay shows them) without ever leaving them: a link is followed inside the guest's root, an absolute target
/// taken from that root. Enough to tell systemd (which wants its cgroups, /run and SIGRTMIN+3 to halt) from the rest.
/// </summary>
public static class GuestInit
{
    /// <summary>The file <paramref name="path"/> resolves to inside the layers, as a path in the guest ("/usr/lib/systemd/systemd"),
    /// or null when it does not resolve (missing, a loop, or more than 40 links).</summary>
    public static string? Resolve(IReadOnlyList<string> layers, string path)
    {
        var pending = new Stack<string>(path.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse());
        var done = new List<string>();
        for (var links = 0; pending.Count > 0;)
        {
            var part = pending.Pop();
            if (part == ".") continue;
            if (part == "..")
            {
                if (done.Count > 0) done.RemoveAt(done.Count - 1);
                continue;
            }
            var inGuest = "/" + string.Join('/', done.Append(part));
            var found = layers.Select(l => new FileInfo(l + inGuest)).FirstOrDefault(f => f.Exists || Directory.Exists(f.FullName) || f.LinkTarget is not null);
            if (found is null) return null;
            if (found.LinkTarget is { } target)
            {
                if (++links > 40) return null;
                if (target.StartsWith('/')) done.Clear();
                foreach (var t in target.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse()) pending.Push(t);
                continue;
            }
            done.Add(part);
        }
        return "/" + string.Join('/', done);
    }

    /// <summary>Whether the init is systemd, by the rule an image's init is named with (<see cref="ImageInit.Classify"/>).</summary>
    public static bool IsSystemd(IReadOnlyList<string> layers, string path) => Resolve(layers, path) is { } program && IsSystemdProgram(program);

    private static bool IsSystemdProgram(string program) => ImageInit.Classify(program, []).Kind == InitKind.Systemd;

    /// <summary>Whether a running init is systemd, from the program its process runs (what /proc/PID/exe names in the
    /// guest's mount namespace; "(deleted)" once an upgrade replaced the file and systemd has not re-executed yet).</summary>
    public static bool RunsSystemd(int pid)
    {
        try
        {
            return new FileInfo($"/proc/{pid}/exe").LinkTarget is { } exe && IsSystemdProgram(exe.EndsWith(" (deleted)", StringComparison.Ordinal) ? exe[..^" (deleted)".Length] : exe);
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>systemd halts on SIGRTMIN+3 (as LXC's lxc.signal.halt sends it): glibc's SIGRTMIN is 34.</summary>
    public const int SystemdHalt = 34 + 3;
}
