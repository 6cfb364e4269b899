/* attestor_unix.c: the unix workload attestor (see attestor.h): selectors from the caller's
 * status file, user and group names (cached), the executable's path and SHA-256 (cached). Caller
 * pinning and the checks every attestor starts from are in attestor.c.
 *
 * Threads: attest may run on the loop or on workers at once; the caches are under u->lock. */
#include "attestor.h"
#include "attestor_internal.h"

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
#define NAME_CACHE_MAX 1024
#define NAME_CHECK_US 1000000
#define NAME_MAX_AGE_US (60 * 1000000LL)
#define PASSWD_FILE "/etc/passwd"
#define GROUP_FILE "/etc/group"
#define HASH_CACHE_MAX 256
#define HASH_CHUNK (64 * 1024)

/* ---- the unix attestor ---- */

struct hash_entry {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	char hex[65];
	uint64_t used; /* LRU clock */
};

/* A user or group name (NULL: the id has none), as the name service answered. */
struct name_entry {
	uint32_t id;
	bool group;
	char *name;
};

/* What a file looked like, to notice it changed. */
struct file_sig {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct unix_state {
	bool path_selectors;
	int64_t sha256_max_size;
	pthread_mutex_t lock; /* protects the hash and name caches */
	struct hash_entry cache[HASH_CACHE_MAX];
	size_t n_cache;
	uint64_t clock;

