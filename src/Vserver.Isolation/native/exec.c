/*
 * vsinit exec: runs a command inside a running guest.  The parent stays on
 * the host, forwards signals and reports the command's exit; the child joins
 * the guest's cgroups and namespaces and execs.
 */

#include "vsinit.h"

static volatile sig_atomic_t forward_pid;
static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT,
					 SIGUSR1, SIGUSR2, SIGWINCH };

static void forward_signal(int sig)
{
	int saved = errno;

	if (forward_pid > 0)
		kill((pid_t)forward_pid, sig);
	errno = saved;
}

enum { NS_MNT, NS_IPC, NS_UTS, NS_NET, NS_PID, NS_CGROUP, NS_USER, NS_COUNT };
static const char *const ns_names[NS_COUNT] = { "mnt", "ipc", "uts", "net", "pid", "cgroup", "user" };

static void setns_or_die(int fd, int type, pid_t target, int which)
{
	if (setns(fd, type) < 0)
		die(errno, "setns /proc/%d/ns/%s", (int)target, ns_names[which]);
}

/*
 * Only the child joins the guest's cgroups and namespaces (the parent just
 * sets pid_for_children), so the waiting parent is not charged to, frozen
 * with, or killed along with the guest and can always report the command's
 * fate.  The cgroup.procs files are opened by the parent, because after
 * setns(mnt) the host paths are gone.
 */
static void __attribute__((noreturn)) exec_child(const struct spec *s, const int *nsfd,
						const int *cgfd, int notify_fd, int err_r, int err_w)
{
	size_t i;
	int listener;

	report_style = REPORT_PIPE;
	report_fd = err_w;
	fail_code = 125;
	close(err_r);

	for (i = 0; i < s->cgroup.n; i++)
		join_cgroup_fd(cgfd[i], s->cgroup.v[i]);
	setns_or_die(nsfd[NS_CGROUP], CLONE_NEWCGROUP, s->target_pid, NS_CGROUP);
	setns_or_die(nsfd[NS_IPC], CLONE_NEWIPC, s->target_pid, NS_IPC);
	setns_or_die(nsfd[NS_UTS], CLONE_NEWUTS, s->target_pid, NS_UTS);
	setns_or_die(nsfd[NS_NET], CLONE_NEWNET, s->target_pid, NS_NET);
	/* It also moves root and cwd into the guest. */
	setns_or_die(nsfd[NS_MNT], CLONE_NEWNS, s->target_pid, NS_MNT);
	/* Last, since it gives up the host root's powers the joins above need
	 * (the guest's network namespace belongs to the host's user namespace). */
	if (nsfd[NS_USER] >= 0) {
		setns_or_die(nsfd[NS_USER], CLONE_NEWUSER, s->target_pid, NS_USER);
		become_userns_root();
	}

	if (s->tty) {
		if (setsid() < 0)
			die(errno, "setsid");
		if (ioctl(0, TIOCSCTTY, 0) < 0)
			die(errno, "ioctl TIOCSCTTY on stdin");
	}
	if (chdir(s->cwd) < 0)
		die(errno, "chdir %s", s->cwd);
	listener = load_filter(s, notify_fd >= 0);
	if (listener >= 0) {
		/* Best effort, like the connect (see connect_notify_socket); the
		 * socket is non-blocking, so this cannot hang either. */
		(void)send_fds(notify_fd, &listener, 1);
		close(listener);
	}
	if (notify_fd >= 0)
		close(notify_fd);
	drop_caps(s->cap_keep);
	set_no_new_privs(s->no_new_privs);
	cloexec_fds_from_3();
	reset_signals();
	exec_or_die(s);
}

/*
 * The monitor answers the sysinfo(2) calls of exec'd commands too, and of
 * whatever they leave running, through the listener the child sends over
 * this connection.  Made here, on the host, since the child soon sees only
 * the guest's files.  Best effort: when the monitor is unreachable the
 * command still runs, and its sysinfo(2) calls fail with ENOSYS (the kernel's
 * answer for SECCOMP_RET_USER_NOTIF when the filter has no listener).
 * Non-blocking: a unix stream connect waits while the listen backlog is full,
 * and exec must not hang on a gone or swamped monitor.
 */
static int connect_notify_socket(const char *path)
{
	struct sockaddr_un addr;
	int fd;

	if (!path || unix_address(&addr, path) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int same_namespace(int fd, const char *path)
{
	struct stat a, b;

	if (fstat(fd, &a) < 0)
		die(errno, "stat namespace fd");
	if (stat(path, &b) < 0)
		die(errno, "stat %s", path);
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int cmd_exec(const char *specpath)
{
	struct spec s;
	struct sigaction sa;
	sigset_t fwd, none;
	char path[64], report[4096];
	int nsfd[NS_COUNT], *cgfd, pipefd[2], status, code = 125, notify_fd;
	size_t i;
	pid_t pid;

	report_style = REPORT_STDERR;
	fail_code = 125;
	parse_spec(specpath, &s);
	require(specpath, s.target_pid > 0, "target_pid");
	require(specpath, s.arg.n > 0, "arg");

	/* All namespace fds before any setns: /proc/PID is resolved in our own
	 * mount and pid namespace, which setns would change. */
	for (i = 0; i < NS_COUNT; i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)s.target_pid, ns_names[i]);
		nsfd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd[i] < 0)
			die(errno, "open %s", path);
	}
	/* A privileged guest shares our user namespace; setns into it fails. */
	if (same_namespace(nsfd[NS_USER], "/proc/self/ns/user")) {
		close(nsfd[NS_USER]);
		nsfd[NS_USER] = -1;
	}
	cgfd = xmalloc((s.cgroup.n + 1) * sizeof *cgfd);
	for (i = 0; i < s.cgroup.n; i++) {
		cgfd[i] = open(s.cgroup.v[i], O_WRONLY | O_CLOEXEC);
		if (cgfd[i] < 0)
			die(errno, "open cgroup %s", s.cgroup.v[i]);
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die(errno, "pipe");
	notify_fd = s.filter ? connect_notify_socket(s.notify_socket) : -1;

	/* Signals arriving before the child exists stay pending and are
	 * forwarded once the handlers are in place. */
	sigemptyset(&fwd);
	for (i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
		sigaddset(&fwd, forwarded_signals[i]);
	sigprocmask(SIG_BLOCK, &fwd, NULL);

	/* The child appears in the guest's pid namespace before it has joined the
	 * mount namespace; non-dumpable (inherited by fork, reset by execve), its
	 * /proc/PID/root and fds are out of the guest's reach in that window. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		die(errno, "prctl PR_SET_DUMPABLE");
	setns_or_die(nsfd[NS_PID], CLONE_NEWPID, s.target_pid, NS_PID);
	pid = fork();
	if (pid < 0)
		die(errno, "fork into pid namespace of %d", (int)s.target_pid);
	if (pid == 0)
		exec_child(&s, nsfd, cgfd, notify_fd, pipefd[0], pipefd[1]);

	close(pipefd[1]);
	if (notify_fd >= 0)
		close(notify_fd);
	for (i = 0; i < NS_COUNT; i++)
		if (nsfd[i] >= 0)
			close(nsfd[i]);
	for (i = 0; i < s.cgroup.n; i++)
		close(cgfd[i]);
	if (read_report(pipefd[0], report, sizeof report) > 0) {
		const char *msg = split_report(report, &code);
		reap(pid);
		report_and_exit(msg, code);
	}
	close(pipefd[0]);

	forward_pid = pid;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
		sigaction(forwarded_signals[i], &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			die(errno, "waitpid %d", (int)pid);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
