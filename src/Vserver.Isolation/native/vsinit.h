/*
 * vsinit: what its files share (see vsinit.c for the subcommands).
 *
 * vsinit is one single-threaded program made of several files, the way runc
 * keeps libcontainer/nsenter in several: the types every part uses (the
 * spec, the start context, the sysinfo server), the failure reporting every
 * part dies through, and the functions one part calls in another.
 */
#ifndef VSINIT_H
#define VSINIT_H

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

/* ------------------------------------------------------------------ */
/* Failure reporting (report.c)                                       */
/* ------------------------------------------------------------------ */

enum report_style {
	REPORT_STDERR,  /* "vsinit: MSG" on stderr (exec parent) */
	REPORT_MONITOR, /* "error MSG" on stdout for the agent, copy on stderr */
	REPORT_PIPE,    /* "CODE MSG" to the parent over the error pipe */
};

/* Set by each subcommand (and by each child it forks) before its first
 * failure can happen; report.c says what each is for. */
extern enum report_style report_style;
extern int report_fd;
extern int fail_code;
extern const char *guest_name;
extern pid_t monitor_child;
extern const char *socket_bound;

int write_all(int fd, const void *buf, size_t len);
void reap(pid_t pid);
void __attribute__((noreturn)) report_and_exit(const char *msg, int code);
void __attribute__((noreturn, format(printf, 2, 3))) die(int err, const char *fmt, ...);
void *xmalloc(size_t n);
char *xstrdup(const char *s);
char *join(const char *a, const char *b);
char *concat(const char *a, const char *b);

/* ------------------------------------------------------------------ */
/* Spec (spec.c)                                                      */
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
	/* start: the guest's /etc/resolv.conf, one entry a line, without the
	 * newline; present = written at start, absent = the guest's own kept. */
	struct list resolv;
	/* start: "TYPE OPTIONS DIR rw|ro" cgroup file systems mounted in the
	 * guest's cgroup namespace under /sys/fs/cgroup (DIR "." = on it);
	 * "DIR OPTIONS" tmpfs mounts on directories of the guest's root. */
	struct list cgroup_mount, tmpfs;
	struct sock_filter *filter;
	unsigned short filter_len;
	uint64_t cap_keep;
	pid_t target_pid;
	/* exec: how long the command's session has after SIGHUP before SIGKILL. */
	unsigned long hangup_grace_ms;
	int tty, no_new_privs;
	int have_tty, have_nnp, have_hangup_grace;
};

void list_add(struct list *l, char *s);
char *const *list_or_empty(const struct list *l);
int parse_uint(const char *s, unsigned long max, unsigned long *out);
void parse_spec(const char *path, struct spec *s);
void require(const char *path, int present, const char *key);

/* ------------------------------------------------------------------ */
/* Process helpers shared by the subcommands (process.c)              */
/* ------------------------------------------------------------------ */

/* The root, sysfs and meminfo mounts; one listener. */
#define MAX_PASSED_FDS 3

/* The highest capability number the kernel knows, read by main while /proc
 * is still the host's. */
extern int cap_last;

void close_fds_from_3(void);
void cloexec_fds_from_3(void);
void reset_signals(void);
void join_cgroup_fd(int fd, const char *path);
int read_cap_last_cap(void);
void drop_caps(uint64_t keep);
void set_no_new_privs(int on);
int load_filter(const struct spec *s, int want_listener);
void become_userns_root(void);
void __attribute__((noreturn)) exec_or_die(const struct spec *s);
int send_fds(int sock, const int *fds, int n);
int recv_fds(int sock, int *fds, int max, int flags);
size_t read_report(int fd, char *buf, size_t size);
const char *split_report(char *buf, int *code);
void write_id_map(pid_t pid, const char *file, const struct list *map);
int map_and_open_userns(pid_t pid, const struct spec *s);
int unix_address(struct sockaddr_un *addr, const char *path);

/* ------------------------------------------------------------------ */
/* start: the guest's init (init.c) and its monitor (monitor.c)       */
/* ------------------------------------------------------------------ */

struct start_ctx {
	const struct spec *s;
	int console_fd;
	int err_r, err_w;   /* the child's failure report, read by the monitor */
	int sync_m, sync_c; /* socketpair: the monitor's end, the child's end */
};

/* init.c: the clone(2) entry point of the guest's init. */
int start_child(void *arg);
/* monitor.c; mount-root makes the same overlay. */
int make_rootfs_mount(const struct spec *s, int userns_fd);

/* ------------------------------------------------------------------ */
/* start: the monitor answers the guest's sysinfo(2) (sysinfo.c)      */
/* ------------------------------------------------------------------ */

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

int open_meminfo(const char *path);
void sysinfo_server_start(struct sysinfo_server *srv, const struct spec *s, pid_t pid,
			  int sync_fd, int meminfo_fd);
void serve_sysinfo(struct sysinfo_server *srv);
void sysinfo_server_stop(struct sysinfo_server *srv);

/* ------------------------------------------------------------------ */
/* The subcommands, dispatched by main (vsinit.c)                     */
/* ------------------------------------------------------------------ */

int cmd_start(const char *specpath);                         /* monitor.c */
int cmd_exec(const char *specpath);                          /* exec.c */
int cmd_mount_root(const char *specpath);                    /* rootfs.c */
int cmd_grab_root(const char *pidtext, const char *target);  /* rootfs.c */
int cmd_userns_exec(const char *specpath);                   /* rootfs.c */

#endif
