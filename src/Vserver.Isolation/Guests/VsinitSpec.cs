using System.Text;

namespace Vserver.Isolation.Guests;

/// <summary>
/// Everything vsinit (native/*.c; the format in native/spec.c) needs, decided here: vsinit applies a spec and makes no policy.
/// Rendered as `key value` lines, the format vsinit parses.
/// </summary>
public sealed class VsinitSpec
{
    public string? Name { get; init; }
    public string? Hostname { get; init; }
    public string? Rootfs { get; init; }
    public string? Lower { get; init; }
    public string? Upper { get; init; }
    public string? Work { get; init; }
    public string? Netns { get; init; }
    public IReadOnlyList<string> Cgroups { get; init; } = [];
    public IReadOnlyList<int> CapKeep { get; init; } = [];
    public IReadOnlyList<string> Masked { get; init; } = DefaultMasked;
    public IReadOnlyList<string> ReadOnly { get; init; } = DefaultReadOnly;
    public string? PidFile { get; init; }
    public string? ExitFile { get; init; }
    public string? Console { get; init; }
    public IReadOnlyList<string> Env { get; init; } = DefaultEnv;
    public required IReadOnlyList<string> Args { get; init; }
    public string Cwd { get; init; } = "/";
    public int? TargetPid { get; init; }
    public bool Tty { get; init; }
    /// <summary>Exec: after a hangup (SIGHUP to vsinit exec), how long the command's session has before SIGKILL.</summary>
    public TimeSpan? HangupGrace { get; init; }
    public bool NoNewPrivs { get; init; }
    /// <summary>Start: a new user namespace mapping ids 0..count-1 to host ids hostBase.. (uids and gids alike).
    /// Exec joins the guest's user namespace by itself.</summary>
    public (long HostBase, long Count)? IdMap { get; init; }
    /// <summary>A compiled classic BPF program (struct sock_filter records) loaded right before exec.</summary>
    public string? SeccompFilter { get; init; }
    /// <summary>
    /// Start: an existing regular host file in /proc/meminfo format, bound read-only over the guest's /proc/meminfo (the
    /// same inode, so rewrites in place show through at once). The monitor answers the guest's sysinfo(2) from it too,
    /// when <see cref="SeccompFilter"/> sends sysinfo to the listener (<see cref="Security.SeccompProfile.SysinfoToMonitor"/>).
    /// </summary>
    public string? Meminfo { get; init; }
    /// <summary>Start (needs <see cref="Meminfo"/>): the unix socket where the monitor takes the seccomp listeners of
    /// later execs, so their sysinfo(2) is answered too. Exec: where to hand the command's listener over.</summary>
    public string? NotifySocket { get; init; }
    /// <summary>userns-exec: directories (or files) bound, with what is mounted below them, over existing targets in a
    /// private mount namespace before the user namespace is entered, in order; a later target may lie inside an earlier
    /// one. Lets a tool in the guest's id range reach paths whose host parents it could not walk.</summary>
    public IReadOnlyList<(string Source, string Target)> Binds { get; init; } = [];
    /// <summary>userns-exec: paths at and below which every mount is detached in that private namespace after the binds,
    /// so a long-lived tool holds no copy of other guests' mounts (a copy would keep a stopped guest's disk quota image
    /// on its loop device).</summary>
    public IReadOnlyList<string> Detach { get; init; } = [];
    /// <summary>Start: what the guest's /etc/resolv.conf says, written by its init as the guest's root inside its root,
    /// through no link the guest planted; null leaves the guest's own file (or link) alone.</summary>
    public Network.ResolvConf? Resolv { get; init; }

    /// <summary>Kernel interfaces that leak host state or act on the host: hidden behind /dev/null or an empty tmpfs.</summary>
    public static readonly IReadOnlyList<string> DefaultMasked =
    [
        "/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/sysrq-trigger", "/proc/timer_list", "/proc/sched_debug",
        "/proc/latency_stats", "/proc/kallsyms", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup", "/proc/acpi",
        "/proc/scsi", "/sys/firmware", "/sys/kernel/debug",
    ];

    public static readonly IReadOnlyList<string> DefaultReadOnly = ["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"];

    public static readonly IReadOnlyList<string> DefaultEnv =
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", "container=vserver"];

    /// <summary>Start: cgroup file systems mounted in the guest's cgroup namespace under /sys/fs/cgroup, for an init that
    /// keeps its own cgroup tree (systemd); empty: none (the guest sees no cgroup file system).</summary>
    public IReadOnlyList<CgroupFsMount> CgroupMounts { get; init; } = [];
    /// <summary>Start: tmpfs mounts on directories of the guest's root, in order ("/run", "mode=755,size=..." first).</summary>
    public IReadOnlyList<(string Dir, string Options)> Tmpfs { get; init; } = [];

    public string Render()
    {
        var sb = new StringBuilder();
        void Line(string key, string? value)
        {
            if (value is null) return;
            if (value.Contains('\n')) throw new ArgumentException($"{key} must not contain a newline: {value}");
            sb.Append(key).Append(' ').Append(value).Append('\n');
        }
        Line("name", Name);
        Line("hostname", Hostname);
        Line("rootfs", Rootfs);
        Line("lower", Lower);
        Line("upper", Upper);
        Line("work", Work);
        Line("netns", Netns);
        if (IdMap is var (hostBase, count))
        {
            var map = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"0 {hostBase} {count}");
            Line("uid_map", map);
            Line("gid_map", map);
        }
        Line("seccomp", SeccompFilter);
        Line("meminfo", Meminfo);
        Line("notify_socket", NotifySocket);
        foreach (var c in Cgroups) Line("cgroup", c);
        foreach (var c in CapKeep) Line("cap_keep", c.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var m in Masked) Line("mask", m);
        foreach (var r in ReadOnly) Line("readonly", r);
        Line("pidfile", PidFile);
        Line("exitfile", ExitFile);
        Line("console", Console);
        foreach (var (source, target) in Binds)
        {
            Line("bind_source", source);
            Line("bind_target", target);
        }
        foreach (var dir in Detach) Line("detach", dir);
        foreach (var m in CgroupMounts) Line("cgroup_mount", $"{m.Type} {(m.Options.Length == 0 ? "-" : m.Options)} {m.Dir} {(m.Writable ? "rw" : "ro")}");
        foreach (var (dir, options) in Tmpfs) Line("tmpfs", $"{dir} {options}");
        // The file's text line by line, so vsinit writes exactly what ResolvConf renders and knows nothing of its syntax.
        if (Resolv?.Render() is { } resolv)
        {
            if (!resolv.EndsWith('\n')) throw new ArgumentException($"resolv.conf text must end with a newline: {resolv}");
            foreach (var line in resolv[..^1].Split('\n')) Line("resolv_line", line);
        }
        foreach (var e in Env) Line("env", e);
        foreach (var a in Args) Line("arg", a);
        Line("cwd", Cwd);
        Line("target_pid", TargetPid?.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (TargetPid is not null) Line("tty", Tty ? "1" : "0");
        Line("hangup_grace_ms", HangupGrace is { } grace
            ? ((long)grace.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture)
            : null);
        if (NoNewPrivs) Line("no_new_privs", "1");
        return sb.ToString();
    }
}

/// <summary>A cgroup file system in a guest: <paramref name="Type"/> cgroup (v1; <paramref name="Options"/> its controllers,
/// or none,name=systemd) or cgroup2, at /sys/fs/cgroup/<paramref name="Dir"/> ("." = /sys/fs/cgroup itself).</summary>
public sealed record CgroupFsMount(string Type, string Options, string Dir, bool Writable);
