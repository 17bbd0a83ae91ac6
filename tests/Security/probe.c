/*
 * probe - one escape or abuse attempt per subcommand, run from inside a vserver
 * by the security suite (tests/Security).
 *
 *   probe ATTEMPT [ARGS...]
 *
 * Prints exactly one line on stdout and exits:
 *   0  "refused: STEP; STEP; ..."   every step of the attempt was stopped
 *   1  "SUCCEEDED: STEP; ..."       some step got through: the escape worked
 *   2  "error: ..."                 the attempt could not even be made (bad
 *                                   arguments, no writable scratch directory)
 *
 * Each STEP is "what was tried: what happened", and a refusal carries the
 * errno as "strerror (ENAME)" plus, where the probe can tell, the defence that
 * answered: "seccomp", "masked", "read-only mount", "no CAP_X",
 * "CAP_X only in the vserver's own user namespace", "not mapped into its user
 * namespace", "pid namespace", "no device node".
 *
 * The probe never writes to a kernel interface it managed to open: opening a
 * host tunable, sysfs attribute or device for writing is already the escape,
 * and stopping there keeps a successful attempt harmless on a real host (the
 * suite runs several attempts on the host on purpose, to show that the probe
 * does report success).  Mounts happen in a private mount namespace when the
 * probe may make one, and are undone.  What it does change is set to what it
 * was: the clock (to the time just read), the clock's tick length, device
 * modes (chmod to the current mode), and the hostname, which it sets only in
 * a UTS namespace that is not the host's and then restores.  pty-trap alone
 * leaves the vserver changed (its /dev/pts replaced): give it its own.
 *
 * Scratch files go to $PROBE_TMP (default /tmp), named probe-PID-*.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* ------------------------------------------------------------------ */
/* The report: shared with forked children, printed once at the end    */
/* ------------------------------------------------------------------ */

struct report {
	int escaped;
	size_t len;
	char text[32768];
};

static struct report *rep;

static void vadd(const char *fmt, va_list ap)
{
	size_t room = sizeof rep->text - rep->len;
	int n;

	if (rep->len && room > 2) {
		memcpy(rep->text + rep->len, "; ", 3);
		rep->len += 2;
		room -= 2;
	}
	n = vsnprintf(rep->text + rep->len, room, fmt, ap);
	if (n > 0)
		rep->len += (size_t)n < room ? (size_t)n : room - 1;
	for (size_t i = 0; i < rep->len; i++)
		if (rep->text[i] == '\n')
			rep->text[i] = ' ';
}

/* A neutral observation. */
static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vadd(fmt, ap);
	va_end(ap);
}

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "errno?";
}

