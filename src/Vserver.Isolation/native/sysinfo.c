/*
 * vsinit start: the monitor answers the guest's sysinfo(2).
 *
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

#include "vsinit.h"

int open_meminfo(const char *path)
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
void sysinfo_server_start(struct sysinfo_server *srv, const struct spec *s, pid_t pid,
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

/* One listener per connection (see connect_notify_socket in exec.c). */
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
void serve_sysinfo(struct sysinfo_server *srv)
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
void sysinfo_server_stop(struct sysinfo_server *srv)
{
	while (srv->n > 0)
		close(srv->pfd[--srv->n].fd);
	if (srv->notify_socket)
		unlink(srv->notify_socket);
	close(srv->meminfo_fd);
}
