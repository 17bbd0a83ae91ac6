/*
 * vsguest: the vserver guest agent of a domain (a full VM under QEMU).
 *
 * The initramfs /init starts it as `vsguest /newroot` just before switch_root.
 * It chroots into the new root at once (so it lives in the guest's root after
 * switch_root moves that mount onto /, and does not care that switch_root
 * deletes the initramfs files), then double-forks and setsid()s, so it is a
 * child of nobody's script and busybox init leaves it alone. Commands it runs
 * see the guest's own filesystem, /proc and /dev.
 *
 * It does two things:
 *   - runs commands for the host over the virtio-serial port named
 *     org.vserver.agent.0 (QEMU: -device virtio-serial-device
 *     -device virtserialport,chardev=agent,name=org.vserver.agent.0);
 *   - watches /dev/input/event* for a KEY_POWER press (the ACPI power button,
 *     i.e. QMP system_powerdown) and runs the guest's /sbin/poweroff, since a
 *     busybox guest has no acpid.
 *
 * Without udev there is no /dev/virtio-ports/NAME link: the port is found by
 * scanning /sys/class/virtio-ports/vport*\/name and opening /dev/vportNpM
 * (devtmpfs makes the node). Until it exists the agent retries.
 *
 * ---------------------------------------------------------------- protocol --
 * Binary frames, integers little-endian:
 *     [u8 type][u32 session][u32 length][length bytes of payload]
 * length <= 65536 (MAX_PAYLOAD); a larger length is a protocol error (the
 * agent drops what it has buffered and hangs up the host's sessions).
 * Session 0 is the connection itself; the host picks session ids for OPEN.
 * Strings are UTF-8 without a terminator unless said otherwise.
 *
 * host -> guest
 *   0x01 PING    session 0, empty. Answered with HELLO.
 *   0x02 OPEN    [u8 flags (bit 0: tty)][u16 rows][u16 cols][u16 argc]
 *                [u16 envc] then NUL-terminated strings: cwd (empty = "/"),
 *                argc argv words, envc "KEY=VALUE" entries. Answered with
 *                STARTED or ERROR. The command runs as root in a new session
 *                (setsid), default signal dispositions and mask, no other fds,
 *                environment PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:
 *                /usr/bin:/sbin:/bin, HOME=/root (TERM=xterm with a tty)
 *                overridden by the given entries; argv[0] is looked up in PATH.
 *   0x03 STDIN   data for the command's stdin; empty = end of file (with a
 *                tty: the terminal's EOF character, ^D).
 *   0x04 SIGNAL  [u32 signo]: sent to the command's process group.
 *   0x07 HANGUP  [u32 grace ms] (version 2): the host's client went away.
 *                SIGHUP and SIGCONT to every process of the command's
 *                session, SIGKILL to what is left of it after the grace.
 *                The session goes on as usual: EXIT when the command ends.
 *   0x05 RESIZE  [u16 rows][u16 cols]: the tty's window size.
 *   0x06 ACK     [u32 n]: the host consumed n bytes of this session's
 *                STDOUT/STDERR payload.
 *
 * guest -> host
 *   0x81 HELLO   session 0, [u16 protocol version (1)][u64 agent instance]
 *                [kernel release]. Sent when the agent starts, when a host
 *                connects, and in answer to PING. The instance is random per
 *                agent start: a new one means the guest rebooted.
 *   0x82 STARTED [u32 guest pid]
 *   0x83 ERROR   [i32 shell-style exit code][one-line message], e.g. 127
 *                "exec: foo: No such file or directory", 126 for other exec
 *                or chdir failures, 255 for a bad request. The session is over.
 *   0x84 STDOUT  data (with a tty: everything the terminal printed)
 *   0x85 STDERR  data
 *   0x86 EXIT    [i32 code]: exit status, or 128+N when killed by signal N.
 *                Sent after the last STDOUT/STDERR of the session.
 *   0x87 INACK   [u32 n]: n bytes of STDIN were written to the command.
 *
 * Flow control: per session, at most WINDOW (256 KiB) of output may be sent
 * and not yet ACKed (the agent stops reading that command's pipes until the
 * host ACKs), and the host keeps at most WINDOW of STDIN not yet INACKed. So a
 * slow command or a slow reader stalls only its own session. When the port
 * itself cannot take more (the host reads slowly) the agent buffers up to
 * OUT_HIGH and stops reading all command output until it drains.
 *
 * Host connection: while no host is connected to QEMU's chardev, the port
 * polls POLLHUP and reads end of file; the agent then sleeps and checks again
 * every 200 ms. When a host goes away, every session it had is hung up as by
 * HANGUP with a grace of DISCONNECT_GRACE_MS, and forgotten; a host that
 * connects gets HELLO (and sends PING to be sure).
 * ---------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.vserver.agent.0"
#define PROTOCOL_VERSION 2
#define HEADER 9
#define MAX_PAYLOAD 65536u
#define WINDOW (256u * 1024u)
#define OUT_HIGH (1024u * 1024u)
#define MAX_SESSIONS 128
#define MAX_INPUTS 16
#define TTY_DRAIN_MS 100
/* A hung-up session: its grace when the host itself went away, how long its
 * processes may take to go after SIGKILL, how often it is looked at. */