	/* User and group names: getpwuid_r/getgrgid_r open and parse /etc/passwd and /etc/group on
	 * every call, a dozen system calls per attestation. Answers are kept until either file
	 * changes (checked at most once per NAME_CHECK_US) or NAME_MAX_AGE_US passed, which bounds
	 * staleness for name services that are not files (LDAP, sssd). */
	struct name_entry *names;
	size_t n_names;
	int64_t names_checked_us, names_filled_us;
	uint64_t names_gen; /* bumped by every flush */
	struct file_sig passwd_sig, group_sig;
};

static bool hash_cache_get(struct unix_state *u, const struct stat *st, char hex[65])
{
	bool found = false;

	pthread_mutex_lock(&u->lock);
	for (size_t i = 0; i < u->n_cache; i++) {
		struct hash_entry *e = &u->cache[i];

		if (e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
		    e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec) {
			memcpy(hex, e->hex, 65);
			e->used = ++u->clock;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&u->lock);
	return found;
}

static void hash_cache_put(struct unix_state *u, const struct stat *st, const char hex[65])
{
	struct hash_entry *e;

	pthread_mutex_lock(&u->lock);
	if (u->n_cache < HASH_CACHE_MAX) {
		e = &u->cache[u->n_cache++];
	} else {
		e = &u->cache[0];
		for (size_t i = 1; i < u->n_cache; i++)
			if (u->cache[i].used < e->used)
				e = &u->cache[i];
	}
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = st->st_size;
	e->mtime = st->st_mtim;
	memcpy(e->hex, hex, 65);
	e->used = ++u->clock;
	pthread_mutex_unlock(&u->lock);
}

/* SHA-256 of the open file. 0 or -errno. */
static int hash_fd(int fd, char hex[65])
{
	wc_Sha256 sha;
	uint8_t *buf, digest[WC_SHA256_DIGEST_SIZE];
	int ret = 0;

	buf = malloc(HASH_CHUNK);
	if (!buf)
		return -ENOMEM;
	if (wc_InitSha256(&sha) != 0) {
		free(buf);
		return -EIO;
	}
	for (;;) {
		ssize_t r = read(fd, buf, HASH_CHUNK);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		if (wc_Sha256Update(&sha, buf, (word32)r) != 0) {
			ret = -EIO;
			goto out;
		}
	}
	if (wc_Sha256Final(&sha, digest) != 0) {
		ret = -EIO;
		goto out;
	}
	hex_encode(digest, sizeof(digest), hex);
out:
	wc_Sha256Free(&sha);
	free(buf);
	return ret;
}

static int path_selectors(struct unix_state *u, const struct caller *c, struct selector_list *out,
			  char *err, size_t errlen)
{
	char path[4096], hex[65];
	struct stat st;
	ssize_t n;
	int fd, r;

	n = readlinkat(c->proc_fd, "exe", path, sizeof(path) - 1);
	if (n < 0) {
		snprintf(err, errlen, "readlink /proc/%d/exe: %s", (int)c->pid, strerror(errno));
		return -1;
	}
	path[n] = '\0';
	if (selector_list_addf(out, "unix:path:%s", path) < 0)
		goto nomem;

	fd = openat(c->proc_fd, "exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "open /proc/%d/exe: %s", (int)c->pid, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "stat /proc/%d/exe: %s", (int)c->pid, strerror(errno));
		close(fd);
		return -1;
	}
	/* The selectors must describe the executable pinned at connect, not one exec'd since. */
	if (verify_exe(c, &st, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	if (u->sha256_max_size > 0 && st.st_size > u->sha256_max_size) {
		/* Hashing a huge binary on every call would be a cheap way to exhaust the workers: no
		 * unix:sha256 selector, so entries that require one do not match. */
		log_warnx("workload: %s (pid %d) is %lld bytes, above sha256_max_size %lld: no "
			 "unix:sha256 selector",
			 path, (int)c->pid, (long long)st.st_size, (long long)u->sha256_max_size);
		close(fd);
		return 0;
	}
	if (!hash_cache_get(u, &st, hex)) {
		r = hash_fd(fd, hex);
		if (r < 0) {
			snprintf(err, errlen, "hash /proc/%d/exe: %s", (int)c->pid, strerror(-r));
			close(fd);
			return -1;
		}
		hash_cache_put(u, &st, hex);
	}
	close(fd);
	if (selector_list_addf(out, "unix:sha256:%s", hex) < 0)
		goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static void file_sig_get(const char *path, struct file_sig *sig)
{
	struct stat st;

	memset(sig, 0, sizeof(*sig));
	if (stat(path, &st) < 0)
		return;
	sig->exists = true;
	sig->dev = st.st_dev;
	sig->ino = st.st_ino;
	sig->size = st.st_size;
	sig->mtime = st.st_mtim;
	sig->ctime = st.st_ctim;
}

static bool file_sig_equal(const struct file_sig *a, const struct file_sig *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void names_flush(struct unix_state *u)
{
	for (size_t i = 0; i < u->n_names; i++)
		free(u->names[i].name);
	free(u->names);
	u->names = NULL;
	u->n_names = 0;
	u->names_gen++;
}

/* Drops the cached names when they may be stale. Called with the lock held. */
static void names_check(struct unix_state *u)
{
	int64_t now = now_mono_us();
	struct file_sig pw, gr;

	if (u->names_checked_us && now - u->names_checked_us < NAME_CHECK_US)
		return;
	u->names_checked_us = now;
	file_sig_get(PASSWD_FILE, &pw);
	file_sig_get(GROUP_FILE, &gr);
	if (!file_sig_equal(&pw, &u->passwd_sig) || !file_sig_equal(&gr, &u->group_sig) ||
	    now - u->names_filled_us >= NAME_MAX_AGE_US) {
		names_flush(u);
		u->passwd_sig = pw;
		u->group_sig = gr;
		u->names_filled_us = now;
	}
}

/* The name service's answer for a uid or gid: 1 with a name in *name (caller frees), 0 when the
 * id has no name, -1 on a lookup error (nothing is cached then), -2 when out of memory. */
static int name_lookup_nss(bool group, uint32_t id, char **name)
{
	size_t len = group ? 16384 : 4096;
	char *buf;
	int r;

	*name = NULL;
	/* Group entries list their members and may be large: grow the buffer on ERANGE (a user
	 * entry that does not fit in 4 KiB gets no name, as always). */
	for (;;) {
		buf = malloc(len);
		if (!buf)
			return -2;
		if (group) {
			struct group gr, *res = NULL;

			r = getgrgid_r((gid_t)id, &gr, buf, len, &res);
			if (r == 0 && res)
				*name = strdup(res->gr_name);
			else if (r == 0)
				r = 1;
		} else {
			struct passwd pw, *res = NULL;

			r = getpwuid_r((uid_t)id, &pw, buf, len, &res);
			if (r == 0 && res)
				*name = strdup(res->pw_name);
			else if (r == 0)
				r = 1;
		}
		if (r != ERANGE || !group || len >= 1024 * 1024)
			break;
		free(buf);
		len *= 4;
	}
	free(buf);
	if (r == 1)
		return 0;
	if (r != 0)
		return -1;
	return *name ? 1 : -2;
}

/* Adds "unix:<type>:<name>" for a uid (group false) or gid, when the id has a name. Lookup
 * errors add nothing, as before the cache. 0, -1 when out of memory, or ATTEST_WOULD_BLOCK when
 * the name is not cached and !may_block (the name service may be remote). */
static int add_name(struct unix_state *u, struct selector_list *out, const char *type, bool group,
		    uint32_t id, bool may_block)
{
	char *name = NULL;
	uint64_t gen;
	int r, found;

	pthread_mutex_lock(&u->lock);
	names_check(u);
	gen = u->names_gen;
	for (size_t i = 0; i < u->n_names; i++) {
		if (u->names[i].id == id && u->names[i].group == group) {
			found = u->names[i].name != NULL;
			r = found ? selector_list_addf(out, "unix:%s:%s", type, u->names[i].name) : 0;
			pthread_mutex_unlock(&u->lock);
			return r;
		}
	}
	pthread_mutex_unlock(&u->lock);
	if (!may_block)
		return ATTEST_WOULD_BLOCK;

	/* Not under the lock: a slow name service must not hold up other attestations. */
	found = name_lookup_nss(group, id, &name);
	if (found == -2)
		return -1;
	if (found < 0)
		return 0;
	r = found ? selector_list_addf(out, "unix:%s:%s", type, name) : 0;

	pthread_mutex_lock(&u->lock);
	/* The cache was dropped while we looked up: this answer may predate the change. */
	if (gen != u->names_gen)
		goto out;
	if (u->n_names >= NAME_CACHE_MAX)
		names_flush(u);
	if (u->n_names % 16 == 0) {
		struct name_entry *v = realloc(u->names, (u->n_names + 16) * sizeof(*v));

		if (!v)
			goto out;
		u->names = v;
	}
	u->names[u->n_names++] = (struct name_entry){.id = id, .group = group, .name = name};
	name = NULL;
out:
	pthread_mutex_unlock(&u->lock);
	free(name);
	return r;
}

/* The unix selectors of the caller from its status text (read through the pinned directory).
 * 0, -1 when out of memory, or ATTEST_WOULD_BLOCK (see add_name). */
static int unix_selectors(struct unix_state *u, const struct caller *c, const char *status,
			  bool may_block, struct selector_list *out)
{
	unsigned long groups[1024];
	size_t ng;
	int r;

	if (selector_list_addf(out, "unix:uid:%u", (unsigned)c->uid) < 0 ||
	    selector_list_addf(out, "unix:gid:%u", (unsigned)c->gid) < 0)
		return -1;
	if ((r = add_name(u, out, "user", false, (uint32_t)c->uid, may_block)) != 0 ||
	    (r = add_name(u, out, "group", true, (uint32_t)c->gid, may_block)) != 0)
		return r;
	ng = parse_ids(status_field(status, "Groups"), groups, ARRAY_LEN(groups));
	for (size_t i = 0; i < ng; i++) {
		if (selector_list_addf(out, "unix:supplementary_gid:%lu", groups[i]) < 0)
			return -1;
		r = add_name(u, out, "supplementary_group", true, (uint32_t)groups[i], may_block);
		if (r != 0)
			return r;
	}
	return 0;
}

/* Reads the caller's status through the pinned directory. */
static int read_status(const struct caller *c, char **status, char *err, size_t errlen)
{
	int r;

	if (c->proc_fd < 0) {
		snprintf(err, errlen, "caller process not pinned");
		return -1;
	}
	r = read_at(c->proc_fd, "status", status, NULL);
	if (r < 0) {
		snprintf(err, errlen, "read /proc/%d/status: %s", (int)c->pid, strerror(-r));
		return -1;
	}
	return 0;
}

static int unix_attest(void *state, const struct caller *c, struct selector_list *out, char *err,
		       size_t errlen)
{
	struct unix_state *u = state;
	char *status = NULL;
	int ret = -1;

	if (read_status(c, &status, err, errlen) < 0)
		return -1;
	if (unix_selectors(u, c, status, true, out) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (u->path_selectors && path_selectors(u, c, out, err, errlen) < 0)
		goto out;
	ret = 0;
out:
	free(status);
	return ret;
}

static void unix_free(void *state)
{
	struct unix_state *u = state;

	if (!u)
		return;
	names_flush(u);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* The common case, unix selectors only: one read of status gives the selectors and the uid/gid
 * check, and it is the last read of the caller's /proc, so checking it is checking the process
 * as it is after attestation, which is what caller_verify does with a second read. The pidfd
 * proves that process is still alive, hence still the one whose pinned directory we read;
 * without a pidfd the start time is read again. */
static int unix_attest_verified(void *state, const struct caller *c, bool may_block,
				struct selector_list *out, char *err, size_t errlen)
{
	char *status = NULL;
	int ret = -1, r;

	if (read_status(c, &status, err, errlen) < 0)
		return -1;
	r = unix_selectors(state, c, status, may_block, out);
	if (r == ATTEST_WOULD_BLOCK) {
		snprintf(err, errlen, "a user or group name is not cached");
		ret = r;
		goto out;
	}
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (caller_verify_status(c, status, err, errlen) < 0)
		goto out;
	ret = 0;
out:
	free(status);
	return ret;
}

static const struct attestor_ops unix_ops = {
	.name = "unix",
	.attest = unix_attest,
	.attest_verified = unix_attest_verified,
	.free = unix_free,
};

struct attestor *attestor_unix_new(const struct attestor_unix_opts *o)
{
	struct attestor *a = calloc(1, sizeof(*a));
	struct unix_state *u = calloc(1, sizeof(*u));

	if (!a || !u) {
		free(u);
		free(a);
		return NULL;
	}
	u->path_selectors = o->path_selectors;
	u->sha256_max_size = o->sha256_max_size;
	pthread_mutex_init(&u->lock, NULL);
	a->ops = &unix_ops;
	a->state = u;
	/* Hashing binaries (unix:sha256) can take long: only without it is the attestor fast. */
	a->fast = !o->path_selectors;
	return a;
}

