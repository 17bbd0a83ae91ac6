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
 *   vsinit start SPEC   become the guest's monitor and clone its init (with
 *                       "meminfo", the monitor also answers its sysinfo(2))
 *   vsinit exec SPEC    run a command inside a running guest
 *   vsinit netns PATH   create a persistent network namespace bound at PATH
 *
 * Spec format: one "key value" directive per line, value = rest of the line
 * after the first space, no escaping; blank lines and '#' lines ignored.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define MAX_SPEC_SIZE (1 << 20)
#define CHILD_STACK_SIZE (1 << 20)
/* Used only when the spec's env has no PATH, like execvp's built-in default. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* ------------------------------------------------------------------ */
/* Failure reporting                                                   */
/* ------------------------------------------------------------------ */

enum report_style {
	REPORT_STDERR,  /* "vsinit: MSG" on stderr (exec parent, netns) */
	REPORT_MONITOR, /* "error MSG" on stdout for the agent, copy on stderr */
	REPORT_PIPE,    /* "CODE MSG" to the parent over the error pipe */
};

static enum report_style report_style = REPORT_STDERR;
static int report_fd = -1;
static int fail_code = 1;
static const char *guest_name;
/* A monitor failing after clone must not leave a half-set-up guest behind. */
static pid_t monitor_child;
/* netns: a file we created must not outlive a failed bind. */
static const char *netns_created;
/* start: nor a notify socket a failed start bound. */
static const char *socket_bound;
static int cap_last = -1;

static const char *errno_name(int e)
{
	static char unknown[32];

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *n = strerrorname_np(e);
	if (n)
		return n;
#endif
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case EMFILE: return "EMFILE";
	case ETXTBSY: return "ETXTBSY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case EPIPE: return "EPIPE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ELOOP: return "ELOOP";
	}
	snprintf(unknown, sizeof unknown, "errno %d", e);
	return unknown;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static void __attribute__((noreturn)) report_and_exit(const char *msg, int code)
{
	char line[4608];
	int n;

	switch (report_style) {
	case REPORT_PIPE:
		n = snprintf(line, sizeof line, "%d %s", code, msg);
		(void)write_all(report_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
		break;
	case REPORT_MONITOR:
		n = snprintf(line, sizeof line, "error %s\n", msg);
		(void)write_all(1, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
		if (guest_name)
			n = snprintf(line, sizeof line, "vsinit: %s: %s\n", guest_name, msg);
		else
			n = snprintf(line, sizeof line, "vsinit: %s\n", msg);
		(void)write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
		if (monitor_child > 0) {
			/* Killing pid 1 of the guest's pid namespace takes the rest with it. */
			kill(monitor_child, SIGKILL);
			reap(monitor_child);
			if (socket_bound)
				unlink(socket_bound);
		}
		break;
	case REPORT_STDERR:
		n = snprintf(line, sizeof line, "vsinit: %s\n", msg);
		(void)write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
		if (netns_created)
			unlink(netns_created);
		break;
	}
	_exit(code);
}

/* err == 0: the message needs no errno suffix. */
static void __attribute__((noreturn, format(printf, 2, 3))) die(int err, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	n = strlen(msg);
	if (err)
		snprintf(msg + n, sizeof msg - n, ": %s (%s)", strerror(err), errno_name(err));
	/* The agent parses one line per event. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	report_and_exit(msg, fail_code);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die(ENOMEM, "malloc");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

/* a + "/" + b without doubling a trailing slash of a. */
static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 2);

	memcpy(p, a, la);
	if (la == 0 || a[la - 1] != '/')
		p[la++] = '/';
	while (*b == '/')
		b++, lb--;
	memcpy(p + la, b, lb + 1);
	return p;
}

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 1);

	memcpy(p, a, la);
	memcpy(p + la, b, lb + 1);
	return p;
}

/* ------------------------------------------------------------------ */
/* Spec                                                                */
/* ------------------------------------------------------------------ */

struct list {
	char **v; /* always NULL-terminated once non-empty, usable as argv/envp */
	size_t n;
};

struct spec {
	const char *name, *hostname, *rootfs, *upper, *work, *netns;
	const char *pidfile, *exitfile, *console, *cwd;
	/* start: the host file shown as /proc/meminfo, also the source of the
	 * monitor's sysinfo(2) answers; start and exec: where vsinit exec hands
	 * its seccomp listener to the monitor. */
	const char *meminfo, *notify_socket;
	struct list lower, cgroup, mask, readonly, env, arg;
	/* "INSIDE OUTSIDE COUNT" lines for /proc/PID/{uid,gid}_map; present = user namespace. */
	struct list uid_map, gid_map;
	/* userns-exec: paths bound over others in a private mount namespace, pairwise in order;
	 * paths at and below which every mount is detached there afterwards. */
	struct list bind_source, bind_target, detach;
	struct sock_filter *filter;
	unsigned short filter_len;
	uint64_t cap_keep;
	pid_t target_pid;
	int tty, no_new_privs;
	int have_tty, have_nnp;
};

struct parse_ctx {
	const char *path;
	int line;
};

static void list_add(struct list *l, char *s)
{
	char **v = realloc(l->v, (l->n + 2) * sizeof *v);
	if (!v)
		die(ENOMEM, "malloc");
	v[l->n++] = s;
	v[l->n] = NULL;
	l->v = v;
}

static char *const *list_or_empty(const struct list *l)
{
	static char *empty[] = { NULL };
	return l->n ? l->v : empty;
}

static void __attribute__((noreturn, format(printf, 2, 3))) spec_error(const struct parse_ctx *c, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	die(0, "spec %s line %d: %s", c->path, c->line, msg);
}

/* Relative host paths are made absolute now, because the monitor chdirs to /
 * so that it does not pin whatever directory the agent happened to be in. */
static char *host_path(const struct parse_ctx *c, const char *key, const char *val)
{
	char cwd[PATH_MAX];

	if (!*val)
		spec_error(c, "empty value for %s", key);
	if (val[0] == '/')
		return xstrdup(val);
	if (!getcwd(cwd, sizeof cwd))
		die(errno, "getcwd");
	return join(cwd, val);
}