#define DISCONNECT_GRACE_MS 5000
#define HANGUP_KILL_WAIT_MS 2000
#define HANGUP_POLL_MS 50

enum {
    T_PING = 0x01, T_OPEN = 0x02, T_STDIN = 0x03, T_SIGNAL = 0x04, T_RESIZE = 0x05, T_ACK = 0x06, T_HANGUP = 0x07,
    T_HELLO = 0x81, T_STARTED = 0x82, T_ERROR = 0x83, T_STDOUT = 0x84, T_STDERR = 0x85, T_EXIT = 0x86,
    T_INACK = 0x87,
};

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
};

extern char **environ;

struct buf {
    unsigned char *p;
    size_t off, len, cap; /* live bytes are p[off .. off+len) */
};

struct session {
    int used;
    uint32_t id;
    pid_t pid;
    int tty;
    int in_fd, out_fd, err_fd; /* -1 once closed; with a tty in_fd is a dup of the master */
    struct buf in;             /* STDIN not yet written to the command */
    int in_eof;                /* host sent EOF: close in_fd (or send ^D) once `in` is empty */
    uint32_t unacked;          /* output bytes sent, not yet ACKed */
    int exited;
    int code;
    long long exited_ms;
};

static struct session sessions[MAX_SESSIONS];

/* A hung-up command's session (its id is the command's pid), until none of it is left. */
struct hangup {
    pid_t sid; /* 0: free */
    long long deadline, killed_ms;
};
static struct hangup hangups[MAX_SESSIONS];
static int port = -1;
static int connected;
static struct buf inbuf, outbuf;
static uint64_t instance;
static int inputs[MAX_INPUTS];
static char input_names[MAX_INPUTS][32];
static int ninputs;

static void logmsg(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "vsguest: %s\n", line);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- buffers --- */

static void buf_append(struct buf *b, const void *data, size_t n)
{
    if (b->off > 0 && b->off + b->len + n > b->cap) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) { logmsg("out of memory"); _exit(1); }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->off + b->len, data, n);
    b->len += n;
}

