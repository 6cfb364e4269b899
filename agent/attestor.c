/* attestor.c: what every workload attestor starts from (see attestor.h): pinning the caller
 * (SO_PEERCRED, /proc/<pid>, SO_PEERPIDFD, the executable) and checking it again, reading /proc
 * through the pinned directory, selector lists, and attest_caller() over a table of attestors.
 *
 * Threads: no state of its own; a caller is used by one thread at a time, attest_caller runs on
 * the loop or a worker (see attestor.h). */
#include "attestor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "log.h"
#include "strv.h"
#include "util.h"

#include "attestor_internal.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define PROC_FILE_MAX (64 * 1024)
static const char *proc_root_or_default(const char *root)
{
	return root && root[0] ? root : "/proc";
}

/* ---- selector lists ---- */

int selector_list_addf(struct selector_list *l, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -1;
	l->v[l->n++] = s;
	return 0;
}

void selector_list_normalize(struct selector_list *l)
{
	l->n = strv_sort_unique(l->v, l->n);
}

void selector_list_free(struct selector_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* ---- reading /proc through the pinned directory ---- */

/* Reads a small file relative to dirfd into a NUL-terminated buffer. 0 or -errno. */
int read_at(int dirfd, const char *name, char **out, size_t *outlen)
{
	char *buf = NULL;
	size_t len = 0, cap = 4096, want;
	int fd, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (len + 1 >= cap) {
			char *nb;

			if (cap >= PROC_FILE_MAX) {
				ret = -EFBIG;
				goto out;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		want = cap - len - 1;
		r = read(fd, buf + len, want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		/* /proc/<pid>/stat and status are single-record seq files: a read with room to
		 * spare returns the whole file, so a short read is the end (one read(2) fewer per
		 * file). A file larger than the buffer fills it and the loop goes on. */
		if ((size_t)r < want)
			break;
	}
	buf[len] = '\0';
	*out = buf;
	if (outlen)
		*outlen = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

int proc_stat_start_time(const char *stat, size_t len, uint64_t *out)
{
	const char *p = NULL, *end = stat + len;
	int field;

	/* comm (field 2) is "(...)" and may hold anything, ')' included: the fields after it are
	 * counted from the last ')' of the line. */
	for (const char *q = stat; q < end; q++)
		if (*q == ')')
			p = q;
	if (!p)
		return -1;
	p++;
	/* After ')' comes " S ppid ...": the state is field 3. */
	for (field = 3;; field++) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			return -1;
		if (field == 22)
			break;
		while (p < end && *p != ' ')
			p++;
	}
	if (p >= end || *p < '0' || *p > '9')
		return -1;
	uint64_t v = 0;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p < end && *p != ' ' && *p != '\n')
		return -1;
	*out = v;
	return 0;
}

static int read_start_time(int dirfd, uint64_t *out)
{
	char *buf;
	size_t len;
	int r = read_at(dirfd, "stat", &buf, &len);

	if (r < 0)
		return r;
	r = proc_stat_start_time(buf, len, out) ? -EINVAL : 0;
	free(buf);
	return r;
}

/* The value of a "Name:\t..." line of /proc/<pid>/status (points into buf), or NULL. */
const char *status_field(const char *buf, const char *name)
{
	size_t nl = strlen(name);
	const char *p = buf;

	while (p && *p) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':')
			return p + nl + 1;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

/* Parses up to max unsigned numbers of one status line ("\t1000\t1000\t..."). */
size_t parse_ids(const char *p, unsigned long *ids, size_t max)
{
	size_t n = 0;

	while (p && *p && *p != '\n' && n < max) {
		char *e;
		unsigned long v;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p < '0' || *p > '9')
			break;
		errno = 0;
		v = strtoul(p, &e, 10);
		if (errno || v > UINT32_MAX)
			break;
		ids[n++] = v;
		p = e;
	}
	return n;
}

/* ---- callers ---- */

static bool pidfd_alive(int pidfd)
{
	/* Signal 0 checks existence only; EPERM still means the process is there. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0)
		return true;
	return errno != ESRCH;
}

/* The executable's identity through the pinned directory: 1 known (dev, ino set), 0 unknown
 * (unreadable: no exe link, or no right to follow it). */
static int read_exe_id(int proc_fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (fstatat(proc_fd, "exe", &st, 0) < 0)
		return 0;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 1;
}

/* The executable is the one pinned at connect time. dev/ino of what was just read, or of a fresh
 * read when st is NULL. */
int verify_exe(const struct caller *c, const struct stat *st, char *err, size_t errlen)
{
	dev_t dev = 0;
	ino_t ino = 0;
	bool known;
	if (st) {
		known = true;
		dev = st->st_dev;
		ino = st->st_ino;
	} else {
		known = read_exe_id(c->proc_fd, &dev, &ino) == 1;
	}
	if (known == c->exe_known && (!known || (dev == c->exe_dev && ino == c->exe_ino)))
		return 0;
	snprintf(err, errlen,
		 "caller process executed another program since it connected (executable %s%lx:%lu "
		 "at connect, %s%lx:%lu now)",
		 c->exe_known ? "" : "unknown ", (unsigned long)c->exe_dev,
		 (unsigned long)c->exe_ino, known ? "" : "unknown ", (unsigned long)dev,
		 (unsigned long)ino);
	return -1;
}

int caller_pin(const char *proc_root, pid_t pid, uid_t uid, gid_t gid, struct caller *out,
	       char *err, size_t errlen)
{
	char path[4096];
	int r;

	memset(out, 0, sizeof(*out));
	out->proc_fd = -1;
	out->pidfd = -1;
	out->pid = pid;
	out->uid = uid;
	out->gid = gid;
	if (pid <= 0) {
		/* A peer in another pid namespace we cannot see reports pid 0. */
		snprintf(err, errlen, "caller pid %d is not visible to the agent", (int)pid);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%d", proc_root_or_default(proc_root), (int)pid);
	out->proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (out->proc_fd < 0) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	r = read_start_time(out->proc_fd, &out->start_time);
	if (r < 0) {
		snprintf(err, errlen, "read %s/stat: %s", path, strerror(-r));
		caller_close(out);
		return -1;
	}
	out->exe_known = read_exe_id(out->proc_fd, &out->exe_dev, &out->exe_ino) == 1;
	return 0;
}

int caller_from_socket(int fd, const char *proc_root, struct caller *out, char *err, size_t errlen)
{
	struct ucred cred;
	socklen_t sl = sizeof(cred);
	int pidfd = -1;

	memset(out, 0, sizeof(*out));
	out->proc_fd = out->pidfd = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) < 0 || sl != sizeof(cred)) {
		snprintf(err, errlen, "SO_PEERCRED: %s", strerror(errno));
		return -1;
	}
	sl = sizeof(pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &sl) < 0) {
		/* Kernels before 6.5 do not know the option; pinning by /proc alone then. */
		if (errno != ENOPROTOOPT && errno != EINVAL)
			log_debug("workload: SO_PEERPIDFD: %s", strerror(errno));
		pidfd = -1;
	}
	if (caller_pin(proc_root, cred.pid, cred.uid, cred.gid, out, err, errlen) < 0) {
		if (pidfd >= 0)
			close(pidfd);
		return -1;
	}
	out->pidfd = pidfd;
	/* The pid could have been reused between connect() and our open() of /proc/<pid>; with a
	 * pidfd the connecting process still being alive proves the directory is its own. */
	if (pidfd >= 0 && !pidfd_alive(pidfd)) {
		snprintf(err, errlen, "caller process %d exited", (int)cred.pid);
		caller_close(out);
		return -1;
	}
	return 0;
}