static void set_once(const struct parse_ctx *c, const char **field, const char *key, const char *val)
{
	if (*field)
		spec_error(c, "duplicate %s", key);
	*field = val;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const struct parse_ctx *c, const char *key, const char *val, int *seen)
{
	if (*seen)
		spec_error(c, "duplicate %s", key);
	*seen = 1;
	if (!strcmp(val, "0"))
		return 0;
	if (!strcmp(val, "1"))
		return 1;
	spec_error(c, "%s must be 0 or 1, not \"%s\"", key, val);
}

static void parse_id_map(const struct parse_ctx *c, const char *key, const char *val, struct list *map)
{
	unsigned long inside, outside, count;
	char extra;

	if (sscanf(val, "%lu %lu %lu%c", &inside, &outside, &count, &extra) != 3 || count == 0 ||
	    inside > UINT32_MAX || outside > UINT32_MAX || count > UINT32_MAX)
		spec_error(c, "%s must be \"INSIDE OUTSIDE COUNT\", not \"%s\"", key, val);
	list_add(map, (char *)val);
}

/* A classic BPF program compiled by the agent: struct sock_filter records,
 * loaded as is.  Read now, while the host path still resolves. */
static void read_filter(const struct parse_ctx *c, const char *path, struct spec *s)
{
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open seccomp filter %s", path);
	if (fstat(fd, &st) < 0)
		die(errno, "stat seccomp filter %s", path);
	if (st.st_size == 0 || st.st_size % sizeof(struct sock_filter) ||
	    st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS)
		spec_error(c, "seccomp filter %s: %lld bytes is not 1..%d BPF instructions", path,
			   (long long)st.st_size, BPF_MAXINSNS);
	s->filter = xmalloc((size_t)st.st_size);
	n = read(fd, s->filter, (size_t)st.st_size);
	if (n != st.st_size)
		die(n < 0 ? errno : EIO, "read seccomp filter %s", path);
	close(fd);
	s->filter_len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
}

static void parse_spec(const char *path, struct spec *s)
{
	struct parse_ctx c = { path, 0 };
	size_t cap = 16384, len = 0;
	char *buf, *line, *next;
	int fd;

	memset(s, 0, sizeof *s);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open spec %s", path);
	buf = xmalloc(cap + 1);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap >= MAX_SPEC_SIZE)
				die(EFBIG, "read spec %s", path);
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				die(ENOMEM, "malloc");
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(errno, "read spec %s", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (memchr(buf, '\0', len))
		die(0, "spec %s: contains a NUL byte", path);
	buf[len] = '\0';

	for (line = buf; line; line = next) {
		char *key = line, *val, *sp;
		unsigned long u;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		c.line++;
		if (*line == '\0' || *line == '#')
			continue;
		sp = strchr(line, ' ');
		if (sp) {
			*sp = '\0';
			val = sp + 1;
		} else {
			val = line + strlen(line);
		}

		if (!strcmp(key, "name")) {
			set_once(&c, &s->name, key, val);
		} else if (!strcmp(key, "hostname")) {
			set_once(&c, &s->hostname, key, val);
		} else if (!strcmp(key, "rootfs")) {
			set_once(&c, &s->rootfs, key, host_path(&c, key, val));
		} else if (!strcmp(key, "lower")) {
			/* Repeatable as an extension: several lower layers, uppermost first. */
			list_add(&s->lower, host_path(&c, key, val));
		} else if (!strcmp(key, "upper")) {
			set_once(&c, &s->upper, key, host_path(&c, key, val));
		} else if (!strcmp(key, "work")) {
			set_once(&c, &s->work, key, host_path(&c, key, val));
		} else if (!strcmp(key, "netns")) {
			set_once(&c, &s->netns, key, host_path(&c, key, val));
		} else if (!strcmp(key, "cgroup")) {
			list_add(&s->cgroup, host_path(&c, key, val));
		} else if (!strcmp(key, "cap_keep")) {
			if (parse_uint(val, 63, &u))
				spec_error(&c, "cap_keep must be a capability number 0..63, not \"%s\"", val);
			s->cap_keep |= 1ULL << u;
		} else if (!strcmp(key, "mask")) {
			if (!*val)
				spec_error(&c, "empty value for %s", key);
			list_add(&s->mask, val);
		} else if (!strcmp(key, "readonly")) {
			if (!*val)
				spec_error(&c, "empty value for %s", key);
			list_add(&s->readonly, val);
		} else if (!strcmp(key, "pidfile")) {
			set_once(&c, &s->pidfile, key, host_path(&c, key, val));
		} else if (!strcmp(key, "exitfile")) {
			set_once(&c, &s->exitfile, key, host_path(&c, key, val));
		} else if (!strcmp(key, "console")) {
			set_once(&c, &s->console, key, host_path(&c, key, val));
		} else if (!strcmp(key, "meminfo")) {
			set_once(&c, &s->meminfo, key, host_path(&c, key, val));
		} else if (!strcmp(key, "bind_source")) {
			list_add(&s->bind_source, host_path(&c, key, val));
		} else if (!strcmp(key, "bind_target")) {
			list_add(&s->bind_target, host_path(&c, key, val));
		} else if (!strcmp(key, "detach")) {
			list_add(&s->detach, host_path(&c, key, val));
		} else if (!strcmp(key, "notify_socket")) {
			set_once(&c, &s->notify_socket, key, host_path(&c, key, val));
		} else if (!strcmp(key, "env")) {
			if (!strchr(val, '=') || val[0] == '=')
				spec_error(&c, "env must be KEY=VALUE, not \"%s\"", val);
			list_add(&s->env, val);
		} else if (!strcmp(key, "arg")) {
			list_add(&s->arg, val);
		} else if (!strcmp(key, "cwd")) {
			if (!*val)
				spec_error(&c, "empty value for %s", key);
			set_once(&c, &s->cwd, key, val);
		} else if (!strcmp(key, "uid_map") || !strcmp(key, "gid_map")) {
			parse_id_map(&c, key, val, !strcmp(key, "uid_map") ? &s->uid_map : &s->gid_map);
		} else if (!strcmp(key, "seccomp")) {
			if (s->filter)
				spec_error(&c, "duplicate %s", key);
			read_filter(&c, host_path(&c, key, val), s);
		} else if (!strcmp(key, "target_pid")) {
			if (s->target_pid)
				spec_error(&c, "duplicate %s", key);
			if (parse_uint(val, INT_MAX, &u) || u == 0)
				spec_error(&c, "target_pid must be a positive pid, not \"%s\"", val);
			s->target_pid = (pid_t)u;
		} else if (!strcmp(key, "tty")) {
			s->tty = parse_bool(&c, key, val, &s->have_tty);
		} else if (!strcmp(key, "no_new_privs")) {
			s->no_new_privs = parse_bool(&c, key, val, &s->have_nnp);
		} else {
			spec_error(&c, "unknown key \"%s\"", key);
		}
	}
	if (!s->cwd)
		s->cwd = "/";
}