static void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0) b->off = 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void put_u16(unsigned char *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------- sending --- */

/* Queues a frame for the host; dropped while no host is connected. */
static void send_frame(uint8_t type, uint32_t session, const void *a, size_t alen, const void *b, size_t blen)
{
    if (!connected) return;
    unsigned char h[HEADER];
    h[0] = type;
    put_u32(h + 1, session);
    put_u32(h + 5, (uint32_t)(alen + blen));
    buf_append(&outbuf, h, HEADER);
    if (alen) buf_append(&outbuf, a, alen);
    if (blen) buf_append(&outbuf, b, blen);
}

static void send_u32(uint8_t type, uint32_t session, uint32_t v)
{
    unsigned char p[4];
    put_u32(p, v);
    send_frame(type, session, p, 4, NULL, 0);
}

static void send_hello(void)
{
    struct utsname u;
    unsigned char p[10];
    if (uname(&u) != 0) strcpy(u.release, "unknown");
    put_u16(p, PROTOCOL_VERSION);
    put_u32(p + 2, (uint32_t)instance);
    put_u32(p + 6, (uint32_t)(instance >> 32));
    send_frame(T_HELLO, 0, p, sizeof p, u.release, strlen(u.release));
}

static void send_error(uint32_t session, int code, const char *fmt, ...)
{
    char msg[1024];
    unsigned char p[4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    put_u32(p, (uint32_t)code);
    send_frame(T_ERROR, session, p, 4, msg, strlen(msg));
}

/* Writes as much of outbuf as the port takes now. */
static void flush_port(void)
{
    while (outbuf.len > 0 && port >= 0 && connected) {
        ssize_t n = write(port, outbuf.p + outbuf.off, outbuf.len);
        if (n > 0) { buf_consume(&outbuf, (size_t)n); continue; }
        if (n < 0 && errno == EINTR) continue;
        return; /* EAGAIN: poll for POLLOUT; other errors show up as POLLHUP/EOF on the read side */
    }
}

/* ------------------------------------------------------------ sessions --- */

static struct session *find_session(uint32_t id)
{
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].used && sessions[i].id == id) return &sessions[i];
    return NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void free_session(struct session *s)
{
    close_fd(&s->in_fd);
    close_fd(&s->out_fd);
    close_fd(&s->err_fd);
    buf_free(&s->in);
    memset(s, 0, sizeof *s);
    s->in_fd = s->out_fd = s->err_fd = -1;
}

/*
 * Sends sig to every live process of session sid and answers how many there
 * were. Zombies are skipped: the guest's init (or this agent, for a command)
 * reaps them. A process that setsid()s again has left the session, as a daemon
 * leaves a terminal's. The session id stays reserved while any member lives,
 * so the scan cannot hit a stranger.
 */
static int signal_session(pid_t sid, int sig)
{
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[300], stat[512], state;
        int ppid, pgrp, session;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, stat, sizeof stat - 1);
        close(fd);
        if (len <= 0) continue;
        stat[len] = 0;
        /* The command name may hold spaces and parentheses: parse after the last ')'. */
        char *p = strrchr(stat, ')');
        if (!p || sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4) continue;
        if (session != sid || state == 'Z' || state == 'X') continue;
        if (kill(atoi(e->d_name), sig) == 0) n++;
    }
    closedir(proc);
    return n;
}

/* The command's client is gone: SIGHUP and SIGCONT to its session now, as a closed terminal would, and SIGKILL to
 * what is left of it after grace_ms (tend_hangups). */
static void hang_up(pid_t sid, uint32_t grace_ms)
{
    if (sid <= 0) return;
    signal_session(sid, SIGHUP);
    signal_session(sid, SIGCONT);
    long long deadline = now_ms() + grace_ms;
    struct hangup *free_slot = NULL;
    for (int i = 0; i < MAX_SESSIONS; i++) {
        struct hangup *h = &hangups[i];
        if (h->sid == sid) {
            if (deadline < h->deadline) h->deadline = deadline;
            return;
        }
        if (!h->sid && !free_slot) free_slot = h;
    }
    if (free_slot) *free_slot = (struct hangup){.sid = sid, .deadline = deadline};
    else signal_session(sid, SIGKILL); /* more hung-up sessions than commands: no grace to keep track of */
}

/* Ends what is due and forgets sessions with nothing left; true while any is still being watched. */
static int tend_hangups(void)
{
    int pending = 0;
    long long now = now_ms();
    for (int i = 0; i < MAX_SESSIONS; i++) {
        struct hangup *h = &hangups[i];
        if (!h->sid) continue;
        if (signal_session(h->sid, 0) == 0 || (h->killed_ms && now - h->killed_ms > HANGUP_KILL_WAIT_MS)) {
            h->sid = 0;
            continue;
        }
        if (!h->killed_ms && now >= h->deadline) {
            signal_session(h->sid, SIGKILL);
            h->killed_ms = now;
        }
        pending = 1;
    }
    return pending;
}

