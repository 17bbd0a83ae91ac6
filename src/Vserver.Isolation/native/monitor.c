/*
 * vsinit start, the monitor's side: the per-guest parent, outliving the
 * agent.  It clones the guest's init (init.c), prepares it as host root
 * (cgroups, id maps, the detached root, sysfs and meminfo mounts), reports
 * "started PID" or "error ..." to the agent, answers the guest's sysinfo(2)
 * (sysinfo.c) while it runs and writes its exit file when it ends.
 */

#include "vsinit.h"

#define CHILD_STACK_SIZE (1 << 20)

/* ------------------------------------------------------------------ */
/* The mounts the monitor prepares, detached, as host root            */
/* ------------------------------------------------------------------ */

static void check_layer(const char *what, const char *path)
{
	struct stat st;

	/* The overlay only says ENOENT/EINVAL; name the layer. */
	if (stat(path, &st) < 0)
		die(errno, "overlay %s %s", what, path);
	if (!S_ISDIR(st.st_mode))
		die(ENOTDIR, "overlay %s %s", what, path);
}

/* A filesystem context explains a refusal only in its own log ("e overlayfs: ..."). */
static void __attribute__((noreturn, format(printf, 3, 4))) die_fs(int fsfd, int err, const char *fmt, ...)
{
	char what[1024], log[512];
	ssize_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	n = read(fsfd, log, sizeof log - 1);
	if (n > 2) {
		log[n] = '\0';
		if (log[n - 1] == '\n')
			log[n - 1] = '\0';
		die(err, "%s (%s)", what, log + 2);
	}
	die(err, "%s", what);
}

/* The image as this guest sees it: a private read-only clone of the shared
 * image tree, idmapped into the guest's user namespace when it has one, so
 * one root-owned image serves every guest and each sees files owned by its
 * own root, without a chowned copy. */
static int open_lower(const char *path, int userns_fd)
{
	struct mount_attr attr;
	int fd;

	check_layer("lowerdir", path);
	fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0)
		die(errno, "open_tree %s", path);
	memset(&attr, 0, sizeof attr);
	attr.attr_set = MOUNT_ATTR_RDONLY;
	if (userns_fd >= 0) {
		attr.attr_set |= MOUNT_ATTR_IDMAP;
		attr.userns_fd = (uint64_t)userns_fd;
	}
	if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
		die(errno, "%s image layer %s", userns_fd >= 0 ? "idmap" : "make read-only", path);
	return fd;
}

/*
 * Monitor side, as host root: the guest's root filesystem as a detached
 * overlay mount, layers given as file descriptors (overlayfs >= 6.13), for
 * the child to attach.  Mounted with the host root's credentials, the overlay
 * writes the upper layer on behalf of the guest with the guest's own ids:
 * files a user-namespaced guest creates belong to its host id range.
 */
int make_rootfs_mount(const struct spec *s, int userns_fd)
{
	size_t i;
	int fsfd, mfd, *lowerfd;

	check_layer("upperdir", s->upper);
	check_layer("workdir", s->work);
	fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die(errno, "fsopen overlay");
	/* Kept open until the overlay exists: closing the last fd of a detached
	 * mount dissolves it, and the overlay could no longer clone it. */
	lowerfd = xmalloc(s->lower.n * sizeof *lowerfd);
	for (i = 0; i < s->lower.n; i++) {
		lowerfd[i] = open_lower(s->lower.v[i], userns_fd);
		if (fsconfig(fsfd, FSCONFIG_SET_FD, "lowerdir+", NULL, lowerfd[i]) < 0)
			die_fs(fsfd, errno, "overlay lowerdir+ %s", s->lower.v[i]);
	}
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", s->upper, 0) < 0)
		die_fs(fsfd, errno, "overlay upperdir %s", s->upper);
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", s->work, 0) < 0)
		die_fs(fsfd, errno, "overlay workdir %s", s->work);
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, errno, "create overlay for %s", s->rootfs);
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
	if (mfd < 0)
		die_fs(fsfd, errno, "fsmount overlay for %s", s->rootfs);
	close(fsfd);
	for (i = 0; i < s->lower.n; i++)
		close(lowerfd[i]);
	free(lowerfd);
	return mfd;
}