static void require(const char *path, int present, const char *key)
{
	if (!present)
		die(0, "spec %s: missing %s", path, key);
}

/* ------------------------------------------------------------------ */
/* Process helpers shared by start and exec                            */
/* ------------------------------------------------------------------ */

static void close_fds_from_3(void)
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
static void cloexec_fds_from_3(void)
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
static void reset_signals(void)
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

static void join_cgroup_fd(int fd, const char *path)
{
	if (write(fd, "0", 1) != 1)
		die(errno, "join cgroup %s", path);
}

static int read_cap_last_cap(void)
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
static void drop_caps(uint64_t keep)
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

static void set_no_new_privs(int on)
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
static int load_filter(const struct spec *s, int want_listener)
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
static void become_userns_root(void)
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

static void __attribute__((noreturn)) exec_or_die(const struct spec *s)
{
	int err = exec_program(s->arg.v, list_or_empty(&s->env));

	fail_code = err == EACCES ? 126 : 127;
	die(err, "exec %s", s->arg.v[0]);
}

/* ------------------------------------------------------------------ */
/* start: guest init side                                              */
/* ------------------------------------------------------------------ */

struct start_ctx {
	const struct spec *s;
	int console_fd;
	int err_r, err_w;   /* the child's failure report, read by the monitor */
	int sync_m, sync_c; /* socketpair: the monitor's end, the child's end */
};

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
static int make_rootfs_mount(const struct spec *s, int userns_fd)
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

/* The root, sysfs and meminfo mounts; one listener. */
#define MAX_PASSED_FDS 3

/* One byte (the count) with the fds as SCM_RIGHTS.  Returns 0, or -1 with
 * errno set. */
static int send_fds(int sock, const int *fds, int n)
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
static int recv_fds(int sock, int *fds, int max, int flags)
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

/* The guest can write its upper layer, so a top-level proc/sys/dev may be a
 * symlink it planted; mounting through it would land somewhere unintended. */
static char *mountpoint(const char *dir, const char *name, mode_t mode)
{
	char *p = join(dir, name);
	struct stat st;

	if (mkdir(p, mode) < 0 && errno != EEXIST)
		die(errno, "mkdir %s", p);
	if (lstat(p, &st) < 0)
		die(errno, "stat %s", p);
	if (!S_ISDIR(st.st_mode))
		die(ENOTDIR, "mount point %s", p);
	return p;
}

static void do_mount(const char *src, const char *target, const char *fstype,
		     unsigned long flags, const char *data)
{
	if (mount(src, target, fstype, flags, data) < 0)
		die(errno, "mount %s on %s", fstype, target);
}

/* A bind of a host inode (a device node, /dev/null over a masked file) is
 * made read-only: the node stays usable, but its mode and owner, which are
 * the host's own, cannot be changed through it. */
