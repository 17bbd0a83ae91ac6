using System.Globalization;
using System.Text.RegularExpressions;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Guests;

/// <summary>
/// A vsinit subcommand failed. Like crun's errors, it says which step failed and why: <see cref="Subcommand"/> and the
/// <see cref="Path"/> it was run on (the spec file, or the netns or target path), vsinit's own line naming the operation
/// and the path it failed on (<see cref="Reason"/>), and the errno when vsinit reported one, with the exit code:
/// <c>vsinit mount-root /run/vserver/guests/web1/mount-root.spec: attach overlay on /var/lib/vserver/guests/web1/rootfs:
/// No such file or directory (ENOENT)</c>. A <see cref="HostProgramException"/>, as the run of a host tool it is.
/// </summary>
public partial class VsinitException(string subcommand, string path, string reason, int exitCode, string stderr, string? message = null)
    : HostProgramException(message ?? $"vsinit {subcommand} {path}: {reason}", exitCode, stderr)
{
    public string Subcommand { get; } = subcommand;
    /// <summary>The spec file the subcommand was given, or its path argument (netns, grab-root).</summary>
    public string Path { get; } = path;
    /// <summary>vsinit's report (the operation, the path it failed on, the error), or the last line a tool run by
    /// userns-exec wrote to stderr.</summary>
    public string Reason { get; } = reason;
    /// <summary>The errno vsinit named at the end of its report (<c>... (ENOENT)</c>); null when it named none (a spec
    /// error, a command that ran and failed).</summary>
    public int? Errno { get; } = ErrnoOf(reason);

    private static int? ErrnoOf(string reason)
    {
        var m = ErrnoSuffix().Match(reason);
        if (!m.Success) return null;
        return m.Groups["number"].Success
            ? int.Parse(m.Groups["number"].Value, CultureInfo.InvariantCulture)
            : Interop.Errno.FromName(m.Groups["name"].Value);
    }

    // What report.c's die() appends: ": strerror (ENAME)", or "(errno N)" for a number without a name.
    [GeneratedRegex(@": [^:]+ \((?:(?<name>E[A-Z0-9]+)|errno (?<number>\d+))\)$")]
    private static partial Regex ErrnoSuffix();
}

/// <summary>vsinit start failed: nothing of the guest is left running. The message is vsinit's report alone.</summary>
public sealed class GuestStartException(string specPath, string reason, int exitCode)
    : VsinitException("start", specPath, reason, exitCode, "", reason);
