/* workload_api.c: the SPIFFE Workload API server on the agent's Unix socket.
 *
 * A call goes through: header check and request decoding (loop) -> attestation of the pinned
 * caller and the pid-reuse check (threadpool, uv_queue_work, when an attestor may block or hash
 * binaries; inline on the loop otherwise) -> entry matching and the answer (loop). Streams stay
 * on a list; every publication of the svid_cache walks it and sends a stream a new message only
 * when its answer changed (a 16-byte digest per stream stands for the last message sent, so no
 * copy of it is kept).
 *
 * Caller selector sets are interned and shared by every call with the same selectors; the match
 * against the current snapshot is cached in the set, so 1,000 streams of a few workloads cost a
 * few matchings per publication.
 *
 * Lifetimes: a wcall holds one grpc_call reference for its whole life and is itself reference
 * counted (one reference for the open call, one per pending attestation or JWT fetch); a wconn
 * is referenced by its connection and by its calls' pending attestations (which read its pinned
 * /proc fd on a worker thread). The workload_api is freed when the gRPC server reported its
 * shutdown done and no asynchronous work refers to it any more. */
#include "workload_api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent_config.h"
#include "attestor.h"
#include "grpc_server.h"
#include "jwt.h"
#include "log.h"
#include "node_client.h"
#include "pbstruct.h"
#include "sds.h"
#include "spiffeid.h"
#include "svid_cache.h"
#include "unix_socket.h"
#include "util.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "health.pb-c.h"
#include "workload.pb-c.h"

#define SECURITY_HEADER "workload.spiffe.io"
#define MAX_REQUEST_SIZE (64 * 1024)
#define MAX_STREAMS_PER_CONN 32
#define MAX_CONNS 4096
#define SHUTDOWN_GRACE_MS 200
#define SELSET_BUCKETS 256
#define DIGEST_LEN 16
#define CLOSEST_ENTRIES 3
#define NO_IDENTITY "no identity issued"

#define REFUSAL_LOG_INTERVAL_MS 10000
#define IDLE_SWEEP_MIN_MS 100

/* Open connections of one caller uid, or of one process (pid and start time, so that a reused
 * pid is another process). */
struct conn_count {
	bool is_process;
	uid_t uid;
	pid_t pid;
	uint64_t start_time;
	unsigned n;
};

/* Connection refusals are logged once per interval with a count, so that a workload hammering
 * the socket cannot flood the log. */
struct refusal_log {
	uint64_t since_ms; /* start of the current interval; 0 = none */
	uint64_t suppressed;
	char last[256];
};

/* An interned, sorted caller selector set, shared by the calls that have it. */
struct selset {
	struct selset *next; /* hash chain */
	uint64_t hash;
	int refs;
	char **v;
	size_t n;
	/* The entries of the current snapshot it matches (indexes), valid while epoch matches. */
	uint64_t epoch;
	size_t *match;
	size_t n_match;
};

struct wconn {
	struct workload_api *w;
	int refs;
	struct caller caller;
	/* Connection accounting, while the connection is open (loop thread only). */
	struct grpc_conn *gc;
	struct wconn *prev, *next; /* w->conns */
	uint64_t active_ms;        /* last request, or last sweep that saw an open call */
	bool idle_closed;
};

struct jwt_slot {
	struct wcall *c;
	const char *entry_id; /* points into the snapshot the call holds */
	char *token;
	char *message;
	int status;
};

/* One attestation on the threadpool; freed when it is done, so open streams do not carry it. */
struct attest_job {
	uv_work_t work;
	struct wcall *c;
	struct selector_list got;
	int rc;
	char err[256];
	int64_t started_us;
};

const double workload_attest_buckets[WL_ATTEST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001,
							   0.0025, 0.01, 0.1, 1.0};

struct wcall {
	struct workload_api *w;
	struct grpc_call *call;
	struct wconn *conn;
	enum workload_method method;
	int refs;
	bool closed;   /* on_call_closed seen */
	bool finished; /* we sent the status */
	ProtobufCMessage *req; /* freed once answered, except for FetchJWTSVID's audiences */

	/* Streams. */
	struct wcall *prev, *next;
	bool in_streams;
	bool sent;
	uint8_t digest[DIGEST_LEN];
	struct selset *sel;

	/* SDS: the stream once attested; before that, the latest message that came early. */
	struct sds_stream *sds;
	uint8_t *early;
	size_t early_len;

	/* FetchJWTSVID. */
	struct snapshot *jwt_snap;
	struct jwt_slot *slots;
	size_t n_slots, pending;
};

struct workload_api {
	uv_loop_t *loop;
	struct workload_api_opts opts; /* strings owned */
	struct svid_cache *cache;
	struct cache_sub *sub;
	struct node_client *nc;
	struct sds *sds;
	struct grpc_server *server;
	struct attestor **attestors; /* the unix attestor first */
	size_t n_attestors;
	struct stat sock_st; /* of the socket we created, for unix_socket_remove */

	struct snapshot *snap; /* current, referenced */
	uint64_t epoch;        /* bumped on every snapshot change */
	uint8_t x509_bundle_digest[DIGEST_LEN];
	uint8_t jwt_bundle_digest[DIGEST_LEN];
	struct jwks *jwks; /* parsed snap->jwt_bundle, lazily, for jwks_epoch */
	uint64_t jwks_epoch;

	struct selset *sets[SELSET_BUCKETS];
	struct wcall *streams;
	struct conn_count *counts;
	size_t n_counts;
	struct wconn *conns; /* open, accepted connections */
	uv_timer_t idle_timer;
	bool idle_timer_on;
	struct refusal_log refusals;

	struct workload_api_stats stats;
	/* Every attestor is fast: attestation runs on the loop, in inline_job (on the threadpool
	 * when a user or group name must be looked up). */
	bool attest_inline;
	struct attest_job *inline_job;
	unsigned pending_async; /* attestations and JWT fetches still holding w */
	bool stopping, server_done;
};

static const char *const method_names[WL_METHOD_COUNT] = {
	[WL_METHOD_FETCH_X509_SVID] = "FetchX509SVID",
	[WL_METHOD_FETCH_X509_BUNDLES] = "FetchX509Bundles",
	[WL_METHOD_FETCH_JWT_SVID] = "FetchJWTSVID",
	[WL_METHOD_FETCH_JWT_BUNDLES] = "FetchJWTBundles",
	[WL_METHOD_VALIDATE_JWT_SVID] = "ValidateJWTSVID",
	[WL_METHOD_HEALTH_CHECK] = "HealthCheck",
	[WL_METHOD_SDS_STREAM] = "StreamSecrets",
	[WL_METHOD_SDS_FETCH] = "FetchSecrets",
};

const char *workload_method_name(int method)
{
	if (method < 0 || method >= WL_METHOD_COUNT)
		return "unknown";
	return method_names[method];
}

static void maybe_free(struct workload_api *w);
static void stream_update(struct wcall *c);

/* ---- small helpers ---- */

static void digest_of(const void *data, size_t len, uint8_t out[DIGEST_LEN])
{
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_Sha256Hash(data, (word32)len, full);
	memcpy(out, full, DIGEST_LEN);
}

static const char *td_of(struct workload_api *w)
{
	return w->snap->trust_domain && w->snap->trust_domain[0] ? w->snap->trust_domain
								: w->opts.trust_domain;
}

static bool snap_ready(const struct snapshot *s)
{
	return (s->synced || s->n_svids > 0) && s->bundle_len > 0;
}

static void count(struct workload_api *w, enum workload_method m, int status)
{
	if (status >= 0 && status < WL_STATUS_COUNT)
		w->stats.requests[m][status]++;
}

/* Answers a call that never got a wcall (immediate errors, health). */
static void finish_now(struct workload_api *w, struct grpc_call *call, enum workload_method m,
		       int status, const char *message)
{
	if (grpc_call_finish(call, status, message) == 0)
		count(w, m, status);
}

/* ---- selector sets ---- */