/* The host that owned every session is gone: hang them up, as a closed terminal would. */
static void hang_up_all(void)
{
    for (int i = 0; i < MAX_SESSIONS; i++) {
        struct session *s = &sessions[i];
        if (!s->used || s->id == 0) continue; /* id 0: an orphan of an earlier host, hung up then */
        hang_up(s->pid, DISCONNECT_GRACE_MS);
        if (s->exited) { free_session(s); continue; }
        close_fd(&s->in_fd);
        close_fd(&s->out_fd);
        close_fd(&s->err_fd);
        buf_free(&s->in);
        s->id = 0; /* orphan: freed when reaped, never reported */
    }
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

struct exec_failure {
    int stage; /* 1: chdir, 2: exec, 3: tty setup */
    int err;
};

/* In the forked child, between fork and exec: no return. */
static void child_exec(const struct session *s, const char *slave, int in[2], int out[2], int err[2], int status,
                       const char *cwd, char **argv, char **envp)
{
    struct exec_failure f = {0, 0};
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    setsid();
    if (s->tty) {
        int fd = open(slave, O_RDWR);
        if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) != 0) { f.stage = 3; f.err = errno; goto fail; }
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2) close(fd);
    } else {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
    }
    /* Everything else (the port, other sessions' pipes, input devices) closes at exec; `status` too, which is
     * how the agent learns that exec succeeded. */
    close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
    if (chdir(*cwd ? cwd : "/") != 0) { f.stage = 1; f.err = errno; goto fail; }
    environ = envp; /* execvp searches the PATH of the command's own environment */
    execvp(argv[0], argv);
    f.stage = 2;
    f.err = errno;
fail:
    (void)!write(status, &f, sizeof f);
    _exit(127);
}

