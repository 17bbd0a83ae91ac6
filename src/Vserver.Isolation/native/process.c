/*
 * vsinit: process helpers shared by the subcommands: fds, signals,
 * capabilities, seccomp, exec; fds passed over unix sockets; a child's
 * failure report read by its parent; id maps written for a child.
 */

#include "vsinit.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* Used only when the spec's env has no PATH, like execvp's built-in default. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

int cap_last = -1;

void close_fds_from_3(void)
{
	DIR *d;
	struct dirent *e;
	int fds[256], n, i;

	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
	/* Pre-5.9 kernel: close what /proc says is open, in batches because
	 * closing while iterating the directory would skip entries. */
	do {
		n = 0;
		d = opendir("/proc/self/fd");
		if (!d)
			return;
		while ((e = readdir(d)) && n < (int)(sizeof fds / sizeof fds[0])) {
			int fd = atoi(e->d_name);
			if (fd >= 3 && fd != dirfd(d))
				fds[n++] = fd;
		}
		closedir(d);
		for (i = 0; i < n; i++)
			close(fds[i]);
	} while (n > 0);
}

/* Everything >= 3 must vanish at execve; CLOEXEC rather than close keeps the
 * error pipe usable until the exec actually succeeds. */
void cloexec_fds_from_3(void)
{
	DIR *d;
	struct dirent *e;

	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	d = opendir("/proc/self/fd");
	if (!d)
		die(errno, "open /proc/self/fd");
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (fd >= 3 && fd != dirfd(d) && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			die(errno, "set close-on-exec on fd %d", fd);
	}
	closedir(d);
}

/* Ignored dispositions and the blocked mask survive execve; the guest's
 * program must not inherit the monitor's or the caller's. */
void reset_signals(void)
{
	struct sigaction sa;
	sigset_t all;
	int i;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (i = 1; i < NSIG; i++)
		(void)sigaction(i, &sa, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

void join_cgroup_fd(int fd, const char *path)
{
	if (write(fd, "0", 1) != 1)
		die(errno, "join cgroup %s", path);
}

int read_cap_last_cap(void)
{
	char buf[32];
	unsigned long v;
	ssize_t n;
	int fd, c;

	fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			if (buf[n - 1] == '\n')
				buf[n - 1] = '\0';
			if (parse_uint(buf, 63, &v) == 0)
				return (int)v;
		}
	}
	/* No /proc (unusual): the kernel rejects unknown caps with EINVAL. */
	for (c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0)
			break;
	return c - 1;
}

/* After this an exec'd uid-0 program gets exactly cap_keep: the bounding set
 * caps what exec grants root, and permitted/effective/inheritable/ambient are
 * cut so nothing outside it survives in this process either.  Inheritable is
 * left empty (a subset of cap_keep): a non-empty inheritable set would let
 * non-root programs with file-inheritable caps gain them. */
void drop_caps(uint64_t keep)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	uint64_t valid, permitted;
	int c;

	valid = cap_last >= 63 ? ~0ULL : (1ULL << (cap_last + 1)) - 1;
	keep &= valid;
	for (c = 0; c <= cap_last; c++) {
		if (keep & (1ULL << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			die(errno, "drop capability %d from bounding set", c);
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		die(errno, "clear ambient capabilities");
	if (syscall(SYS_capget, &hdr, data) < 0)
		die(errno, "capget");
	/* Never ask for more than we hold, or capset fails with EPERM. */
	permitted = ((uint64_t)data[1].permitted << 32 | data[0].permitted) & keep;
	data[0].effective = data[0].permitted = (uint32_t)permitted;
	data[1].effective = data[1].permitted = (uint32_t)(permitted >> 32);
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data) < 0)
		die(errno, "capset");
}

void set_no_new_privs(int on)
{
	if (on && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die(errno, "prctl PR_SET_NO_NEW_PRIVS");
}

/* Before drop_caps: without no_new_privs the kernel wants CAP_SYS_ADMIN in
 * the effective set to accept a filter, and a privileged guest's keep set
 * lacks it.  Nothing vsinit calls afterwards is in the filter.
 * With want_listener the filter comes with a listener fd, returned for the
 * monitor: the calls it sends to SECCOMP_RET_USER_NOTIF wait for whoever
 * reads that fd.  A task may have only one listener in its filter chain, so a
 * guest's own seccomp supervisor (nested containers) then gets EBUSY. */
int load_filter(const struct spec *s, int want_listener)
{
	struct sock_fprog prog = { s->filter_len, s->filter };
	unsigned int flags = want_listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
	long fd;

	if (!s->filter)
		return -1;
	fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	if (fd < 0)
		die(errno, "install seccomp filter (%u instructions)", s->filter_len);
	return want_listener ? (int)fd : -1;
}

/* Inside a fresh or joined user namespace: become its root and shed the host
 * root's supplementary groups, which would otherwise still grant access to
 * host files owned by those groups. */
void become_userns_root(void)
{
	if (setgroups(0, NULL) < 0)
		die(errno, "setgroups in user namespace");
	if (setresgid(0, 0, 0) < 0)
		die(errno, "setresgid 0 in user namespace");
	if (setresuid(0, 0, 0) < 0)
		die(errno, "setresuid 0 in user namespace");
}

static const char *env_path(char *const *envp)
{
	for (; *envp; envp++)
		if (!strncmp(*envp, "PATH=", 5))
			return *envp + 5;
	return DEFAULT_PATH;
}

/* execvpe without the libc quirks (no /bin/sh fallback on ENOEXEC, PATH taken
 * from the guest's env, not ours).  Returns only on failure, with the errno to
 * report. */
static int exec_program(char *const *argv, char *const *envp)
{
	const char *file = argv[0], *path, *p;
	int saw_eacces = 0;

	if (!*file)
		return ENOENT;
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return errno;
	}
	path = env_path(envp);
	for (p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t dl = end ? (size_t)(end - p) : strlen(p);
		size_t fl = strlen(file);
		char *cand = xmalloc(dl + fl + 3);

		/* An empty PATH element means the current directory. */
		if (dl == 0) {
			cand[0] = '.';
			dl = 1;
		} else {
			memcpy(cand, p, dl);
		}
		cand[dl] = '/';
		memcpy(cand + dl + 1, file, fl + 1);
		execve(cand, argv, envp);
		free(cand);
		switch (errno) {
		case EACCES:
			saw_eacces = 1;
			break;
		case ENOENT:
		case ENOTDIR:
		case ELOOP:
		case ENAMETOOLONG:
		case ENODEV:
		case ESTALE:
		case ETIMEDOUT:
			break;
		default:
			return errno;
		}
		if (!end)
			break;
		p = end;
	}
	return saw_eacces ? EACCES : ENOENT;
}