static uint64_t selset_hash(char *const *v, size_t n)
{
	uint64_t h = FNV1A_INIT;

	/* 0xff never occurs in UTF-8: it separates the selectors. */
	for (size_t i = 0; i < n; i++)
		h = fnv1a(fnv1a_str(h, v[i]), "\xff", 1);
	return h;
}

/* Takes over the strings of l (l is emptied). NULL on allocation failure. */
static struct selset *selset_intern(struct workload_api *w, struct selector_list *l)
{
	uint64_t h = selset_hash(l->v, l->n);
	struct selset **bucket = &w->sets[h % SELSET_BUCKETS], *s;

	for (s = *bucket; s; s = s->next) {
		size_t i;

		if (s->hash != h || s->n != l->n)
			continue;
		for (i = 0; i < l->n && strcmp(s->v[i], l->v[i]) == 0; i++)
			;
		if (i == l->n) {
			s->refs++;
			selector_list_free(l);
			return s;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->hash = h;
	s->refs = 1;
	s->v = l->v;
	s->n = l->n;
	l->v = NULL;
	l->n = l->cap = 0;
	s->next = *bucket;
	*bucket = s;
	return s;
}

static void selset_unref(struct workload_api *w, struct selset *s)
{
	struct selset **pp;

	if (!s || --s->refs > 0)
		return;
	for (pp = &w->sets[s->hash % SELSET_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->match);
	free(s);
}

/* The entries of the current snapshot the set is entitled to. 0 or -1 (no memory). */
static int selset_match(struct workload_api *w, struct selset *s)
{
	const struct snapshot *snap = w->snap;
	size_t cap = 0;

	if (s->epoch == w->epoch)
		return 0;
	/* Sized for the matches, not the entries: a node may hold thousands of entries and many
	 * distinct callers, each of which matches a few. */
	free(s->match);
	s->match = NULL;
	s->n_match = 0;
	for (size_t i = 0; i < snap->n_entries; i++) {
		const struct entry *e = snap->entries[i];

		/* An entry without selectors would match every process on the node. */
		if (e->n_selectors == 0 ||
		    !selectors_subset(e->selectors, e->n_selectors, s->v, s->n))
			continue;
		if (s->n_match == cap) {
			size_t *m = realloc(s->match, (cap ? cap * 2 : 4) * sizeof(*m));

			if (!m)
				return -1;
			s->match = m;
			cap = cap ? cap * 2 : 4;
		}
		s->match[s->n_match++] = i;
	}
	s->epoch = w->epoch;
	return 0;
}

/* ---- objects ---- */

static void wconn_unref(struct wconn *wc)
{
	if (!wc || --wc->refs > 0)
		return;
	caller_close(&wc->caller);
	free(wc);
}

static void wcall_unref(struct wcall *c)
{
	if (!c || --c->refs > 0)
		return;
	if (c->req)
		protobuf_c_message_free_unpacked(c->req, NULL);
	selset_unref(c->w, c->sel);
	for (size_t i = 0; i < c->n_slots; i++) {
		free(c->slots[i].token);
		free(c->slots[i].message);
	}
	free(c->slots);
	free(c->early);
	snapshot_release(c->jwt_snap);
	wconn_unref(c->conn);
	grpc_call_unref(c->call);
	free(c);
}

static void stream_unlink(struct wcall *c)
{
	struct workload_api *w = c->w;

	if (!c->in_streams)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->streams = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->in_streams = false;
	w->stats.streams--;
}

static void stream_link(struct wcall *c)
{
	struct workload_api *w = c->w;

	c->next = w->streams;
	if (w->streams)
		w->streams->prev = c;
	w->streams = c;
	c->in_streams = true;
	w->stats.streams++;
}

/* The outcome of a call the client ended: a stream that delivered its answer and was then closed
 * by the client (what every SPIFFE library does once it has its SVID) is counted as the OK it
 * saw; a client that left before any answer cancelled. */
static int client_closed_outcome(const struct wcall *c)
{
	return c->sent ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static void wcall_finish(struct wcall *c, int status, const char *message)
{
	if (c->finished || c->closed)
		return;
	c->finished = true;
	/* A refused finish means the transport closed the call first. */
	count(c->w, c->method,
	      grpc_call_finish(c->call, status, message) == 0 ? status : client_closed_outcome(c));
}

/* ---- why a caller got nothing ---- */

struct closest {
	size_t idx;
	size_t have;
};

static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*pos >= len)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (r > 0)
		*pos += (size_t)r;
}

/* Appends a selector with control characters shown as '?': a unix:path comes from the caller
 * and must not be able to forge log lines. */
static void append_sel(char *buf, size_t len, size_t *pos, const char *sep, const char *sel)
{
	append(buf, len, pos, "%s", sep);
	for (const char *p = sel; *p && *pos + 1 < len; p++)
		buf[(*pos)++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	if (*pos < len)
		buf[*pos] = '\0';
}

/* Keeps the denial for the status page, newest first (loop thread, like the other stats). */
static void record_denial(struct workload_api_stats *st, int method, const struct caller *cl,
			  const char *sel, const char *why)
{
	size_t keep = st->n_denials < WL_DENIALS ? st->n_denials : WL_DENIALS - 1;
	memmove(&st->denials[1], &st->denials[0], keep * sizeof(st->denials[0]));
	struct wl_denial *d = &st->denials[0];
	d->at = now_unix();
	d->pid = (int)cl->pid;
	d->uid = (unsigned)cl->uid;
	d->gid = (unsigned)cl->gid;
	snprintf(d->method, sizeof(d->method), "%s", workload_method_name(method));
	snprintf(d->selectors, sizeof(d->selectors), "%s", sel);
	snprintf(d->why, sizeof(d->why), "%s", why);
	st->n_denials = keep + 1;
}

/* The most common support question about SPIFFE agents is "no identity issued" with no
 * explanation: log the caller's selectors and the entries closest to matching, with the
 * selectors the caller lacks. */
static void explain_denial(struct wcall *c)
{
	struct workload_api *w = c->w;
	const struct snapshot *snap = w->snap;
	const struct caller *cl = &c->conn->caller;
	struct closest best[CLOSEST_ENTRIES];
	size_t n_best = 0, pos = 0;
	char sel[1024], why[2048];

	sel[0] = why[0] = '\0';
	for (size_t i = 0; i < c->sel->n; i++)
		append_sel(sel, sizeof(sel), &pos, i ? " " : "", c->sel->v[i]);
	for (size_t i = 0; i < snap->n_entries; i++) {
		const struct entry *e = snap->entries[i];
		size_t have = 0, k;

		for (size_t j = 0; j < e->n_selectors; j++)
			if (selectors_subset(&e->selectors[j], 1, c->sel->v, c->sel->n))
				have++;
		if (n_best == CLOSEST_ENTRIES && best[CLOSEST_ENTRIES - 1].have >= have)
			continue;
		/* Insertion into the top list: most selectors in common first. */
		if (n_best < CLOSEST_ENTRIES)
			n_best++;
		for (k = n_best - 1; k > 0 && best[k - 1].have < have; k--)
			best[k] = best[k - 1];
		best[k] = (struct closest){.idx = i, .have = have};
	}
	pos = 0;
	for (size_t b = 0; b < n_best; b++) {
		const struct entry *e = snap->entries[best[b].idx];
		bool first = true;

		append(why, sizeof(why), &pos, "%sentry %s (%s) has %zu/%zu, lacks [", b ? "; " : "",
		       e->id, e->spiffe_id, best[b].have, e->n_selectors);
		for (size_t j = 0; j < e->n_selectors; j++) {
			if (selectors_subset(&e->selectors[j], 1, c->sel->v, c->sel->n))
				continue;
			append_sel(why, sizeof(why), &pos, first ? "" : " ", e->selectors[j]);
			first = false;
		}
		append(why, sizeof(why), &pos, "]");
	}
	log_event(LOG_LEVEL_WARN,
		  LOG_FIELDS(LOG_STR("method", workload_method_name(c->method)),
			     LOG_INT("pid", cl->pid), LOG_INT("uid", cl->uid), LOG_INT("gid", cl->gid),
			     LOG_STR("selectors", sel)),
		  "workload: %s denied: no entry matches pid %d uid %u gid %u; selectors: [%s]; "
		  "%zu entries; closest: %s",
		  workload_method_name(c->method), (int)cl->pid, (unsigned)cl->uid, (unsigned)cl->gid,
		  sel, snap->n_entries, n_best ? why : "none");
	record_denial(&w->stats, c->method, cl, sel, n_best ? why : "no entry at all");
}

/* ---- answers ---- */

static const char *svid_hint(const struct snapshot *snap, const struct svid *v)
{
	const struct entry *e;

	if (v->hint)
		return v->hint;
	e = snapshot_entry(snap, v->entry_id);
	return e && e->hint ? e->hint : "";
}

/* The SVIDs of the matched entries, in entry order; *n may be 0 (being minted). */
static struct svid **matched_svids(struct workload_api *w, const struct selset *s, size_t *n)
{
	struct svid **v = calloc(s->n_match ? s->n_match : 1, sizeof(*v));

	*n = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < s->n_match; i++) {
		struct svid *sv = snapshot_svid(w->snap, w->snap->entries[s->match[i]]->id);

		if (sv)
			v[(*n)++] = sv;
	}
	return v;
}

/* ---- federated bundles (SPIFFE Workload API 4.6: only those the caller's entries name) ---- */

static bool entry_federates_with(const struct entry *e, const char *td)
{
	for (size_t i = 0; i < e->n_federates_with; i++)
		if (strcmp(e->federates_with[i], td) == 0)
			return true;
	return false;
}

/* The federated bundles at least one of the caller's matched entries federates with, in trust
 * domain order, borrowed from the snapshot. *n may be 0; NULL only when out of memory. */
static const struct fed_snap **caller_fed(struct workload_api *w, const struct selset *s, size_t *n)
{
	const struct fed_snap **v = calloc(w->snap->n_fed + 1, sizeof(*v));

	*n = 0;
	if (!v)
		return NULL;
	for (size_t f = 0; f < w->snap->n_fed; f++) {
		bool want = false;

		for (size_t i = 0; i < s->n_match && !want; i++)
			want = entry_federates_with(w->snap->entries[s->match[i]],
						    w->snap->fed[f].trust_domain);
		if (want)
			v[(*n)++] = &w->snap->fed[f];
	}
	return v;
}

/* Mixes the given federated bundles (their X.509 or JWT halves) into d. */
static void fed_digest(const struct fed_snap **f, size_t n, bool jwt, uint8_t d[DIGEST_LEN])
{
	wc_Sha256 sha;
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, d, DIGEST_LEN);
	for (size_t i = 0; i < n; i++) {
		wc_Sha256Update(&sha, (const uint8_t *)f[i]->trust_domain,
				(word32)strlen(f[i]->trust_domain) + 1);
		if (jwt)
			wc_Sha256Update(&sha, (const uint8_t *)f[i]->jwt_bundle,
					(word32)strlen(f[i]->jwt_bundle) + 1);
		else
			wc_Sha256Update(&sha, f[i]->x509, (word32)f[i]->x509_len);
	}
	wc_Sha256Final(&sha, full);
	wc_Sha256Free(&sha);
	memcpy(d, full, DIGEST_LEN);
}

/* Map entries "spiffe://<td>" -> bundle for the federated bundles; keys (n of them, each
 * TRUST_DOMAIN_MAX + 16 bytes) and values are the caller's, valid while f is. */
static void fed_keys(const struct fed_snap **f, size_t n, char (*keys)[TRUST_DOMAIN_MAX + 16])
{
	for (size_t i = 0; i < n; i++)
		snprintf(keys[i], TRUST_DOMAIN_MAX + 16, "spiffe://%s", f[i]->trust_domain);
}

static void x509_digest(struct workload_api *w, struct svid **v, size_t n, uint8_t out[DIGEST_LEN])
{
	wc_Sha256 sha;
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_InitSha256(&sha);
	for (size_t i = 0; i < n; i++) {
		const char *parts[] = {v[i]->entry_id, v[i]->spiffe_id, v[i]->serial,
				       svid_hint(w->snap, v[i])};

		for (size_t j = 0; j < ARRAY_LEN(parts); j++)
			wc_Sha256Update(&sha, (const uint8_t *)parts[j], (word32)strlen(parts[j]) + 1);
	}
	wc_Sha256Update(&sha, w->x509_bundle_digest, DIGEST_LEN);
	wc_Sha256Final(&sha, full);
	wc_Sha256Free(&sha);
	memcpy(out, full, DIGEST_LEN);
}

static int send_x509_svids(struct wcall *c, struct svid **v, size_t n,
			   const struct fed_snap **f, size_t n_fed)
{
	struct workload_api *w = c->w;
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
	X509SVID *items = calloc(n, sizeof(*items));
	X509SVID **ptrs = calloc(n, sizeof(*ptrs));
	X509SVIDResponse__FederatedBundlesEntry *fe = calloc(n_fed + 1, sizeof(*fe));
	X509SVIDResponse__FederatedBundlesEntry **fp = calloc(n_fed + 1, sizeof(*fp));
	char (*keys)[TRUST_DOMAIN_MAX + 16] = calloc(n_fed + 1, sizeof(*keys));
	int r = -1;

	if (!items || !ptrs || !fe || !fp || !keys)
		goto out;
	fed_keys(f, n_fed, keys);
	for (size_t i = 0; i < n_fed; i++) {
		X509SVIDResponse__FederatedBundlesEntry init =
			X509_SVIDRESPONSE__FEDERATED_BUNDLES_ENTRY__INIT;

		fe[i] = init;
		fe[i].key = keys[i];
		fe[i].value = (ProtobufCBinaryData){f[i]->x509_len, f[i]->x509};
		fp[i] = &fe[i];
	}
	resp.n_federated_bundles = n_fed;
	resp.federated_bundles = fp;
	for (size_t i = 0; i < n; i++) {
		X509SVID init = X509_SVID__INIT;

		items[i] = init;
		/* Borrowed from the snapshot, which outlives this function. */
		items[i].spiffe_id = v[i]->spiffe_id;
		items[i].x509_svid = (ProtobufCBinaryData){v[i]->chain_len, v[i]->chain};
		items[i].x509_svid_key = (ProtobufCBinaryData){v[i]->key_len, v[i]->key};
		items[i].bundle = (ProtobufCBinaryData){w->snap->bundle_len, w->snap->bundle};
		items[i].hint = (char *)svid_hint(w->snap, v[i]);
		ptrs[i] = &items[i];
	}
	resp.n_svids = n;
	resp.svids = ptrs;
	r = grpc_call_send_pb(c->call, &resp.base);
out:
	free(items);
	free(ptrs);
	free(fe);
	free(fp);
	free(keys);
	return r;
}

/* The own bundle first, then the caller's federated ones. */
static int send_bundles(struct wcall *c, const struct fed_snap **f, size_t n_fed)
{
	struct workload_api *w = c->w;
	char (*keys)[TRUST_DOMAIN_MAX + 16] = calloc(n_fed + 1, sizeof(*keys));
	X509BundlesResponse__BundlesEntry *xe = calloc(n_fed + 1, sizeof(*xe));
	JWTBundlesResponse__BundlesEntry *je = calloc(n_fed + 1, sizeof(*je));
	void **ptrs = calloc(n_fed + 1, sizeof(*ptrs));
	int r = -1;

	if (!keys || !xe || !je || !ptrs)
		goto out;
	snprintf(keys[0], sizeof(keys[0]), "spiffe://%s", td_of(w));
	fed_keys(f, n_fed, keys + 1);
	if (c->method == WL_METHOD_FETCH_X509_BUNDLES) {
		X509BundlesResponse resp = X509_BUNDLES_RESPONSE__INIT;

		for (size_t i = 0; i <= n_fed; i++) {
			X509BundlesResponse__BundlesEntry init =
				X509_BUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;

			xe[i] = init;
			xe[i].key = keys[i];
			xe[i].value = i == 0 ? (ProtobufCBinaryData){w->snap->bundle_len, w->snap->bundle}
					     : (ProtobufCBinaryData){f[i - 1]->x509_len, f[i - 1]->x509};
			ptrs[i] = &xe[i];
		}
		resp.n_bundles = n_fed + 1;
		resp.bundles = (X509BundlesResponse__BundlesEntry **)ptrs;
		r = grpc_call_send_pb(c->call, &resp.base);
	} else {
		JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;

		for (size_t i = 0; i <= n_fed; i++) {
			JWTBundlesResponse__BundlesEntry init = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;
			const char *j = i == 0 ? w->snap->jwt_bundle : f[i - 1]->jwt_bundle;

			je[i] = init;
			je[i].key = keys[i];
			je[i].value = (ProtobufCBinaryData){strlen(j), (uint8_t *)j};
			ptrs[i] = &je[i];
		}
		resp.n_bundles = n_fed + 1;
		resp.bundles = (JWTBundlesResponse__BundlesEntry **)ptrs;
		r = grpc_call_send_pb(c->call, &resp.base);
	}
out:
	free(keys);
	free(xe);
	free(je);
	free(ptrs);
	return r;
}

/* Sends the stream's current answer if it differs from the last one; ends the stream when the
 * caller lost every identity. Called on the first request and after every publication. */
static void stream_update(struct wcall *c)
{
	struct workload_api *w = c->w;
	uint8_t d[DIGEST_LEN];
	struct svid **v = NULL;
	const struct fed_snap **f = NULL;
	size_t n = 0, n_fed = 0;

	if (c->finished || c->closed)
		return;
	if (selset_match(w, c->sel) < 0) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (c->sel->n_match == 0) {
		if (c->sent)
			log_info("workload: pid %d: every identity of its %s stream was removed",
				 (int)c->conn->caller.pid, workload_method_name(c->method));
		else
			explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	f = caller_fed(w, c->sel, &n_fed);
	if (!f) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (c->method == WL_METHOD_FETCH_X509_SVID) {
		v = matched_svids(w, c->sel, &n);
		if (!v) {
			wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		/* Entitled, but the SVIDs are still being minted: the first message goes out with
		 * the publication that brings them. */
		if (n == 0)
			goto out;
		x509_digest(w, v, n, d);
	} else {
		memcpy(d, c->method == WL_METHOD_FETCH_X509_BUNDLES ? w->x509_bundle_digest
								    : w->jwt_bundle_digest,
		       DIGEST_LEN);
	}
	fed_digest(f, n_fed, c->method == WL_METHOD_FETCH_JWT_BUNDLES, d);
	if (c->sent && memcmp(d, c->digest, DIGEST_LEN) == 0)
		goto out;
	if ((c->method == WL_METHOD_FETCH_X509_SVID ? send_x509_svids(c, v, n, f, n_fed)
						     : send_bundles(c, f, n_fed)) < 0)
		goto out;
	if (c->sent)
		w->stats.updates_sent++;
	c->sent = true;
	memcpy(c->digest, d, DIGEST_LEN);
out:
	free(v);
	free(f);
}

/* ---- FetchJWTSVID ---- */

static void jwt_complete(struct wcall *c)
{
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID *items = NULL, **ptrs = NULL;

	if (c->closed || c->finished)
		return;
	for (size_t i = 0; i < c->n_slots; i++) {
		if (c->slots[i].status != GRPC_STATUS_OK) {
			log_warnx("workload: JWT-SVID for entry %s: %s: %s", c->slots[i].entry_id,
				 grpc_status_name(c->slots[i].status),
				 c->slots[i].message ? c->slots[i].message : "");
			wcall_finish(c, c->slots[i].status,
				     c->slots[i].message ? c->slots[i].message : "JWT-SVID fetch failed");
			return;
		}
	}
	items = calloc(c->n_slots, sizeof(*items));
	ptrs = calloc(c->n_slots, sizeof(*ptrs));
	if (!items || !ptrs) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c->n_slots; i++) {
		const struct entry *e = snapshot_entry(c->jwt_snap, c->slots[i].entry_id);
		JWTSVID init = JWTSVID__INIT;

		items[i] = init;
		items[i].spiffe_id = e->spiffe_id;
		items[i].svid = c->slots[i].token;
		items[i].hint = e->hint ? e->hint : "";
		ptrs[i] = &items[i];
	}
	resp.n_svids = c->n_slots;
	resp.svids = ptrs;
	if (grpc_call_send_pb(c->call, &resp.base) == 0)
		wcall_finish(c, GRPC_STATUS_OK, NULL);
out:
	free(items);
	free(ptrs);
}

static void jwt_done(struct wcall *c)
{
	struct workload_api *w = c->w;

	if (--c->pending == 0)
		jwt_complete(c);
	wcall_unref(c);
	w->pending_async--;
	maybe_free(w);
}

static void on_jwt(void *ud, int status, const char *token, const char *message)
{
	struct jwt_slot *s = ud;

	s->status = status;
	if (status == GRPC_STATUS_OK && !token) {
		s->status = GRPC_STATUS_INTERNAL;
		message = "no token";
	}
	s->token = token && s->status == GRPC_STATUS_OK ? strdup(token) : NULL;
	s->message = message ? strdup(message) : NULL;
	if (s->status == GRPC_STATUS_OK && !s->token)
		s->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
	jwt_done(s->c);
}

static int fetch_jwt(struct workload_api *w, const char *entry_id, char *const *audience,
		     size_t n_audience, node_jwt_cb cb, void *ud)
{
	if (w->opts.fetch_jwt)
		return w->opts.fetch_jwt(w->opts.fetch_jwt_ud, entry_id, audience, n_audience, cb, ud);
	return node_client_fetch_jwt(w->nc, entry_id, audience, n_audience, cb, ud);
}

static void handle_fetch_jwt(struct wcall *c)
{
	struct workload_api *w = c->w;
	const JWTSVIDRequest *req = (const JWTSVIDRequest *)c->req;
	const struct snapshot *snap = w->snap;
	size_t n = 0;

	if (c->sel->n_match == 0) {
		explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	c->slots = calloc(c->sel->n_match, sizeof(*c->slots));
	if (!c->slots) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	/* One token per SPIFFE ID (several entries may give the same ID). */
	for (size_t i = 0; i < c->sel->n_match; i++) {
		const struct entry *e = snap->entries[c->sel->match[i]];
		bool dup = false;

		if (req->spiffe_id[0] && strcmp(req->spiffe_id, e->spiffe_id) != 0)
			continue;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(snapshot_entry(snap, c->slots[j].entry_id)->spiffe_id,
				     e->spiffe_id) == 0;
		if (dup)
			continue;
		c->slots[n].c = c;
		c->slots[n].entry_id = e->id;
		n++;
	}
	if (n == 0) {
		log_event(LOG_LEVEL_WARN,
			  LOG_FIELDS(LOG_INT("pid", c->conn->caller.pid),
				     LOG_INT("uid", c->conn->caller.uid),
				     LOG_STR("spiffe_id", req->spiffe_id)),
			  "workload: pid %d asked for a JWT-SVID for %s, which it is not entitled to",
			  (int)c->conn->caller.pid, req->spiffe_id);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY " for the requested SPIFFE ID");
		return;
	}
	if (!w->opts.fetch_jwt && !w->nc) {
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "JWT-SVID issuance is not available");
		return;
	}
	c->n_slots = n;
	/* The slots point into this snapshot: keep it for the duration of the fetches. */
	c->jwt_snap = snapshot_ref(w->snap);
	/* One extra pending count so a callback run synchronously cannot complete the call
	 * before every fetch was queued. */
	c->pending = n + 1;
	for (size_t i = 0; i < n; i++) {
		c->refs++;
		w->pending_async++;
		if (fetch_jwt(w, c->slots[i].entry_id, req->audience, req->n_audience, on_jwt,
			      &c->slots[i]) < 0) {
			c->slots[i].status = GRPC_STATUS_UNAVAILABLE;
			c->slots[i].message = strdup("the agent could not queue the JWT-SVID request");
			jwt_done(c);
		}
	}
	c->refs++;
	w->pending_async++;
	jwt_done(c);
}

/* ---- ValidateJWTSVID ---- */

static const struct jwks *current_jwks(struct workload_api *w, char *err, size_t errlen)
{
	if (w->jwks && w->jwks_epoch == w->epoch)
		return w->jwks;
	jwks_free(w->jwks);
	w->jwks = NULL;
	if (jwks_from_json(w->snap->jwt_bundle, strlen(w->snap->jwt_bundle), &w->jwks, err,
			   errlen) < 0)
		return NULL;
	w->jwks_epoch = w->epoch;
	return w->jwks;
}

/* Answers a validation: the claims, or InvalidArgument with err. */
static void validate_answer(struct wcall *c, const struct jwks *keys)
{
	const ValidateJWTSVIDRequest *req = (const ValidateJWTSVIDRequest *)c->req;
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
	struct jwt_claims claims = {0};
	char err[256];

	if (jwt_validate(req->svid, keys, req->audience, now_unix(), &claims, err, sizeof(err)) < 0) {
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	resp.spiffe_id = claims.sub;
	resp.claims = pbstruct_from_json(claims.all);
	if (!resp.claims)
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot convert the claims");
	else if (grpc_call_send_pb(c->call, &resp.base) == 0)
		wcall_finish(c, GRPC_STATUS_OK, NULL);
	pbstruct_free(resp.claims);
	jwt_claims_free(&claims);
}

/* A token of another trust domain: validated against that domain's bundle only when one of the
 * caller's entries federates with it; otherwise, as for an unknown domain, no keys. */
static void validate_foreign_jwt(struct wcall *c, const char *td)
{
	struct workload_api *w = c->w;
	const struct fed_snap *fb = NULL;
	struct jwks *keys = NULL;
	char err[256], msg[400];
	size_t n_fed = 0;
	const struct fed_snap **f = caller_fed(w, c->sel, &n_fed);

	for (size_t i = 0; f && i < n_fed && !fb; i++)
		if (strcmp(f[i]->trust_domain, td) == 0)
			fb = f[i];
	free(f);
	if (!fb) {
		snprintf(msg, sizeof(msg), "no keys found for trust domain \"%s\"", td);
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
		return;
	}
	if (jwks_from_json(fb->jwt_bundle, strlen(fb->jwt_bundle), &keys, err, sizeof(err)) < 0) {
		log_error("workload: the federated JWT bundle of %s does not parse: %s", td, err);
		wcall_finish(c, GRPC_STATUS_INTERNAL, "the federated JWT bundle is unusable");
		return;
	}
	validate_answer(c, keys);
	jwks_free(keys);
}

static void handle_validate_jwt(struct wcall *c)
{
	struct workload_api *w = c->w;
	const ValidateJWTSVIDRequest *req = (const ValidateJWTSVIDRequest *)c->req;
	const struct jwks *keys;
	char sub[SPIFFEID_MAX + 1], td[TRUST_DOMAIN_MAX + 1], err[256];

	if (c->sel->n_match == 0) {
		explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	if (jwt_peek_sub(req->svid, sub, sizeof(sub)) < 0 ||
	    spiffeid_parse(sub, td, NULL, err, sizeof(err)) < 0) {
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
			     "token is malformed or its subject is not a SPIFFE ID");
		return;
	}
	if (strcmp(td, td_of(w)) != 0) {
		validate_foreign_jwt(c, td);
		return;
	}
	keys = current_jwks(w, err, sizeof(err));
	if (!keys) {
		log_error("workload: the agent's JWT bundle does not parse: %s", err);
		wcall_finish(c, GRPC_STATUS_INTERNAL, "the agent's JWT bundle is unusable");
		return;
	}
	validate_answer(c, keys);
}

/* ---- Envoy SDS: attested here, served by sds.c ---- */

static void sds_finish(void *ud, int status, const char *message)
{
	wcall_finish(ud, status, message);
}

static void handle_sds(struct wcall *c)
{
	struct sds_caller who = {.pid = c->conn->caller.pid, .uid = c->conn->caller.uid,
				 .selectors = c->sel->v, .n_selectors = c->sel->n,
				 .finish = sds_finish, .finish_ud = c};

	if (c->sel->n_match == 0) {
		explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	c->sds = sds_open(c->w->sds, c->call, c->method == WL_METHOD_SDS_STREAM, &who, c->req);
	if (c->sds && c->early)
		sds_message(c->sds, c->early, c->early_len);
	free(c->early);
	c->early = NULL;
}

static void on_sds_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct wcall *c = grpc_call_data(call);

	if (!c || c->finished)
		return;
	if (c->sds) {
		sds_message(c->sds, msg, len);
		return;
	}
	/* Still attesting: state of the world, so only the latest request matters. */
	free(c->early);
	c->early = malloc(len ? len : 1);
	c->early_len = c->early ? len : 0;
	if (c->early)
		memcpy(c->early, msg, len);
}

/* ---- attestation ---- */

/* Threadpool: reads /proc through the pinned fd (and hashes the binary when configured), then
 * checks the process is still the one that connected. workload_request attests inline instead
 * when that cannot block. */
static void attest_work(uv_work_t *req)
{
	struct attest_job *j = req->data;
	struct workload_api *w = j->c->w;

	j->rc = attest_caller(w->attestors, w->n_attestors, &j->c->conn->caller, true, &j->got,
			      j->err, sizeof(j->err));
}

static void attest_done(uv_work_t *req, int status)
{
	struct attest_job *j = req->data;
	struct wcall *c = j->c;
	struct workload_api *w = c->w;

	w->pending_async--;
	double secs = (double)(now_mono_us() - j->started_us) / 1e6;
	for (size_t i = 0; i < WL_ATTEST_BUCKETS; i++)
		if (secs <= workload_attest_buckets[i])
			w->stats.attest_hist[i]++;
	w->stats.attest_sum += secs;
	w->stats.attest_count++;
	if (w->stopping || c->closed || c->finished)
		goto out;
	if (status != 0 || j->rc != 0) {
		log_event(LOG_LEVEL_WARN,
			  LOG_FIELDS(LOG_STR("method", workload_method_name(c->method)),
				     LOG_INT("pid", c->conn->caller.pid),
				     LOG_INT("uid", c->conn->caller.uid)),
			  "workload: %s from pid %d uid %u refused: %s",
			  workload_method_name(c->method), (int)c->conn->caller.pid,
			  (unsigned)c->conn->caller.uid, status ? uv_strerror(status) : j->err);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED,
			     status ? "attestation cancelled" : j->err);
		goto out;
	}
	c->sel = selset_intern(w, &j->got);
	if (!c->sel || selset_match(w, c->sel) < 0) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	switch (c->method) {
	case WL_METHOD_FETCH_X509_SVID:
	case WL_METHOD_FETCH_X509_BUNDLES:
	case WL_METHOD_FETCH_JWT_BUNDLES:
		stream_update(c);
		if (!c->finished && !c->closed)
			stream_link(c);
		break;
	case WL_METHOD_FETCH_JWT_SVID:
		handle_fetch_jwt(c);
		break;
	case WL_METHOD_VALIDATE_JWT_SVID:
		handle_validate_jwt(c);
		break;
	case WL_METHOD_SDS_STREAM:
	case WL_METHOD_SDS_FETCH:
		handle_sds(c);
		break;
	default:
		wcall_finish(c, GRPC_STATUS_UNIMPLEMENTED, NULL);
		break;
	}
	/* Streams only need their selector set from here on. */
	if (c->method != WL_METHOD_FETCH_JWT_SVID && c->req) {
		protobuf_c_message_free_unpacked(c->req, NULL);
		c->req = NULL;
	}
out:
	selector_list_free(&j->got);
	if (j != w->inline_job)
		free(j);
	wcall_unref(c);
	maybe_free(w);
}

/* ---- gRPC callbacks ---- */

/* Every request handler starts here, so a request is also what keeps its connection active. */
static struct workload_api *api_of(struct grpc_call *call)
{
	struct grpc_conn *conn = grpc_call_conn(call);
	struct workload_api *w;
	struct wconn *wc;