/* A step the system stopped: "WHAT: strerror (ENAME)[, WHY]". */
static void __attribute__((format(printf, 3, 4))) refused(int err, const char *why, const char *fmt, ...)
{
	char what[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (why && *why)
		note("%s: %s (%s), %s", what, strerror(err), ename(err), why);
	else
		note("%s: %s (%s)", what, strerror(err), ename(err));
}

/* A step that got through: the attempt succeeded. */
static void __attribute__((format(printf, 1, 2))) got_through(const char *fmt, ...)
{
	char what[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	rep->escaped = 1;
	note("%s: SUCCEEDED", what);
}

static void __attribute__((noreturn, format(printf, 1, 2))) setup_error(const char *fmt, ...)
{
	va_list ap;

	printf("error: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(2);
}

static int finish(void)
{
	if (rep->len == 0)
		note("nothing was tried");
	printf("%s: %s\n", rep->escaped ? "SUCCEEDED" : "refused", rep->text);
	fflush(stdout);
	return rep->escaped ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* What the probe can tell about its own confinement                   */
/* ------------------------------------------------------------------ */

static const char *const cap_names[] = {
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
	"LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
	"CHECKPOINT_RESTORE",
};

static int has_cap(int cap)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return 0;
	return (data[cap / 32].effective >> (cap % 32)) & 1;
}

/* Not the initial user namespace: the first uid_map line is not "0 0 4294967295". */
static int in_userns(void)
{
	unsigned long a, b, c;
	FILE *f = fopen("/proc/self/uid_map", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%lu %lu %lu", &a, &b, &c);
	fclose(f);
	return n == 3 && !(a == 0 && b == 0 && c == 4294967295UL);
}

/* Why a capability check said no, as far as the probe can see. */
static const char *why_cap(int cap)
{
	static char buf[8][160];
	static int next;
	char *b = buf[next++ % 8];

	if (!has_cap(cap))
		snprintf(b, 160, "no CAP_%s", cap_names[cap]);
	else if (in_userns())
		snprintf(b, 160, "CAP_%s only in the vserver's own user namespace", cap_names[cap]);
	else
		snprintf(b, 160, "despite CAP_%s", cap_names[cap]);
	return b;
}

static unsigned long overflow_uid(void)
{
	unsigned long v = 65534;
	FILE *f = fopen("/proc/sys/kernel/overflowuid", "r");

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 65534;
		fclose(f);
	}
	return v;
}

/* Why opening PATH said EACCES/EPERM: an owner its user namespace cannot map
 * gets only the "other" bits, whatever capabilities root holds there. */
static const char *why_access(const char *path, int cap)
{
	static char buf[4][256];
	static int next;
	char *b = buf[next++ % 4];
	struct stat st;

	if (stat(path, &st) == 0 && in_userns() && st.st_uid == overflow_uid())
		snprintf(b, 256, "owner (host root) not mapped into its user namespace, mode %03o", st.st_mode & 0777);
	else
		snprintf(b, 256, "%s", why_cap(cap));
	return b;
}

/* /dev/null bound over a path: the vserver's masking of kernel interfaces. */
static int is_dev_null(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

static int path_is_readonly_mount(const char *path)
{
	struct statvfs sv;

	return statvfs(path, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

static const char *why_open(const char *path, int err, int cap)
{
	switch (err) {
	case EROFS:
		return "read-only mount";
	case ENOENT:
		return "not present in the vserver";
	case EACCES:
	case EPERM:
		return why_access(path, cap);
	default:
		return "";
	}
}

/* Tells the seccomp filter from the kernel: the filter gives a syscall its
 * errno (FILTER_ERRNO) whatever the arguments, so RET/ERR are the outcome of
 * a malformed call that the kernel itself rejects with KERNEL_ERRNO before
 * any permission check. */
static const char *why_filter(long ret, int err, int filter_errno, int kernel_errno)
{
	static char buf[4][200];
	static int next;
	char *b = buf[next++ % 4];

	if (ret < 0 && err == filter_errno)
		snprintf(b, 200, "seccomp filter (even a malformed call gets %s, where the kernel would say %s)", ename(filter_errno),
			 ename(kernel_errno));
	else
		snprintf(b, 200, "no seccomp rule (a malformed call gets %s)", ret < 0 ? ename(err) : "success");
	return b;
}

/* ------------------------------------------------------------------ */
/* Scratch space and namespaces                                        */
/* ------------------------------------------------------------------ */

static char scratch_dir[2048];
static char scratch_paths[64][4096];
static int scratch_count;

static const char *scratch(const char *name)
{
	char *p;

	if (scratch_count == 64)
		setup_error("too many scratch paths");
	p = scratch_paths[scratch_count++];
	snprintf(p, 4096, "%s/probe-%d-%s", scratch_dir, (int)getpid(), name);
	return p;
}

static const char *scratch_mkdir(const char *name)
{
	const char *p = scratch(name);

	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		setup_error("mkdir %s: %s", p, strerror(errno));
	return p;
}

static void cleanup_scratch_from(int first)
{
	for (int i = scratch_count - 1; i >= first; i--) {
		umount2(scratch_paths[i], MNT_DETACH);
		if (rmdir(scratch_paths[i]) < 0)
			unlink(scratch_paths[i]);
	}
}

static int private_mntns;

/* Whatever the attempt mounts or unmounts stays in the probe's own copy of the
 * mount namespace (allowed for root of a user-namespaced vserver and on the
 * host; a privileged vserver cannot mount at all). */
static void enter_private_mount_ns(void)
{
	if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
		private_mntns = 1;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	err = errno;
	close(fd);
	errno = err;
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* In a forked child: a new user namespace (plus EXTRA namespaces) whose root
 * is the caller's uid.  Returns 0, or -1 after noting the refusal. */
static int new_userns_as_root(int extra)
{
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	long r;
	int err;

	if (unshare(CLONE_NEWUSER | extra) < 0) {
		err = errno;
		r = syscall(SYS_unshare, CLONE_NEWUSER | 0x80000000UL);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "unshare(CLONE_NEWUSER%s)", extra ? "|..." : "");
		return -1;
	}
	note("unshare(CLONE_NEWUSER%s): allowed", extra ? "|CLONE_NEWNS|..." : "");
	snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
	if (write_file("/proc/self/uid_map", map) < 0) {
		refused(errno, "", "map root in the new user namespace");
		return -1;
	}
	write_file("/proc/self/setgroups", "deny");
	snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
	if (write_file("/proc/self/gid_map", map) < 0) {
		refused(errno, "", "map root's group in the new user namespace");
		return -1;
	}
	note("root of a new user namespace with CapEff %s", has_cap(21) ? "full" : "reduced");
	return 0;
}

/* Runs FN in a forked child and waits; the child reports into the shared report. */
static void in_child(void (*fn)(void *), void *arg)
{
	int first = scratch_count, status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		setup_error("fork: %s", strerror(errno));
	if (pid == 0) {
		fn(arg);
		cleanup_scratch_from(first);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/* A new procfs on scratch dir NAME, or NULL after noting why not. */
static const char *fresh_proc(const char *name)
{
	const char *dir = scratch_mkdir(name);

	if (mount("proc", dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		refused(errno, why_cap(21), "mount a fresh procfs");
		return NULL;
	}
	note("mount a fresh procfs: allowed (it shows the pid namespace of the vserver)");
	return dir;
}

static int read_some(const char *path, char *buf, size_t size, int *masked)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	*masked = 0;
	if (fd < 0)
		return -1;
	*masked = is_dev_null(fd);
	n = read(fd, buf, size - 1);
	if (n < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	buf[n] = '\0';
	close(fd);
	return (int)n;
}

/* ------------------------------------------------------------------ */
/* Attempts                                                            */
/* ------------------------------------------------------------------ */

/* Open PATH for writing; success only if the real interface opened (not the
 * /dev/null over a masked path).  Never writes. */
static void try_open_for_writing(const char *label, const char *path, int cap)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0) {
		refused(errno, why_open(path, errno, cap), "open %s for writing", label);
		return;
	}
	if (is_dev_null(fd))
		note("open %s for writing: masked (/dev/null is bound over it, writes go nowhere)", label);
	else
		got_through("open %s for writing", label);
	close(fd);
}

/* 1: /proc/sysrq-trigger, directly, with its mask removed and in a fresh procfs. */
static int attempt_sysrq(void)
{
	const char *proc;
	char path[4200];

	try_open_for_writing("/proc/sysrq-trigger", "/proc/sysrq-trigger", 21);
	if (umount2("/proc/sysrq-trigger", MNT_DETACH) == 0) {
		note("unmount the mask: allowed");
		try_open_for_writing("/proc/sysrq-trigger with the mask gone", "/proc/sysrq-trigger", 21);
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : errno == EINVAL ? "not a mount" : "", "unmount the mask on /proc/sysrq-trigger");
	}
	if ((proc = fresh_proc("proc"))) {
		snprintf(path, sizeof path, "%s/sysrq-trigger", proc);
		try_open_for_writing("sysrq-trigger of a fresh procfs", path, 21);
	}
	return finish();
}

static void read_kcore(const char *label, const char *path)
{
	char buf[16];
	int masked, n = read_some(path, buf, sizeof buf, &masked);

	if (n < 0)
		refused(errno, why_open(path, errno, 17), "read %s", label);
	else if (masked)
		note("read %s: masked (/dev/null is bound over it, %d bytes)", label, n);
	else if (n >= 4 && !memcmp(buf, "\177ELF", 4))
		got_through("read %s (ELF header of kernel memory)", label);
	else
		note("read %s: %d bytes, no ELF header", label, n);
}

static void read_kallsyms(const char *label, const char *path)
{
	char buf[256];
	int masked, n = read_some(path, buf, sizeof buf, &masked);
	unsigned long long addr;

	if (n < 0)
		refused(errno, why_open(path, errno, 34), "read %s", label);
	else if (masked)
		note("read %s: masked (/dev/null is bound over it, %d bytes)", label, n);
	else if (sscanf(buf, "%llx", &addr) == 1 && addr != 0)
		got_through("read %s (kernel address %llx)", label, addr);
	else
		note("read %s: addresses shown as zero (kptr_restrict: %s)", label, why_cap(34));
}

/* A masked /proc file: read it, then again with the mask unmounted, then
 * through a fresh procfs. */
static int try_masked_proc_file(const char *name, void (*read_file)(const char *, const char *))
{
	const char *proc;
	char path[4200], label[4300];

	snprintf(path, sizeof path, "/proc/%s", name);
	read_file(path, path);
	if (umount2(path, MNT_DETACH) == 0) {
		note("unmount the mask on %s: allowed", path);
		snprintf(label, sizeof label, "%s with the mask gone", path);
		read_file(label, path);
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : errno == EINVAL ? "not a mount" : "", "unmount the mask on %s", path);
	}
	if ((proc = fresh_proc("proc"))) {
		snprintf(label, sizeof label, "%s of a fresh procfs", name);
		snprintf(path, sizeof path, "%s/%s", proc, name);
		read_file(label, path);
	}
	return finish();
}

/* 2: /proc/kcore. */
static int attempt_kcore(void)
{
	return try_masked_proc_file("kcore", read_kcore);
}

/* Kernel addresses from /proc/kallsyms (what KASLR hides). */
static int attempt_kallsyms(void)
{
	return try_masked_proc_file("kallsyms", read_kallsyms);
}

/* What the masks hide: unmount them or mount a fresh procfs, and read. */
static int attempt_unmask(void)
{
	static const char *const masked[] = { "timer_list", "key-users", "keys", "kpagecount", "kpageflags", "sched_debug" };
	const char *proc = NULL;
	char path[4200], buf[256];
	size_t i;
	int m, n;

	for (i = 0; i < sizeof masked / sizeof masked[0]; i++) {
		snprintf(path, sizeof path, "/proc/%s", masked[i]);
		if (access(path, F_OK) < 0)
			continue;
		if (umount2(path, MNT_DETACH) < 0) {
			refused(errno, errno == EPERM ? why_cap(21) : errno == EINVAL ? "not a mount" : "", "unmount the mask on %s", path);
			continue;
		}
		note("unmount the mask on %s: allowed", path);
		n = read_some(path, buf, sizeof buf, &m);
		if (n < 0)
			refused(errno, why_open(path, errno, 21), "read %s", path);
		else if (m)
			note("read %s: still masked", path);
		else if (n > 0)
			got_through("read %s (%d bytes: %.40s)", path, n, buf);
		else
			note("read %s: empty (the kernel shows nothing of other user namespaces)", path);
	}
	if ((proc = fresh_proc("proc"))) {
		for (i = 0; i < sizeof masked / sizeof masked[0]; i++) {
			snprintf(path, sizeof path, "%s/%s", proc, masked[i]);
			if (access(path, F_OK) < 0)
				continue;
			n = read_some(path, buf, sizeof buf, &m);
			if (n < 0)
				refused(errno, why_open(path, errno, 21), "read %s of a fresh procfs", masked[i]);
			else if (n > 0)
				got_through("read %s of a fresh procfs (%d bytes: %.40s)", masked[i], n, buf);
			else
				note("read %s of a fresh procfs: empty (the kernel shows nothing of other user namespaces)", masked[i]);
		}
	}
	return finish();
}

static const char *mknod_why(int err)
{
	return err == EPERM ? why_cap(27) : "";
}

/* Makes a block or character device node in scratch; NULL after noting why not. */
static const char *make_node(const char *name, mode_t type, unsigned maj, unsigned min)
{
	const char *p = scratch(name);

	if (mknod(p, type | 0600, makedev(maj, min)) < 0) {
		refused(errno, mknod_why(errno), "mknod %s %c %u:%u", name, S_ISBLK(type) ? 'b' : 'c', maj, min);
		return NULL;
	}
	note("mknod %s %c %u:%u: allowed", name, S_ISBLK(type) ? 'b' : 'c', maj, min);
	return p;
}

/* 3: a node for the host's root disk: having one is the escape (what opening
 * it then gives is up to the device's own checks); reading it is reported. */
static int attempt_mknod_disk(unsigned maj, unsigned min)
{
	const char *p = scratch("disk");
	char sector[512];
	int fd;

	if (mknod(p, S_IFBLK | 0600, makedev(maj, min)) < 0) {
		refused(errno, mknod_why(errno), "mknod disk b %u:%u", maj, min);
		return finish();
	}
	got_through("mknod disk b %u:%u", maj, min);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		note("open the node: %s (%s)", strerror(errno), ename(errno));
	else if (read(fd, sector, sizeof sector) == (ssize_t)sizeof sector)
		note("read the disk's first sector through it: yes");
	else
		note("read the node: %s (%s)", strerror(errno), ename(errno));
	if (fd >= 0)
		close(fd);
	return finish();
}

static void try_mount_disk(const char *label, const char *src, const char *dir)
{
	static const char *const types[] = { "ext4", "xfs", "btrfs" };
	struct statfs sf;
	int err = 0;

	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		if (mount(src, dir, types[i], MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
			if (statfs(dir, &sf) == 0)
				got_through("mount %s (%s) on %s (f_type %lx)", label, types[i], dir, (unsigned long)sf.f_type);
			else
				got_through("mount %s (%s) on %s", label, types[i], dir);
			umount2(dir, MNT_DETACH);
			return;
		}
		err = errno;
		/* Only a wrong filesystem type is worth another guess. */
		if (err != EINVAL && err != ENODEV)
			break;
	}
	refused(err, err == EPERM ? why_cap(21) : err == ENOENT ? "no such device node in the vserver" : "", "mount %s", label);
}

/* 4: mount(2) of the host's root disk by its host path, through a node made
 * with mknod, through /proc/1/root, and with the new mount API. */
static int attempt_mount_disk(const char *hostdev, unsigned maj, unsigned min)
{
	const char *dir = scratch_mkdir("mnt"), *node;
	char path[4200];
	long r;
	int err;

	try_mount_disk(hostdev, hostdev, dir);
	snprintf(path, sizeof path, "/proc/1/root%s", hostdev);
	try_mount_disk(path, path, dir);
	if ((node = make_node("disk", S_IFBLK, maj, min)))
		try_mount_disk("the node made with mknod", node, dir);
	r = syscall(SYS_fsopen, "ext4", 0);
	if (r >= 0) {
		got_through("fsopen(ext4)");
		close((int)r);
	} else {
		err = errno;
		r = syscall(SYS_fsopen, "no-such-filesystem", 0);
		refused(err, why_filter(r, errno, ENOSYS, ENODEV), "fsopen(ext4) (new mount API)");
	}
	return finish();
}

/* 5: /sys read-write: write access to a host-wide sysfs attribute, directly,
 * after remounting /sys read-write and through a fresh sysfs. */
static int attempt_sys_rw(void)
{
	static const char *const attrs[] = { "kernel/mm/transparent_hugepage/enabled", "kernel/profiling", "power/state",
					     "kernel/uevent_helper" };
	const char *attr = NULL, *dir;
	char path[4200];
	size_t i;

	for (i = 0; i < sizeof attrs / sizeof attrs[0] && !attr; i++) {
		snprintf(path, sizeof path, "/sys/%s", attrs[i]);
		if (access(path, F_OK) == 0)
			attr = attrs[i];
	}
	if (!attr)
		setup_error("none of the host-wide sysfs attributes exists under /sys");
	snprintf(path, sizeof path, "/sys/%s", attr);
	note("/sys is %s", path_is_readonly_mount("/sys") ? "a read-only mount" : "writable");
	try_open_for_writing(path, path, 21);

	if (mount(NULL, "/sys", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
		got_through("remount the sysfs superblock read-write");
	else
		refused(errno, why_cap(21), "remount the sysfs superblock read-write");
	if (mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
		note("bind-remount /sys read-write: allowed (only this mount's flag)");
		try_open_for_writing(path, path, 21);
	} else {
		refused(errno, errno == EPERM ? (in_userns() ? "read-only flag locked" : why_cap(21)) : "",
			"bind-remount /sys read-write");
	}
	dir = scratch_mkdir("sys");
	if (mount("sysfs", dir, "sysfs", 0, NULL) == 0) {
		note("mount a fresh sysfs: allowed");
		snprintf(path, sizeof path, "%s/%s", dir, attr);
		try_open_for_writing("that attribute in a fresh sysfs", path, 21);
	} else {
		refused(errno, errno == EPERM ? (in_userns() ? "its network namespace belongs to the host's user namespace" : why_cap(21)) : "",
			"mount a fresh sysfs");
	}
	return finish();
}

/* 6: kernel tunables under /proc/sys (opened for writing only). */
static int attempt_sysctl(void)
{
	/* Host-wide ones only: net/ and the UTS ones belong to the vserver's own namespaces. */
	static const char *const tunables[] = { "kernel/core_pattern", "vm/drop_caches", "kernel/modprobe", "kernel/panic" };
	const char *proc;
	char path[4200];
	size_t i;

	for (i = 0; i < sizeof tunables / sizeof tunables[0]; i++) {
		snprintf(path, sizeof path, "/proc/sys/%s", tunables[i]);
		if (access(path, F_OK) == 0)
			try_open_for_writing(path, path, 21);
	}
	if (mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
		note("bind-remount /proc/sys read-write: allowed (only this mount's flag)");
		for (i = 0; i < sizeof tunables / sizeof tunables[0]; i++) {
			snprintf(path, sizeof path, "/proc/sys/%s", tunables[i]);
			if (access(path, F_OK) == 0)
				try_open_for_writing(path, path, 21);
		}
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : "", "bind-remount /proc/sys read-write");
	}
	if ((proc = fresh_proc("proc"))) {
		for (i = 0; i < sizeof tunables / sizeof tunables[0]; i++) {
			char label[256];
			snprintf(path, sizeof path, "%s/sys/%s", proc, tunables[i]);
			snprintf(label, sizeof label, "sys/%s of a fresh procfs", tunables[i]);
			if (access(path, F_OK) == 0)
				try_open_for_writing(label, path, 21);
		}
	}
	return finish();
}

static void cgroup_mounts(const char *where, const char *dirname)
{
	static const char *const hierarchies[] = { "rdma", "memory", "pids", "freezer", "none,name=probe" };
	const char *dir = scratch_mkdir(dirname);
	char path[4200], opts[4200];
	int fd;

	for (size_t i = 0; i < sizeof hierarchies / sizeof hierarchies[0]; i++) {
		if (mount("cgroup", dir, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, hierarchies[i]) < 0) {
			refused(errno, errno == EPERM ? why_cap(21) : errno == EINVAL ? "no such controller here" : "",
				"%smount cgroup v1 %s", where, hierarchies[i]);
			continue;
		}
		note("%smount cgroup v1 %s: allowed (rooted at the vserver's own cgroup)", where, hierarchies[i]);
		snprintf(path, sizeof path, "%s/release_agent", dir);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0) {
			got_through("open its release_agent for writing");
			close(fd);
		} else {
			refused(errno, errno == ENOENT ? "the mount's root is not the hierarchy's root" : why_open(path, errno, 21),
				"open its release_agent for writing");
		}
		snprintf(path, sizeof path, "%s/notify_on_release", dir);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0) {
			got_through("open its notify_on_release for writing");
			close(fd);
		} else {
			refused(errno, why_open(path, errno, 21), "open its notify_on_release for writing");
		}
		umount2(dir, MNT_DETACH);
	}
	snprintf(opts, sizeof opts, "memory,release_agent=%s", scratch("agent"));
	if (mount("cgroup", dir, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) == 0) {
		got_through("%smount cgroup v1 memory with release_agent=", where);
		umount2(dir, MNT_DETACH);
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : errno == EINVAL ? "setting release_agent is refused outside the host's user namespace" : "",
			"%smount cgroup v1 memory with release_agent=", where);
	}
}

static void cgroup_in_new_userns(void *arg)
{
	(void)arg;
	if (new_userns_as_root(CLONE_NEWNS | CLONE_NEWCGROUP) == 0)
		cgroup_mounts("in it: ", "cg-userns");
}

/* 7: the cgroup v1 release_agent escape (CVE-2022-0492). */
static int attempt_release_agent(void)
{
	cgroup_mounts("", "cg");
	in_child(cgroup_in_new_userns, NULL);
	return finish();
}

/* Both module syscalls check CAP_SYS_MODULE before looking at their
 * arguments, so only a kernel without module support tells the filter apart
 * (it says ENOSYS). */
static void judge_module_call(const char *call, long r, int err, int have_modules)
{
	char why[256];

	if (r == 0) {
		got_through("%s", call);
		return;
	}
	if (err == EPERM && !have_modules)
		snprintf(why, sizeof why, "seccomp filter (this kernel has no module support and would say ENOSYS)");
	else if (err == EPERM)
		snprintf(why, sizeof why, "seccomp filter or %s", why_cap(16));
	else
		snprintf(why, sizeof why, "%s", err == ENOSYS ? "kernel without module support" : "");
	refused(err, why, "%s", call);
}

/* 8: loading a kernel module. */
static int attempt_module(void)
{
	int have_modules = access("/proc/modules", F_OK) == 0;
	char image[64] = "\177ELF";
	long r;
	int fd;

	r = syscall(SYS_init_module, image, sizeof image, "");
	judge_module_call("init_module", r, errno, have_modules);
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	r = syscall(SYS_finit_module, fd, "", 0);
	judge_module_call("finit_module", r, errno, have_modules);
	if (fd >= 0)
		close(fd);
	return finish();
}

/* 9: setting the clock (to the time just read, so success changes nothing). */
static int attempt_clock(void)
{
	struct timespec ts;
	struct timeval tv, bad = { 0, 2000000 };
	struct timex tx;
	int tick;
	long r;
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (clock_settime(CLOCK_REALTIME, &ts) == 0) {
		got_through("clock_settime(CLOCK_REALTIME)");
	} else {
		err = errno;
		r = syscall(SYS_clock_settime, 0x7ff, &ts);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "clock_settime(CLOCK_REALTIME)");
	}
	gettimeofday(&tv, NULL);
	if (settimeofday(&tv, NULL) == 0) {
		got_through("settimeofday");
	} else {
		err = errno;
		r = syscall(SYS_settimeofday, &bad, NULL);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "settimeofday");
	}
	/* Read the tick length, then set it to what it is. */
	memset(&tx, 0, sizeof tx);
	r = syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx);
	if (r < 0) {
		err = errno;
		r = syscall(SYS_clock_adjtime, CLOCK_REALTIME, NULL);
		refused(err, why_filter(r, errno, EPERM, EFAULT), "clock_adjtime(read)");
	} else {
		tick = (int)tx.tick;
		memset(&tx, 0, sizeof tx);
		tx.modes = ADJ_TICK;
		tx.tick = tick;
		if (syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx) >= 0)
			got_through("clock_adjtime(ADJ_TICK %d, unchanged)", tick);
		else
			refused(errno, errno == EPERM ? why_cap(25) : "", "clock_adjtime(ADJ_TICK)");
	}
	return finish();
}

