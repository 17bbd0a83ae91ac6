/*
 * vsinit netns: a persistent network namespace bound at a path (what
 * `ip netns add` does, at our own path).
 */

#include "vsinit.h"

int cmd_netns(const char *path)
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