	if (!conn)
		return NULL;
	w = grpc_server_ud(grpc_conn_server(conn));
	wc = grpc_conn_data(conn);
	if (wc)
		wc->active_ms = uv_now(w->loop);
	return w;
}

static const ProtobufCMessageDescriptor *const request_desc[WL_METHOD_COUNT] = {
	[WL_METHOD_FETCH_X509_SVID] = &x509_svidrequest__descriptor,
	[WL_METHOD_FETCH_X509_BUNDLES] = &x509_bundles_request__descriptor,
	[WL_METHOD_FETCH_JWT_SVID] = &jwtsvidrequest__descriptor,
	[WL_METHOD_FETCH_JWT_BUNDLES] = &jwtbundles_request__descriptor,
	[WL_METHOD_VALIDATE_JWT_SVID] = &validate_jwtsvidrequest__descriptor,
	[WL_METHOD_SDS_STREAM] = &envoy__service__discovery__v3__discovery_request__descriptor,
	[WL_METHOD_SDS_FETCH] = &envoy__service__discovery__v3__discovery_request__descriptor,
};

/* Checks that need no attestation; returns a status and message, OK to go on. */
static int precheck(struct workload_api *w, enum workload_method m, const ProtobufCMessage *req,
		    const char **msg)
{
	if (m == WL_METHOD_FETCH_JWT_SVID) {
		const JWTSVIDRequest *r = (const JWTSVIDRequest *)req;

		if (r->n_audience == 0) {
			*msg = "audience must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
		for (size_t i = 0; i < r->n_audience; i++) {
			if (!r->audience[i][0]) {
				*msg = "audience must not be empty";
				return GRPC_STATUS_INVALID_ARGUMENT;
			}
		}
		if (r->spiffe_id[0] && spiffeid_validate_leaf(r->spiffe_id, NULL, 0) < 0) {
			*msg = "spiffe_id is not a valid SPIFFE ID";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
	} else if (m == WL_METHOD_VALIDATE_JWT_SVID) {
		const ValidateJWTSVIDRequest *r = (const ValidateJWTSVIDRequest *)req;

		if (!r->audience[0]) {
			*msg = "audience must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
		if (!r->svid[0]) {
			*msg = "svid must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
	}
	if (!snap_ready(w->snap)) {
		*msg = "the agent is not ready: no entries synced and no bundle yet";
		return GRPC_STATUS_UNAVAILABLE;
	}
	return GRPC_STATUS_OK;
}

static void workload_request(struct grpc_call *call, enum workload_method m, const uint8_t *msg,
			     size_t len)
{
	struct workload_api *w = api_of(call);
	struct attest_job *j;
	struct wconn *wc;
	struct wcall *c;
	ProtobufCMessage *req;
	const char *hdr = grpc_call_header(call, SECURITY_HEADER), *why = NULL;
	int status, r;

	if (!w)
		return;
	if (w->stopping) {
		finish_now(w, call, m, GRPC_STATUS_UNAVAILABLE, "the agent is shutting down");
		return;
	}
	/* Envoy sends no security header: SPIRE requires it on the Workload API only. */
	if (m != WL_METHOD_SDS_STREAM && m != WL_METHOD_SDS_FETCH && (!hdr || strcmp(hdr, "true") != 0)) {
		finish_now(w, call, m, GRPC_STATUS_INVALID_ARGUMENT,
			   "security header missing from request");
		return;
	}
	req = protobuf_c_message_unpack(request_desc[m], NULL, len, msg);
	if (!req) {
		finish_now(w, call, m, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
		return;
	}
	status = precheck(w, m, req, &why);
	if (status != GRPC_STATUS_OK) {
		protobuf_c_message_free_unpacked(req, NULL);
		finish_now(w, call, m, status, why);
		return;
	}
	wc = grpc_conn_data(grpc_call_conn(call));
	c = calloc(1, sizeof(*c));
	if (w->attest_inline) {
		/* Attestation finishes before this function returns: one job serves them all. */
		j = w->inline_job;
		memset(j, 0, sizeof(*j));
	} else {
		j = calloc(1, sizeof(*j));
	}
	if (!c || !j || !wc) {
		protobuf_c_message_free_unpacked(req, NULL);
		free(c);
		if (j != w->inline_job)
			free(j);
		finish_now(w, call, m, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->w = w;
	c->call = call;
	grpc_call_ref(call);
	c->conn = wc;
	wc->refs++;
	c->method = m;
	c->req = req;
	c->refs = 2; /* the open call, and the attestation below */
	j->c = c;
	j->work.data = j;
	grpc_call_set_data(call, c);
	w->pending_async++;
	j->started_us = now_mono_us();
	if (w->attest_inline) {
		/* Reading a few /proc files costs less than two trips through the threadpool
		 * (locks, wakeups, an eventfd write): attest right here, unless that needs a user
		 * or group name not cached yet (the name service may be slow). */
		j->rc = attest_caller(w->attestors, w->n_attestors, &wc->caller, false, &j->got,
				      j->err, sizeof(j->err));
		if (j->rc != ATTEST_WOULD_BLOCK) {
			attest_done(&j->work, 0);
			return;
		}
		selector_list_free(&j->got);
		j = calloc(1, sizeof(*j));
		if (!j) {
			w->pending_async--;
			wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			wcall_unref(c);
			return;
		}
		j->c = c;
		j->work.data = j;
		j->started_us = w->inline_job->started_us;
	}
	r = uv_queue_work(w->loop, &j->work, attest_work, attest_done);
	if (r < 0) {
		w->pending_async--;
		free(j);
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "cannot schedule attestation");
		wcall_unref(c);
	}
}

static void on_fetch_x509_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_X509_SVID, msg, len);
}

static void on_fetch_x509_bundles(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_X509_BUNDLES, msg, len);
}

static void on_fetch_jwt_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_JWT_SVID, msg, len);
}

static void on_fetch_jwt_bundles(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_JWT_BUNDLES, msg, len);
}

static void on_validate_jwt_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_VALIDATE_JWT_SVID, msg, len);
}

