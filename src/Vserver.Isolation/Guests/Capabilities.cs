namespace Vserver.Isolation.Guests;

/// <summary>Linux capability numbers (linux/capability.h) and the bounding set a vserver keeps.</summary>
public static class Capabilities
{
    public static readonly IReadOnlyDictionary<string, int> ByName = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase)
    {
        ["CHOWN"] = 0, ["DAC_OVERRIDE"] = 1, ["DAC_READ_SEARCH"] = 2, ["FOWNER"] = 3, ["FSETID"] = 4, ["KILL"] = 5, ["SETGID"] = 6,
        ["SETUID"] = 7, ["SETPCAP"] = 8, ["LINUX_IMMUTABLE"] = 9, ["NET_BIND_SERVICE"] = 10, ["NET_BROADCAST"] = 11,
        ["NET_ADMIN"] = 12, ["NET_RAW"] = 13, ["IPC_LOCK"] = 14, ["IPC_OWNER"] = 15, ["SYS_MODULE"] = 16, ["SYS_RAWIO"] = 17,
        ["SYS_CHROOT"] = 18, ["SYS_PTRACE"] = 19, ["SYS_PACCT"] = 20, ["SYS_ADMIN"] = 21, ["SYS_BOOT"] = 22, ["SYS_NICE"] = 23,
        ["SYS_RESOURCE"] = 24, ["SYS_TIME"] = 25, ["SYS_TTY_CONFIG"] = 26, ["MKNOD"] = 27, ["LEASE"] = 28, ["AUDIT_WRITE"] = 29,
        ["AUDIT_CONTROL"] = 30, ["SETFCAP"] = 31, ["MAC_OVERRIDE"] = 32, ["MAC_ADMIN"] = 33, ["SYSLOG"] = 34, ["WAKE_ALARM"] = 35,
        ["BLOCK_SUSPEND"] = 36, ["AUDIT_READ"] = 37, ["PERFMON"] = 38, ["BPF"] = 39, ["CHECKPOINT_RESTORE"] = 40,
    };

    /// <summary>
    /// Taken from every vserver: they reach the shared kernel (modules, raw I/O, the clock, the kernel log, BPF,
    /// security modules) or let a guest make device nodes or re-address itself on the shared bridge (NET_ADMIN).
    /// SYS_PTRACE: a privileged guest's root is host root, and with it /proc/PID/root of a process that has just
    /// entered the guest's pid namespace but not yet its mount namespace (vsinit exec) would open the host's root.
    /// SYS_BOOT stays: in a pid namespace reboot(2) only ends the guest's init, which is how a guest reboots itself.
    /// </summary>
    public static readonly IReadOnlyList<string> AlwaysDropped =
    [
        "SYS_MODULE", "SYS_RAWIO", "SYS_TIME", "MKNOD", "NET_ADMIN", "SYS_PACCT", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_CONTROL", "AUDIT_READ", "PERFMON", "BPF", "SYS_PTRACE",
    ];

    /// <summary>Every capability the kernel knows (vsinit ignores numbers past its cap_last_cap).</summary>
    public static readonly IReadOnlyList<int> All = Enumerable.Range(0, 64).ToList();

    /// <summary>
    /// Taken from a user-namespaced guest as LXC's common.conf takes them (lxc.cap.drop): they only ever act on the
    /// host's own kernel (modules, raw I/O, the clock, security modules), so held inside a user namespace they do
    /// nothing but make the guest's systemd believe it may load modules, set the clock or scrub disks and start the
    /// units for it (modprobe@, systemd-modules-load, e2scrub_reap, timesyncd), which fail or idle and slow its boot.
    /// </summary>
    public static readonly IReadOnlyList<string> UserNamespaceDropped = ["SYS_MODULE", "SYS_RAWIO", "SYS_TIME", "MAC_OVERRIDE", "MAC_ADMIN"];

    /// <summary>What root in a user-namespaced guest keeps: everything but <see cref="UserNamespaceDropped"/>, since the
    /// rest acts only on what its user namespace owns.</summary>
    public static readonly IReadOnlyList<int> InUserNamespace = All.Except(UserNamespaceDropped.Select(n => ByName[n])).ToList();

    /// <summary>The capability numbers a privileged vserver keeps; SYS_ADMIN only when the guest is allowed it.</summary>
    public static IReadOnlyList<int> KeptFor(bool allowSysAdmin) =>
        ByName.Where(c => !AlwaysDropped.Contains(c.Key, StringComparer.OrdinalIgnoreCase) && (allowSysAdmin || c.Key != "SYS_ADMIN"))
            .Select(c => c.Value).Order().ToList();
}