static void open_session(uint32_t id, const unsigned char *p, uint32_t n)
{
    if (id == 0) { send_error(id, 255, "session 0 is reserved"); return; }
    if (find_session(id)) { send_error(id, 255, "session %u is already open", id); return; }
    struct session *s = NULL;
    for (int i = 0; i < MAX_SESSIONS && !s; i++)
        if (!sessions[i].used) s = &sessions[i];
    if (!s) { send_error(id, 255, "too many sessions (at most %d)", MAX_SESSIONS); return; }
    if (n < 9) { send_error(id, 255, "bad OPEN: %u bytes", n); return; }
    int tty = p[0] & 1;
    uint16_t rows = get_u16(p + 1), cols = get_u16(p + 3), argc = get_u16(p + 5), envc = get_u16(p + 7);
    if (argc == 0) { send_error(id, 255, "bad OPEN: no command"); return; }

    /* The strings: cwd, argv, env; each NUL-terminated, all inside the payload. */
    size_t want = 1 + (size_t)argc + envc;
    const char **strs = calloc(want, sizeof *strs);
    if (!strs) { logmsg("out of memory"); _exit(1); }
    const char *cur = (const char *)p + 9, *end = (const char *)p + n;
    for (size_t i = 0; i < want; i++) {
        const char *z = memchr(cur, 0, (size_t)(end - cur));
        if (!z) {
            send_error(id, 255, "bad OPEN: %zu strings expected, payload ends after %zu", want, i);
            free(strs);
            return;
        }
        strs[i] = cur;
        cur = z + 1;
    }
    const char *cwd = strs[0];
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    char **envp = calloc((size_t)envc + 4, sizeof *envp);
    if (!argv || !envp) { logmsg("out of memory"); _exit(1); }
    for (int i = 0; i < argc; i++) argv[i] = (char *)strs[1 + i];
    size_t ne = 0;
    const char *defaults[3] = {default_env[0], default_env[1], tty ? "TERM=xterm" : NULL};
    for (int d = 0; d < 3; d++) {
        if (!defaults[d]) continue;
        size_t klen = (size_t)(strchr(defaults[d], '=') - defaults[d]) + 1;
        int overridden = 0;
        for (int i = 0; i < envc; i++)
            if (strncmp(strs[1 + argc + i], defaults[d], klen) == 0) overridden = 1;
        if (!overridden) envp[ne++] = (char *)defaults[d];
    }
    for (int i = 0; i < envc; i++) envp[ne++] = (char *)strs[1 + argc + i];

    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1}, master = -1;
    char slave[64] = "";
    if (tty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, slave, sizeof slave) != 0) {
            send_error(id, 126, "pty: %s (is devpts mounted on /dev/pts?)", strerror(errno));
            if (master >= 0) close(master);
            goto out;
        }
        if (rows && cols) {
            struct winsize ws = {.ws_row = rows, .ws_col = cols};
            ioctl(master, TIOCSWINSZ, &ws);
        }
    } else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        send_error(id, 126, "pipe: %s", strerror(errno));
        goto fail_fds;
    }
    if (pipe2(st, O_CLOEXEC) != 0) { send_error(id, 126, "pipe: %s", strerror(errno)); goto fail_fds; }

    s->tty = tty;
    pid_t pid = fork();
    if (pid < 0) { send_error(id, 126, "fork: %s", strerror(errno)); goto fail_fds; }
    if (pid == 0) child_exec(s, slave, in, out, err, st[1], cwd, argv, envp);
    close(st[1]);
    st[1] = -1;
    struct exec_failure f = {0, 0};
    ssize_t r;
    do r = read(st[0], &f, sizeof f); while (r < 0 && errno == EINTR);
    close(st[0]);
    st[0] = -1;
    if (r == (ssize_t)sizeof f) {
        waitpid(pid, NULL, 0);
        if (f.stage == 1) send_error(id, 126, "chdir: %s: %s", cwd, strerror(f.err));
        else if (f.stage == 3) send_error(id, 126, "tty %s: %s", slave, strerror(f.err));
        else send_error(id, f.err == ENOENT ? 127 : 126, "exec: %s: %s", argv[0], strerror(f.err));
        goto fail_fds;
    }

    memset(s, 0, sizeof *s);
    s->used = 1;
    s->id = id;
    s->pid = pid;
    s->tty = tty;
    if (tty) {
        s->out_fd = master;
        s->in_fd = dup(master);
        s->err_fd = -1;
        set_nonblock(master);
    } else {
        close(in[0]);
        close(out[1]);
        close(err[1]);
        s->in_fd = in[1];
        s->out_fd = out[0];
        s->err_fd = err[0];
        set_nonblock(s->in_fd);
        set_nonblock(s->out_fd);
        set_nonblock(s->err_fd);
    }
    send_u32(T_STARTED, id, (uint32_t)pid);
    goto out;

fail_fds:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) close(in[i]);
        if (out[i] >= 0) close(out[i]);
        if (err[i] >= 0) close(err[i]);
        if (st[i] >= 0) close(st[i]);
    }
    if (master >= 0) close(master);
out:
    free(argv);
    free(envp);
    free(strs);
}