static void on_stream_secrets(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_SDS_STREAM, msg, len);
}

static void on_fetch_secrets(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_SDS_FETCH, msg, len);
}

static void on_health_check(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct workload_api *w = api_of(call);
	Grpc__Health__V1__HealthCheckRequest *req;
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (!w)
		return;
	req = grpc__health__v1__health_check_request__unpack(NULL, len, msg);
	if (!req) {
		finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_INVALID_ARGUMENT,
			   "malformed request message");
		return;
	}
	if (req->service[0] && strcmp(req->service, "SpiffeWorkloadAPI") != 0) {
		finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_NOT_FOUND, "unknown service");
	} else {
		resp.status = !w->stopping && snap_ready(w->snap)
				      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
				      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
		if (grpc_call_send_pb(call, &resp.base) == 0)
			finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_OK, NULL);
	}
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

static const struct grpc_method methods[] = {
	{.path = "/SpiffeWorkloadAPI/FetchX509SVID", .server_streaming = true,
	 .on_request = on_fetch_x509_svid},
	{.path = "/SpiffeWorkloadAPI/FetchX509Bundles", .server_streaming = true,
	 .on_request = on_fetch_x509_bundles},
	{.path = "/SpiffeWorkloadAPI/FetchJWTSVID", .on_request = on_fetch_jwt_svid},
	{.path = "/SpiffeWorkloadAPI/FetchJWTBundles", .server_streaming = true,
	 .on_request = on_fetch_jwt_bundles},
	{.path = "/SpiffeWorkloadAPI/ValidateJWTSVID", .on_request = on_validate_jwt_svid},
	{.path = "/grpc.health.v1.Health/Check", .on_request = on_health_check},
	/* DeltaSecrets is not listed: the server answers it UNIMPLEMENTED. */
	{.path = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
	 .server_streaming = true, .client_streaming = true, .on_request = on_stream_secrets,
	 .on_message = on_sds_message},
	{.path = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
	 .on_request = on_fetch_secrets},
};

