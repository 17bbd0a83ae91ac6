/*
 * vsinit: failure reporting.  Every part of vsinit reports its first failure
 * the same way, with the operation, the path and the errno, in the form the
 * current process's reader expects (report_style), and exits.  Also the
 * allocation and path helpers that die instead of returning NULL.
 */

#include "vsinit.h"

enum report_style report_style = REPORT_STDERR;
int report_fd = -1;
int fail_code = 1;
const char *guest_name;
/* A monitor failing after clone must not leave a half-set-up guest behind. */
pid_t monitor_child;
/* start: nor a notify socket a failed start bound. */
const char *socket_bound;

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

int write_all(int fd, const void *buf, size_t len)
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

void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

void __attribute__((noreturn)) report_and_exit(const char *msg, int code)
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
		break;
	}
	_exit(code);
}

/* err == 0: the message needs no errno suffix. */
void __attribute__((noreturn, format(printf, 2, 3))) die(int err, const char *fmt, ...)
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

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die(ENOMEM, "malloc");
	return p;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

/* a + "/" + b without doubling a trailing slash of a. */
char *join(const char *a, const char *b)
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

char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = xmalloc(la + lb + 1);

	memcpy(p, a, la);
	memcpy(p + la, b, lb + 1);
	return p;
}