static int count_pids(const char *proc)
{
	DIR *d = opendir(proc);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
			n++;
	closedir(d);
	return n;
}

/* Whether PROC (a procfs mount) shows host pid PID as the process it is on the host (comm COMM). */
static void look_for_pid(const char *label, const char *proc, int pid, const char *comm)
{
	char path[4200], buf[64];
	int masked, n;

	snprintf(path, sizeof path, "%s/%d/comm", proc, pid);
	n = read_some(path, buf, sizeof buf, &masked);
	if (n < 0) {
		refused(errno, errno == ENOENT ? "pid namespace: no such pid in it" : "", "find pid %d in %s (it lists %d processes)",
			pid, label, count_pids(proc));
		return;
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (!strcmp(buf, comm))
		got_through("find pid %d in %s: it is %s", pid, label, buf);
	else
		note("find pid %d in %s: a different process (%s) of the vserver's pid namespace", pid, label, buf);
}

/* 10: host processes in /proc and kill(pid, 0). */
static int attempt_host_pids(int pid, const char *comm)
{
	look_for_pid("/proc", "/proc", pid, comm);
	if (kill(pid, 0) == 0)
		got_through("kill(%d, 0)", pid);
	else
		refused(errno, errno == ESRCH ? "pid namespace: no such pid in it" : "", "kill(%d, 0)", pid);
	return finish();
}

static void fresh_proc_in_pidns(void *arg)
{
	const char *const *a = arg;
	const char *proc;

	if (new_userns_as_root(CLONE_NEWNS) < 0)
		return;
	if ((proc = fresh_proc("procns")))
		look_for_pid("that procfs", proc, atoi(a[0]), a[1]);
}

/* 11: a fresh procfs, to see host processes. */
static int attempt_proc_mount(int pid, const char *comm)
{
	const char *proc = fresh_proc("proc");
	char pidstr[16];
	const char *args[2] = { pidstr, comm };

	if (proc)
		look_for_pid("the fresh procfs", proc, pid, comm);
	snprintf(pidstr, sizeof pidstr, "%d", pid);
	in_child(fresh_proc_in_pidns, args);
	return finish();
}

static void try_connect(const char *label, const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa.sun_path) {
		note("connect %s: path too long for sockaddr_un", label);
		close(fd);
		return;
	}
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
		got_through("connect to %s", label);
	else
		refused(errno, errno == ENOENT ? "the path does not exist in the vserver's mount namespace" : "", "connect to %s", label);
	close(fd);
}

