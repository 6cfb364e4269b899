/* health.c: see health.h. */
#include "health.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "opserver.h"
#include "procstats.h"
#include "util.h"

struct condition {
	char name[32];
	bool failing;
	char reason[512];
	uint64_t failures; /* reports of failure since it started failing */
	int64_t since;     /* unix: when it started failing, or recovered */
};

struct health {
	pthread_mutex_t lock;
	struct condition c[HEALTH_MAX_CONDITIONS];
	size_t n;
};

struct health *health_new(void)
{
	struct health *h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

void health_free(struct health *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Under lock. NULL when the table is full (a programmer error: names are literals). */
static struct condition *find(struct health *h, const char *name, bool create)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->c[i].name, name) == 0)
			return &h->c[i];
	if (!create || h->n == HEALTH_MAX_CONDITIONS)
		return NULL;
	struct condition *c = &h->c[h->n++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	return c;
}

void health_set(struct health *h, const char *name, bool ok, int64_t now, const char *fmt, ...)
{
	char reason[sizeof(((struct condition *)0)->reason)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&h->lock);
	struct condition *c = find(h, name, true);
	if (!c)
		goto out;
	if (!ok && !c->failing) {
		log_error("health: %s failing: %s", name, reason);
		c->failures = 0;
		c->since = now;
	} else if (ok && c->failing) {
		log_info("health: %s recovered after %llu failed check%s over %lld s: %s", name,
			 (unsigned long long)c->failures, c->failures == 1 ? "" : "s",
			 (long long)(now - c->since), reason);
		c->since = now;
	}
	c->failing = !ok;
	if (!ok)
		c->failures++;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
out:
	pthread_mutex_unlock(&h->lock);
}

bool health_report(struct health *h, json_t *checks)
{
	bool all_ok = true;
	char t[32];
	pthread_mutex_lock(&h->lock);
	for (size_t i = 0; i < h->n; i++) {
		const struct condition *c = &h->c[i];
		if (c->failing)
			all_ok &= opserver_check(checks, c->name, false, "%s (%llu failed check%s since "
						 "%s)", c->reason, (unsigned long long)c->failures,
						 c->failures == 1 ? "" : "s",
						 opserver_time(c->since, t, sizeof(t)));
		else
			opserver_check(checks, c->name, true, "%s", c->reason);
	}
	pthread_mutex_unlock(&h->lock);
	return all_ok;
}

bool health_failing(struct health *h, const char *name)
{
	pthread_mutex_lock(&h->lock);
	const struct condition *c = find(h, name, false);
	bool failing = c && c->failing;
	pthread_mutex_unlock(&h->lock);
	return failing;
}

/* A named scratch file, for file systems without O_TMPFILE. */
static int open_named_scratch(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/.health-probe-XXXXXX", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

int health_probe_dir(const char *dir, char *why, size_t whylen)
{
	static const char block[HEALTH_PROBE_BYTES];
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
		fd = open_named_scratch(dir);
	else if (fd < 0)
		fd = -errno;
	if (fd < 0) {
		errorf(why, whylen, "cannot create a file in %s: %s", dir, strerror(-fd));
		return fd;
	}
	int ret = 0;
	size_t off = 0;
	while (off < sizeof(block)) {
		ssize_t n = write(fd, block + off, sizeof(block) - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -ENOSPC;
			errorf(why, whylen, "cannot write to %s: %s", dir, strerror(-ret));
			break;
		}
		off += (size_t)n;
	}
	close(fd);
	return ret;
}

bool health_probe_fds(const struct procstats *ps, char *why, size_t whylen)
{
	if (ps->max_fds < 0) {
		snprintf(why, whylen, "no descriptor limit");
		return true;
	}
	if (ps->open_fds < 0) {
		/* /proc/self/fd could not be opened: for lack of a descriptor, or no procfs. */
		int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (fd < 0 && (e == EMFILE || e == ENFILE)) {
			snprintf(why, whylen, "no descriptor left (limit %lld): new connections are "
				 "refused", (long long)ps->max_fds);
			return false;
		}
		snprintf(why, whylen, "cannot count open descriptors (limit %lld)",
			 (long long)ps->max_fds);
		return true;
	}
	int64_t reserve = HEALTH_FD_RESERVE(ps->max_fds);
	bool ok = ps->max_fds - ps->open_fds >= reserve;
	snprintf(why, whylen, "%lld of %lld descriptors open%s", (long long)ps->open_fds,
		 (long long)ps->max_fds,
		 ok ? "" : ": close to exhaustion, new connections are about to be refused");
	return ok;
}
