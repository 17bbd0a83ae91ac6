using Shouldly;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Processes;
using Xunit;

namespace Vserver.Tests.Guests;

/// <summary>
/// The parent side of vsinit, with a stand-in `vsinit` that records its arguments and answers as the real one does
/// (native/report.c): each subcommand's command line, and a failure turned into a <see cref="VsinitException"/> with the
/// subcommand, its path, vsinit's report, the errno and the exit code. The real vsinit is run by the integration tests.
/// </summary>
public sealed class VsinitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsvsinit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A `vsinit` that writes its arguments, one a line, to args, then runs <paramref name="body"/>.</summary>
    private string FakeVsinit(string body = "exit 0")
    {
        var path = Path.Combine(_dir, "vsinit");
        File.WriteAllText(path, $"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{_dir}/args'\n{body}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private string[] Args => File.ReadAllLines(Path.Combine(_dir, "args"));

    [Fact]
    public void Each_subcommand_is_run_with_its_arguments()
    {
        var vsinit = FakeVsinit();

        Vsinit.MountRoot(vsinit, "/run/vserver/guests/a/mount-root.spec");
        Args.ShouldBe(["mount-root", "/run/vserver/guests/a/mount-root.spec"]);
        Vsinit.GrabRoot(vsinit, 4242, "/var/lib/vserver/guests/a/rootfs");
        Args.ShouldBe(["grab-root", "4242", "/var/lib/vserver/guests/a/rootfs"]);
        Vsinit.UsernsExec(vsinit, "/run/vserver/guests/a/mkfs.spec");
        Args.ShouldBe(["userns-exec", "/run/vserver/guests/a/mkfs.spec"]);
    }

    [Fact]
    public void A_failure_says_the_subcommand_the_path_and_vsinits_report_with_its_errno_and_exit_code()
    {
        var vsinit = FakeVsinit("echo 'vsinit: attach overlay on /g/rootfs: No such file or directory (ENOENT)' >&2; exit 1");

        var e = Should.Throw<VsinitException>(() => Vsinit.MountRoot(vsinit, "/run/g/mount-root.spec"));

        e.Message.ShouldBe("vsinit mount-root /run/g/mount-root.spec: attach overlay on /g/rootfs: No such file or directory (ENOENT)");
        e.Subcommand.ShouldBe("mount-root");
        e.Path.ShouldBe("/run/g/mount-root.spec");
        e.Reason.ShouldBe("attach overlay on /g/rootfs: No such file or directory (ENOENT)");
        e.Errno.ShouldBe(2);
        e.ExitCode.ShouldBe(1);
        e.ShouldBeAssignableTo<HostProgramException>("callers that catch a failed host tool catch this too");
    }

    [Fact]
    public void The_path_of_grab_root_is_the_one_it_acts_on_and_a_report_without_an_errno_names_none()
    {
        var vsinit = FakeVsinit("echo \"vsinit: grab-root: 'x' is not a process id\" >&2; exit 1");
        var grab = Should.Throw<VsinitException>(() => Vsinit.GrabRoot(vsinit, 7, "/t"));
        (grab.Subcommand, grab.Path, grab.Errno).ShouldBe(("grab-root", "/t", (int?)null));
    }

    [Fact]
    public void A_tool_that_userns_exec_ran_fails_with_its_own_last_line_and_exit_code()
    {
        var vsinit = FakeVsinit("echo 'mke2fs 1.47.0' >&2; echo 'mkfs.ext4: Could not allocate block in ext2 filesystem' >&2; exit 1");

        var e = Should.Throw<VsinitException>(() => Vsinit.UsernsExec(vsinit, "/run/g/mkfs.spec"));

        e.Message.ShouldBe("vsinit userns-exec /run/g/mkfs.spec: mkfs.ext4: Could not allocate block in ext2 filesystem");
        e.Errno.ShouldBeNull();
        e.ExitCode.ShouldBe(1);
    }

    [Fact]
    public void A_vsinit_that_says_nothing_fails_with_its_exit_code()
    {
        var e = Should.Throw<VsinitException>(() => Vsinit.MountRoot(FakeVsinit("exit 3"), "/n"));

        e.Message.ShouldBe("vsinit mount-root /n: exit code 3");
        e.ExitCode.ShouldBe(3);
    }

    [Fact]
    public void A_start_that_fails_is_a_guest_start_exception_whose_message_is_vsinits_report()
    {
        var vsinit = FakeVsinit("echo 'error exec /sbin/init: No such file or directory (ENOENT)'; exit 1");

        var e = Should.Throw<GuestStartException>(() => Vsinit.Start(vsinit, "/run/g/vsinit.spec"));

        e.Message.ShouldBe("exec /sbin/init: No such file or directory (ENOENT)");
        (e.Subcommand, e.Path, e.Errno, e.ExitCode).ShouldBe(("start", "/run/g/vsinit.spec", (int?)2, 1));
        Args.ShouldBe(["start", "/run/g/vsinit.spec"]);
    }

    [Fact]
    public void A_start_answers_the_pid_of_the_guests_init()
    {
        var started = Vsinit.Start(FakeVsinit("echo 'started 4242'"), "/run/g/vsinit.spec");

        started.InitPid.ShouldBe(4242);
        started.Monitor.Dispose();
    }
}