/* 12: the agent's unix socket. */
static int attempt_agent_socket(const char *sock)
{
	char path[4200], line[1024];
	FILE *f;
	int listed = 0;

	try_connect(sock, sock);
	snprintf(path, sizeof path, "/proc/1/root%s", sock);
	try_connect(path, path);
	snprintf(path, sizeof path, "/proc/self/root%s", sock);
	try_connect(path, path);
	if ((f = fopen("/proc/net/unix", "r"))) {
		while (fgets(line, sizeof line, f))
			if (strstr(line, sock))
				listed = 1;
		fclose(f);
	}
	note("/proc/net/unix %s it", listed ? "lists" : "does not list");
	return finish();
}

/* 13: /dev/kvm, /dev/mem, /dev/port, as they are and made with mknod. */
static int attempt_devices(void)
{
	static const struct {
		const char *name;
		unsigned maj, min;
	} devs[] = { { "kvm", 10, 232 }, { "mem", 1, 1 }, { "port", 1, 4 } };
	char path[64];
	const char *node;
	int fd;

	for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
		snprintf(path, sizeof path, "/dev/%s", devs[i].name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			got_through("open %s", path);
			close(fd);
		} else {
			refused(errno, errno == ENOENT ? "no device node" : why_open(path, errno, 17), "open %s", path);
		}
		if ((node = make_node(devs[i].name, S_IFCHR, devs[i].maj, devs[i].min))) {
			/* As with the disk: a node of one's own is the escape, whether or not this kernel has the device
			 * behind it (some hosts have no kvm, mem or port at all). */
			got_through("a %s node of its own", devs[i].name);
			fd = open(node, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				got_through("open the %s node made with mknod", devs[i].name);
				close(fd);
			} else {
				refused(errno, "", "open the %s node made with mknod", devs[i].name);
			}
		}
	}
	return finish();
}