static void on_call_closed(struct grpc_call *call)
{
	struct wcall *c = grpc_call_data(call);

	if (!c)
		return;
	grpc_call_set_data(call, NULL);
	c->closed = true;
	sds_closed(c->sds);
	c->sds = NULL;
	if (!c->finished) {
		/* The client went away (cancel, deadline, disconnect). */
		c->finished = true;
		count(c->w, c->method, client_closed_outcome(c));
	}
	stream_unlink(c);
	wcall_unref(c);
}

/* ---- connection accounting ---- */

static struct conn_count *count_slot(struct workload_api *w, const struct conn_count *key,
				     bool create)
{
	struct conn_count *u;

	for (size_t i = 0; i < w->n_counts; i++) {
		u = &w->counts[i];
		if (u->is_process == key->is_process &&
		    (key->is_process ? u->pid == key->pid && u->start_time == key->start_time
				     : u->uid == key->uid))
			return u;
	}
	if (!create)
		return NULL;
	u = realloc(w->counts, (w->n_counts + 1) * sizeof(*u));
	if (!u)
		return NULL;
	w->counts = u;
	u = &w->counts[w->n_counts++];
	*u = *key;
	u->n = 0;
	return u;
}

static void count_release(struct workload_api *w, struct conn_count *u)
{
	if (u && u->n > 0 && --u->n == 0) {
		*u = w->counts[w->n_counts - 1];
		w->n_counts--;
	}
}

