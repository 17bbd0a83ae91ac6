/*
 * vsinit start, the guest's side: the init cloned by the monitor (monitor.c)
 * into new namespaces.  It waits for the monitor to prepare it, attaches the
 * mounts it is handed, makes /proc, /sys and /dev, pivots into the guest's
 * root, masks, writes /etc/resolv.conf, drops capabilities, loads the seccomp
 * filter and execs the guest's init program.
 */

#include "vsinit.h"

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

/* The guest's cgroup file systems, in its cgroup namespace (its own cgroup is
 * the root it sees): /sys/fs/cgroup is a cgroup2 mount itself (a pure v2
 * host), or a tmpfs holding one mount per hierarchy, read-only where the
 * guest may only look (the controllers the host enforces its limits with) and
 * writable where its init keeps its own tree (the named systemd hierarchy and
 * the unified one, which the monitor made the guest's root's).  Mounted before
 * pivot_root, in the fresh sysfs where the guest cannot have planted links. */
static void mount_cgroups(const char *sys, const struct list *mounts)
{
	char *root = join(sys, "fs/cgroup");
	size_t i;
	int on_tmpfs = 0;

	for (i = 0; i < mounts->n; i++) {
		char type[16], opts[256], dir[64], mode[4], *at;
		unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;

		sscanf(mounts->v[i], "%15s %255s %63s %3s", type, opts, dir, mode);
		if (!strcmp(mode, "ro"))
			flags |= MS_RDONLY;
		if (!strcmp(dir, ".")) {
			do_mount("cgroup2", root, "cgroup2", flags, NULL);
			continue;
		}
		if (!on_tmpfs)
			do_mount("cgroup", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k");
		on_tmpfs = 1;
		at = mountpoint(root, dir, 0755);
		do_mount("cgroup", at, type, flags, !strcmp(type, "cgroup") ? opts : NULL);
		free(at);
	}
	/* The tmpfs itself read-only: the guest may not add hierarchies of its own. */
	if (on_tmpfs)
		do_mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k");
	free(root);
}

/* tmpfs on directories of the guest's root (/run, /run/lock for systemd), in
 * order; each mount point must be a directory (a planted link is refused). */
static void mount_tmpfs(const struct list *mounts)
{
	size_t i;

	for (i = 0; i < mounts->n; i++) {
		char *dir = xstrdup(mounts->v[i] + 1), *opts = strchr(dir, ' '), *at;

		*opts++ = '\0';
		at = mountpoint(".", dir, 0755);
		do_mount("tmpfs", at, "tmpfs", MS_NOSUID | MS_NODEV, opts);
		free(at);
		free(dir);
	}
}

/* Each start of a guest is a boot of its own: a fresh boot id (as LXC gives
 * its containers), or systemd's journal takes every start for the same boot
 * (the kernel's id is the host's).  The file lives on the guest's /dev tmpfs
 * and is bound read-only over proc/sys/kernel/random/boot_id; the new procfs
 * and the fresh tmpfs hold no link the guest planted. */
static void new_boot_id(void)
{
	char id[64];
	int fd;
	ssize_t n;

	fd = open("proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open proc/sys/kernel/random/uuid");
	n = read(fd, id, sizeof id - 1);
	if (n <= 0)
		die(n < 0 ? errno : EIO, "read proc/sys/kernel/random/uuid");
	close(fd);
	fd = open("dev/.boot_id", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (fd < 0)
		die(errno, "create dev/.boot_id");
	if (write(fd, id, (size_t)n) != n)
		die(errno, "write dev/.boot_id");
	close(fd);
	bind_readonly("dev/.boot_id", "proc/sys/kernel/random/boot_id");
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

/* The per-mount flags statvfs reports and the mount flags that set them again. */
static const struct {
	unsigned long statvfs, mount;
} kept_flags[] = {
	{ ST_NOSUID, MS_NOSUID }, { ST_NODEV, MS_NODEV }, { ST_NOEXEC, MS_NOEXEC },
	{ ST_NOATIME, MS_NOATIME }, { ST_NODIRATIME, MS_NODIRATIME }, { ST_RELATIME, MS_RELATIME },
};

static void apply_readonly(const struct list *paths)
{
	size_t i, k;

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
		for (k = 0; k < sizeof kept_flags / sizeof *kept_flags; k++)
			if (sv.f_flag & kept_flags[k].statvfs)
				flags |= kept_flags[k].mount;
		if (mount(NULL, p, NULL, flags, NULL) < 0)
			die(errno, "remount %s read-only", p);
	}
}

/* The guest owns its root, so /etc/resolv.conf may be a symlink it planted
 * (systemd-resolved's stub, or anywhere) and /etc may be one too.  Nothing is
 * written through a link: /etc is opened without following one, the text goes
 * into a fresh file beside resolv.conf and is renamed over it (rename(2)
 * replaces a link itself, never its target).  Runs after pivot_root, so no
 * path can leave the guest's root, and as the root of the guest's user
 * namespace, so the file is the guest root's own. */
/* A root that cannot take the file (read-only, or its disk or quota full):
 * the guest starts with the resolv.conf it has, as it would without one. */
static int root_full(int e)
{
	return e == EROFS || e == ENOSPC || e == EDQUOT;
}

static void write_resolv_conf(const struct list *lines)
{
	static const char tmp[] = ".resolv.conf.vsinit";
	int etc, fd, e = 0;
	size_t i;

	if (mkdir("/etc", 0755) < 0 && errno != EEXIST) {
		if (root_full(errno))
			return;
		die(errno, "mkdir /etc for resolv.conf");
	}
	etc = open("/etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (etc < 0) {
		struct stat st;

		if (lstat("/etc", &st) == 0 && S_ISLNK(st.st_mode))
			die(ELOOP, "write /etc/resolv.conf: /etc is a symbolic link, not followed");
		die(errno, "open /etc for resolv.conf");
	}
	/* A file left by a start that died here, or anything the guest put there. */
	if (unlinkat(etc, tmp, 0) < 0 && errno != ENOENT) {
		if (root_full(errno)) {
			close(etc);
			return;
		}
		die(errno, "remove /etc/%s", tmp);
	}
	fd = openat(etc, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		if (root_full(errno)) {
			close(etc);
			return;
		}
		die(errno, "create /etc/%s", tmp);
	}
	for (i = 0; i < lines->n && !e; i++)
		if (write_all(fd, lines->v[i], strlen(lines->v[i])) < 0 || write_all(fd, "\n", 1) < 0)
			e = errno;
	if (!e && fchmod(fd, 0644) < 0)
		e = errno;
	if (close(fd) < 0 && !e)
		e = errno;
	if (e) {
		unlinkat(etc, tmp, 0);
		if (root_full(e)) {
			close(etc);
			return;
		}
		die(e, "write /etc/%s", tmp);
	}
	if (renameat(etc, tmp, etc, "resolv.conf") < 0) {
		e = errno;
		unlinkat(etc, tmp, 0);
		if (root_full(e)) {
			close(etc);
			return;
		}
		die(e, "rename /etc/%s to /etc/resolv.conf", tmp);
	}
	close(etc);
}

int start_child(void *arg)
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
	new_boot_id();
	mount_cgroups("sys", &s->cgroup_mount);
	mount_tmpfs(&s->tmpfs);
	enter_root(s->rootfs);
	apply_masks(&s->mask);
	apply_readonly(&s->readonly);
	if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
		die(errno, "sethostname %s", s->hostname);
	/* Before dropping caps: the guest's root may have made /etc unwritable
	 * to all but CAP_DAC_OVERRIDE. */
	if (s->resolv.n)
		write_resolv_conf(&s->resolv);
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