struct disk {
	const char *dev;
	unsigned maj, min;
};

static void privileged_ops(void *arg)
{
	const struct disk *disk = arg;
	const char *node, *dir;
	struct timeval tv;
	long r;
	int err;

	if (new_userns_as_root(CLONE_NEWNS) < 0)
		return;
	try_open_for_writing("/proc/sysrq-trigger", "/proc/sysrq-trigger", 21);
	try_open_for_writing("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_pattern", 21);
	if (umount2("/proc/sys", MNT_DETACH) == 0) {
		note("unmount /proc/sys: allowed");
		try_open_for_writing("/proc/sys/kernel/core_pattern with /proc/sys gone", "/proc/sys/kernel/core_pattern", 21);
	} else {
		refused(errno, errno == EINVAL ? "mounts from the outer namespace are locked" : why_cap(21), "unmount /proc/sys");
	}
	if (sethostname("probe", 5) == 0)
		note("sethostname: allowed (the vserver's own UTS namespace)");
	else
		refused(errno, why_cap(21), "sethostname");
	gettimeofday(&tv, NULL);
	if (settimeofday(&tv, NULL) == 0) {
		got_through("settimeofday");
	} else {
		err = errno;
		struct timeval bad = { 0, 2000000 };
		r = syscall(SYS_settimeofday, &bad, NULL);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "settimeofday");
	}
	dir = scratch_mkdir("mnt");
	if ((node = make_node("disk", S_IFBLK, disk->maj, disk->min)))
		try_mount_disk("the node made with mknod", node, dir);
	try_mount_disk(disk->dev, disk->dev, dir);
}

/* 14: a new user namespace, to regain capabilities over host resources. */
static int attempt_userns(const char *dev, unsigned maj, unsigned min)
{
	struct disk disk = { dev, maj, min };
	long r;
	int err;

	in_child(privileged_ops, &disk);
	/* The same through clone and clone3, which a filter must cover too. */
	r = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, 0);
	if (r == 0)
		_exit(0);
	if (r > 0) {
		waitpid((pid_t)r, NULL, 0);
		note("clone(CLONE_NEWUSER): allowed");
	} else {
		err = errno;
		/* CLONE_NEWUSER with CLONE_FS is invalid: the kernel says EINVAL. */
		r = syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | CLONE_FS | SIGCHLD), NULL, NULL, NULL, 0);
		if (r == 0)
			_exit(0);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "clone(CLONE_NEWUSER)");
	}
	{
		struct {
			uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
		} args = { CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0 };
		r = syscall(SYS_clone3, &args, sizeof args);
		if (r == 0)
			_exit(0);
		if (r > 0) {
			waitpid((pid_t)r, NULL, 0);
			note("clone3(CLONE_NEWUSER): allowed");
		} else {
			err = errno;
			r = syscall(SYS_clone3, NULL, 0);
			refused(err, why_filter(r, errno, ENOSYS, EINVAL), "clone3(CLONE_NEWUSER)");
		}
	}
	return finish();
}

/* 15: loading a BPF program. */
static int attempt_bpf(void)
{
	struct bpf_insn insns[2];
	union bpf_attr attr;
	char log[256];
	long r;
	int err;

	memset(insns, 0, sizeof insns);
	insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = 0 */
	insns[1].code = BPF_JMP | BPF_EXIT;
	memset(&attr, 0, sizeof attr);
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uint64_t)(uintptr_t)insns;
	attr.insn_cnt = 2;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	attr.log_buf = (uint64_t)(uintptr_t)log;
	attr.log_size = sizeof log;
	attr.log_level = 0;
	r = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
	if (r >= 0) {
		got_through("bpf(BPF_PROG_LOAD socket filter)");
		close((int)r);
	} else {
		err = errno;
		r = syscall(SYS_bpf, 0x7fff, NULL, 0);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "bpf(BPF_PROG_LOAD socket filter)");
	}
	memset(&attr, 0, sizeof attr);
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
	if (r >= 0) {
		got_through("bpf(BPF_MAP_CREATE)");
		close((int)r);
	} else {
		err = errno;
		r = syscall(SYS_bpf, 0x7fff, NULL, 0);
		refused(err, why_filter(r, errno, EPERM, EINVAL), "bpf(BPF_MAP_CREATE)");
	}
	return finish();
}