/* Writes buffered STDIN to the command; acknowledges what it took (or discarded). */
static void feed_stdin(struct session *s)
{
    while (s->in.len > 0 && s->in_fd >= 0) {
        size_t chunk = s->in.len < 65536 ? s->in.len : 65536;
        ssize_t n = write(s->in_fd, s->in.p + s->in.off, chunk);
        if (n > 0) {
            buf_consume(&s->in, (size_t)n);
            send_u32(T_INACK, s->id, (uint32_t)n);
            continue;
        }
        if (n < 0 && (errno == EINTR)) continue;
        if (n < 0 && errno == EAGAIN) return;
        /* EPIPE: the command closed its stdin. Drop the rest, but acknowledge it so the host does not stall. */
        send_u32(T_INACK, s->id, (uint32_t)s->in.len);
        buf_consume(&s->in, s->in.len);
        if (!s->tty) close_fd(&s->in_fd);
    }
    if (s->in.len == 0 && s->in_eof && s->in_fd >= 0) {
        if (s->tty) {
            struct termios t;
            char eof = tcgetattr(s->in_fd, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
            (void)!write(s->in_fd, &eof, 1);
        }
        close_fd(&s->in_fd);
    }
}

/* Reads one chunk of a command's output and sends it. Returns 0 on data, 1 on EAGAIN, -1 on end of file. */
static int pump_output(struct session *s, int *fd, uint8_t type)
{
    static unsigned char chunk[MAX_PAYLOAD];
    size_t room = WINDOW - s->unacked;
    if (room > MAX_PAYLOAD) room = MAX_PAYLOAD;
    if (room == 0) return 1;
    ssize_t n;
    do n = read(*fd, chunk, room); while (n < 0 && errno == EINTR);
    if (n > 0) {
        send_frame(type, s->id, chunk, (size_t)n, NULL, 0);
        s->unacked += (uint32_t)n;
        return 0;
    }
    if (n < 0 && errno == EAGAIN) return 1;
    close_fd(fd); /* EOF, or EIO: a pty master once the last slave fd closed */
    return -1;
}

static int shell_code(int status)
{
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_SESSIONS; i++) {
            struct session *s = &sessions[i];
            if (!s->used || s->pid != pid) continue;
            if (s->id == 0) { free_session(s); break; } /* orphan of a host that went away */
            s->exited = 1;
            s->code = shell_code(status);
            s->exited_ms = now_ms();
            break;
        }
    }
}

/* After the command ended: send what is left in its pipes, then EXIT. A background process that inherited the
 * pipes must not keep the session open, so an empty pipe counts as drained (a pty gets TTY_DRAIN_MS, since the
 * line discipline may still be passing on the last output). */
static void finish_exited(struct session *s)
{
    if (!s->exited || s->id == 0) return;
    int drained_ok = !s->tty || now_ms() - s->exited_ms >= TTY_DRAIN_MS;
    int *fds[2] = {&s->out_fd, &s->err_fd};
    uint8_t types[2] = {T_STDOUT, T_STDERR};
    for (int i = 0; i < 2; i++) {
        while (*fds[i] >= 0 && outbuf.len < OUT_HIGH) {
            int r = pump_output(s, fds[i], types[i]);
            if (r == 1) {
                if (s->unacked < WINDOW && drained_ok) close_fd(fds[i]);
                break;
            }
        }
    }
    if (s->out_fd < 0 && s->err_fd < 0) {
        send_u32(T_EXIT, s->id, (uint32_t)s->code);
        free_session(s);
    }
}

/* ---------------------------------------------------------- host input --- */

static void handle_frame(uint8_t type, uint32_t id, const unsigned char *p, uint32_t n)
{
    struct session *s = id ? find_session(id) : NULL;
    switch (type) {
    case T_PING:
        send_hello();
        break;
    case T_OPEN:
        open_session(id, p, n);
        break;
    case T_STDIN:
        if (!s) break;
        if (n == 0) s->in_eof = 1;
        else if (s->in_fd < 0 || s->in_eof) send_u32(T_INACK, id, n);
        else buf_append(&s->in, p, n);
        feed_stdin(s);
        break;
    case T_SIGNAL:
        if (s && !s->exited && n >= 4) kill(-s->pid, (int)get_u32(p));
        break;
    case T_HANGUP:
        if (s && n >= 4) hang_up(s->pid, get_u32(p));
        break;
    case T_RESIZE:
        if (s && s->tty && s->out_fd >= 0 && n >= 4) {
            struct winsize ws = {.ws_row = get_u16(p), .ws_col = get_u16(p + 2)};
            ioctl(s->out_fd, TIOCSWINSZ, &ws);
        }
        break;
    case T_ACK:
        if (s && n >= 4) {
            uint32_t k = get_u32(p);
            s->unacked -= k < s->unacked ? k : s->unacked;
        }
        break;
    default:
        break; /* unknown frames are ignored: a newer host may send more */
    }
}

