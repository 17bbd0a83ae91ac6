/*
 * vsinit exec: runs a command inside a running guest.  The parent stays on
 * the host, forwards signals and reports the command's exit; the child joins
 * the guest's cgroups and namespaces, starts a session of its own and execs.
 *
 * SIGHUP to the parent is not forwarded: it means the client went away, and
 * the parent ends the command's whole session as a hung-up terminal would
 * (SIGHUP and SIGCONT to each process of it, SIGKILL to what is left after
 * the spec's hangup_grace_ms), then exits once none of it is left.
 */

#include "vsinit.h"

#include <time.h>

static volatile sig_atomic_t forward_pid;
static const int forwarded_signals[] = { SIGINT, SIGTERM, SIGQUIT,
					 SIGUSR1, SIGUSR2, SIGWINCH };

/* After SIGKILL, how long a process of the session may take to go (one in
 * uninterruptible sleep may take longer; exec then stops waiting for it). */
#define HANGUP_KILL_WAIT_MS 2000
#define HANGUP_POLL_MS 20

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

	/* A session of its own, with or without a terminal: its id is how the
	 * parent finds everything the command started when it must end it. */
	if (setsid() < 0)
		die(errno, "setsid");
	if (s->tty && ioctl(0, TIOCSCTTY, 0) < 0)
		die(errno, "ioctl TIOCSCTTY on stdin");
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

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Sends sig to every live process of session sid (the host's /proc: this
 * parent never joined the guest's pid namespace) and answers how many there
 * were.  Zombies are skipped: they are gone already, and the guest's init
 * reaps them.  A process that setsid()s again has left the session, as a
 * daemon leaves a terminal's.
 */
static int signal_session(pid_t sid, int sig)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (!proc)
		die(errno, "open /proc");
	while ((e = readdir(proc))) {
		char path[300], stat[512], *p, state;
		int pid, ppid, pgrp, session;
		ssize_t len;
		int fd;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, stat, sizeof stat - 1);
		close(fd);
		if (len <= 0)
			continue;
		stat[len] = 0;
		/* The command name may hold spaces and parentheses: parse after the last ')'. */
		p = strrchr(stat, ')');
		if (!p || sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
			continue;
		if (session != sid || state == 'Z' || state == 'X')
			continue;
		pid = atoi(e->d_name);
		if (kill(pid, sig) == 0)
			n++;
	}
	closedir(proc);
	return n;
}

/*
 * The client went away: end the command's session and answer the command's
 * exit code.  The leader is reaped as soon as it ends (no zombie in the guest
 * while the rest of its session winds down); its pid stays reserved as the
 * session id while any member lives, so the scan cannot hit a stranger.
 */
static int hang_up(pid_t sid, unsigned long grace_ms)
{
	long long deadline = now_ms() + (long long)grace_ms, killed_at = 0;
	int status, code = -1, left;
	struct timespec pause = { 0, HANGUP_POLL_MS * 1000000L };

	signal_session(sid, SIGHUP);
	signal_session(sid, SIGCONT);
	for (;;) {
		if (code < 0 && waitpid(sid, &status, WNOHANG) == sid)
			code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
		left = signal_session(sid, 0);
		if (left == 0 && code >= 0)
			return code;
		if (!killed_at && now_ms() >= deadline) {
			signal_session(sid, SIGKILL);
			killed_at = now_ms();
		}
		if (killed_at && now_ms() - killed_at > HANGUP_KILL_WAIT_MS)
			return code >= 0 ? code : 128 + SIGKILL;
		nanosleep(&pause, NULL);
	}
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
	sigset_t fwd, waited;
	char path[64], report[4096];
	int nsfd[NS_COUNT], *cgfd, pipefd[2], status, code = 125, notify_fd;
	size_t i;
	pid_t pid;

	report_style = REPORT_STDERR;
	fail_code = 125;
	parse_spec(specpath, &s);
	require(specpath, s.target_pid > 0, "target_pid");
	require(specpath, s.arg.n > 0, "arg");
	require(specpath, s.have_hangup_grace, "hangup_grace_ms");

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
	/* SIGHUP and SIGCHLD stay blocked: the wait below takes them with
	 * sigwaitinfo, so a hangup cannot slip in between two checks. */
	sigemptyset(&waited);
	sigaddset(&waited, SIGHUP);
	sigaddset(&waited, SIGCHLD);
	sigprocmask(SIG_BLOCK, &fwd, NULL);
	sigprocmask(SIG_BLOCK, &waited, NULL);

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
	sigprocmask(SIG_UNBLOCK, &fwd, NULL);

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			die(errno, "waitpid %d", (int)pid);
		/* EINTR: a forwarded signal's handler ran; look again. */
		if (sigwaitinfo(&waited, NULL) == SIGHUP)
			return hang_up(pid, s.hangup_grace_ms);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