/* Logs the refusals counted but not logged in the interval that ended. */
static void refusals_flush(struct workload_api *w, uint64_t now)
{
	struct refusal_log *r = &w->refusals;

	if (!r->since_ms || now - r->since_ms < REFUSAL_LOG_INTERVAL_MS)
		return;
	if (r->suppressed)
		log_warnx("workload: %" PRIu64 " more connections refused in the last %u s (last: %s)",
			 r->suppressed, REFUSAL_LOG_INTERVAL_MS / 1000, r->last);
	r->since_ms = 0;
	r->suppressed = 0;
}

static void refuse_log(struct workload_api *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void refuse_log(struct workload_api *w, const char *fmt, ...)
{
	struct refusal_log *r = &w->refusals;
	uint64_t now = uv_now(w->loop);
	va_list ap;

	w->stats.conns_refused++;
	va_start(ap, fmt);
	vsnprintf(r->last, sizeof(r->last), fmt, ap);
	va_end(ap);
	refusals_flush(w, now);
	if (r->since_ms) {
		r->suppressed++;
		return;
	}
	r->since_ms = now ? now : 1;
	log_warnx("workload: refusing connection: %s (further refusals are counted for %u s)",
		 r->last, REFUSAL_LOG_INTERVAL_MS / 1000);
}

static unsigned count_of(struct workload_api *w, const struct conn_count *key)
{
	struct conn_count *u = count_slot(w, key, false);

	return u ? u->n : 0;
}

/* 0 when the caller is within its limits (its counts are then taken), -1 when refused. */
static int admit(struct workload_api *w, const struct caller *c)
{
	struct conn_count pk = {.is_process = true, .pid = c->pid, .start_time = c->start_time};
	struct conn_count uk = {.uid = c->uid};
	unsigned maxp = w->opts.max_conns_per_process, maxu = w->opts.max_conns_per_uid, n;
	struct conn_count *slot;

	if (maxp && (n = count_of(w, &pk)) >= maxp) {
		refuse_log(w, "pid %d (uid %u) already has %u connections (max_conns_per_process)",
			   (int)c->pid, (unsigned)c->uid, n);
		return -1;
	}
	if (maxu && (n = count_of(w, &uk)) >= maxu) {
		refuse_log(w, "uid %u already has %u connections (max_conns_per_uid)",
			   (unsigned)c->uid, n);
		return -1;
	}
	/* Slots are looked up again after each creation: creating one may move the others. */
	slot = count_slot(w, &pk, true);
	if (!slot) {
		refuse_log(w, "out of memory");
		return -1;
	}
	slot->n++;
	if (maxu) {
		slot = count_slot(w, &uk, true);
		if (!slot) {
			count_release(w, count_slot(w, &pk, false));
			refuse_log(w, "out of memory");
			return -1;
		}
		slot->n++;
	}
	return 0;
}

static void release_counts(struct workload_api *w, const struct caller *c)
{
	struct conn_count pk = {.is_process = true, .pid = c->pid, .start_time = c->start_time};
	struct conn_count uk = {.uid = c->uid};

	count_release(w, count_slot(w, &pk, false));
	if (w->opts.max_conns_per_uid)
		count_release(w, count_slot(w, &uk, false));
}

/* Closes connections without an open call for idle_timeout_ms. Shutting the socket down makes
 * the gRPC server see end-of-file and close the connection the ordinary way (on_disconnect). */
static void on_idle_sweep(uv_timer_t *t)
{
	struct workload_api *w = t->data;
	uint64_t now = uv_now(w->loop);
	unsigned closed = 0;

	refusals_flush(w, now);
	for (struct wconn *wc = w->conns; wc; wc = wc->next) {
		if (wc->idle_closed)
			continue;
		if (grpc_conn_stream_count(wc->gc) > 0) {
			wc->active_ms = now;
			continue;
		}
		if (now - wc->active_ms < w->opts.idle_timeout_ms)
			continue;
		wc->idle_closed = true;
		shutdown(grpc_conn_fd(wc->gc), SHUT_RDWR);
		closed++;
	}
	if (closed)
		log_debug("workload: closed %u connections idle for %u ms", closed,
			  w->opts.idle_timeout_ms);
}

static void on_idle_timer_closed(uv_handle_t *h)
{
	struct workload_api *w = h->data;

	w->pending_async--;
	maybe_free(w);
}

static int on_connect(struct grpc_conn *conn, int fd)
{
	struct workload_api *w = grpc_server_ud(grpc_conn_server(conn));
	struct wconn *wc;
	char err[256];

	if (w->stopping)
		return -1;
	wc = calloc(1, sizeof(*wc));
	if (!wc)
		return -1;
	wc->w = w;
	wc->refs = 1;
	/* Pinned now, before the caller could exit and have its pid reused. */
	if (caller_from_socket(fd, w->opts.proc_root, &wc->caller, err, sizeof(err)) < 0) {
		refuse_log(w, "%s", err);
		goto refuse;
	}
	if (admit(w, &wc->caller) < 0)
		goto refuse;
	wc->gc = conn;
	wc->active_ms = uv_now(w->loop);
	wc->next = w->conns;
	if (w->conns)
		w->conns->prev = wc;
	w->conns = wc;
	w->stats.conns++;
	grpc_conn_set_data(conn, wc);
	return 0;
refuse:
	wconn_unref(wc);
	return -1;
}

static void on_disconnect(struct grpc_conn *conn)
{
	struct wconn *wc = grpc_conn_data(conn);
	struct workload_api *w;

	if (!wc)
		return;
	grpc_conn_set_data(conn, NULL);
	w = wc->w;
	release_counts(w, &wc->caller);
	if (wc->prev)
		wc->prev->next = wc->next;
	else
		w->conns = wc->next;
	if (wc->next)
		wc->next->prev = wc->prev;
	wc->prev = wc->next = NULL;
	wc->gc = NULL;
	w->stats.conns--;
	wconn_unref(wc);
}

/* ---- snapshots ---- */

static void take_snapshot(struct workload_api *w)
{
	struct snapshot *s = svid_cache_acquire(w->cache);

	if (w->snap && s->generation == w->snap->generation && s == w->snap) {
		snapshot_release(s);
		return;
	}
	snapshot_release(w->snap);
	w->snap = s;
	w->epoch++;
	digest_of(s->bundle ? s->bundle : (const uint8_t *)"", s->bundle_len, w->x509_bundle_digest);
	digest_of(s->jwt_bundle, strlen(s->jwt_bundle), w->jwt_bundle_digest);
}

static void on_cache_update(void *ud)
{
	struct workload_api *w = ud;
	uint64_t epoch = w->epoch;

	if (w->stopping)
		return;
	take_snapshot(w);
	if (epoch == w->epoch)
		return;
	for (struct wcall *c = w->streams; c; c = c->next)
		stream_update(c);
}

/* ---- the socket ---- */

/* A socket in a directory others cannot traverse is reachable by its owner only: workloads of
 * other uids would get "permission denied" from connect() and never reach attestation. */
static void warn_unreachable(const char *path)
{
	char *dir = xstrdup(path), *slash;
	struct stat st;

	while ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
			log_warnx("workload: %s is not accessible to other users (mode %04o): only "
				 "uid %u and root can reach the Workload API socket",
				 dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
			break;
		}
	}
	free(dir);
}