/* The pinned process is alive and still the one that connected: its pidfd (when there is one)
 * and, when start_time, its start time read again through the pinned directory. */
static int verify_alive(const struct caller *c, bool start_time, char *err, size_t errlen)
{
	uint64_t st;
	int r;

	if (c->proc_fd < 0) {
		snprintf(err, errlen, "caller process not pinned");
		return -1;
	}
	if (c->pidfd >= 0 && !pidfd_alive(c->pidfd)) {
		snprintf(err, errlen, "caller process changed during attestation (exited)");
		return -1;
	}
	if (!start_time)
		return 0;
	/* Reading through a /proc/<pid> directory fd of a dead process fails with ESRCH even if the
	 * pid was reused since, so a successful read is about the pinned process. */
	r = read_start_time(c->proc_fd, &st);
	if (r < 0) {
		snprintf(err, errlen, "caller process changed during attestation (%s)", strerror(-r));
		return -1;
	}
	if (st != c->start_time) {
		snprintf(err, errlen,
			 "caller process changed during attestation (start time %" PRIu64
			 " != %" PRIu64 ")",
			 st, c->start_time);
		return -1;
	}
	return 0;
}

/* The effective uid and gid in a status text read through the pinned directory are still the
 * ones SO_PEERCRED reported at connect time. */