static void disconnected(void)
{
    connected = 0;
    buf_consume(&inbuf, inbuf.len);
    buf_consume(&outbuf, outbuf.len);
    hang_up_all();
}

static void read_port(void)
{
    for (;;) {
        unsigned char chunk[65536];
        ssize_t n = read(port, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) { disconnected(); return; } /* 0: the host closed its end */
        buf_append(&inbuf, chunk, (size_t)n);
        while (inbuf.len >= HEADER) {
            const unsigned char *h = inbuf.p + inbuf.off;
            uint32_t len = get_u32(h + 5);
            if (len > MAX_PAYLOAD) {
                logmsg("protocol error: frame type 0x%02x claims %u bytes (max %u); dropping the connection's state",
                       h[0], len, MAX_PAYLOAD);
                buf_consume(&inbuf, inbuf.len);
                buf_consume(&outbuf, outbuf.len);
                hang_up_all();
                return;
            }
            if (inbuf.len < HEADER + len) break;
            handle_frame(h[0], get_u32(h + 1), h + HEADER, len);
            buf_consume(&inbuf, HEADER + len);
        }
        if ((size_t)n < sizeof chunk) break;
    }
}

/* Finds and opens the named port; -1 while it is not there yet. */
static int open_port(void)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d) return -1;
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d))) {
        if (strncmp(e->d_name, "vport", 5) != 0) continue;
        char path[300], name[128] = "";
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
        fclose(f);
        if (strcmp(name, PORT_NAME) != 0) continue;
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    }
    closedir(d);
    return fd;
}

/* True when a host is connected to the port's chardev (no POLLHUP). */
static int host_present(void)
{
    struct pollfd p = {.fd = port, .events = POLLOUT};
    return poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* -------------------------------------------------------- power button --- */

static void scan_inputs(void)
{
    DIR *d = opendir("/dev/input");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && ninputs < MAX_INPUTS) {
        if (strncmp(e->d_name, "event", 5) != 0 || strlen(e->d_name) >= sizeof input_names[0]) continue;
        int known = 0;
        for (int i = 0; i < ninputs; i++) known |= strcmp(input_names[i], e->d_name) == 0;
        if (known) continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/input/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        inputs[ninputs] = fd;
        strcpy(input_names[ninputs], e->d_name);
        ninputs++;
    }
    closedir(d);
}

static void read_input(int i)
{
    struct input_event ev[16];
    ssize_t n = read(inputs[i], ev, sizeof ev);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { /* device gone */
        close(inputs[i]);
        ninputs--;
        if (i != ninputs) {
            inputs[i] = inputs[ninputs];
            memcpy(input_names[i], input_names[ninputs], sizeof input_names[i]);
        }
        return;
    }
    for (size_t k = 0; k < (size_t)n / sizeof ev[0]; k++) {
        if (ev[k].type != EV_KEY || ev[k].code != KEY_POWER || ev[k].value != 1) continue;
        logmsg("power button pressed: running /sbin/poweroff");
        pid_t pid = fork();
        if (pid == 0) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            setsid();
            execl("/sbin/poweroff", "poweroff", (char *)NULL);
            _exit(127);
        }
    }
}

/* ----------------------------------------------------------------- main --- */

