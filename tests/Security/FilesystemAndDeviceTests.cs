using System.Globalization;
using Vserver.IntegrationTests;
using static Vserver.SecurityTests.ProbeAssertions;

namespace Vserver.SecurityTests;

/// <summary>
/// Getting at the host's disk, devices, cgroup hierarchies, filesystems and agent from inside a vserver, and leaving
/// it through its root directory.
/// </summary>
public sealed class FilesystemAndDeviceTests(ProbeHost probe) : IClassFixture<ProbeHost>
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_device_node_for_the_host_disk_cannot_be_made(bool privileged)
    {
        var r = probe.InGuest(privileged, "mknod-disk", probe.DiskMajor, probe.DiskMinor).ShouldBeRefused();
        r.ShouldSay($"mknod disk b {probe.DiskMajor}:{probe.DiskMinor}", EPERM, Cap(privileged, "MKNOD"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_host_disk_cannot_be_mounted(bool privileged)
    {
        var r = probe.InGuest(privileged, "mount-disk", probe.RootDevice, probe.DiskMajor, probe.DiskMinor).ShouldBeRefused();
        // mount(2) checks the right to mount before it looks for the device, so even a missing node says EPERM:
        // a disk filesystem needs CAP_SYS_ADMIN in the host's user namespace.
        r.ShouldSay($"mount {probe.RootDevice}", EPERM, Cap(privileged, "SYS_ADMIN"));
        r.ShouldSay($"mount /proc/1/root{probe.RootDevice}", EPERM, Cap(privileged, "SYS_ADMIN"));
        r.ShouldSay("mknod disk b", EPERM, Cap(privileged, "MKNOD"));
        r.ShouldSay("fsopen(ext4) (new mount API)", ENOSYS, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Dev_kvm_mem_and_port_cannot_be_opened(bool privileged)
    {
        var r = probe.InGuest(privileged, "devices").ShouldBeRefused();
        foreach (var (name, numbers) in new[] { ("kvm", "c 10:232"), ("mem", "c 1:1"), ("port", "c 1:4") })
        {
            r.ShouldSay($"open /dev/{name}", ENOENT, "no device node");
            r.ShouldSay($"mknod {name} {numbers}", EPERM, Cap(privileged, "MKNOD"));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_cgroup_v1_release_agent_escape_fails(bool privileged)
    {
        var r = probe.InGuest(privileged, "release-agent").ShouldBeRefused();
        if (privileged)
        {
            r.ShouldSay("mount cgroup v1 memory:", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("mount cgroup v1 memory with release_agent=", EPERM, Cap(privileged, "SYS_ADMIN"));
            r.ShouldSay("unshare(CLONE_NEWUSER", EPERM, Seccomp);
        }
        else
        {
            // The vserver may mount its own cgroup namespace's view of a hierarchy, but: its root is the vserver's
            // cgroup, not the hierarchy's (so no release_agent), its files are host root's, and the kernel takes a
            // release_agent only from the host's user namespace. The same inside a fresh user+cgroup namespace.
            foreach (var where in new[] { "", "in it: " })
            {
                r.ShouldSay($"{where}mount cgroup v1 memory:", "allowed (rooted at the vserver's own cgroup)");
                r.ShouldSay($"{where}mount cgroup v1 memory with release_agent=", EINVAL,
                    "setting release_agent is refused outside the host's user namespace");
                r.ShouldSay($"{where}mount cgroup v1 none,name=probe", EPERM, Cap(privileged, "SYS_ADMIN"));
            }
            r.ShouldSay("unshare(CLONE_NEWUSER|CLONE_NEWNS|...)", "allowed");
            r.ShouldSay("open its release_agent for writing", ENOENT, "the mount's root is not the hierarchy's root");
            r.ShouldSay("open its notify_on_release for writing", EACCES, Unmapped);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Open_by_handle_at_cannot_reach_host_inodes(bool privileged)
    {
        // "Shocker": /dev/null is a bind mount of the host's devtmpfs, so a handle could name any inode of it.
        var r = probe.InGuest(privileged, "shocker").ShouldBeRefused();
        r.ShouldSay("open_by_handle_at(the host devtmpfs inode behind /dev/null)", EPERM, Seccomp);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Climbing_out_of_a_chroot_ends_at_the_vservers_root(bool privileged)
    {
        var r = probe.InGuest(privileged, "chroot", probe.Marker).ShouldBeRefused();
        r.ShouldSay("chroot into a jail", "allowed");
        r.ShouldSay("climb out with fchdir + ..", "stopped at the vserver's root", "not visible");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_agents_socket_is_out_of_reach(bool privileged)
    {
        var socket = probe.Host.Socket;
        var r = probe.InGuest(privileged, "agent-socket", socket).ShouldBeRefused();
        r.ShouldSay($"connect to {socket}", ENOENT, "does not exist in the vserver's mount namespace");
        r.ShouldSay($"connect to /proc/1/root{socket}", ENOENT);
        r.ShouldSay("/proc/net/unix does not list it");
    }

    // Once a hole (privileged vservers), closed since: /dev/null, zero, full, random, urandom and tty are bind mounts of
    // the host's own devtmpfs inodes, and so is the /dev/null over each masked /proc file, and root of a privileged
    // vserver is host root with CAP_CHOWN/CAP_FOWNER, so `chmod 0 /dev/null` in it changed the host's /dev/null. Now each
    // MS_BIND of a device is remounted read-only (native/init.c bind_device and apply_masks): reads and writes of the
    // device still work (special files skip the mount's write check), chmod/chown/utimes get EROFS. The probe only
    // re-applies the current mode.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_hosts_device_inodes_cannot_be_chmodded(bool privileged)
    {
        var r = probe.InGuest(privileged, "dev-metadata").ShouldBeRefused();
        foreach (var dev in new[] { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/proc/kallsyms" })
        {
            // The read-only bind stops it first for both; behind it, an unprivileged guest's root does not own the
            // host's inode (it could remount its own bind read-write and would get EPERM).
            r.ShouldSay($"chmod {dev}", EROFS, "read-only bind mount");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Files_a_vserver_writes_belong_to_its_own_ids(bool privileged)
    {
        var guest = ProbeHost.Guest(privileged);
        var wrote = probe.InGuest(privileged, "write-file", "/written-by-probe");
        wrote.Code.ShouldBe(0, wrote.ToString());
        wrote.Line.ShouldContain("wrote /written-by-probe as uid 0", Case.Sensitive, wrote.ToString());
        var file = Path.Combine(probe.Host.GuestDir(guest), "upper", "written-by-probe");
        File.Exists(file).ShouldBeTrue("what the vserver writes lands in its own upper layer");
        var owner = long.Parse(TestHost.Run("stat", "-c", "%u", file).ShouldSucceed().Stdout.Trim(), CultureInfo.InvariantCulture);
        if (privileged)
        {
            owner.ShouldBe(0, "root of a privileged vserver is host root");
        }
        else
        {
            var hostBase = probe.HostIdBase(guest);
            owner.ShouldBe(hostBase, "root inside is the first id of the vserver's host range");
            owner.ShouldBeGreaterThanOrEqualTo(65536);
        }
        File.Exists(Path.Combine(probe.Host.Root, "images", "busybox", "rootfs", "written-by-probe")).ShouldBeFalse("the image stays untouched");
    }
}
