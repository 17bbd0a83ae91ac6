/*
 * vsinit mount-root, grab-root and userns-exec: a vserver's root outside a
 * vserver, for promotion to a domain and demotion back.
 */

#include "vsinit.h"

/*
 * A user namespace with the spec's maps, held open by an fd: a child is
 * cloned into a new one, the maps are written from here (host root may map
 * any range), the namespace file is opened and the child is let go.  The
 * namespace lives on as long as the fd does.
 */
static int make_userns_fd(const struct spec *s)
{
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
	fd = map_and_open_userns(pid, s);
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
int cmd_mount_root(const char *specpath)
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
int cmd_grab_root(const char *pidtext, const char *target)
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
int cmd_userns_exec(const char *specpath)
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