/* Any local process may connect: attestation, not file modes, is the access control, as the
 * Workload Endpoint standard requires. */
static const struct unix_socket_opts sock_opts = {
	.who = "agent",
	.log_prefix = "workload",
	.dir_mode = 0755,
	.mode = 0777,
	.backlog = 512,
	.nonblock = true,
};

/* ---- start and stop ---- */

static void opts_free(struct workload_api_opts *o)
{
	free((char *)o->socket_path);
	free((char *)o->trust_domain);
	free((char *)o->proc_root);
}

static void api_free(struct workload_api *w)
{
	for (size_t i = 0; i < SELSET_BUCKETS; i++) {
		/* Every set belongs to a call, and every call is gone by now. */
		while (w->sets[i]) {
			struct selset *s = w->sets[i];

			s->refs = 1;
			selset_unref(w, s);
		}
	}
	sds_free(w->sds);
	jwks_free(w->jwks);
	snapshot_release(w->snap);
	for (size_t i = 0; i < w->n_attestors; i++)
		attestor_free(w->attestors[i]);
	free(w->attestors);
	free(w->inline_job);
	free(w->counts);
	opts_free(&w->opts);
	free(w);
}

static void maybe_free(struct workload_api *w)
{
	if (w->stopping && w->server_done && w->pending_async == 0)
		api_free(w);
}