static void bind_readonly(const char *src, const char *dst)
{
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		die(errno, "bind mount %s on %s", src, dst);
	if (mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
		die(errno, "remount %s read-only", dst);
}

static void bind_device(const char *devdir, const char *name)
{
	char *src = join("/dev", name), *dst = join(devdir, name);
	int fd;

	/* Bind, not mknod: the same code has to work inside a user namespace. */
	fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		die(errno, "create %s", dst);
	close(fd);
	bind_readonly(src, dst);
	free(src);
	free(dst);
}

static void make_symlink(const char *target, const char *dir, const char *name)
{
	char *p = join(dir, name);

	if (symlink(target, p) < 0)
		die(errno, "symlink %s -> %s", p, target);
	free(p);
}

/* In the new root (the cwd), before pivot_root: a user-namespaced guest may
 * only mount a procfs while the host's fully visible one is still around. */
static void setup_guest_mounts(int sysfd, int meminfofd)
{
	static const char *const devices[] = { "null", "zero", "full", "random", "urandom", "tty" };
	char *proc, *sys, *dev, *pts, *shm, *meminfo;
	size_t i;

	proc = mountpoint(".", "proc", 0555);
	do_mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	/* On the fresh procfs, where the guest cannot have planted a symlink. */
	if (meminfofd >= 0) {
		meminfo = join(proc, "meminfo");
		if (move_mount(meminfofd, "", AT_FDCWD, meminfo, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			die(errno, "attach meminfo on %s", meminfo);
		close(meminfofd);
		free(meminfo);
	}
	sys = mountpoint(".", "sys", 0555);
	if (sysfd >= 0) {
		if (move_mount(sysfd, "", AT_FDCWD, sys, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			die(errno, "attach sysfs on %s", sys);
		close(sysfd);
	} else {
		do_mount("sysfs", sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
	dev = mountpoint(".", "dev", 0755);
	do_mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");

	/* Everything below is on the fresh tmpfs, so no guest symlinks to fear. */
	for (i = 0; i < sizeof devices / sizeof devices[0]; i++)
		bind_device(dev, devices[i]);
	pts = mountpoint(dev, "pts", 0755);
	do_mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
		 "newinstance,ptmxmode=0666,mode=0620,gid=5");
	make_symlink("pts/ptmx", dev, "ptmx");
	shm = mountpoint(dev, "shm", 01777);
	do_mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
	make_symlink("/proc/self/fd", dev, "fd");
	make_symlink("/proc/self/fd/0", dev, "stdin");
	make_symlink("/proc/self/fd/1", dev, "stdout");
	make_symlink("/proc/self/fd/2", dev, "stderr");
	free(proc);
	free(sys);
	free(dev);
	free(pts);
	free(shm);
}

/* pivot_root(".", ".") with the new root as cwd stacks the old root on top
 * of it; detaching that leaves the guest root alone without needing a put_old
 * directory in the guest's upper layer. */
static void enter_root(const char *rootfs)
{
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die(errno, "pivot_root %s", rootfs);
	if (umount2(".", MNT_DETACH) < 0)
		die(errno, "unmount old root of %s", rootfs);
	if (chdir("/") < 0)
		die(errno, "chdir / in %s", rootfs);
}

/* Masks and read-only paths are applied after pivot_root, so that paths and
 * any symlinks in them resolve inside the guest and can never reach the host. */
static void apply_masks(const struct list *masks)
{
	size_t i;

	for (i = 0; i < masks->n; i++) {
		const char *p = masks->v[i];
		struct stat st;

		if (stat(p, &st) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			die(errno, "stat mask %s", p);
		}
		if (S_ISDIR(st.st_mode)) {
			if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				  "mode=0555") < 0)
				die(errno, "mount tmpfs mask on %s", p);
		} else {
			bind_readonly("/dev/null", p);
		}
	}
}

static void apply_readonly(const struct list *paths)
{
	size_t i;

	for (i = 0; i < paths->n; i++) {
		const char *p = paths->v[i];
		unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
		struct statvfs sv;

		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			die(errno, "bind mount %s on itself", p);
		}
		/* A bind remount replaces all per-mount flags: keep nosuid etc. */
		if (statvfs(p, &sv) < 0)
			die(errno, "statvfs %s", p);
		if (sv.f_flag & ST_NOSUID)
			flags |= MS_NOSUID;
		if (sv.f_flag & ST_NODEV)
			flags |= MS_NODEV;
		if (sv.f_flag & ST_NOEXEC)
			flags |= MS_NOEXEC;
		if (sv.f_flag & ST_NOATIME)
			flags |= MS_NOATIME;
		if (sv.f_flag & ST_NODIRATIME)
			flags |= MS_NODIRATIME;
		if (sv.f_flag & ST_RELATIME)
			flags |= MS_RELATIME;
		if (mount(NULL, p, NULL, flags, NULL) < 0)
			die(errno, "remount %s read-only", p);
	}
}

static int start_child(void *arg)
{
	const struct start_ctx *ctx = arg;
	const struct spec *s = ctx->s;
	int nullfd, fds[MAX_PASSED_FDS], n, expected, listener;

	report_style = REPORT_PIPE;
	report_fd = ctx->err_w;
	fail_code = 127;
	monitor_child = 0;
	close(ctx->err_r);
	close(ctx->sync_m);

	/* Own session: signals aimed at the monitor's process group (e.g. by an
	 * agent cleaning up after itself) must not reach the guest. */
	if (setsid() < 0)
		die(errno, "setsid");
	/* What the kernel gives a real init. */
	umask(022);

	/* The monitor joins us to the guest's cgroups, writes our id maps and
	 * hands over the prepared root (and sysfs, and meminfo) mounts, in that
	 * order. */
	expected = 1 + (s->netns != NULL) + (s->meminfo != NULL);
	n = recv_fds(ctx->sync_c, fds, MAX_PASSED_FDS, 0);
	if (n < 0)
		die(errno, "receive mounts from monitor");
	/* The monitor hung up: it failed and reports that itself. */
	if (n == 0)
		_exit(fail_code);
	if (n != expected)
		die(EPROTO, "receive mounts from monitor: %d fds, not %d", n, expected);
	if (s->uid_map.n)
		become_userns_root();
	/* Only now: a cgroup namespace's root is fixed at unshare time, and the
	 * monitor has just moved us into the guest's cgroups. */
	if (unshare(CLONE_NEWCGROUP) < 0)
		die(errno, "unshare cgroup namespace");
	/* The mount namespace starts as a copy sharing propagation with the host;
	 * nothing mounted from here on may show up there. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die(errno, "make / rprivate");
	/* The monitor made the rootfs directory our cwd before cloning, so the
	 * overlay is attached there without a path walk a user-namespaced root
	 * may not be allowed to make through the host's state directories. */
	if (move_mount(fds[0], "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die(errno, "attach overlay on %s", s->rootfs);
	if (fchdir(fds[0]) < 0)
		die(errno, "chdir into overlay on %s", s->rootfs);
	close(fds[0]);
	setup_guest_mounts(s->netns ? fds[1] : -1, s->meminfo ? fds[n - 1] : -1);
	enter_root(s->rootfs);
	apply_masks(&s->mask);
	apply_readonly(&s->readonly);
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		die(errno, "sethostname %s", s->hostname);
	/* Before dropping caps: root without CAP_DAC_* could be refused. */
	if (chdir(s->cwd) < 0)
		die(errno, "chdir %s", s->cwd);
	/* The sync socket stayed open for this: the monitor answers the guest's
	 * sysinfo(2) calls. */
	listener = load_filter(s, s->meminfo != NULL);
	if (listener >= 0) {
		if (send_fds(ctx->sync_c, &listener, 1) < 0)
			die(errno, "send seccomp listener to monitor");
		close(listener);
	}
	close(ctx->sync_c);
	drop_caps(s->cap_keep);
	set_no_new_privs(s->no_new_privs);

	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nullfd < 0)
		die(errno, "open /dev/null in guest");
	if (dup2(nullfd, 0) < 0)
		die(errno, "dup2 /dev/null to stdin");
	if (dup2(ctx->console_fd >= 0 ? ctx->console_fd : nullfd, 1) < 0 ||
	    dup2(ctx->console_fd >= 0 ? ctx->console_fd : nullfd, 2) < 0)
		die(errno, "dup2 %s to stdout/stderr", s->console ? s->console : "/dev/null");
	cloexec_fds_from_3();
	reset_signals();
	exec_or_die(s);
}

/* ------------------------------------------------------------------ */
/* start: monitor side                                                 */
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

/* Reads the child's report until EOF; EOF alone means execve succeeded. */
static size_t read_report(int fd, char *buf, size_t size)
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
static const char *split_report(char *buf, int *code)
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

static void write_id_map(pid_t pid, const char *file, const struct list *map)
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

/* As host root, before the child may go on: cgroups, then the user
 * namespace's maps, then the mounts that need both the host's privileges and
 * the child's namespaces (the idmap and the guest netns's sysfs), and the
 * meminfo bind, which needs only the former. */
static void prepare_child(const struct spec *s, pid_t pid, int hostnet_fd, int meminfo_fd, int sync_fd)
{
	char path[64], num[16];
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
	if (s->uid_map.n) {
		write_id_map(pid, "uid_map", &s->uid_map);
		write_id_map(pid, "gid_map", &s->gid_map);
		snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
		userns_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (userns_fd < 0)
			die(errno, "open %s", path);
	}
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

/* ------------------------------------------------------------------ */
/* start: the monitor answers the guest's sysinfo(2)                   */
/* ------------------------------------------------------------------ */

/*
 * With "meminfo", the guest's filter sends sysinfo(2) to a seccomp listener
 * (SECCOMP_RET_USER_NOTIF) instead of the kernel, and the monitor answers:
 * the host's uptime, loads and process count, with the memory figures of the
 * meminfo file the agent keeps current, so free(1) and friends agree with the
 * guest's /proc/meminfo.  The monitor answers, not the agent, so guests keep
 * working while no agent runs.  Listeners come from the guest's init (over
 * the sync socket) and from each vsinit exec (over the notify socket); each
 * serves its process and all its descendants, and reports POLLHUP once no
 * task uses its filter any more.
 */

enum watch_kind {
	WATCH_INIT,       /* pidfd of the guest's init: readable when it ends */
	WATCH_SOCKET,     /* the notify socket, listening */
	WATCH_CONNECTION, /* a vsinit exec about to send its listener */
	WATCH_LISTENER,   /* a seccomp listener */
};

struct sysinfo_server {
	const char *notify_socket;
	int meminfo_fd;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	size_t req_size, resp_size;
	struct pollfd *pfd;
	enum watch_kind *kind;
	size_t n, cap;
	int socket_index; /* -1 without a notify socket */
};

static int open_meminfo(const char *path)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open meminfo %s", path);
	if (fstat(fd, &st) < 0)
		die(errno, "stat meminfo %s", path);
	if (!S_ISREG(st.st_mode))
		die(S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "meminfo %s is not a regular file", path);
	return fd;
}

/* Returns -1 when the arrays cannot grow; the caller drops the fd. */
static int watch_add(struct sysinfo_server *srv, int fd, enum watch_kind kind)
{
	if (srv->n == srv->cap) {
		size_t cap = srv->cap ? srv->cap * 2 : 8;
		struct pollfd *pfd = realloc(srv->pfd, cap * sizeof *pfd);
		enum watch_kind *k;

		if (!pfd)
			return -1;
		srv->pfd = pfd;
		k = realloc(srv->kind, cap * sizeof *k);
		if (!k)
			return -1;
		srv->kind = k;
		srv->cap = cap;
	}
	srv->pfd[srv->n].fd = fd;
	srv->pfd[srv->n].events = POLLIN;
	srv->pfd[srv->n].revents = 0;
	srv->kind[srv->n] = kind;
	srv->n++;
	return 0;
}

/* The last watch takes the place of watch i. */
static void watch_drop(struct sysinfo_server *srv, size_t i)
{
	close(srv->pfd[i].fd);
	srv->n--;
	srv->pfd[i] = srv->pfd[srv->n];
	srv->kind[i] = srv->kind[srv->n];
	/* accept_exec may have paused for want of an fd. */
	if (srv->socket_index >= 0)
		srv->pfd[srv->socket_index].events = POLLIN;
}

/* Returns -1 when path does not fit. */
static int unix_address(struct sockaddr_un *addr, const char *path)
{
	size_t len = strlen(path);

	memset(addr, 0, sizeof *addr);
	addr->sun_family = AF_UNIX;
	if (len >= sizeof addr->sun_path)
		return -1;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

/* Where vsinit exec hands over its listener.  The mode of a socket file is
 * set at bind, from the umask: root-only from the start, since whoever can
 * connect can make the monitor serve any listener it likes. */
static int listen_notify_socket(const char *path)
{
	struct sockaddr_un addr;
	mode_t old;
	int fd, r;

	if (unix_address(&addr, path) < 0)
		die(ENAMETOOLONG, "notify socket %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(errno, "socket for notify socket %s", path);
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	if (r < 0)
		die(errno, "bind notify socket %s", path);
	socket_bound = path;
	if (listen(fd, SOMAXCONN) < 0)
		die(errno, "listen on notify socket %s", path);
	return fd;
}

/* Before the guest counts as started, so any failure here still takes it
 * down and is reported: everything the serving loop needs. */
static void sysinfo_server_start(struct sysinfo_server *srv, const struct spec *s, pid_t pid,
				 int sync_fd, int meminfo_fd)
{
	struct seccomp_notif_sizes sizes;
	int pidfd, listener, n;

	memset(srv, 0, sizeof *srv);
	srv->notify_socket = s->notify_socket;
	srv->meminfo_fd = meminfo_fd;
	srv->socket_index = -1;
	/* The kernel's structs may outgrow our headers' (seccomp_unotify(2)). */
	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
		die(errno, "seccomp SECCOMP_GET_NOTIF_SIZES");
	srv->req_size = sizes.seccomp_notif > sizeof *srv->req ? sizes.seccomp_notif : sizeof *srv->req;
	srv->resp_size = sizes.seccomp_notif_resp > sizeof *srv->resp ?
		sizes.seccomp_notif_resp : sizeof *srv->resp;
	srv->req = xmalloc(srv->req_size);
	srv->resp = xmalloc(srv->resp_size);

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		die(errno, "pidfd_open guest init %d", (int)pid);
	if (watch_add(srv, pidfd, WATCH_INIT) < 0)
		die(ENOMEM, "malloc");
	if (s->notify_socket) {
		srv->socket_index = (int)srv->n;
		if (watch_add(srv, listen_notify_socket(s->notify_socket), WATCH_SOCKET) < 0)
			die(ENOMEM, "malloc");
	}
	/* No filter in the spec, no listener: then only /proc/meminfo is the
	 * file's.  The child sent it before exec, and exec closed its end, so
	 * this cannot block. */
	if (s->filter) {
		n = recv_fds(sync_fd, &listener, 1, 0);
		if (n < 0)
			die(errno, "receive seccomp listener from guest init");
		if (n == 0)
			die(EPROTO, "receive seccomp listener from guest init: none sent");
		if (watch_add(srv, listener, WATCH_LISTENER) < 0)
			die(ENOMEM, "malloc");
	}
}

/* "Key:   123 kB" as in /proc/meminfo; 0 and the figure in bytes, or -1. */
static int meminfo_bytes(const char *text, const char *key, unsigned long *bytes)
{
	size_t kl = strlen(key);
	const char *p = text;
	unsigned long long kb;
	char *end;

	for (;;) {
		if (!strncmp(p, key, kl) && p[kl] == ':')
			break;
		p = strchr(p, '\n');
		if (!p)
			return -1;
		p++;
	}
	p += kl + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	kb = strtoull(p, &end, 10);
	if (errno || kb > ULONG_MAX / 1024 || (*end != ' ' && *end != '\n' && *end != '\0'))
		return -1;
	*bytes = (unsigned long)kb * 1024;
	return 0;
}

/* The guest's memory figures in place of the host's.  The file is read anew
 * for every call, since the agent rewrites it in place; a file that is
 * unreadable, incomplete or inconsistent (say, read mid-rewrite) leaves the
 * host's figures: an answer is always better than a failed or stuck call. */
static void guest_memory(int fd, struct sysinfo *info)
{
	char text[16384];
	unsigned long total, free, shared, buffers, swap_total, swap_free;
	ssize_t n;

	n = pread(fd, text, sizeof text - 1, 0);
	if (n <= 0)
		return;
	text[n] = '\0';
	if (meminfo_bytes(text, "MemTotal", &total) || meminfo_bytes(text, "MemFree", &free) ||
	    meminfo_bytes(text, "Shmem", &shared) || meminfo_bytes(text, "Buffers", &buffers) ||
	    meminfo_bytes(text, "SwapTotal", &swap_total) || meminfo_bytes(text, "SwapFree", &swap_free) ||
	    free > total || swap_free > swap_total)
		return;
	info->totalram = total;
	info->freeram = free;
	info->sharedram = shared;
	info->bufferram = buffers;
	info->totalswap = swap_total;
	info->freeswap = swap_free;
	/* No highmem on 64-bit, and the figures above are in bytes. */
	info->totalhigh = 0;
	info->freehigh = 0;
	info->mem_unit = 1;
}

/* The answer's error: 0, or -errno as the kernel's own sysinfo would fail. */
static int write_sysinfo(const struct sysinfo_server *srv, int listener, const struct seccomp_notif *req)
{
	struct sysinfo info;
	struct iovec local = { &info, sizeof info };
	struct iovec remote = { (void *)(uintptr_t)req->data.args[0], sizeof info };
	ssize_t n;

	if (sysinfo(&info) < 0)
		return -errno;
	guest_memory(srv->meminfo_fd, &info);
	/*
	 * req->pid names the caller only while its call waits for us: if it
	 * was killed meanwhile, the id is no longer valid (seccomp_unotify(2)).
	 * Checked right before the write; pids are handed out cyclically, so
	 * for this one to name another task the caller would have to die and
	 * the whole pid space wrap in between.  No check after: SEND fails with
	 * ENOENT by itself then, and a write cannot be taken back.
	 */
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) < 0)
		return -ESRCH;
	n = process_vm_writev(req->pid, &local, 1, &remote, 1, 0);
	if (n < 0)
		return -errno;
	/* A struct running into an unmapped page: what the kernel says too. */
	return n == (ssize_t)sizeof info ? 0 : -EFAULT;
}

/* Returns -1 when fd is no (longer a working) listener. */
static int answer_notification(struct sysinfo_server *srv, int listener)
{
	struct seccomp_notif *req = srv->req;
	struct seccomp_notif_resp *resp = srv->resp;

	/* RECV refuses a buffer that is not zeroed. */
	memset(req, 0, srv->req_size);
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0)
		/* ENOENT: the caller was killed before we got to it. */
		return errno == ENOENT || errno == EINTR ? 0 : -1;
	memset(resp, 0, srv->resp_size);
	resp->id = req->id;
	/* The filter sends nothing else; the kernel's answer without a
	 * listener would be ENOSYS. */
	resp->error = req->data.nr == SYS_sysinfo ? write_sysinfo(srv, listener, req) : -ENOSYS;
	/* ENOENT again if the caller is gone by now: nobody left to answer. */
	(void)ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp);
	return 0;
}

static void accept_exec(struct sysinfo_server *srv)
{
	int fd = accept4(srv->pfd[srv->socket_index].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd >= 0 && watch_add(srv, fd, WATCH_CONNECTION) == 0)
		return;
	if (fd >= 0)
		close(fd);
	else if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM)
		return;
	/* Out of fds or memory: the pending connection would make poll report
	 * the socket forever; wait until watch_drop frees something. */
	srv->pfd[srv->socket_index].events = 0;
}

/* One listener per connection (see connect_notify_socket). */
static void receive_exec_listener(struct sysinfo_server *srv, size_t i)
{
	int listener, n;

	n = recv_fds(srv->pfd[i].fd, &listener, 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	watch_drop(srv, i);
	if (n == 1 && watch_add(srv, listener, WATCH_LISTENER) < 0)
		/* Its processes get ENOSYS from sysinfo(2), as without a monitor. */
		close(listener);
}

/* Until the guest's init ends.  Returns early only if poll itself fails;
 * then the guest's sysinfo(2) calls get ENOSYS from now on (the listeners
 * are closed), but its exit is still recorded. */
static void serve_sysinfo(struct sysinfo_server *srv)
{
	for (;;) {
		size_t i;

		if (poll(srv->pfd, srv->n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (srv->pfd[0].revents)
			return;
		/* Downwards: watch_drop moves the last watch, already seen, into
		 * the gap, and new watches are appended out of this round's way. */
		for (i = srv->n; i-- > 1;) {
			short ev = srv->pfd[i].revents;

			if (!ev)
				continue;
			srv->pfd[i].revents = 0;
			switch (srv->kind[i]) {
			case WATCH_SOCKET:
				accept_exec(srv);
				break;
			case WATCH_CONNECTION:
				receive_exec_listener(srv, i);
				break;
			case WATCH_LISTENER:
				/* POLLHUP: no task uses its filter any more. */
				if (((ev & POLLIN) && answer_notification(srv, srv->pfd[i].fd) < 0) ||
				    (!(ev & POLLIN) && (ev & (POLLHUP | POLLERR | POLLNVAL))))
					watch_drop(srv, i);
				break;
			case WATCH_INIT:
				break;
			}
		}
	}
}

/* The notify socket goes before the exit file is written: once the agent
 * sees the exit it may start the guest again, with a new socket of the same
 * name. */
static void sysinfo_server_stop(struct sysinfo_server *srv)
{
	while (srv->n > 0)
		close(srv->pfd[--srv->n].fd);
	if (srv->notify_socket)
		unlink(srv->notify_socket);
	close(srv->meminfo_fd);
}

static int cmd_start(const char *specpath)
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
		ctx.console_fd = open(s.console, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
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
	/* The child inherits this cwd into its mount namespace: see start_child. */
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

/* ------------------------------------------------------------------ */
/* exec                                                                */
/* ------------------------------------------------------------------ */

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

static int cmd_exec(const char *specpath)
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

/* ------------------------------------------------------------------ */
/* netns                                                               */
/* ------------------------------------------------------------------ */

static int cmd_netns(const char *path)
{
	int fd;

	report_style = REPORT_STDERR;
	fail_code = 1;
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd >= 0) {
		netns_created = path;
		close(fd);
	} else if (errno != EEXIST) {
		die(errno, "create %s", path);
	}
	/* Only this thread moves, and we have only this thread. */
	if (unshare(CLONE_NEWNET) < 0)
		die(errno, "unshare network namespace for %s", path);
	if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) < 0)
		die(errno, "bind mount /proc/self/ns/net on %s", path);
	return 0;
}

/* ------------------------------------------------------------------ */
/* mount-root and userns-exec: a vserver's root outside a vserver     */
/* ------------------------------------------------------------------ */

/*
 * A user namespace with the spec's maps, held open by an fd: a child is
 * cloned into a new one, the maps are written from here (host root may map
 * any range), the namespace file is opened and the child is let go.  The
 * namespace lives on as long as the fd does.
 */
static int make_userns_fd(const struct spec *s)
{
	char path[64];
	int p[2], fd, status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		die(errno, "pipe");
	pid = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, 0UL);
	if (pid < 0)
		die(errno, "clone a user namespace");
	if (pid == 0) {
		char c;

		close(p[1]);
		(void)!read(p[0], &c, 1);
		_exit(0);
	}
	close(p[0]);
	write_id_map(pid, "uid_map", &s->uid_map);
	write_id_map(pid, "gid_map", &s->gid_map);
	snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open %s", path);
	close(p[1]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return fd;
}

/*
 * vsinit mount-root SPEC: the overlay a vserver's init would get (image
 * layers idmapped to its range, its upper and work), attached at `rootfs` in
 * the caller's mount namespace.  Promotion shares it with a domain through
 * virtiofs, or copies it into a disk image; the caller unmounts it.
 */
static int cmd_mount_root(const char *specpath)
{
	struct spec s;
	int userns_fd = -1, mfd;

	report_style = REPORT_STDERR;
	fail_code = 1;
	parse_spec(specpath, &s);
	require(specpath, s.rootfs != NULL, "rootfs");
	require(specpath, s.lower.n > 0, "lower");
	require(specpath, s.upper != NULL, "upper");
	require(specpath, s.work != NULL, "work");
	if (!s.uid_map.n != !s.gid_map.n)
		die(0, "spec %s: uid_map and gid_map go together", specpath);
	if (s.uid_map.n)
		userns_fd = make_userns_fd(&s);
	mfd = make_rootfs_mount(&s, userns_fd);
	if (move_mount(mfd, "", AT_FDCWD, s.rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die(errno, "attach overlay on %s", s.rootfs);
	close(mfd);
	if (userns_fd >= 0)
		close(userns_fd);
	return 0;
}

/*
 * vsinit grab-root PID PATH: attaches at PATH, in the caller's mount
 * namespace, a clone of the root mount of process PID's mount namespace (a
 * running vserver's init): the very overlay the vserver runs on, not a second
 * mount of its layers, so both see the same files while the vserver still
 * runs.  Promotion serves it to the domain that boots beside the vserver; the
 * clone keeps the overlay alive after the vserver's namespace is gone.  The
 * process must be single-threaded (setns of a mount namespace), as it is.
 */
static int cmd_grab_root(const char *pidtext, const char *target)
{
	unsigned long pid;
	char path[64];
	int theirs, ours, tree;

	report_style = REPORT_STDERR;
	fail_code = 1;
	if (parse_uint(pidtext, INT_MAX, &pid) < 0 || pid == 0)
		die(0, "grab-root: '%s' is not a process id", pidtext);
	snprintf(path, sizeof path, "/proc/%lu/ns/mnt", pid);
	theirs = open(path, O_RDONLY | O_CLOEXEC);
	if (theirs < 0)
		die(errno, "open %s", path);
	ours = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (ours < 0)
		die(errno, "open /proc/self/ns/mnt");
	/* Entering a mount namespace moves our root and cwd to its root. */
	if (setns(theirs, CLONE_NEWNS) < 0)
		die(errno, "setns into the mount namespace of %lu", pid);
	tree = open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		die(errno, "open_tree / of process %lu", pid);
	if (setns(ours, CLONE_NEWNS) < 0)
		die(errno, "setns back into our mount namespace");
	if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die(errno, "attach the root of %lu on %s", pid, target);
	close(tree);
	close(theirs);
	close(ours);
	return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo: undone in place. */
static void unescape_mountinfo(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

/* A private mount namespace starts with a copy of every host mount, other
 * guests' included.  Held by a long-lived tool (virtiofsd), such a copy would
 * keep a stopped guest's disk quota image on its loop device (and a removed
 * guest's network namespace alive) until the tool ends.  Detaches every mount
 * at or below `dir`, collected first: the table changes as we go. */
static void detach_below(const char *dir)
{
	struct list found = { NULL, 0 };
	size_t len = strlen(dir), cap = 0, i;
	char *line = NULL;
	FILE *f;

	while (len > 1 && dir[len - 1] == '/')
		len--;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		die(errno, "open /proc/self/mountinfo");
	while (getline(&line, &cap, f) > 0) {
		/* mount id, parent id, major:minor, root, then the mount point */
		char *point = line, *end;
		int field;

		for (field = 0; field < 4 && point; field++) {
			point = strchr(point, ' ');
			if (point)
				point++;
		}
		if (!point || !(end = strchr(point, ' ')))
			continue;
		*end = '\0';
		unescape_mountinfo(point);
		if (!strncmp(point, dir, len) && (point[len] == '/' || point[len] == '\0')) {
			char *copy = strdup(point);

			if (!copy)
				die(ENOMEM, "strdup");
			list_add(&found, copy);
		}
	}
	free(line);
	fclose(f);
	/* A mount detached with its parent is gone already: EINVAL. */
	for (i = found.n; i-- > 0;) {
		if (umount2(found.v[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			die(errno, "detach %s", found.v[i]);
		free(found.v[i]);
	}
	free(found.v);
}

/*
 * vsinit userns-exec SPEC: runs `arg...` (with the spec's `env`, if any) as
 * root of a new user namespace with the spec's maps, so a host tool sees a
 * vserver's files with the ids the vserver sees and creates files in its
 * range: virtiofsd serving a promoted vserver's root, mkfs.ext4 copying it.
 * The process keeps its pid: it is what the caller started.
 */
static int cmd_userns_exec(const char *specpath)
{
	struct spec s;
	int p[2], status;
	pid_t self = getpid(), helper;
	char c = 0;

	report_style = REPORT_STDERR;
	fail_code = 125;
	close_fds_from_3();
	parse_spec(specpath, &s);
	require(specpath, s.uid_map.n > 0, "uid_map");
	require(specpath, s.gid_map.n > 0, "gid_map");
	require(specpath, s.arg.n > 0, "arg");
	if (s.bind_source.n != s.bind_target.n)
		die(0, "spec %s: every bind_source needs its bind_target", specpath);
	/* Binds made as host root, before the user namespace: its root could not
	 * walk host directories that are not its own (virtiofsd also insists on
	 * writing a lock file to /run/virtiofsd). */
	if (s.bind_source.n || s.detach.n) {
		size_t i;

		if (unshare(CLONE_NEWNS) < 0)
			die(errno, "unshare mount namespace");
		if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
			die(errno, "make / a slave mount");
		for (i = 0; i < s.bind_source.n; i++)
			if (mount(s.bind_source.v[i], s.bind_target.v[i], NULL, MS_BIND | MS_REC, NULL) < 0)
				die(errno, "bind %s on %s", s.bind_source.v[i], s.bind_target.v[i]);
		/* After the binds, which are mounts of their own: their sources may lie below. */
		for (i = 0; i < s.detach.n; i++)
			detach_below(s.detach.v[i]);
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		die(errno, "pipe");
	helper = fork();
	if (helper < 0)
		die(errno, "fork");
	if (helper == 0) {
		/* Still host root in the host's namespace: map the parent once it has moved. */
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		write_id_map(self, "uid_map", &s.uid_map);
		write_id_map(self, "gid_map", &s.gid_map);
		_exit(0);
	}
	close(p[0]);
	if (unshare(CLONE_NEWUSER) < 0)
		die(errno, "unshare user namespace");
	if (write(p[1], &c, 1) != 1)
		die(errno, "wake the id map writer");
	close(p[1]);
	while (waitpid(helper, &status, 0) < 0)
		if (errno != EINTR)
			die(errno, "wait for the id map writer");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die(0, "writing the id maps of %d failed", (int)self);
	if (setgroups(0, NULL) < 0)
		die(errno, "setgroups");
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		die(errno, "become root of the user namespace");
	if (chdir(s.cwd) < 0)
		die(errno, "chdir %s", s.cwd);
	execvpe(s.arg.v[0], s.arg.v, s.env.n ? s.env.v : environ);
	die(errno, "exec %s", s.arg.v[0]);
}

/* ------------------------------------------------------------------ */

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
	if (argc != 3 || (strcmp(cmd, "start") && strcmp(cmd, "exec") && strcmp(cmd, "netns")
			  && strcmp(cmd, "mount-root") && strcmp(cmd, "userns-exec")))
		die(0, "usage: vsinit start SPECFILE | vsinit exec SPECFILE | vsinit netns PATH"
		       " | vsinit mount-root SPECFILE | vsinit userns-exec SPECFILE | vsinit grab-root PID PATH");
	/* Read while /proc is still the host's. */
	cap_last = read_cap_last_cap();
	if (!strcmp(cmd, "start"))
		return cmd_start(argv[2]);
	if (!strcmp(cmd, "exec"))
		return cmd_exec(argv[2]);
	if (!strcmp(cmd, "mount-root"))
		return cmd_mount_root(argv[2]);
	if (!strcmp(cmd, "userns-exec"))
		return cmd_userns_exec(argv[2]);
	return cmd_netns(argv[2]);
}
