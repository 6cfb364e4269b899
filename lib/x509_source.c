/* x509_source.c: the X.509 source. A background thread follows FetchX509SVID on the agent's
 * socket and installs every message as a new immutable context; readers take a reference on the
 * current one under a short lock. When the stream breaks, the thread reconnects with an
 * exponential backoff (with jitter) and the last good context stays in place meanwhile.
 *
 * Stopping: the thread blocks in grpc_stream_next without a timeout, so free() wakes it by
 * shutting down the socket it is using (published in src->cur under the lock). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "grpc.h"
#include "grpc_client.h"
#include "internal.h"
#include "log.h"
#include "util.h"
#include "workload_client.h"

#include "workload.pb-c.h"
#include "keys.h"

#define CONNECT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_DEFAULT_MS 10000

struct lanyard_x509_source {
	char path[4096];
	char *want_id;
	int backoff_max_ms;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled on stop and on every update */

	/* Under lock: */
	bool stop;
	struct grpc_client *cur;
	struct lanyard_x509_context *ctx;
	uint64_t generation;
	int status;
	char status_msg[512];
	bool healthy; /* the last attempt delivered a message; logs only state changes */
	/* Watcher thread only: SHA-256 of the message the current context came from, so that the
	 * first message after a reconnection, usually the same, is not a new update. */
	uint8_t last_digest[WC_SHA256_DIGEST_SIZE];
	lanyard_x509_update_cb cb;
	void *cb_ud;
};

static const struct grpc_header security_header[] = {
	{.name = "workload.spiffe.io", .value = "true"},
};

static void set_status(struct lanyard_x509_source *src, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_status(struct lanyard_x509_source *src, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	bool was_healthy;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&src->lock);
	was_healthy = src->healthy;
	if (code != LANYARD_OK)
		src->healthy = false;
	src->status = code;
	snprintf(src->status_msg, sizeof(src->status_msg), "%s", msg);
	pthread_mutex_unlock(&src->lock);
	if (code != LANYARD_OK && was_healthy)
		log_warnx("liblanyard: X.509 watch on %s: %s", src->path, msg);
	else if (code != LANYARD_OK)
		log_debug("liblanyard: X.509 watch on %s: %s", src->path, msg);
}

/* protobuf-c allocator that wipes what it frees: unpacked messages hold private keys. */
struct wipe_hdr {
	size_t size;
	max_align_t align;
};

static void *wipe_alloc(void *ud, size_t size)
{
	struct wipe_hdr *h = malloc(sizeof(*h) + size);

	if (!h)
		return NULL;
	h->size = size;
	return h + 1;
}

static void wipe_free(void *ud, void *p)
{
	struct wipe_hdr *h;

	if (!p)
		return;
	h = (struct wipe_hdr *)p - 1;
	secure_zero(p, h->size);
	free(h);
}

static ProtobufCAllocator wiping_allocator = {.alloc = wipe_alloc, .free = wipe_free};

