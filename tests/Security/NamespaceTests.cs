using System.Text.RegularExpressions;
using Vserver.IntegrationTests;
using static Vserver.SecurityTests.ProbeAssertions;

namespace Vserver.SecurityTests;

/// <summary>
/// Seeing or touching what is outside the vserver's namespaces: host processes, the host's UTS namespace, ids beyond
/// its range, the capabilities of a new user namespace, and the moments the agent itself reaches into the vserver.
/// </summary>
public sealed partial class NamespaceTests(ProbeHost probe) : IClassFixture<ProbeHost>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Host_processes_are_neither_visible_nor_signallable(bool privileged)
    {
        var pid = probe.AgentPid;
        var r = probe.InGuest(privileged, "host-pids", pid, probe.AgentComm).ShouldBeRefused();
        r.ShouldSay($"find pid {pid} in /proc", ENOENT, "pid namespace");
        r.ShouldSay($"kill({pid}, 0)", ESRCH, "pid namespace");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_fresh_procfs_shows_no_host_processes(bool privileged)
    {
        var pid = probe.AgentPid;
        var r = probe.InGuest(privileged, "proc-mount", pid, probe.AgentComm).ShouldBeRefused();
        if (privileged)
        {
            r.ShouldSay("mount a fresh procfs", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("unshare(CLONE_NEWUSER", EPERM, Seccomp);
        }
        else
        {
            // Root of the vserver's user namespace owns its pid namespace and may mount a procfs: of that namespace.
            r.ShouldSay("mount a fresh procfs: allowed");
            r.ShouldSay($"find pid {pid} in the fresh procfs", ENOENT, "pid namespace");
            // From a nested user namespace not even that: the pid namespace is not its own.
            r.ShouldSay("mount a fresh procfs: Operation not permitted", EPERM, Cap(privileged, "SYS_ADMIN"));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_host_process_cannot_be_ptraced(bool privileged)
    {
        var pid = probe.AgentPid;
        var r = probe.InGuest(privileged, "ptrace", pid).ShouldBeRefused();
        r.ShouldSay($"ptrace(PTRACE_SEIZE, {pid})", ESRCH, "pid namespace");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_new_user_namespace_regains_no_power_over_the_host(bool privileged)
    {
        var r = probe.InGuest(privileged, "userns", probe.RootDevice, probe.DiskMajor, probe.DiskMinor).ShouldBeRefused();
        if (privileged)
        {
            // Host root with a reduced set must not trade it for a full set in a user namespace of its own.
            r.ShouldSay("unshare(CLONE_NEWUSER", EPERM, Seccomp);
            r.ShouldSay("clone(CLONE_NEWUSER)", EPERM, Seccomp);
            r.ShouldSay("clone3(CLONE_NEWUSER)", ENOSYS, Seccomp);
        }
        else
        {
            // Allowed, and root of it has every capability, but only over what that namespace owns.
            r.ShouldSay("unshare(CLONE_NEWUSER|CLONE_NEWNS|...)", "allowed");
            r.ShouldSay("root of a new user namespace with CapEff full");
            r.ShouldSay("open /proc/sys/kernel/core_pattern for writing", EACCES, Unmapped);
            r.ShouldSay("unmount /proc/sys", EINVAL, "mounts from the outer namespace are locked");
            r.ShouldSay("sethostname", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("settimeofday", EPERM, Seccomp);
            r.ShouldSay("mknod disk b", EPERM, Cap(privileged, "MKNOD"));
            r.ShouldSay($"mount {probe.RootDevice}", EPERM, Cap(privileged, "SYS_ADMIN"));
            if (File.Exists("/proc/sysrq-trigger")) r.ShouldSay("open /proc/sysrq-trigger for writing", "masked");
            else r.ShouldSay("open /proc/sysrq-trigger for writing", ENOENT);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_id_mapping_cannot_be_widened(bool privileged)
    {
        // 65536: the first id past the 65536 a user-namespaced vserver has.
        var r = probe.InGuest(privileged, "uid-map", "65536").ShouldBeRefused();
        r.ShouldSay("rewrite /proc/self/uid_map to 0 0 4294967295", EPERM, "written once");
        if (privileged) r.ShouldSay("unshare(CLONE_NEWUSER)", EPERM, Seccomp);
        else
        {
            // The same write works for the last id inside the range: what stops it is the range, not the right to map.
            r.ShouldSay("map uid 0 of a new user namespace to id 65535 (the last inside)", "allowed");
            r.ShouldSay("map uid 0 of a new user namespace to outside id 65536", EPERM, "not mapped into the vserver's user namespace");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Setting_the_hostname_leaves_the_hosts_alone(bool privileged)
    {
        var hostname = File.ReadAllText("/proc/sys/kernel/hostname").Trim();
        var r = probe.InGuest(privileged, "hostname", probe.HostUts).ShouldBeRefused();
        if (privileged) r.ShouldSay("sethostname (own UTS namespace", EPERM, Cap(privileged, "SYS_ADMIN"));
        else r.ShouldSay("sethostname: allowed in its own UTS namespace");
        File.ReadAllText("/proc/sys/kernel/hostname").Trim().ShouldBe(hostname);
        var guest = ProbeHost.Guest(privileged);
        probe.Host.Vsctl("exec", guest, "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe(guest, "the probe puts the vserver's name back");
    }

    // Once a hole (privileged vservers), closed since: `vsctl exec` forks its command into the vserver's pid namespace
    // while the process is still in the host's mount namespace (native/exec.c cmd_exec: setns(pid), fork; exec_child
    // joins mnt a moment later). Root of a privileged vserver is host root, and with CAP_SYS_PTRACE the kernel's ptrace
    // access check let it open /proc/PID/root of that process in the window and keep the host's / for good. SYS_PTRACE
    // is now in Capabilities.AlwaysDropped, so the same race gets EACCES; this test runs the race and counts them.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_host_root_cannot_be_grabbed_from_an_entering_exec(bool privileged)
    {
        var guest = ProbeHost.Guest(privileged);
        var watcher = Task.Run(() => probe.InGuest(privileged, "exec-race", probe.Marker, "5"), TestContext.Current.CancellationToken);
        await Task.Delay(800, TestContext.Current.CancellationToken);
        for (var i = 0; i < 8 && !watcher.IsCompleted; i++) probe.Host.Vsctl("exec", guest, "--", "true").ShouldSucceed();
        var r = (await watcher).ShouldBeRefused();
        var watched = RaceCounts().Match(r.Line);
        watched.Success.ShouldBeTrue(r.ToString());
        int.Parse(watched.Groups["pids"].Value, System.Globalization.CultureInfo.InvariantCulture)
            .ShouldBeGreaterThan(0, $"the race was never run: no exec entered while the probe watched\n{r}");
        // The entering process is still host root (outside the vserver's user namespace) until it joins it.
        int.Parse(watched.Groups["eacces"].Value, System.Globalization.CultureInfo.InvariantCulture)
            .ShouldBeGreaterThan(0, $"the probe never caught an exec in the window\n{r}");
        r.ShouldSay("reach the host's vsinit through /proc/PID/exe", EACCES, "ptrace access check");
    }

    [GeneratedRegex(@"watched (?<pids>\d+) new pids .*gave EACCES (?<eacces>\d+) times \(ptrace access check\)")]
    private static partial Regex RaceCounts();

    // Once a hole (user-namespaced vservers), closed since: for `vsctl exec -t` (and `vsctl enter`) the agent opens
    // /proc/INIT/root/dev/pts/ptmx as host root (PtyPair.OpenInGuest). Root of a user-namespaced vserver may unmount its
    // /dev/pts and put a symlink there; resolved against the agent's root, it made the agent open a host path of the
    // vserver's choosing, O_RDWR, and the error of the ioctl that followed told the vserver whether that path exists. The
    // agent now opens it with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) relative to
    // /proc/INIT/root and requires a character device 5:2 before any ioctl; this test lays the trap and watches the host file.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_terminal_for_exec_never_opens_a_host_file_the_vserver_points_at(bool privileged)
    {
        var guest = privileged ? "pty-priv" : "pty-unpriv";
        probe.CreateGuest(guest, privileged);
        var target = Path.Combine(probe.Host.Dir, $"pty-target-{guest}");
        await File.WriteAllTextAsync(target, "a host file\n", TestContext.Current.CancellationToken);

        var trap = probe.InGuest(guest, "pty-trap", target).ShouldBeRefused();
        if (privileged)
        {
            trap.ShouldSay("unmount /dev/pts", EPERM, Cap(privileged, "SYS_ADMIN"));
            trap.ShouldSay("move /dev/pts aside", EBUSY, "it is a mount point");
        }
        using var watcher = probe.StartOnHost("watch-open", target, "3000");
        (await watcher.StandardError.ReadLineAsync(TestContext.Current.CancellationToken)).ShouldBe("watching");
        var exec = probe.Host.VsctlWith("", "exec", "-t", guest, "--", "true");
        var output = await watcher.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await watcher.WaitForExitAsync(TestContext.Current.CancellationToken);
        var opened = ProbeResult.From(new CommandResult(watcher.ExitCode, output, ""), $"watch-open {target} on the host");
        opened.ShouldBeRefused().ShouldSay("nobody opened the host file");
        if (privileged) exec.ShouldSucceed();
    }
}
