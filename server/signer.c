/* signer.c: the signer process and its client (signer.h). */
#include "signer.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "ca_files.h"
#include "log.h"
#include "util.h"

/* ---- the signer process ---- */

struct slot {
	char id[SIGNER_ID_MAX + 1];
	uint8_t kind;
	lkey *key; /* NULL once destroyed; handles are never reused */
};

struct child {
	char key_dir[PATH_MAX];
	char upstream[PATH_MAX]; /* "" without an upstream CA */
	enum key_type type;
	pthread_rwlock_t lock; /* the slots: signing reads, GENERATE/LOAD/DESTROY write */
	struct slot *slots;    /* handle h is slots[h - 1] */
	size_t n_slots;
};

struct serve_arg {
	struct child *c;
	int fd;
};

static void rep_error(struct signer_rep *rep, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void rep_error(struct signer_rep *rep, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf((char *)rep->data, sizeof(rep->data), fmt, ap);
	va_end(ap);
	rep->status = status;
	rep->data_len = (uint16_t)(n < 0 ? 0 : (size_t)n >= sizeof(rep->data) ?
				   sizeof(rep->data) - 1 : (size_t)n);
}

static int key_file_path(const struct child *c, uint8_t kind, const char *id, char *buf,
			 size_t len)
{
	int n = kind == SIGNER_KIND_UPSTREAM ?
		snprintf(buf, len, "%s", c->upstream) :
		snprintf(buf, len, "%s/%s%s.key", c->key_dir, id,
			 kind == SIGNER_KIND_JWT ? ".jwt" : "");
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Takes ownership of k; replies with its handle and public key. */
static void add_key(struct child *c, const char *id, uint8_t kind, lkey *k,
		    struct signer_rep *rep)
{
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	if (lkey_public_der(k, &spki, &spki_len) < 0 || spki_len > sizeof(rep->data)) {
		lkey_free(k);
		free(spki);
		rep_error(rep, -EIO, "cannot encode the public key of %s", id);
		return;
	}
	pthread_rwlock_wrlock(&c->lock);
	c->slots = xrealloc(c->slots, (c->n_slots + 1) * sizeof(*c->slots));
	struct slot *s = &c->slots[c->n_slots++];
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->kind = kind;
	s->key = k;
	rep->handle = (uint32_t)c->n_slots;
	pthread_rwlock_unlock(&c->lock);
	memcpy(rep->data, spki, spki_len);
	rep->data_len = (uint16_t)spki_len;
	free(spki);
}

static void op_generate(struct child *c, const char *id, uint8_t kind, struct signer_rep *rep)
{
	char path[PATH_MAX], err[512];
	lkey *k = NULL;
	if (key_file_path(c, kind, id, path, sizeof(path)) < 0) {
		rep_error(rep, -ENAMETOOLONG, "key path too long");
		return;
	}
	if (access(path, F_OK) == 0) {
		rep_error(rep, -EEXIST, "key file %s exists already", path);
		return;
	}
	if (lkey_generate(c->type, &k) < 0) {
		rep_error(rep, -EIO, "CA key generation failed");
		return;
	}
	if (ca_key_file_save(path, k, err, sizeof(err)) < 0) {
		lkey_free(k);
		rep_error(rep, -EIO, "%s", err);
		return;
	}
	add_key(c, id, kind, k, rep);
}

static void op_load(struct child *c, const char *id, uint8_t kind, struct signer_rep *rep)
{
	char path[PATH_MAX], err[512];
	lkey *k = NULL;
	if (kind == SIGNER_KIND_UPSTREAM && !c->upstream[0]) {
		rep_error(rep, -ENOENT, "no upstream CA key is configured");
		return;
	}
	if (key_file_path(c, kind, id, path, sizeof(path)) < 0) {
		rep_error(rep, -ENAMETOOLONG, "key path too long");
		return;
	}
	if (ca_key_file_load(path, &k, err, sizeof(err)) < 0) {
		rep_error(rep, -EIO, "%s", err);
		return;
	}
	add_key(c, kind == SIGNER_KIND_UPSTREAM ? "upstream" : id, kind, k, rep);
}

static void op_destroy(struct child *c, const char *id, struct signer_rep *rep)
{
	char path[PATH_MAX];
	for (uint8_t kind = SIGNER_KIND_X509; kind <= SIGNER_KIND_JWT; kind++)
		if (key_file_path(c, kind, id, path, sizeof(path)) == 0)
			unlink(path);
	pthread_rwlock_wrlock(&c->lock);
	for (size_t i = 0; i < c->n_slots; i++) {
		if (c->slots[i].key && c->slots[i].kind != SIGNER_KIND_UPSTREAM &&
		    strcmp(c->slots[i].id, id) == 0) {
			lkey_free(c->slots[i].key);
			c->slots[i].key = NULL;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	rep->status = 0;
}

/* Under the read lock: the slot's key, or NULL for an unknown or destroyed handle. */
static lkey *slot_key(struct child *c, uint32_t handle)
{
	return handle >= 1 && handle <= c->n_slots ? c->slots[handle - 1].key : NULL;
}

static void op_sign_or_public(struct child *c, const struct signer_req *req,
			      struct signer_rep *rep)
{
	pthread_rwlock_rdlock(&c->lock);
	lkey *k = slot_key(c, req->handle);
	if (!k) {
		pthread_rwlock_unlock(&c->lock);
		rep_error(rep, -ENOENT, "no key with handle %u", (unsigned)req->handle);
		return;
	}
	int r;
	size_t len = sizeof(rep->data);
	if (req->op == SIGNER_OP_SIGN) {
		r = lkey_sign_digest(k, req->data, req->data_len, rep->data, &len);
	} else {
		uint8_t *spki = NULL;
		r = lkey_public_der(k, &spki, &len);
		if (r == 0 && len <= sizeof(rep->data))
			memcpy(rep->data, spki, len);
		else
			r = -1;
		free(spki);
	}
	pthread_rwlock_unlock(&c->lock);
	if (r < 0) {
		rep_error(rep, -EIO, "signing with handle %u failed", (unsigned)req->handle);
		return;
	}
	rep->handle = req->handle;
	rep->data_len = (uint16_t)len;
}

/* All the digests with one key under one read lock; any failure fails the whole batch. */
static void op_sign_batch(struct child *c, const struct signer_req *req, struct signer_rep *rep)
{
	const uint8_t *digests[SIGNER_BATCH_MAX];
	size_t dlens[SIGNER_BATCH_MAX], n = 0, failed = 0;
	if (signer_batch_req_get(req, digests, dlens, &n) < 0) {
		rep_error(rep, -EINVAL, "malformed batch");
		return;
	}
	pthread_rwlock_rdlock(&c->lock);
	lkey *k = slot_key(c, req->handle);
	for (size_t i = 0; k && !failed && i < n; i++) {
		uint8_t sig[LKEY_SIG_MAX];
		size_t len = sizeof(sig);
		if (lkey_sign_digest(k, digests[i], dlens[i], sig, &len) < 0 ||
		    signer_batch_rep_add(rep, sig, len) < 0)
			failed = i + 1;
	}
	pthread_rwlock_unlock(&c->lock);
	if (!k)
		rep_error(rep, -ENOENT, "no key with handle %u", (unsigned)req->handle);
	else if (failed)
		rep_error(rep, -EIO, "signing digest %zu of %zu with handle %u failed", failed, n,
			  (unsigned)req->handle);
	else
		rep->handle = req->handle;
}

static void handle_request(struct child *c, const struct signer_req *req, struct signer_rep *rep)
{
	char id[SIGNER_REQ_DATA_MAX + 1];
	memcpy(id, req->data, req->data_len);
	id[req->data_len] = 0;
	switch (req->op) {
	case SIGNER_OP_SIGN:
	case SIGNER_OP_PUBLIC_KEY:
		op_sign_or_public(c, req, rep);
		break;
	case SIGNER_OP_SIGN_BATCH:
		op_sign_batch(c, req, rep);
		break;
	case SIGNER_OP_GENERATE:
		op_generate(c, id, req->kind, rep);
		break;
	case SIGNER_OP_LOAD:
		op_load(c, id, req->kind, rep);
		break;
	case SIGNER_OP_DESTROY:
		op_destroy(c, id, rep);
		break;
	default:
		rep_error(rep, -EINVAL, "unknown op %u", req->op);
	}
}

/* One channel: a request in, a reply out, until the server closes its end. A message of the
 * wrong size or with a field out of range gets an error reply; the loop goes on. */
static void *serve(void *arg)
{
	struct serve_arg *a = arg;
	uint8_t in[SIGNER_REQ_MAX], out[SIGNER_REP_MAX];
	for (;;) {
		ssize_t n = recv(a->fd, in, sizeof(in), MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		struct signer_req req;
		struct signer_rep rep = { 0 };
		if ((size_t)n > sizeof(in) || signer_req_decode(in, (size_t)n, &req) < 0)
			rep_error(&rep, -EINVAL, "malformed request of %zd bytes refused", n);
		else
			handle_request(a->c, &req, &rep);
		size_t len = signer_rep_encode(&rep, out, sizeof(out));
		if (len == 0 || send(a->fd, out, len, MSG_NOSIGNAL) < 0)
			break;
	}
	return NULL;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Everything the parent had open (the data dir lock, log files, ...) is closed but stderr, for
 * the signer's own log lines, and the channels. */
static void close_other_fds(int *fds, size_t n)
{
	int *sorted = xcalloc(n, sizeof(*sorted));
	memcpy(sorted, fds, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_int);
	close(0);
	close(1);
	unsigned lo = 3;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned)sorted[i] > lo)
			close_range(lo, (unsigned)sorted[i] - 1, 0);
		lo = (unsigned)sorted[i] + 1;
	}
	close_range(lo, ~0U, 0);
	free(sorted);
}

static __attribute__((noreturn)) void child_main(const struct signer_options *o, int *fds,
						 size_t n, pid_t parent)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	/* No core dump, no ptrace by the same uid, no /proc/PID/mem for other processes. */
	prctl(PR_SET_DUMPABLE, 0);
	signal(SIGINT, SIG_IGN); /* a terminal's ^C: the parent stops, closing the channels */
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	close_other_fds(fds, n);
	struct child c = { .type = o->key_type };
	snprintf(c.key_dir, sizeof(c.key_dir), "%s", o->key_dir);
	snprintf(c.upstream, sizeof(c.upstream), "%s", o->upstream_key_path ? o->upstream_key_path : "");
	pthread_rwlock_init(&c.lock, NULL);
	struct serve_arg *args = xcalloc(n, sizeof(*args));
	for (size_t i = 0; i < n; i++) {
		args[i] = (struct serve_arg){ .c = &c, .fd = fds[i] };
		pthread_t th;
		if (i > 0 && pthread_create(&th, NULL, serve, &args[i]) != 0) {
			log_error("signer: cannot start a thread: %s", strerror(errno));
			_exit(1);
		}
	}
	serve(&args[0]);
	/* The server closed its end (it stops) or is gone: the keys go with this process. */
	_exit(0);
}

/* ---- the server's side ---- */

struct chan {
	int fd;
	pthread_mutex_t mu;
};

struct signer {
	pid_t pid;
	size_t n;
	struct chan *ch;
	atomic_uint next;
	atomic_bool stopping;
};

int signer_start(const struct signer_options *o, struct signer **out, char *err, size_t errlen)
{
	size_t n = o->channels ? o->channels : 1;
	int *mine = xcalloc(n, sizeof(int)), *theirs = xcalloc(n, sizeof(int));
	size_t made = 0;
	int ret = -1;
	for (; made < n; made++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			errorf(err, errlen, "signer: socketpair: %s", strerror(errno));
			goto out;
		}
		mine[made] = sv[0];
		theirs[made] = sv[1];
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		errorf(err, errlen, "signer: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		for (size_t i = 0; i < n; i++)
			close(mine[i]);
		child_main(o, theirs, n, parent);
	}
	struct signer *s = xcalloc(1, sizeof(*s));
	s->pid = pid;
	s->n = n;
	s->ch = xcalloc(n, sizeof(*s->ch));
	for (size_t i = 0; i < n; i++) {
		s->ch[i].fd = mine[i];
		pthread_mutex_init(&s->ch[i].mu, NULL);
		mine[i] = -1;
	}
	log_info("signer: CA keys are held by process %d (%zu channels)", (int)pid, n);
	*out = s;
	ret = 0;
out:
	for (size_t i = 0; i < made; i++) {
		if (mine[i] >= 0)
			close(mine[i]);
		close(theirs[i]);
	}
	free(mine);
	free(theirs);
	return ret;
}

void signer_stop(struct signer *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	for (size_t i = 0; i < s->n; i++) {
		close(s->ch[i].fd);
		pthread_mutex_destroy(&s->ch[i].mu);
	}
	int st;
	while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
		;
	free(s->ch);
	free(s);
}

pid_t signer_pid(const struct signer *s)
{
	return s->pid;
}

static __attribute__((noreturn)) void signer_lost(struct signer *s, const char *why)
{
	log_error("signer: the CA key process (pid %d) is gone (%s): lanyard-server exits with "
		  "status 1, to be restarted with it", (int)s->pid, why);
	_exit(1);
}

void signer_check(struct signer *s)
{
	int st;
	if (!s || atomic_load(&s->stopping) || waitpid(s->pid, &st, WNOHANG) != s->pid)
		return;
	char why[64];
	if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
	else
		snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(st));
	signer_lost(s, why);
}

/* A free channel if there is one (round robin start), else a wait for this caller's own. */
static struct chan *chan_take(struct signer *s)
{
	size_t start = atomic_fetch_add(&s->next, 1) % s->n;
	for (size_t i = 0; i < s->n; i++) {
		struct chan *c = &s->ch[(start + i) % s->n];
		if (pthread_mutex_trylock(&c->mu) == 0)
			return c;
	}
	pthread_mutex_lock(&s->ch[start].mu);
	return &s->ch[start];
}

int signer_call(struct signer *s, const struct signer_req *req, struct signer_rep *rep)
{
	uint8_t buf[SIGNER_REP_MAX];
	size_t len = signer_req_encode(req, buf, sizeof(buf));
	if (len == 0)
		return -EINVAL;
	struct chan *c = chan_take(s);
	ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
	if (n == (ssize_t)len) {
		do
			n = recv(c->fd, buf, sizeof(buf), MSG_TRUNC);
		while (n < 0 && errno == EINTR);
	} else {
		n = -1;
	}
	int e = errno;
	pthread_mutex_unlock(&c->mu);
	if (n <= 0)
		signer_lost(s, n == 0 ? "end of file on its channel" : strerror(e));
	if ((size_t)n > sizeof(buf) || signer_rep_decode(buf, (size_t)n, rep) < 0) {
		log_error("signer: malformed reply of %zd bytes", n);
		return -EIO;
	}
	return 0;
}

static int remote_sign(void *ctx, uint32_t handle, const uint8_t *digest, size_t dlen,
		       uint8_t *sig, size_t *siglen)
{
	struct signer_req req = { .op = SIGNER_OP_SIGN, .handle = handle,
				  .data_len = (uint16_t)dlen };
	struct signer_rep rep;
	if (dlen > sizeof(req.data))
		return -1;
	memcpy(req.data, digest, dlen);
	if (signer_call(ctx, &req, &rep) < 0 || rep.status < 0 || rep.data_len > *siglen)
		return -1;
	memcpy(sig, rep.data, rep.data_len);
	*siglen = rep.data_len;
	return 0;
}

/* Chunks of SIGNER_BATCH_MAX digests, one round trip each. */
static int remote_sign_batch(void *ctx, uint32_t handle, size_t n, const uint8_t *const *digests,
			     size_t dlen, uint8_t (*sigs)[LKEY_SIG_MAX], size_t *siglens)
{
	struct signer_req req = { .handle = handle };
	struct signer_rep rep;
	for (size_t done = 0; done < n;) {
		size_t m = n - done < SIGNER_BATCH_MAX ? n - done : SIGNER_BATCH_MAX;
		const uint8_t *got[SIGNER_BATCH_MAX];
		size_t got_len[SIGNER_BATCH_MAX];
		if (signer_batch_req_set(&req, digests + done, dlen, m) < 0 ||
		    signer_call(ctx, &req, &rep) < 0 || rep.status < 0 ||
		    signer_batch_rep_get(&rep, m, got, got_len) < 0)
			return -1;
		for (size_t i = 0; i < m; i++) {
			memcpy(sigs[done + i], got[i], got_len[i]);
			siglens[done + i] = got_len[i];
		}
		done += m;
	}
	return 0;
}

/* GENERATE or LOAD: the reply's handle and SPKI become a remote key. */
static int key_op(struct signer *s, uint8_t op, enum signer_kind kind, const char *id, lkey **out,
		  char *err, size_t errlen)
{
	struct signer_req req = { .op = op, .kind = (uint8_t)kind };
	struct signer_rep rep;
	size_t idlen = kind == SIGNER_KIND_UPSTREAM ? 0 : strlen(id);
	*out = NULL;
	if (idlen > sizeof(req.data))
		return errorf(err, errlen, "authority id %.70s is too long", id);
	memcpy(req.data, id, idlen);
	req.data_len = (uint16_t)idlen;
	if (signer_call(s, &req, &rep) < 0)
		return errorf(err, errlen, "the signer refused a request for %s", id);
	if (rep.status < 0)
		return errorf(err, errlen, "%.*s", (int)rep.data_len, (const char *)rep.data);
	enum key_type t;
	if (spki_key_type(rep.data, rep.data_len, &t, NULL) < 0 ||
	    !(*out = lkey_remote_new(t, rep.data, rep.data_len, remote_sign, s, rep.handle)))
		return errorf(err, errlen, "the signer returned an unusable public key for %s", id);
	lkey_remote_set_batch(*out, remote_sign_batch);
	return 0;
}

int signer_generate(struct signer *s, enum signer_kind kind, const char *id, lkey **out, char *err,
		    size_t errlen)
{
	return key_op(s, SIGNER_OP_GENERATE, kind, id, out, err, errlen);
}

int signer_load(struct signer *s, enum signer_kind kind, const char *id, lkey **out, char *err,
		size_t errlen)
{
	return key_op(s, SIGNER_OP_LOAD, kind, id ? id : "", out, err, errlen);
}

int signer_destroy(struct signer *s, const char *id)
{
	struct signer_req req = { .op = SIGNER_OP_DESTROY, .data_len = (uint16_t)strlen(id) };
	struct signer_rep rep;
	if (req.data_len > sizeof(req.data))
		return -EINVAL;
	memcpy(req.data, id, req.data_len);
	if (signer_call(s, &req, &rep) < 0)
		return -EIO;
	return rep.status;
}