/* Installs a message as the current context and tells the callback. */
static void on_message(struct lanyard_x509_source *src, const uint8_t *msg, size_t len)
{
	struct lanyard_x509_context *ctx = NULL, *old;
	lanyard_x509_update_cb cb;
	X509SVIDResponse *r;
	uint64_t gen;
	char err[512];
	bool was_healthy;
	void *ud;
	int ret;
	uint8_t digest[WC_SHA256_DIGEST_SIZE];

	if (wc_Sha256Hash(msg, (word32)len, digest) == 0 && src->ctx &&
	    memcmp(digest, src->last_digest, sizeof(digest)) == 0) {
		pthread_mutex_lock(&src->lock);
		src->status = LANYARD_OK;
		src->status_msg[0] = '\0';
		src->healthy = true;
		pthread_mutex_unlock(&src->lock);
		log_debug("liblanyard: the agent sent the current X.509 context again");
		return;
	}
	r = x509_svidresponse__unpack(&wiping_allocator, len, msg);
	if (!r) {
		set_status(src, LANYARD_EINVAL, "malformed X509SVIDResponse from the agent");
		return;
	}
	pthread_mutex_lock(&src->lock);
	gen = src->generation + 1;
	pthread_mutex_unlock(&src->lock);
	ret = ly_context_from_response(r, src->want_id, gen, &ctx, err, sizeof(err));
	x509_svidresponse__free_unpacked(r, &wiping_allocator);
	if (ret < 0) {
		/* As go-spiffe does: a message with one bad SVID is ignored as a whole, and the
		 * last good context stays. */
		set_status(src, ret, "update rejected, keeping the previous one: %s", err);
		return;
	}
	memcpy(src->last_digest, digest, sizeof(digest));
	pthread_mutex_lock(&src->lock);
	old = src->ctx;
	src->ctx = ctx;
	src->generation = gen;
	src->status = LANYARD_OK;
	src->status_msg[0] = '\0';
	was_healthy = src->healthy;
	src->healthy = true;
	cb = src->cb;
	ud = src->cb_ud;
	lanyard_x509_context_ref(ctx);
	pthread_cond_broadcast(&src->cond);
	pthread_mutex_unlock(&src->lock);
	lanyard_x509_context_unref(old);
	if (!was_healthy)
		log_info("liblanyard: receiving X.509 SVIDs from %s", src->path);
	if (ctx->def && log_enabled(LOG_LEVEL_DEBUG)) {
		char expires[32];
		time_format_rfc3339(ctx->def->not_after, expires, sizeof(expires));
		log_debug("liblanyard: update %llu: %s serial %s expires %s",
			  (unsigned long long)gen, ctx->def->spiffe_id, ctx->def->serial, expires);
	}
	if (cb)
		cb(ud, ctx);
	lanyard_x509_context_unref(ctx);
}

static bool stopping(struct lanyard_x509_source *src)
{
	bool stop;

	pthread_mutex_lock(&src->lock);
	stop = src->stop;
	pthread_mutex_unlock(&src->lock);
	return stop;
}

/* Follows one stream until it ends or breaks. Returns true when a message arrived. */
static bool follow_stream(struct lanyard_x509_source *src, struct grpc_client *c)
{
	static const uint8_t empty[1];
	struct grpc_stream *s = NULL;
	bool got = false;
	char err[512];

	if (grpc_client_stream_open(c, "/SpiffeWorkloadAPI/FetchX509SVID", security_header,
				    ARRAY_LEN(security_header), empty, 0, &s, err, sizeof(err)) < 0) {
		set_status(src, LANYARD_EIO, "%s", err);
		return false;
	}
	for (;;) {
		uint8_t *msg = NULL;
		size_t len = 0;
		int st = 0, n;

		n = grpc_stream_next(s, -1, &msg, &len, &st, err, sizeof(err));
		if (n == 1) {
			on_message(src, msg, len);
			secure_zero(msg, len);
			free(msg);
			got = true;
			continue;
		}
		if (stopping(src))
			break; /* free() shut the socket down: not a lost connection */
		if (n == 2)
			set_status(src, st == GRPC_STATUS_OK ? LANYARD_EAGENT : ly_code_from_grpc(st),
				   "agent: %s: %s (retrying)", grpc_status_name(st), err);
		else
			set_status(src, LANYARD_EIO, "connection to the agent lost (reconnecting): %s", err);
		break;
	}
	grpc_stream_cancel(s);
	return got;
}

/* Sleeps up to ms unless stop is requested. Returns true when stopping. */
static bool wait_or_stop(struct lanyard_x509_source *src, int ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&src->lock);
	while (!src->stop)
		if (pthread_cond_timedwait(&src->cond, &src->lock, &ts) == ETIMEDOUT)
			break;
	stop = src->stop;
	pthread_mutex_unlock(&src->lock);
	return stop;
}

