using System.Text.Json.Nodes;

namespace HybridHypervisor.Domains.Qmp;

/// <summary>QEMU's version as announced in the QMP greeting, e.g. 7.2.22 with package "Debian 1:7.2+dfsg-7+deb12u18+b3".</summary>
public sealed record QmpVersion(int Major, int Minor, int Micro, string Package)
{
    public override string ToString() => $"{Major}.{Minor}.{Micro}";

    /// <summary>True when this version is at least major.minor.</summary>
    public bool AtLeast(int major, int minor) => Major > major || (Major == major && Minor >= minor);
}

/// <summary>An asynchronous QMP event: <c>{"event": "SHUTDOWN", "data": {...}, "timestamp": {"seconds": s, "microseconds": us}}</c>.
/// <paramref name="Data"/> is null when QEMU sent no "data" member (STOP, RESUME, POWERDOWN do not).</summary>
public sealed record QmpEvent(string Name, JsonObject? Data, DateTimeOffset Timestamp)
{
    /// <summary>A string member of <see cref="Data"/>, or null (e.g. SHUTDOWN's "reason": "host-qmp-quit", "guest-shutdown").</summary>
    public string? DataString(string member) =>
        Data?[member] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}

/// <summary>Names of the events the domain driver cares about (QEMU's spelling).</summary>
public static class QmpEventNames
{
    public const string Shutdown = "SHUTDOWN";
    public const string Reset = "RESET";
    public const string Stop = "STOP";
    public const string Resume = "RESUME";
    public const string Powerdown = "POWERDOWN";
    public const string BalloonChange = "BALLOON_CHANGE";
    public const string GuestPanicked = "GUEST_PANICKED";
    public const string Migration = "MIGRATION";
    public const string Suspend = "SUSPEND";
    public const string Wakeup = "WAKEUP";
}

/// <summary>QEMU's RunState (qapi/run-state.json). <see cref="Unknown"/> stands for a state this code does not know.</summary>
public enum QmpRunState
{
    Unknown,
    Debug,
    InMigrate,
    InternalError,
    IoError,
    Paused,
    PostMigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
}

/// <summary>The answer to query-status: the run state as parsed and as QEMU spelled it, and QEMU's "running" flag.</summary>
public sealed record QmpStatus(QmpRunState State, string RawStatus, bool Running)
{
    public static QmpRunState ParseRunState(string status) => status switch
    {
        "debug" => QmpRunState.Debug,
        "inmigrate" => QmpRunState.InMigrate,
        "internal-error" => QmpRunState.InternalError,
        "io-error" => QmpRunState.IoError,
        "paused" => QmpRunState.Paused,
        "postmigrate" => QmpRunState.PostMigrate,
        "prelaunch" => QmpRunState.Prelaunch,
        "finish-migrate" => QmpRunState.FinishMigrate,
        "restore-vm" => QmpRunState.RestoreVm,
        "running" => QmpRunState.Running,
        "save-vm" => QmpRunState.SaveVm,
        "shutdown" => QmpRunState.Shutdown,
        "suspended" => QmpRunState.Suspended,
        "watchdog" => QmpRunState.Watchdog,
        "guest-panicked" => QmpRunState.GuestPanicked,
        "colo" => QmpRunState.Colo,
        _ => QmpRunState.Unknown,
    };
}

/// <summary>The answer to query-migrate. <see cref="Status"/> is null when no migration was ever started (QEMU then
/// returns <c>{}</c>); otherwise "setup", "active", "completed", "failed", "cancelled", ... The byte counts come
/// from the "ram" member and are null until QEMU reports them. <see cref="Raw"/> is the whole reply.</summary>
public sealed record QmpMigrationInfo(
    string? Status, long? TotalBytes, long? TransferredBytes, long? RemainingBytes, long? TotalTimeMs,
    string? ErrorDescription, JsonObject Raw)
{
    public bool IsCompleted => Status == "completed";
    public bool IsFailed => Status is "failed" or "cancelled";
    public bool IsFinished => IsCompleted || IsFailed;
}

/// <summary>
/// Migration URIs for saving a domain's state to a file and restoring it.
/// QEMU 7.2 has no "file:" migration URI (that came in 8.2), so a save goes through <c>exec:</c>: QEMU runs
/// <c>/bin/sh -c "cat &gt; PATH"</c> and streams the state into its stdin. Consequences the caller must accept:
/// the shell runs as QEMU's user, in QEMU's working directory and mount namespace (so PATH must be absolute and
/// writable there), and QEMU must not be started with <c>-sandbox on,spawn=deny</c>. The path is single-quoted
/// for the shell, so any character is safe. Restore starts QEMU with <c>-incoming "exec:cat PATH"</c> (see
/// <see cref="FromFile"/>). Passing an fd with getfd/SCM_RIGHTS would avoid the shell but needs sendmsg P/Invoke.
/// </summary>
public static class QmpMigrationUri
{
    /// <summary><c>exec:cat &gt; 'PATH'</c> for migrate.</summary>
    public static string ToFile(string absolutePath) => "exec:cat > " + ShellQuote(RequireAbsolute(absolutePath));

    /// <summary><c>exec:cat 'PATH'</c> for <c>-incoming</c> or migrate-incoming.</summary>
    public static string FromFile(string absolutePath) => "exec:cat " + ShellQuote(RequireAbsolute(absolutePath));

    /// <summary>POSIX shell single quoting: 'it'"'"'s' style, every character literal.</summary>
    public static string ShellQuote(string s) => "'" + s.Replace("'", "'\"'\"'", StringComparison.Ordinal) + "'";

    private static string RequireAbsolute(string path)
    {
        if (!Path.IsPathFullyQualified(path))
            throw new ArgumentException($"migration file path must be absolute (QEMU's shell runs in QEMU's working directory): {path}", nameof(path));
        if (path.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("migration file path contains a NUL byte", nameof(path));
        return path;
    }
}
