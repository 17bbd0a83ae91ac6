/*
 * vsinit - the single-threaded part of starting and entering a vserver guest.
 *
 * The agent is a multi-threaded .NET process, and clone/unshare/setns/
 * pivot_root/capset must happen in a single-threaded process between clone
 * and exec, so that work lives in this small program (the role nsexec.c plays
 * for runc).  C# decides everything and hands vsinit a complete spec file;
 * vsinit makes no policy: it applies the spec in a fixed order and reports
 * the first failure with the operation, the path and the errno.
 *
 * Every subcommand, what it does, and who runs it (always through its method of the C# class Vsinit,
 * src/Vserver.Isolation/Guests/Vsinit.cs):
 *
 *   start SPEC          be a guest's monitor, clone its init (and answer its sysinfo(2)): Start, by VserverDriver.Start
 *   exec SPEC           run a command inside a running guest: Exec, by VserverDriver.Exec (vsctl exec, vsctl enter)
 *   mount-root SPEC     attach a vserver's overlay (image idmapped to its range) at a path: MountRoot, by PromotionRoot
 *   grab-root PID PATH  attach at PATH a clone of a running vserver's root mount: GrabRoot, by PromotionRoot.Grab
 *   userns-exec SPEC    run a tool as root of a user namespace with a vserver's id map: (Spawn)UsernsExec, by PromotionRoot
 *
 * The parts (vsinit.h declares what they share):
 *
 *   vsinit.c    this: main, dispatching the subcommands
 *   report.c    failure reporting; allocation and path helpers
 *   spec.c      the spec file: its format and parser
 *   process.c   process helpers shared by the subcommands: fds, signals, caps, seccomp, exec, id maps
 *   monitor.c   start: the monitor, and the mounts it prepares as host root
 *   init.c      start: the guest's init, from clone to exec
 *   sysinfo.c   start: the monitor answering the guest's sysinfo(2) (seccomp user notification)
 *   exec.c      exec
 *   rootfs.c    mount-root, grab-root, userns-exec: a vserver's root outside a vserver
 */

#include "vsinit.h"

/* Whatever the caller left behind must not leak into guests or break us:
 * closed 0-2 would make a later open() land on a stdio number, an ignored
 * SIGCHLD would make waitpid fail with ECHILD, a blocked mask would be
 * inherited by every child. */
static void sanitize_process(void)
{
	struct sigaction sa;
	sigset_t none;
	int fd;

	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	sanitize_process();
	if (!strcmp(cmd, "start")) {
		report_style = REPORT_MONITOR;
		fail_code = 1;
	} else if (!strcmp(cmd, "exec")) {
		fail_code = 125;
	}
	if (!strcmp(cmd, "grab-root") && argc == 4)
		return cmd_grab_root(argv[2], argv[3]);
	if (argc != 3 || (strcmp(cmd, "start") && strcmp(cmd, "exec")
			  && strcmp(cmd, "mount-root") && strcmp(cmd, "userns-exec")))
		die(0, "usage: vsinit start SPECFILE | vsinit exec SPECFILE"
		       " | vsinit mount-root SPECFILE | vsinit userns-exec SPECFILE | vsinit grab-root PID PATH");
	/* Read while /proc is still the host's. */
	cap_last = read_cap_last_cap();
	if (!strcmp(cmd, "start"))
		return cmd_start(argv[2]);
	if (!strcmp(cmd, "exec"))
		return cmd_exec(argv[2]);
	if (!strcmp(cmd, "mount-root"))
		return cmd_mount_root(argv[2]);
	return cmd_userns_exec(argv[2]);
}