static void *watch_main(void *arg)
{
	struct lanyard_x509_source *src = arg;
	int backoff = BACKOFF_MIN_MS;

	for (;;) {
		struct grpc_client *c = NULL;
		char err[512];
		uint32_t jitter = 0;
		bool got = false;

		if (grpc_client_connect_unix(src->path, CONNECT_TIMEOUT_MS, &c, err, sizeof(err)) <
		    0) {
			set_status(src, LANYARD_EIO, "cannot connect (retrying): %s", err);
		} else {
			pthread_mutex_lock(&src->lock);
			if (src->stop) {
				pthread_mutex_unlock(&src->lock);
				grpc_client_close(c);
				break;
			}
			src->cur = c;
			pthread_mutex_unlock(&src->lock);
			got = follow_stream(src, c);
			pthread_mutex_lock(&src->lock);
			src->cur = NULL;
			pthread_mutex_unlock(&src->lock);
			grpc_client_close(c);
		}
		if (got)
			backoff = BACKOFF_MIN_MS;
		/* Up to a quarter more, so that a fleet does not reconnect in step. */
		random_bytes(&jitter, sizeof(jitter));
		if (wait_or_stop(src, backoff + (int)(jitter % (uint32_t)(backoff / 4 + 1))))
			break;
		backoff = backoff * 2 > src->backoff_max_ms ? src->backoff_max_ms : backoff * 2;
	}
	/* wolfSSL keeps a per-thread ECC cache (FP_ECC) that only the thread itself can free. */
	keys_release_thread_ecc_cache();
	return NULL;
}

LANYARD_API int lanyard_x509_source_new_opts(const struct lanyard_x509_source_options *opts,
					     lanyard_x509_source **out, char *err, size_t errlen)
{
	struct lanyard_x509_source *src;
	pthread_condattr_t ca;
	char e[512];
	int ret;

	if (!out)
		return ly_err(err, errlen, LANYARD_EINVAL, "no output pointer");
	*out = NULL;
	if (opts && opts->spiffe_id && lanyard_spiffeid_check(opts->spiffe_id, err, errlen) < 0)
		return LANYARD_EINVAL;
	if (opts && opts->backoff_max_ms < 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "backoff_max_ms must not be negative");
	src = calloc(1, sizeof(*src));
	if (!src)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	if (workload_resolve_socket(opts ? opts->socket : NULL, src->path, sizeof(src->path), e,
				    sizeof(e)) < 0) {
		free(src);
		return ly_err(err, errlen, LANYARD_EINVAL, "%s", e);
	}
	src->backoff_max_ms = opts && opts->backoff_max_ms ? opts->backoff_max_ms
							    : BACKOFF_MAX_DEFAULT_MS;
	if (src->backoff_max_ms < BACKOFF_MIN_MS)
		src->backoff_max_ms = BACKOFF_MIN_MS;
	if (opts && opts->spiffe_id && !(src->want_id = strdup(opts->spiffe_id))) {
		free(src);
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	}
	src->status = LANYARD_EIO;
	snprintf(src->status_msg, sizeof(src->status_msg), "no answer from the agent yet");
	pthread_mutex_init(&src->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&src->cond, &ca);
	pthread_condattr_destroy(&ca);
	ly_wolfssl_init();
	ret = pthread_create(&src->thread, NULL, watch_main, src);
	if (ret != 0) {
		lanyard_x509_source_free(src);
		return ly_err(err, errlen, LANYARD_ENOMEM, "cannot start a thread: %s",
			      strerror(ret));
	}
	src->thread_started = true;
	*out = src;
	return LANYARD_OK;
}

LANYARD_API int lanyard_x509_source_new(const char *socket, lanyard_x509_source **out, char *err,
					size_t errlen)
{
	struct lanyard_x509_source_options o = {.socket = socket};

	return lanyard_x509_source_new_opts(&o, out, err, errlen);
}