static void run(void)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) { logmsg("signalfd: %s", strerror(errno)); _exit(1); }
    for (int i = 0; i < MAX_SESSIONS; i++) sessions[i].in_fd = sessions[i].out_fd = sessions[i].err_fd = -1;
    if (getrandom(&instance, sizeof instance, 0) != (ssize_t)sizeof instance) instance = (uint64_t)now_ms() ^ (uint64_t)getpid() << 32;

    long long started = now_ms(), last_scan = 0;
    int warned = 0, hangups_pending = 0;
    for (;;) {
        long long now = now_ms();
        if (now - last_scan >= 2000) { scan_inputs(); last_scan = now; }
        if (port < 0) {
            port = open_port();
            if (port < 0 && !warned && now - started > 30000) {
                logmsg("no virtio-serial port named %s yet; still looking", PORT_NAME);
                warned = 1;
            }
        }
        if (port >= 0 && !connected && host_present()) {
            connected = 1;
            send_hello();
        }

        struct pollfd pfd[2 + MAX_INPUTS + 3 * MAX_SESSIONS];
        struct { struct session *s; int *fd; uint8_t type; } what[3 * MAX_SESSIONS];
        int np = 0, nw = 0, timeout = -1;
        pfd[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        int port_slot = -1;
        if (port >= 0 && connected) {
            port_slot = np;
            pfd[np++] = (struct pollfd){.fd = port, .events = (short)(POLLIN | (outbuf.len ? POLLOUT : 0))};
        } else {
            timeout = 200; /* no host (POLLHUP would spin) or no port yet: look again shortly */
        }
        if (now - last_scan >= 1000 && timeout < 0) timeout = 2000;
        int input_base = np;
        for (int i = 0; i < ninputs; i++) pfd[np++] = (struct pollfd){.fd = inputs[i], .events = POLLIN};
        int session_base = np;
        for (int i = 0; i < MAX_SESSIONS; i++) {
            struct session *s = &sessions[i];
            if (!s->used || s->id == 0) continue;
            if (s->exited) { timeout = s->tty ? 20 : 0; continue; } /* finish_exited drains it */
            int readable = s->unacked < WINDOW && outbuf.len < OUT_HIGH;
            if (readable && s->out_fd >= 0) {
                what[nw] = (typeof(what[0])){s, &s->out_fd, T_STDOUT};
                pfd[np++] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
                nw++;
            }
            if (readable && s->err_fd >= 0) {
                what[nw] = (typeof(what[0])){s, &s->err_fd, T_STDERR};
                pfd[np++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
                nw++;
            }
            if (s->in.len > 0 && s->in_fd >= 0) {
                what[nw] = (typeof(what[0])){s, &s->in_fd, 0};
                pfd[np++] = (struct pollfd){.fd = s->in_fd, .events = POLLOUT};
                nw++;
            }
        }

        if (hangups_pending && (timeout < 0 || timeout > HANGUP_POLL_MS)) timeout = HANGUP_POLL_MS;
        int r = poll(pfd, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR) { logmsg("poll: %s", strerror(errno)); _exit(1); }
        if (r > 0) {
            if (pfd[0].revents) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) > 0) {}
            }
            for (int i = np - 1; i >= input_base && i < session_base; i--)
                if (pfd[i].revents) read_input(i - input_base);
            for (int k = 0; k < nw; k++) {
                struct pollfd *p = &pfd[session_base + k];
                if (!p->revents || *what[k].fd != p->fd) continue;
                if (what[k].type == 0) feed_stdin(what[k].s);
                else pump_output(what[k].s, what[k].fd, what[k].type);
            }
            if (port_slot >= 0 && pfd[port_slot].revents) {
                if (pfd[port_slot].revents & POLLIN) read_port();
                else if (pfd[port_slot].revents & (POLLHUP | POLLERR)) disconnected();
            }
        }
        reap();
        hangups_pending = tend_hangups();
        for (int i = 0; i < MAX_SESSIONS; i++)
            if (sessions[i].used) finish_exited(&sessions[i]);
        flush_port();
    }
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] != '/')) {
        fprintf(stderr, "usage: vsguest [NEWROOT]\n");
        return 2;
    }
    /* Into the guest's root before switch_root moves it to /: afterwards the path /newroot is gone. */
    if (argc == 2 && (chroot(argv[1]) != 0 || chdir("/") != 0)) {
        fprintf(stderr, "vsguest: chroot %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0) { fprintf(stderr, "vsguest: fork: %s\n", strerror(errno)); return 1; }
    if (pid > 0) {
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    setsid();
    pid = fork();
    if (pid < 0) _exit(1);
    if (pid > 0) _exit(0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) dup2(null, 0);
    run();
    return 0;
}