static int verify_ids(const struct caller *c, const char *status, char *err, size_t errlen)
{
	unsigned long ids[4];

	/* "Uid:\treal\teffective\tsaved\tfs": SO_PEERCRED reported the effective ids. */
	if (parse_ids(status_field(status, "Uid"), ids, 4) < 2 || ids[1] != (unsigned long)c->uid) {
		snprintf(err, errlen, "caller process changed during attestation (uid)");
		return -1;
	}
	if (parse_ids(status_field(status, "Gid"), ids, 4) < 2 || ids[1] != (unsigned long)c->gid) {
		snprintf(err, errlen, "caller process changed during attestation (gid)");
		return -1;
	}
	return 0;
}

int caller_verify(const struct caller *c, char *err, size_t errlen)
{
	char *status = NULL;
	int r;

	if (verify_alive(c, true, err, errlen) < 0)
		return -1;
	r = read_at(c->proc_fd, "status", &status, NULL);
	if (r < 0) {
		snprintf(err, errlen, "caller process changed during attestation (%s)", strerror(-r));
		return -1;
	}
	r = verify_ids(c, status, err, errlen);
	free(status);
	if (r == 0)
		r = verify_exe(c, NULL, err, errlen);
	return r;
}

void caller_close(struct caller *c)
{
	if (!c)
		return;
	if (c->proc_fd >= 0)
		close(c->proc_fd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->proc_fd = c->pidfd = -1;
}

void attestor_free(struct attestor *a)
{
	if (!a)
		return;
	if (a->ops && a->ops->free)
		a->ops->free(a->state);
	free(a);
}

bool attestors_fast(struct attestor *const *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!a[i]->fast)
			return false;
	return true;
}

int attest_caller(struct attestor *const *a, size_t n, const struct caller *c, bool may_block,
		  struct selector_list *out, char *err, size_t errlen)
{
	int ret = -1;

	if (!may_block && !attestors_fast(a, n)) {
		snprintf(err, errlen, "attestation may block");
		return ATTEST_WOULD_BLOCK;
	}
	if (n == 1 && a[0]->fast && a[0]->ops->attest_verified) {
		ret = a[0]->ops->attest_verified(a[0]->state, c, may_block, out, err, errlen);
		if (ret != 0)
			return ret;
	} else {
		for (size_t i = 0; i < n; i++)
			if (a[i]->ops->attest(a[i]->state, c, out, err, errlen) < 0)
				goto out;
		if (caller_verify(c, err, errlen) < 0)
			goto out;
	}
	selector_list_normalize(out);
	ret = 0;
out:
	return ret;
}

int caller_verify_status(const struct caller *c, const char *status, char *err, size_t errlen)
{
	if (verify_ids(c, status, err, errlen) < 0 ||
	    verify_alive(c, c->pidfd < 0, err, errlen) < 0 ||
	    verify_exe(c, NULL, err, errlen) < 0)
		return -1;
	return 0;
}
