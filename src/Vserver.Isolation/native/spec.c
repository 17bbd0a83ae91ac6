/*
 * vsinit: the spec file.  C# decides everything (VsinitSpec.cs renders it);
 * vsinit reads it whole before acting on any of it.
 *
 * Format: one "key value" directive per line, value = rest of the line
 * after the first space, no escaping; blank lines and '#' lines ignored.
 *
 * Text vsinit writes into the guest is carried a line per directive, in
 * order: "resolv_line TEXT" (repeated) is one line of the guest's
 * /etc/resolv.conf, TEXT may be empty; the file is those lines, each ended
 * by a newline (VsinitSpec.Resolv, ResolvConf.Render).  No resolv_line: the
 * guest's own /etc/resolv.conf is left as it is.
 *
 * Start, for an init that manages cgroups (systemd): "cgroup_mount TYPE
 * OPTIONS DIR rw|ro" (repeated) mounts a cgroup file system as the guest's
 * cgroup namespace shows it: TYPE cgroup (v1, OPTIONS its controllers or
 * none,name=systemd) or cgroup2 (OPTIONS "-"), at /sys/fs/cgroup/DIR on a
 * tmpfs, or on /sys/fs/cgroup itself for DIR "."; "tmpfs DIR OPTIONS"
 * (repeated) mounts a tmpfs on the directory DIR of the guest's root (/run).
 */

#include "vsinit.h"

#define MAX_SPEC_SIZE (1 << 20)

struct parse_ctx {
	const char *path;
	int line;
};

void list_add(struct list *l, char *s)
{
	char **v = realloc(l->v, (l->n + 2) * sizeof *v);
	if (!v)
		die(ENOMEM, "malloc");
	v[l->n++] = s;
	v[l->n] = NULL;
	l->v = v;
}

char *const *list_or_empty(const struct list *l)
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

int parse_uint(const char *s, unsigned long max, unsigned long *out)
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

void parse_spec(const char *path, struct spec *s)
{
	/* The keys whose value is a host path: given at most once, or repeatable. */
	const struct {
		const char *key;
		const char **field;
	} once_paths[] = {
		{ "rootfs", &s->rootfs }, { "upper", &s->upper }, { "work", &s->work },
		{ "netns", &s->netns }, { "pidfile", &s->pidfile }, { "exitfile", &s->exitfile },
		{ "console", &s->console }, { "meminfo", &s->meminfo }, { "notify_socket", &s->notify_socket },
	};
	const struct {
		const char *key;
		struct list *list;
	} list_paths[] = {
		/* lower is repeatable as an extension: several lower layers, uppermost first. */
		{ "lower", &s->lower }, { "cgroup", &s->cgroup }, { "bind_source", &s->bind_source },
		{ "bind_target", &s->bind_target }, { "detach", &s->detach },
	};
	struct parse_ctx c = { path, 0 };
	size_t cap = 16384, len = 0, k;
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
		const char **path_field;
		struct list *path_list;
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

		path_field = NULL;
		path_list = NULL;
		for (k = 0; k < sizeof once_paths / sizeof *once_paths; k++)
			if (!strcmp(key, once_paths[k].key))
				path_field = once_paths[k].field;
		for (k = 0; k < sizeof list_paths / sizeof *list_paths; k++)
			if (!strcmp(key, list_paths[k].key))
				path_list = list_paths[k].list;

		if (path_field) {
			set_once(&c, path_field, key, host_path(&c, key, val));
		} else if (path_list) {
			list_add(path_list, host_path(&c, key, val));
		} else if (!strcmp(key, "name")) {
			set_once(&c, &s->name, key, val);
		} else if (!strcmp(key, "hostname")) {
			set_once(&c, &s->hostname, key, val);
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
		} else if (!strcmp(key, "env")) {
			if (!strchr(val, '=') || val[0] == '=')
				spec_error(&c, "env must be KEY=VALUE, not \"%s\"", val);
			list_add(&s->env, val);
		} else if (!strcmp(key, "arg")) {
			list_add(&s->arg, val);
		} else if (!strcmp(key, "resolv_line")) {
			list_add(&s->resolv, val);
		} else if (!strcmp(key, "cgroup_mount")) {
			char type[16], opts[256], dir[64], mode[4];
			if (sscanf(val, "%15s %255s %63s %3s", type, opts, dir, mode) != 4
			    || (strcmp(type, "cgroup") && strcmp(type, "cgroup2"))
			    || (strcmp(mode, "rw") && strcmp(mode, "ro"))
			    || strchr(dir, '/') || !strcmp(dir, ".."))
				spec_error(&c, "cgroup_mount must be \"cgroup|cgroup2 OPTIONS DIR rw|ro\", not \"%s\"", val);
			list_add(&s->cgroup_mount, val);
		} else if (!strcmp(key, "tmpfs")) {
			if (val[0] != '/' || strstr(val, "..") || !strchr(val, ' '))
				spec_error(&c, "tmpfs must be \"/DIR OPTIONS\", not \"%s\"", val);
			list_add(&s->tmpfs, val);
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
		} else if (!strcmp(key, "hangup_grace_ms")) {
			if (s->have_hangup_grace)
				spec_error(&c, "duplicate %s", key);
			if (parse_uint(val, 3600000, &u))
				spec_error(&c, "hangup_grace_ms must be 0 to 3600000, not \"%s\"", val);
			s->hangup_grace_ms = u;
			s->have_hangup_grace = 1;
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

void require(const char *path, int present, const char *key)
{
	if (!present)
		die(0, "spec %s: missing %s", path, key);
}