/* Monitor side, while in the guest's network namespace: a read-only sysfs
 * showing that namespace's devices.  The guest could not mount it itself:
 * its network namespace belongs to the host's user namespace, so that root
 * in a user-namespaced guest cannot re-address itself on the shared bridge. */
static int make_sysfs_mount(void)
{
	int fsfd, mfd;

	fsfd = fsopen("sysfs", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		die(errno, "fsopen sysfs");
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die_fs(fsfd, errno, "create sysfs");
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC,
		      MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	if (mfd < 0)
		die_fs(fsfd, errno, "fsmount sysfs");
	close(fsfd);
	return mfd;
}

/* Monitor side: the host file that becomes the guest's /proc/meminfo, as a
 * detached read-only bind for the child to attach over its fresh procfs (a
 * user-namespaced root may not be allowed to walk to it).  Cloned from the fd
 * the monitor reads its sysinfo answers from, so both are the same inode, and
 * a bind shares the inode: the agent's rewrites in place show through. */
static int make_meminfo_mount(int meminfo_fd, const char *path)
{
	struct mount_attr attr;
	int fd;

	fd = open_tree(meminfo_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (fd < 0)
		die(errno, "open_tree meminfo %s", path);
	memset(&attr, 0, sizeof attr);
	attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
	if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
		die(errno, "make meminfo %s read-only", path);
	return fd;
}

/* ------------------------------------------------------------------ */
/* The monitor                                                        */
/* ------------------------------------------------------------------ */

static void write_atomic(const char *path, const char *content)
{
	char *tmp = concat(path, ".tmp");
	int fd, e;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		die(errno, "open %s", tmp);
	if (write_all(fd, content, strlen(content)) < 0 || fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		die(e, "write %s", tmp);
	}
	if (close(fd) < 0) {
		e = errno;
		unlink(tmp);
		die(e, "close %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		die(e, "rename %s to %s", tmp, path);
	}
	free(tmp);
}

static void redirect_stdio_to_null(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
}

static void ignore_signal(int sig)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(sig, &sa, NULL);
}

/* As host root, before the child may go on: cgroups, then the user
 * namespace's maps, then the mounts that need both the host's privileges and
 * the child's namespaces (the idmap and the guest netns's sysfs), and the
 * meminfo bind, which needs only the former. */
static void prepare_child(const struct spec *s, pid_t pid, int hostnet_fd, int meminfo_fd, int sync_fd)
{
	char num[16];
	int fds[MAX_PASSED_FDS], n = 0, userns_fd = -1;
	size_t i;

	snprintf(num, sizeof num, "%d", (int)pid);
	for (i = 0; i < s->cgroup.n; i++) {
		int fd = open(s->cgroup.v[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			die(errno, "open cgroup %s", s->cgroup.v[i]);
		if (write(fd, num, strlen(num)) < 0)
			die(errno, "join cgroup %s", s->cgroup.v[i]);
		close(fd);
	}
	if (s->uid_map.n)
		userns_fd = map_and_open_userns(pid, s);
	fds[n++] = make_rootfs_mount(s, userns_fd);
	if (hostnet_fd >= 0) {
		fds[n++] = make_sysfs_mount();
		if (setns(hostnet_fd, CLONE_NEWNET) < 0)
			die(errno, "setns back to the host network namespace");
	}
	if (meminfo_fd >= 0)
		fds[n++] = make_meminfo_mount(meminfo_fd, s->meminfo);
	if (send_fds(sync_fd, fds, n) < 0)
		die(errno, "send mounts to guest init");
	while (n > 0)
		close(fds[--n]);
	if (userns_fd >= 0)
		close(userns_fd);
}

int cmd_start(const char *specpath)
{
	static const int ignored[] = { SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGPIPE,
				       SIGTTOU, SIGTTIN, SIGTSTP };
	struct start_ctx ctx;
	struct sysinfo_server srv;
	struct spec s;
	char report[4096], line[64];
	int pipefd[2], syncfd[2], flags, status, child_code = 127;
	int hostnet_fd = -1, netns_fd, meminfo_fd = -1;
	size_t i;
	void *stack;
	pid_t pid;

	report_style = REPORT_MONITOR;
	fail_code = 1;
	/* Nothing the agent leaked to us may end up pinned by the monitor for the
	 * guest's lifetime, nor inherited by the guest. */
	close_fds_from_3();
	/* Survive the agent: its session, its terminal and its exit. setsid only
	 * fails if we already lead a process group, which is good enough. */
	(void)setsid();
	for (i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		ignore_signal(ignored[i]);

	parse_spec(specpath, &s);
	guest_name = s.name;
	require(specpath, s.rootfs != NULL, "rootfs");
	require(specpath, s.lower.n > 0, "lower");
	require(specpath, s.upper != NULL, "upper");
	require(specpath, s.work != NULL, "work");
	require(specpath, s.arg.n > 0, "arg");
	if (!s.uid_map.n != !s.gid_map.n)
		die(0, "spec %s: uid_map and gid_map go together", specpath);
	if (s.notify_socket && !s.meminfo)
		die(0, "spec %s: notify_socket needs meminfo, the figures sysinfo is answered with", specpath);

	ctx.s = &s;
	ctx.console_fd = -1;
	if (s.console) {
		ctx.console_fd = open(s.console, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0640);
		if (ctx.console_fd < 0)
			die(errno, "open console %s", s.console);
	}
	if (s.meminfo)
		meminfo_fd = open_meminfo(s.meminfo);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die(errno, "pipe");
	ctx.err_r = pipefd[0];
	ctx.err_w = pipefd[1];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, syncfd) < 0)
		die(errno, "socketpair");
	ctx.sync_m = syncfd[0];
	ctx.sync_c = syncfd[1];
	/* The guest's init is born in the guest's network namespace (which the
	 * host's user namespace owns), and so is its sysfs; the monitor goes back. */
	if (s.netns) {
		hostnet_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (hostnet_fd < 0)
			die(errno, "open /proc/self/ns/net");
		netns_fd = open(s.netns, O_RDONLY | O_CLOEXEC);
		if (netns_fd < 0)
			die(errno, "open netns %s", s.netns);
		if (setns(netns_fd, CLONE_NEWNET) < 0)
			die(errno, "setns net %s", s.netns);
		close(netns_fd);
	}
	/* The child inherits this cwd into its mount namespace: see start_child (init.c). */
	if (chdir(s.rootfs) < 0)
		die(errno, "chdir %s", s.rootfs);

	stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		die(errno, "mmap child stack");
	flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
	if (!s.netns)
		flags |= CLONE_NEWNET;
	if (s.uid_map.n)
		flags |= CLONE_NEWUSER;
	pid = clone(start_child, (char *)stack + CHILD_STACK_SIZE, flags, &ctx);
	if (pid < 0)
		die(errno, "clone guest init for %s", s.rootfs);
	monitor_child = pid;
	munmap(stack, CHILD_STACK_SIZE);
	close(pipefd[1]);
	close(syncfd[1]);
	if (ctx.console_fd >= 0)
		close(ctx.console_fd);
	/* Pin nothing the agent may want to remove. */
	if (chdir("/") < 0)
		die(errno, "chdir /");
	prepare_child(&s, pid, hostnet_fd, meminfo_fd, syncfd[0]);
	if (hostnet_fd >= 0)
		close(hostnet_fd);

	if (read_report(pipefd[0], report, sizeof report) > 0)
		report_and_exit(split_report(report, &child_code), 1);
	close(pipefd[0]);
	if (s.meminfo)
		sysinfo_server_start(&srv, &s, pid, syncfd[0], meminfo_fd);
	close(syncfd[0]);

	if (s.pidfile) {
		snprintf(line, sizeof line, "%d %d\n", (int)pid, (int)getpid());
		write_atomic(s.pidfile, line);
	}
	snprintf(line, sizeof line, "started %d\n", (int)pid);
	(void)write_all(1, line, strlen(line));
	/* The agent may be gone long before the guest; don't hold its pipes. */
	redirect_stdio_to_null();
	/* From here on the guest is running for real; a monitor failure must not
	 * take it down. */
	monitor_child = 0;

	if (s.meminfo) {
		serve_sysinfo(&srv);
		sysinfo_server_stop(&srv);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			die(errno, "waitpid %d", (int)pid);
	}
	if (WIFSIGNALED(status))
		snprintf(line, sizeof line, "signaled %d\n", WTERMSIG(status));
	else
		snprintf(line, sizeof line, "exited %d\n", WEXITSTATUS(status));
	if (s.exitfile)
		write_atomic(s.exitfile, line);
	return 0;
}