/* 15b: perf events, for this process and system-wide. */
static int attempt_perf(void)
{
	struct perf_event_attr attr;
	long r;
	int err;

	memset(&attr, 0, sizeof attr);
	attr.size = sizeof attr;
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.disabled = 1;
	attr.exclude_kernel = 1;
	r = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	if (r >= 0) {
		got_through("perf_event_open(this process)");
		close((int)r);
	} else {
		err = errno;
		r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
		refused(err, why_filter(r, errno, EPERM, EFAULT), "perf_event_open(this process)");
	}
	attr.exclude_kernel = 0;
	r = syscall(SYS_perf_event_open, &attr, -1, 0, -1, 0);
	if (r >= 0) {
		got_through("perf_event_open(every process on cpu 0)");
		close((int)r);
	} else {
		err = errno;
		r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
		refused(err, why_filter(r, errno, EPERM, EFAULT), "perf_event_open(every process on cpu 0)");
	}
	return finish();
}

/* The kernel keyring: shared by every container of a host user. */
static int attempt_keyctl(void)
{
	long r;
	int err;

	r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
	if (r >= 0) {
		got_through("keyctl(KEYCTL_GET_KEYRING_ID, user keyring)");
	} else {
		err = errno;
		r = syscall(SYS_keyctl, 0x7fff, 0, 0);
		refused(err, why_filter(r, errno, EPERM, EOPNOTSUPP), "keyctl(KEYCTL_GET_KEYRING_ID, user keyring)");
	}
	r = syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
	if (r >= 0) {
		got_through("add_key(user, process keyring)");
	} else {
		err = errno;
		r = syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
		refused(err, why_filter(r, errno, EPERM, EFAULT), "add_key(user, process keyring)");
	}
	r = syscall(SYS_request_key, "user", "probe", NULL, KEY_SPEC_PROCESS_KEYRING);
	if (r >= 0) {
		got_through("request_key(user)");
	} else {
		err = errno;
		r = syscall(SYS_request_key, NULL, NULL, NULL, 0);
		refused(err, why_filter(r, errno, EPERM, EFAULT), "request_key(user)");
	}
	return finish();
}

/* "Shocker": open_by_handle_at reaches any inode of a filesystem it has a
 * mount fd for; /dev/null is a bind mount of the host's devtmpfs. */
static int attempt_shocker(void)
{
	struct {
		struct file_handle fh;
		unsigned char buf[MAX_HANDLE_SZ];
	} h;
	int mount_id, mfd, fd, err;
	long r;

	memset(&h, 0, sizeof h);
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(AT_FDCWD, "/dev/null", &h.fh, &mount_id, 0) < 0) {
		refused(errno, "", "name_to_handle_at(/dev/null)");
		return finish();
	}
	note("name_to_handle_at(/dev/null): type %d, %u bytes", h.fh.handle_type, h.fh.handle_bytes);
	mfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fd = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		got_through("open_by_handle_at(the host devtmpfs inode behind /dev/null)");
		close(fd);
	} else {
		err = errno;
		r = syscall(SYS_open_by_handle_at, -1, NULL, 0);
		refused(err, why_filter(r, errno, EPERM, EBADF), "open_by_handle_at(the host devtmpfs inode behind /dev/null)");
	}
	close(mfd);
	return finish();
}

/* ptrace of a process outside the vserver's pid namespace. */
static int attempt_ptrace(int pid)
{
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) == 0)
		got_through("ptrace(PTRACE_SEIZE, %d)", pid); /* detached at exit; SEIZE does not stop it */
	else
		refused(errno, errno == ESRCH ? "pid namespace: no such pid in it" : errno == EPERM ? why_cap(19) : "",
			"ptrace(PTRACE_SEIZE, %d)", pid);
	return finish();
}

/* In a child's new user namespace, the probe (root of the namespace above it)
 * writes uid_map "0 ID 1": only a process of the parent namespace may map ids
 * other than its own.  Returns 0 if the map was taken, else the errno. */