LANYARD_API void lanyard_x509_source_free(lanyard_x509_source *src)
{
	if (!src)
		return;
	pthread_mutex_lock(&src->lock);
	src->stop = true;
	if (src->cur)
		shutdown(grpc_client_fd(src->cur), SHUT_RDWR);
	pthread_cond_broadcast(&src->cond);
	pthread_mutex_unlock(&src->lock);
	if (src->thread_started)
		pthread_join(src->thread, NULL);
	lanyard_x509_context_unref(src->ctx);
	pthread_cond_destroy(&src->cond);
	pthread_mutex_destroy(&src->lock);
	free(src->want_id);
	free(src);
}

LANYARD_API int lanyard_x509_source_wait_ready(lanyard_x509_source *src, int timeout_ms,
					       char *err, size_t errlen)
{
	struct timespec ts;
	int ret = LANYARD_OK;

	if (!src)
		return ly_err(err, errlen, LANYARD_EINVAL, "no source");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms >= 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&src->lock);
	while (!(src->ctx && src->ctx->def)) {
		int r = timeout_ms < 0 ? pthread_cond_wait(&src->cond, &src->lock)
				       : pthread_cond_timedwait(&src->cond, &src->lock, &ts);

		if (r == ETIMEDOUT) {
			if (src->ctx && !src->ctx->def)
				ret = ly_err(err, errlen, LANYARD_ETIMEDOUT,
					     "timed out: the agent serves no SVID with ID %s",
					     src->want_id ? src->want_id : "?");
			else
				ret = ly_err(err, errlen, LANYARD_ETIMEDOUT,
					     "timed out waiting for an X.509 SVID: %s",
					     src->status_msg);
			break;
		}
	}
	pthread_mutex_unlock(&src->lock);
	return ret;
}

LANYARD_API lanyard_x509_context *lanyard_x509_source_context(lanyard_x509_source *src)
{
	lanyard_x509_context *ctx;

	if (!src)
		return NULL;
	pthread_mutex_lock(&src->lock);
	ctx = lanyard_x509_context_ref(src->ctx);
	pthread_mutex_unlock(&src->lock);
	return ctx;
}

LANYARD_API lanyard_x509_svid *lanyard_x509_source_svid(lanyard_x509_source *src)
{
	lanyard_x509_svid *svid = NULL;

	if (!src)
		return NULL;
	pthread_mutex_lock(&src->lock);
	if (src->ctx && src->ctx->def)
		svid = lanyard_x509_svid_ref(src->ctx->def);
	pthread_mutex_unlock(&src->lock);
	return svid;
}

LANYARD_API uint64_t lanyard_x509_source_generation(lanyard_x509_source *src)
{
	uint64_t g;

	if (!src)
		return 0;
	pthread_mutex_lock(&src->lock);
	g = src->generation;
	pthread_mutex_unlock(&src->lock);
	return g;
}

LANYARD_API int lanyard_x509_source_status(lanyard_x509_source *src, char *err, size_t errlen)
{
	int code;

	if (!src)
		return ly_err(err, errlen, LANYARD_EINVAL, "no source");
	pthread_mutex_lock(&src->lock);
	code = src->status;
	ly_err(err, errlen, code, "%s", src->status_msg);
	pthread_mutex_unlock(&src->lock);
	return code;
}

LANYARD_API void lanyard_x509_source_on_update(lanyard_x509_source *src, lanyard_x509_update_cb cb,
					       void *ud)
{
	lanyard_x509_context *ctx;

	if (!src)
		return;
	pthread_mutex_lock(&src->lock);
	src->cb = cb;
	src->cb_ud = ud;
	ctx = cb ? lanyard_x509_context_ref(src->ctx) : NULL;
	pthread_mutex_unlock(&src->lock);
	if (ctx)
		cb(ud, ctx);
	lanyard_x509_context_unref(ctx);
}