static void on_server_done(void *arg)
{
	struct workload_api *w = arg;

	w->server = NULL;
	w->server_done = true;
	maybe_free(w);
}

int workload_api_start_opts(uv_loop_t *loop, const struct workload_api_opts *o,
			    struct svid_cache *cache, struct node_client *nc,
			    struct workload_api **out, char *err, size_t errlen)
{
	struct attestor_unix_opts ao = {.path_selectors = o->unix_path_selectors,
					.sha256_max_size = o->sha256_max_size};
	struct grpc_server_config gc = {
		.methods = methods,
		.n_methods = ARRAY_LEN(methods),
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_call_closed = on_call_closed,
		.max_message_size = MAX_REQUEST_SIZE,
		.max_streams_per_conn = MAX_STREAMS_PER_CONN,
		.max_conns = MAX_CONNS,
	};
	struct workload_api *w;
	int fd;

	*out = NULL;
	if (!o->socket_path || !o->socket_path[0]) {
		for (size_t i = 0; i < o->n_attestors; i++)
			attestor_free(o->attestors[i]);
		snprintf(err, errlen, "no socket path");
		return -1;
	}
	w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	w->cache = cache;
	w->nc = nc;
	w->opts = *o;
	w->opts.socket_path = xstrdup(o->socket_path);
	w->opts.trust_domain = xstrdup(o->trust_domain ? o->trust_domain : "");
	w->opts.proc_root = o->proc_root ? xstrdup(o->proc_root) : NULL;
	w->opts.attestors = NULL;
	w->opts.n_attestors = 0;
	w->opts.sds_names = (struct sds_names){
		.default_svid = o->sds_names.default_svid ? o->sds_names.default_svid : "default",
		.default_bundle = o->sds_names.default_bundle ? o->sds_names.default_bundle : "ROOTCA",
		.all_bundles = o->sds_names.all_bundles ? o->sds_names.all_bundles : "ALL"};
	w->attestors = xcalloc(o->n_attestors + 1, sizeof(*w->attestors));
	for (size_t i = 0; i < o->n_attestors; i++)
		w->attestors[1 + i] = o->attestors[i];
	w->n_attestors = o->n_attestors + 1;
	w->attestors[0] = attestor_unix_new(&ao);
	if (!w->attestors[0]) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	w->attest_inline = attestors_fast(w->attestors, w->n_attestors);
	if (w->attest_inline)
		w->inline_job = xcalloc(1, sizeof(*w->inline_job));
	take_snapshot(w);
	w->sds = sds_new(cache, w->opts.trust_domain, &w->opts.sds_names);
	if (!w->sds) {
		snprintf(err, errlen, "cannot start the SDS service");
		goto fail;
	}
	fd = unix_socket_listen(w->opts.socket_path, &sock_opts, &w->sock_st, err, errlen);
	if (fd < 0)
		goto fail;
	warn_unreachable(w->opts.socket_path);
	gc.ud = w;
	if (grpc_server_listen_fd(loop, fd, NULL, &gc, &w->server, err, errlen) < 0) {
		/* The server closed fd. */
		unlink(w->opts.socket_path);
		goto fail;
	}
	w->sub = svid_cache_subscribe(cache, on_cache_update, w);
	if (!w->sub) {
		snprintf(err, errlen, "cannot subscribe to the SVID cache");
		w->stopping = true;
		grpc_server_shutdown(w->server, 0, on_server_done, w);
		unlink(w->opts.socket_path);
		return -1;
	}
	if (w->opts.idle_timeout_ms) {
		uint64_t every = w->opts.idle_timeout_ms / 4;

		uv_timer_init(loop, &w->idle_timer);
		w->idle_timer.data = w;
		uv_timer_start(&w->idle_timer, on_idle_sweep, every, every < IDLE_SWEEP_MIN_MS ?
			       IDLE_SWEEP_MIN_MS : every);
		w->idle_timer_on = true;
	}
	log_info("workload: Workload API listening on %s", w->opts.socket_path);
	*out = w;
	return 0;
fail:
	api_free(w);
	return -1;
}

int workload_api_start(uv_loop_t *loop, const struct agent_config *cfg, struct svid_cache *cache,
		       struct node_client *nc, struct workload_api **out, char *err, size_t errlen)
{
	struct workload_api_opts o = {
		.socket_path = cfg->socket_path,
		.trust_domain = cfg->trust_domain,
		.unix_path_selectors = cfg->unix_workload_path_selectors,
		.sha256_max_size = cfg->sha256_max_size,
		.max_conns_per_process = (unsigned)cfg->max_conns_per_process,
		.max_conns_per_uid = (unsigned)cfg->max_conns_per_uid,
		.idle_timeout_ms = (unsigned)(cfg->workload_idle_timeout * 1000),
		.sds_names = {cfg->sds_default_name, cfg->sds_default_bundle_name,
			      cfg->sds_default_all_bundles_name},
	};

	return workload_api_start_opts(loop, &o, cache, nc, out, err, errlen);
}

void workload_api_stop(struct workload_api *w)
{
	if (!w || w->stopping)
		return;
	w->stopping = true;
	svid_cache_unsubscribe(w->cache, w->sub);
	w->sub = NULL;
	if (w->idle_timer_on) {
		/* The timer's close callback is asynchronous work that w must outlive. */
		w->idle_timer_on = false;
		w->pending_async++;
		uv_close((uv_handle_t *)&w->idle_timer, on_idle_timer_closed);
	}
	refusals_flush(w, UINT64_MAX);
	for (struct wcall *c = w->streams; c; c = c->next)
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "the agent is shutting down");
	sds_stop(w->sds);
	/* Remove the socket only if it is still ours (another agent may have replaced it). */
	unix_socket_remove(w->opts.socket_path, &w->sock_st);
	grpc_server_shutdown(w->server, SHUTDOWN_GRACE_MS, on_server_done, w);
}

void workload_api_stats(struct workload_api *w, struct workload_api_stats *out)
{
	*out = w->stats;
	sds_stats(w->sds, &out->sds);
}

bool workload_api_ready(struct workload_api *w)
{
	return !w->stopping && snap_ready(w->snap);
}