static int map_child_uid(unsigned long id, int *unshare_err)
{
	int ready[2], done[2], err = 0, result;
	char map[64], path[64];
	pid_t pid;

	if (pipe(ready) < 0 || pipe(done) < 0)
		setup_error("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		setup_error("fork: %s", strerror(errno));
	if (pid == 0) {
		char c;
		close(ready[0]);
		close(done[1]);
		if (unshare(CLONE_NEWUSER) < 0)
			err = errno;
		if (write(ready[1], &err, sizeof err) != sizeof err)
			_exit(1);
		/* Stay until the parent has tried the map. */
		while (read(done[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	if (read(ready[0], &err, sizeof err) != sizeof err)
		setup_error("the child making a user namespace died");
	*unshare_err = err;
	result = err;
	if (!err) {
		snprintf(map, sizeof map, "0 %lu 1", id);
		snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
		result = write_file(path, map) == 0 ? 0 : errno;
	}
	close(done[1]);
	close(ready[0]);
	waitpid(pid, NULL, 0);
	return result;
}

/* Writing uid_map to reach ids beyond the vserver's range (ID: the first id
 * past it; ID-1, still inside, shows the same write works there). */
static int attempt_uid_map(unsigned long target)
{
	int err, unshare_err;
	long r;

	if (write_file("/proc/self/uid_map", "0 0 4294967295") == 0)
		got_through("rewrite /proc/self/uid_map to 0 0 4294967295");
	else
		refused(errno, errno == EPERM ? "a user namespace's map is written once, by its parent" : "",
			"rewrite /proc/self/uid_map to 0 0 4294967295");

	err = map_child_uid(target - 1, &unshare_err);
	if (unshare_err) {
		r = syscall(SYS_unshare, CLONE_NEWUSER | 0x80000000UL);
		refused(unshare_err, why_filter(r, errno, EPERM, EINVAL), "unshare(CLONE_NEWUSER)");
		return finish();
	}
	if (err)
		refused(err, "", "map uid 0 of a new user namespace to id %lu (the last inside)", target - 1);
	else
		note("map uid 0 of a new user namespace to id %lu (the last inside): allowed", target - 1);
	err = map_child_uid(target, &unshare_err);
	if (!err)
		got_through("map uid 0 of a new user namespace to outside id %lu", target);
	else
		refused(err, err == EPERM ? "that id is not mapped into the vserver's user namespace" : "",
			"map uid 0 of a new user namespace to outside id %lu", target);
	return finish();
}

static void chroot_escape(void *arg)
{
	const char *marker = arg;
	const char *jail = scratch_mkdir("jail");
	struct stat before, after;
	int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

	/* Visible already would be an escape too: the climb below then still sees it. */
	note("the host path %s is %s", marker, access(marker, F_OK) == 0 ? "visible before any trick" : "not visible");
	stat("/", &before);
	if (chroot(jail) < 0) {
		refused(errno, errno == EPERM ? why_cap(18) : "", "chroot into a jail");
		return;
	}
	note("chroot into a jail: allowed");
	if (fchdir(rootfd) < 0) {
		refused(errno, "", "fchdir to the saved fd of /");
		return;
	}
	for (int i = 0; i < 512; i++)
		if (chdir("..") < 0)
			break;
	if (chroot(".") < 0) {
		refused(errno, "", "chroot . after climbing");
		return;
	}
	stat("/", &after);
	if (access(marker, F_OK) == 0)
		got_through("climb out with fchdir + ..: the host path %s is visible", marker);
	else if (after.st_dev != before.st_dev || after.st_ino != before.st_ino)
		got_through("climb out with fchdir + ..: above the vserver's root (dev %lx ino %lu)", (unsigned long)after.st_dev,
			    (unsigned long)after.st_ino);
	else
		note("climb out with fchdir + ..: stopped at the vserver's root (pivot_root left nothing above it), %s not visible",
		     marker);
}

/* chroot escape: a saved fd of /, a chroot into a subdirectory, `..` climbing. */
static int attempt_chroot(const char *marker)
{
	in_child(chroot_escape, (void *)marker);
	return finish();
}

/* The hostname: only if this is not the host's UTS namespace is it set (and restored). */
static int attempt_hostname(const char *host_uts)
{
	char mine[64], old[256];
	ssize_t n = readlink("/proc/self/ns/uts", mine, sizeof mine - 1);

	if (n < 0)
		setup_error("readlink /proc/self/ns/uts: %s", strerror(errno));
	mine[n] = '\0';
	if (!strcmp(mine, host_uts)) {
		got_through("share the host's UTS namespace %s (sethostname would rename the host; not called)", mine);
		return finish();
	}
	gethostname(old, sizeof old);
	if (sethostname("probe-renamed", 13) == 0) {
		note("sethostname: allowed in its own UTS namespace %s (the host's is %s)", mine, host_uts);
		sethostname(old, strlen(old));
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : "", "sethostname (own UTS namespace %s, the host's is %s)", mine, host_uts);
	}
	return finish();
}

static int read_last_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

/* The race on `vsctl exec`: the command's process enters the vserver's pid
 * namespace first and its mount namespace a moment later; in between, its
 * /proc/PID/root is the host's root.  For SECONDS, watches each new pid (the
 * newest few, again and again while they live) and tries to see MARKER, a
 * host-only path, through its /proc/PID/root. */
static int attempt_exec_race(const char *marker, int seconds)
{
	int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
	int me = getpid(), first, newest, eacces = 0, inside = 0, other = 0, exe_err = 0;
	struct timespec start, now;
	char path[4200], target[4096];

	if (fd < 0)
		setup_error("open /proc/sys/kernel/ns_last_pid: %s", strerror(errno));
	first = read_last_pid(fd) + 1;
	newest = first - 1;
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!rep->escaped) {
		int n = read_last_pid(fd);

		if (n > newest)
			newest = n;
		for (int p = newest - 3 > first ? newest - 3 : first; p <= newest + 1 && !rep->escaped; p++) {
			struct stat st;
			ssize_t len;
			int exe;

			if (p == me)
				continue;
			snprintf(path, sizeof path, "/proc/%d/root%s", p, marker);
			if (stat(path, &st) == 0) {
				struct timespec pause = { 0, 300 * 1000 * 1000 };
				int rootfd;

				snprintf(path, sizeof path, "/proc/%d/root", p);
				rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
				got_through("through /proc/%d/root of an entering exec: the host path %s is visible", p, marker);
				if (rootfd >= 0) {
					/* Still the host's / once the exec has moved on: checked, never written. */
					nanosleep(&pause, NULL);
					note("an fd of it kept: %s still visible through it 300 ms later: %s; host /etc writable through it: %s",
					     marker, fstatat(rootfd, marker + 1, &st, 0) == 0 ? "yes" : "no",
					     faccessat(rootfd, "etc", W_OK, AT_EACCESS) == 0 ? "yes" : "no");
					close(rootfd);
				}
				break;
			}
			if (errno == EACCES)
				eacces++;
			else if (errno == ENOENT)
				/* No such pid, or the marker is not there: in the vserver's mount namespace. */
				inside += snprintf(path, sizeof path, "/proc/%d", p) > 0 && access(path, F_OK) == 0;
			else
				other++;
			/* CVE-2019-5736: the entering process is still the host's vsinit binary. */
			snprintf(path, sizeof path, "/proc/%d/exe", p);
			len = readlink(path, target, sizeof target - 1);
			if (len < 0) {
				if (errno == EACCES)
					exe_err = EACCES;
				continue;
			}
			target[len] = '\0';
			if (len < 7 || strcmp(target + len - 7, "/vsinit"))
				continue;
			exe = open(path, O_WRONLY | O_CLOEXEC);
			if (exe >= 0) {
				got_through("open /proc/%d/exe (the host's vsinit) for writing", p);
				close(exe);
			} else if (errno != ENOENT && errno != ESRCH) {
				exe_err = errno;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= seconds)
			break;
	}
	close(fd);
	if (!rep->escaped) {
		note("watched %d new pids for %d s: their /proc/PID/root gave EACCES %d times (ptrace access check), "
		     "showed the vserver's own root %d times, failed otherwise %d times",
		     newest - first + 1, seconds, eacces, inside, other);
		if (exe_err)
			refused(exe_err, exe_err == ETXTBSY ? "the binary is running" : exe_err == EACCES ? "ptrace access check" : "",
				"reach the host's vsinit through /proc/PID/exe");
	}
	return finish();
}

/* The host's device inodes bound into the vserver's /dev (and over masked
 * /proc files): chmod to the mode they already have, a no-op that needs the
 * same right as chmod 0. */
static int attempt_dev_metadata(void)
{
	static const char *const paths[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
					     "/proc/kallsyms" };
	struct stat st;

	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		if (stat(paths[i], &st) < 0) {
			refused(errno, "", "stat %s", paths[i]);
			continue;
		}
		if (chmod(paths[i], st.st_mode & 07777) == 0)
			got_through("chmod %s (device %u:%u, mode %03o kept)", paths[i], major(st.st_rdev), minor(st.st_rdev),
				    st.st_mode & 0777);
		else
			refused(errno, errno == EROFS ? "read-only bind mount" : errno == EPERM ? why_access(paths[i], 3) : "", "chmod %s",
				paths[i]);
	}
	return finish();
}

/* Sets the trap for the agent's `exec -t`, which opens /proc/INIT/root/dev/pts/ptmx
 * as host root: /dev/pts/ptmx becomes a symlink to TARGET, a host path.  Run
 * in the vserver's own mount namespace (the one /proc/INIT/root shows). */
static int attempt_pty_trap(const char *target)
{
	if (umount2("/dev/pts", MNT_DETACH) == 0) {
		note("unmount /dev/pts: allowed");
	} else {
		refused(errno, errno == EPERM ? why_cap(21) : "", "unmount /dev/pts");
		if (rename("/dev/pts", "/dev/pts.old") == 0)
			note("move /dev/pts aside: allowed");
		else
			refused(errno, errno == EBUSY ? "it is a mount point" : "", "move /dev/pts aside");
	}
	if (mkdir("/dev/pts", 0755) < 0 && errno != EEXIST)
		refused(errno, "", "mkdir /dev/pts");
	if (symlink(target, "/dev/pts/ptmx") == 0)
		note("trap set: /dev/pts/ptmx -> %s", target);
	else
		refused(errno, errno == EEXIST ? "/dev/pts/ptmx is still the vserver's devpts" : "", "symlink /dev/pts/ptmx -> %s", target);
	return finish();
}

/* On the host: whether anybody opens PATH within MS milliseconds (inotify). */
static int attempt_watch_open(const char *path, int ms)
{
	struct inotify_event *ev;
	char buf[4096] __attribute__((aligned(8)));
	struct timespec start, now;
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	if (fd < 0 || inotify_add_watch(fd, path, IN_OPEN) < 0)
		setup_error("inotify on %s: %s", path, strerror(errno));
	/* Ready: the test waits for this line before it acts. */
	fprintf(stderr, "watching\n");
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);

		if (n > 0) {
			ev = (struct inotify_event *)buf;
			if (ev->mask & IN_OPEN) {
				got_through("the host file %s was opened", path);
				break;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= ms) {
			note("nobody opened the host file %s within %d ms", path, ms);
			break;
		}
		usleep(2000);
	}
	close(fd);
	return finish();
}

/* Files a vserver writes belong to it. */
static int attempt_write_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		setup_error("create %s: %s", path, strerror(errno));
	if (write(fd, "probe\n", 6) != 6)
		setup_error("write %s: %s", path, strerror(errno));
	close(fd);
	note("wrote %s as uid %u", path, (unsigned)geteuid());
	return finish();
}

/* ------------------------------------------------------------------ */

static unsigned parse_num(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	if (!*s || *end)
		setup_error("%s must be a number, not \"%s\"", what, s);
	return (unsigned)v;
}

static void usage(void)
{
	setup_error("usage: probe sysrq | kcore | kallsyms | unmask-proc | mknod-disk MAJ MIN | mount-disk DEV MAJ MIN | "
		    "sys-rw | sysctl | release-agent | module | clock | host-pids PID COMM | proc-mount PID COMM | "
		    "agent-socket PATH | devices | userns DEV MAJ MIN | bpf | perf | keyctl | shocker | ptrace PID | "
		    "uid-map ID | chroot MARKER | hostname HOST_UTS_NS | exec-race MARKER SECONDS | dev-metadata | pty-trap TARGET | "
		    "watch-open PATH MS | write-file PATH");
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	const char *tmp = getenv("PROBE_TMP");
	int code;

	rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rep == MAP_FAILED)
		setup_error("mmap: %s", strerror(errno));
	if (tmp && strlen(tmp) >= sizeof scratch_dir)
		setup_error("PROBE_TMP is too long");
	snprintf(scratch_dir, sizeof scratch_dir, "%s", tmp && *tmp ? tmp : "/tmp");
	setvbuf(stdout, NULL, _IOFBF, 65536);
	/* These act on the vserver's real mount namespace or need none. */
	if (strcmp(cmd, "exec-race") && strcmp(cmd, "write-file") && strcmp(cmd, "hostname") && strcmp(cmd, "pty-trap") &&
	    strcmp(cmd, "watch-open") && strcmp(cmd, "dev-metadata"))
		enter_private_mount_ns();

#define ARGS(n)                     \
	do {                        \
		if (argc != (n) + 2) \
			usage();    \
	} while (0)
	if (!strcmp(cmd, "sysrq")) {
		ARGS(0);
		code = attempt_sysrq();
	} else if (!strcmp(cmd, "kcore")) {
		ARGS(0);
		code = attempt_kcore();
	} else if (!strcmp(cmd, "kallsyms")) {
		ARGS(0);
		code = attempt_kallsyms();
	} else if (!strcmp(cmd, "unmask-proc")) {
		ARGS(0);
		code = attempt_unmask();
	} else if (!strcmp(cmd, "mknod-disk")) {
		ARGS(2);
		code = attempt_mknod_disk(parse_num(argv[2], "MAJ"), parse_num(argv[3], "MIN"));
	} else if (!strcmp(cmd, "mount-disk")) {
		ARGS(3);
		code = attempt_mount_disk(argv[2], parse_num(argv[3], "MAJ"), parse_num(argv[4], "MIN"));
	} else if (!strcmp(cmd, "sys-rw")) {
		ARGS(0);
		code = attempt_sys_rw();
	} else if (!strcmp(cmd, "sysctl")) {
		ARGS(0);
		code = attempt_sysctl();
	} else if (!strcmp(cmd, "release-agent")) {
		ARGS(0);
		code = attempt_release_agent();
	} else if (!strcmp(cmd, "module")) {
		ARGS(0);
		code = attempt_module();
	} else if (!strcmp(cmd, "clock")) {
		ARGS(0);
		code = attempt_clock();
	} else if (!strcmp(cmd, "host-pids")) {
		ARGS(2);
		code = attempt_host_pids((int)parse_num(argv[2], "PID"), argv[3]);
	} else if (!strcmp(cmd, "proc-mount")) {
		ARGS(2);
		code = attempt_proc_mount((int)parse_num(argv[2], "PID"), argv[3]);
	} else if (!strcmp(cmd, "agent-socket")) {
		ARGS(1);
		code = attempt_agent_socket(argv[2]);
	} else if (!strcmp(cmd, "devices")) {
		ARGS(0);
		code = attempt_devices();
	} else if (!strcmp(cmd, "userns")) {
		ARGS(3);
		code = attempt_userns(argv[2], parse_num(argv[3], "MAJ"), parse_num(argv[4], "MIN"));
	} else if (!strcmp(cmd, "bpf")) {
		ARGS(0);
		code = attempt_bpf();
	} else if (!strcmp(cmd, "perf")) {
		ARGS(0);
		code = attempt_perf();
	} else if (!strcmp(cmd, "keyctl")) {
		ARGS(0);
		code = attempt_keyctl();
	} else if (!strcmp(cmd, "shocker")) {
		ARGS(0);
		code = attempt_shocker();
	} else if (!strcmp(cmd, "ptrace")) {
		ARGS(1);
		code = attempt_ptrace((int)parse_num(argv[2], "PID"));
	} else if (!strcmp(cmd, "uid-map")) {
		ARGS(1);
		code = attempt_uid_map(parse_num(argv[2], "ID"));
	} else if (!strcmp(cmd, "chroot")) {
		ARGS(1);
		code = attempt_chroot(argv[2]);
	} else if (!strcmp(cmd, "hostname")) {
		ARGS(1);
		code = attempt_hostname(argv[2]);
	} else if (!strcmp(cmd, "exec-race")) {
		ARGS(2);
		code = attempt_exec_race(argv[2], (int)parse_num(argv[3], "SECONDS"));
	} else if (!strcmp(cmd, "dev-metadata")) {
		ARGS(0);
		code = attempt_dev_metadata();
	} else if (!strcmp(cmd, "pty-trap")) {
		ARGS(1);
		code = attempt_pty_trap(argv[2]);
	} else if (!strcmp(cmd, "watch-open")) {
		ARGS(2);
		code = attempt_watch_open(argv[2], (int)parse_num(argv[3], "MS"));
	} else if (!strcmp(cmd, "write-file")) {
		ARGS(1);
		code = attempt_write_file(argv[2]);
	} else {
		usage();
	}
	cleanup_scratch_from(0);
	return code;
}