void __attribute__((noreturn)) exec_or_die(const struct spec *s)
{
	int err = exec_program(s->arg.v, list_or_empty(&s->env));

	fail_code = err == EACCES ? 126 : 127;
	die(err, "exec %s", s->arg.v[0]);
}

/* ------------------------------------------------------------------ */
/* Fds over unix sockets (start and exec)                             */
/* ------------------------------------------------------------------ */

/* One byte (the count) with the fds as SCM_RIGHTS.  Returns 0, or -1 with
 * errno set. */
int send_fds(int sock, const int *fds, int n)
{
	char byte = (char)n, cbuf[CMSG_SPACE(MAX_PASSED_FDS * sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg;
	struct cmsghdr *cm;

	memset(&msg, 0, sizeof msg);
	memset(cbuf, 0, sizeof cbuf);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* Returns how many fds (1..max) arrived, 0 when the peer hung up, -1 with
 * errno set (EPROTO for a message send_fds would not have sent; whatever fds
 * it carried are closed). */
int recv_fds(int sock, int *fds, int max, int flags)
{
	char byte, cbuf[CMSG_SPACE(MAX_PASSED_FDS * sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg;
	struct cmsghdr *cm;
	ssize_t r;
	int got[MAX_PASSED_FDS], n = 0, i;

	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	while ((r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags)) < 0)
		if (errno != EINTR)
			return -1;
	if (r == 0)
		return 0;
	cm = CMSG_FIRSTHDR(&msg);
	/* cbuf holds at most MAX_PASSED_FDS; the kernel truncates the rest. */
	if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
		n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(got, CMSG_DATA(cm), (size_t)n * sizeof(int));
	}
	if (n < 1 || n > max || n != byte || (msg.msg_flags & MSG_CTRUNC)) {
		for (i = 0; i < n; i++)
			close(got[i]);
		errno = EPROTO;
		return -1;
	}
	memcpy(fds, got, (size_t)n * sizeof(int));
	return n;
}

/* Returns -1 when path does not fit. */
int unix_address(struct sockaddr_un *addr, const char *path)
{
	size_t len = strlen(path);

	memset(addr, 0, sizeof *addr);
	addr->sun_family = AF_UNIX;
	if (len >= sizeof addr->sun_path)
		return -1;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* A child's failure report, read by its parent                       */
/* ------------------------------------------------------------------ */

/* Reads the child's report until EOF; EOF alone means execve succeeded. */
size_t read_report(int fd, char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == size - 1) {
			char drain[256];
			while (read(fd, drain, sizeof drain) > 0)
				;
			break;
		}
	}
	buf[len] = '\0';
	return len;
}

/* Splits "CODE message" as written by a REPORT_PIPE child. */
const char *split_report(char *buf, int *code)
{
	char *sp = strchr(buf, ' ');
	unsigned long v;

	if (sp) {
		*sp = '\0';
		if (parse_uint(buf, 255, &v) == 0) {
			*code = (int)v;
			return sp + 1;
		}
		*sp = ' ';
	}
	return buf;
}

/* ------------------------------------------------------------------ */
/* User namespace id maps (start, mount-root, userns-exec)            */
/* ------------------------------------------------------------------ */

void write_id_map(pid_t pid, const char *file, const struct list *map)
{
	char path[64], buf[4096];
	size_t len = 0, i;
	int fd;

	for (i = 0; i < map->n; i++) {
		int n = snprintf(buf + len, sizeof buf - len, "%s\n", map->v[i]);
		if (n < 0 || (size_t)n >= sizeof buf - len)
			die(E2BIG, "%s for guest init %d", file, (int)pid);
		len += (size_t)n;
	}
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open %s", path);
	/* The kernel takes the whole map in one write or not at all. */
	if (write(fd, buf, len) != (ssize_t)len)
		die(errno, "write %s (%.*s)", path, (int)(len - 1), buf);
	close(fd);
}

/* Writes the spec's uid and gid maps for pid's user namespace and opens it
 * (for an idmapped mount); the caller closes the fd. */
int map_and_open_userns(pid_t pid, const struct spec *s)
{
	char path[64];
	int fd;

	write_id_map(pid, "uid_map", &s->uid_map);
	write_id_map(pid, "gid_map", &s->gid_map);
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open %s", path);
	return fd;
}
