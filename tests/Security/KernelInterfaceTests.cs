using static Vserver.SecurityTests.ProbeAssertions;

namespace Vserver.SecurityTests;

/// <summary>
/// Reaching the shared kernel from inside a vserver: its trigger files, memory, symbols and tunables, modules, the
/// clock, BPF, perf and the keyring. Each attempt runs in a user-namespaced vserver and in a --privileged one.
/// </summary>
public sealed class KernelInterfaceTests(ProbeHost probe) : IClassFixture<ProbeHost>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Writing_proc_sysrq_trigger_is_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "sysrq").ShouldBeRefused();
        if (File.Exists("/proc/sysrq-trigger"))
        {
            // The vserver's /proc/sysrq-trigger is /dev/null; the real one (a fresh procfs, the mask removed) is host root's.
            r.ShouldSay("open /proc/sysrq-trigger for writing", "masked");
            if (!privileged) r.ShouldSay("open sysrq-trigger of a fresh procfs for writing", EACCES, Unmapped);
        }
        else
        {
            // This kernel has no sysrq-trigger (CONFIG_MAGIC_SYSRQ off): there is nothing to reach, and no mask to mount.
            r.ShouldSay("open /proc/sysrq-trigger for writing", ENOENT);
            if (!privileged) r.ShouldSay("open sysrq-trigger of a fresh procfs for writing", ENOENT);
        }
        if (privileged) r.ShouldSay("mount a fresh procfs", EPERM, Cap(privileged, "SYS_ADMIN"));
        else r.ShouldSay("mount a fresh procfs", "allowed (it shows the pid namespace of the vserver)");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reading_proc_kcore_is_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "kcore").ShouldBeRefused();
        if (File.Exists("/proc/kcore"))
        {
            r.ShouldSay("read /proc/kcore:", "masked");
            if (!privileged) r.ShouldSay("read kcore of a fresh procfs", EACCES, Unmapped);
        }
        else
        {
            // CONFIG_PROC_KCORE is off here: the kernel offers no such file to anyone.
            r.ShouldSay("read /proc/kcore:", ENOENT);
            if (!privileged) r.ShouldSay("read kcore of a fresh procfs", ENOENT);
        }
        if (privileged) r.ShouldSay("mount a fresh procfs", EPERM, Cap(privileged, "SYS_ADMIN"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kernel_addresses_in_proc_kallsyms_stay_hidden(bool privileged)
    {
        var r = probe.InGuest(privileged, "kallsyms").ShouldBeRefused();
        r.ShouldSay("read /proc/kallsyms:", "masked (/dev/null is bound over it");
        if (privileged)
        {
            r.ShouldSay("unmount the mask on /proc/kallsyms", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("mount a fresh procfs", EPERM, Cap(privileged, "SYS_ADMIN"));
        }
        else
        {
            // Root of a user-namespaced vserver can take the mask off (it made that mount itself), but the kernel
            // prints addresses only for CAP_SYSLOG in the host's user namespace.
            r.ShouldSay("read /proc/kallsyms with the mask gone", "addresses shown as zero", Cap(privileged, "SYSLOG"));
            r.ShouldSay("read kallsyms of a fresh procfs", "addresses shown as zero", Cap(privileged, "SYSLOG"));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void What_the_proc_masks_hide_stays_unreadable_with_the_masks_gone(bool privileged)
    {
        var r = probe.InGuest(privileged, "unmask-proc").ShouldBeRefused();
        if (privileged)
        {
            r.ShouldSay("unmount the mask on /proc/timer_list", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("mount a fresh procfs", EPERM);
        }
        else
        {
            // The masks are not locked in a user-namespaced vserver; the files under them hold by themselves.
            r.ShouldSay("unmount the mask on /proc/timer_list", "allowed");
            r.ShouldSay("read /proc/timer_list", EACCES, Unmapped);
            r.ShouldSay("read /proc/key-users", "empty (the kernel shows nothing of other user namespaces)");
            r.ShouldSay("read timer_list of a fresh procfs", EACCES, Unmapped);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kernel_tunables_under_proc_sys_cannot_be_opened_for_writing(bool privileged)
    {
        var r = probe.InGuest(privileged, "sysctl").ShouldBeRefused();
        if (privileged)
        {
            // Host root passes the permission check; the read-only mount stops it, and it cannot be remounted.
            r.ShouldSay("open /proc/sys/kernel/core_pattern for writing", EROFS, "read-only mount");
            r.ShouldSay("open /proc/sys/vm/drop_caches for writing", EROFS, "read-only mount");
            r.ShouldSay("bind-remount /proc/sys read-write", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("mount a fresh procfs", EPERM, Cap(privileged, "SYS_ADMIN"));
        }
        else
        {
            // Before the read-only mount gets a say: the tunables belong to host root, unmapped in the vserver.
            r.ShouldSay("open /proc/sys/kernel/core_pattern for writing", EACCES, Unmapped);
            r.ShouldSay("open /proc/sys/vm/drop_caches for writing", EACCES, Unmapped);
            r.ShouldSay("bind-remount /proc/sys read-write", "allowed (only this mount's flag)");
            r.ShouldSay("open sys/kernel/core_pattern of a fresh procfs for writing", EACCES, Unmapped);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sys_cannot_be_made_writable(bool privileged)
    {
        var r = probe.InGuest(privileged, "sys-rw").ShouldBeRefused();
        r.ShouldSay("/sys is a read-only mount");
        if (privileged)
        {
            r.ShouldSay("open /sys/", EROFS, "read-only mount");
            r.ShouldSay("remount the sysfs superblock read-write", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("bind-remount /sys read-write", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("mount a fresh sysfs", EPERM, Cap(privileged, "SYS_ADMIN"));
        }
        else
        {
            // The mount's own read-only flag can go, the superblock's cannot, and the attributes are host root's.
            r.ShouldSay("open /sys/", EACCES, Unmapped);
            r.ShouldSay("remount the sysfs superblock read-write", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("bind-remount /sys read-write", "allowed (only this mount's flag)");
            r.ShouldSay("mount a fresh sysfs", EPERM, "its network namespace belongs to the host's user namespace");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Loading_a_kernel_module_is_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "module").ShouldBeRefused();
        r.ShouldSay("init_module", EPERM, Seccomp);
        r.ShouldSay("finit_module", EPERM, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Setting_the_clock_is_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "clock").ShouldBeRefused();
        r.ShouldSay("clock_settime(CLOCK_REALTIME)", EPERM, Seccomp);
        r.ShouldSay("settimeofday", EPERM, Seccomp);
        r.ShouldSay("clock_adjtime(read)", EPERM, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Loading_a_bpf_program_is_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "bpf").ShouldBeRefused();
        r.ShouldSay("bpf(BPF_PROG_LOAD socket filter)", EPERM, Seccomp);
        r.ShouldSay("bpf(BPF_MAP_CREATE)", EPERM, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Perf_events_are_refused(bool privileged)
    {
        var r = probe.InGuest(privileged, "perf").ShouldBeRefused();
        r.ShouldSay("perf_event_open(this process)", EPERM, Seccomp);
        r.ShouldSay("perf_event_open(every process on cpu 0)", EPERM, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_kernel_keyring_is_out_of_reach(bool privileged)
    {
        var r = probe.InGuest(privileged, "keyctl").ShouldBeRefused();
        r.ShouldSay("keyctl(KEYCTL_GET_KEYRING_ID, user keyring)", EPERM, Seccomp);
        r.ShouldSay("add_key(user, process keyring)", EPERM, Seccomp);
        r.ShouldSay("request_key(user)", EPERM, Seccomp);
    }
}
