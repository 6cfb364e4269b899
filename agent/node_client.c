/* node_client.c: the sync thread (see node_client.h).
 *
 * Threads and ownership:
 *  - The sync thread owns the connection, the agent identity, the entry set with its SVIDs, the
 *    bundle and the persisted state; nothing else touches them once it runs.
 *  - The loop thread calls node_client_fetch_jwt() and owns the JWT cache (jwt_cache.h).
 *    Requests travel to the sync thread on a mutex-protected queue; answers come back on another
 *    queue and a uv_async_t runs their callbacks on the loop.
 *  - n->mu guards the queues, the status, the stop flag and the live socket (so that stop can
 *    shut a blocking call down at once).
 * The sync thread never blocks longer than POLL_CAP_MS without looking at the stop flag and the
 * JWT queue, except inside a connect (CONNECT_TIMEOUT_MS) or a call the stop shut down. */
#include <wolfssl/options.h>

#include "node_client.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent_config.h"
#include "attestor_k8s.h"
#include "grpc_client.h"
#include "jwt_cache.h"
#include "jwt.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "persist.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

#define NODE_PATH "/lanyard.node.v1.Node/"
#define SIGN_BATCH 500
#define CONNECT_TIMEOUT_MS 5000
#define CALL_TIMEOUT_MS 30000
#define POLL_CAP_MS 100
#define DRAIN_MAX 1000
#define DRAIN_US 200000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define SIGN_RETRY_S 5
#define PERSIST_INTERVAL_US 1000000
#define PERSIST_ROTATION_US 30000000
#define MAX_USED_TOKENS 64

/* What a connection attempt or session ended with. */
enum outcome {
	OUT_CONTINUE,  /* carry on with the session */
	OUT_STOP,      /* the client is stopping */
	OUT_RETRY,     /* transport or server trouble: back off and try again */
	OUT_RECONNECT, /* new credentials: connect again at once */
	OUT_DENIED,    /* the server no longer knows this agent: its identity is gone */
};

struct wentry {
	struct cache_entry *e;
	struct svid *svid; /* NULL until signed */
	int64_t retry_at;  /* after a signing failure: not before this time */
};

/* An upsert waiting to be merged; seq keeps the arrival order so the last copy of an id wins. */
struct staged {
	struct cache_entry *e;
	size_t seq;
};

struct node_client {
	/* Settings, copied at start. */
	char *trust_domain;
	char *server_address;
	int server_port;
	char *data_dir;
	char *join_token;
	bool psat;             /* node_attestor k8s_psat: the token comes from psat_token_path */
	char *psat_token_path;
	bool insecure_bootstrap;
	enum key_type key_type;
	double rotation_fraction;
	char server_id[SPIFFEID_MAX + 1];

	struct svid_cache *cache;
	uv_loop_t *loop;
	uv_async_t *async;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Guarded by mu. */
	bool stopping;
	int live_fd;
	struct jwt_req *pending, *done;
	struct node_status st;

	/* Loop thread only. */
	struct jwt_cache *jwt_cache;

	/* Sync thread only (and node_client_start before the thread exists). */
	char last_logged[256];
	uint8_t *boot_roots; /* DER from trust_bundle_path */
	size_t boot_roots_len;
	lkey *agent_key;
	uint8_t *agent_chain;
	size_t agent_chain_len;
	int64_t agent_not_after, agent_renew_at;
	char agent_id[SPIFFEID_MAX + 1];
	uint8_t *bundle;
	size_t bundle_len;
	char *jwt_bundle;
	int64_t bundle_seq;
	char **used_tokens;
	size_t n_used_tokens;
	struct wentry *set; /* sorted by entry id */
	size_t n_set;
	bool synced;
	struct staged *staging; /* a snapshot being received */
	size_t n_staging, cap_staging, staging_seq;
	bool in_snapshot;
	struct grpc_client *gc;
	bool connected; /* the current session received a complete snapshot */
	/* state_dirty: the entry set, the set of SVIDs held or the used tokens changed, persisted
	 * within PERSIST_INTERVAL_US; rotated_dirty: only renewals, which a crash can afford to
	 * lose while the older SVIDs on disk stay valid: persisted within PERSIST_ROTATION_US or
	 * by persist_by (unix seconds), half way to the expiry of the oldest copy on disk. */
	bool state_dirty, rotated_dirty, publish_needed, plan_dirty;
	/* New SVIDs were minted: they are written before they are published, so that an SVID a
	 * workload has been served survives a kill -9 (a restarted agent serves it even while the
	 * server is down). */
	bool persist_before_publish;
	int64_t persist_by;
	int64_t last_persist_us;
	int64_t next_due;    /* unix seconds: next renewal, retry or expiry */
	int64_t next_expiry; /* unix seconds: the first served SVID to expire */
	/* A burst of short-lived allocations (a signing batch, a full state file) ended: the
	 * memory it freed goes back to the system at the next housekeeping. */
	bool trim_needed;
};

/* ---- small helpers ---- */

/* snprintf for messages that may be cut short without harm. */
static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Debian's wolfSSL is built with FP_ECC: every point a thread multiplies (the generator, a CA
 * key, a TLS peer's ephemeral key) gets a thread-local table of about 800 KB, kept until
 * wc_ecc_fp_free() on that thread. The agent's ECC work comes in bursts minutes apart (a TLS
 * handshake, a signing batch, loading the state), so the tables are dropped after each burst:
 * the next burst rebuilds the few it needs, a small cost next to its own work, while keeping
 * up to 15 of them per thread costs megabytes for good. */
static void release_ecc_cache(void)
{
	wc_ecc_fp_free();
}

/* Gives the memory of a burst back to the system. glibc keeps freed small blocks in the arena
 * of the thread that freed them, and after a peak (hundreds of keys and CSRs, the state of
 * thousands of entries) most of it would stay resident for the life of the agent. */
static void release_memory(struct node_client *n)
{
	if (!n->trim_needed)
		return;
	n->trim_needed = false;
	malloc_trim(0);
}

static bool is_stopping(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	bool s = n->stopping;
	pthread_mutex_unlock(&n->mu);
	return s;
}

const char *node_state_name(enum node_conn_state s)
{
	switch (s) {
	case NODE_STATE_STARTING:
		return "starting";
	case NODE_STATE_ATTESTING:
		return "attesting";
	case NODE_STATE_CONNECTED:
		return "connected";
	case NODE_STATE_DISCONNECTED:
		return "disconnected";
	case NODE_STATE_NEEDS_TOKEN:
		return "needs_token";
	}
	return "unknown";
}

/* Records the state and its reason. Logs when the state or the reason changes, so a server that
 * stays down gives one line, not one per retry. */
static void set_state(struct node_client *n, enum node_conn_state s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_state(struct node_client *n, enum node_conn_state s, const char *fmt, ...)
{
	char msg[256] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_lock(&n->mu);
	bool changed = n->st.state != s;
	bool stopping = n->stopping;
	n->st.state = s;
	if (s == NODE_STATE_DISCONNECTED || s == NODE_STATE_NEEDS_TOKEN)
		n->st.sync_errors++;
	if (*msg)
		snprintf(n->st.last_error, sizeof(n->st.last_error), "%s", msg);
	pthread_mutex_unlock(&n->mu);
	if (stopping)
		return;
	if (!changed && strcmp(msg, n->last_logged) == 0) {
		if (*msg)
			log_debug("server connection still %s: %s", node_state_name(s), msg);
		return;
	}
	snprintf(n->last_logged, sizeof(n->last_logged), "%s", msg);
	switch (s) {
	case NODE_STATE_NEEDS_TOKEN:
		log_error("agent needs a join token: %s", msg);
		break;
	case NODE_STATE_DISCONNECTED:
		log_warn("server %s:%d unavailable, serving cached SVIDs and retrying: %s",
			 n->server_address, n->server_port, msg);
		break;
	default:
		if (*msg)
			log_info("%s", msg);
	}
}

static void token_hash(const char *token, char out[65])
{
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	wc_Sha256Hash((const uint8_t *)token, (word32)strlen(token), h);
	hex_encode(h, sizeof(h), out);
}

/* A projected service account token is single-use for nobody: the kubelet rotates it, so k8s_psat
 * can always attest again. Join tokens are single-use: one this agent consumed is not. */
static bool token_usable(struct node_client *n)
{
	if (n->psat)
		return true;
	if (!n->join_token || !*n->join_token)
		return false;
	char h[65];
	token_hash(n->join_token, h);
	for (size_t i = 0; i < n->n_used_tokens; i++)
		if (strcmp(n->used_tokens[i], h) == 0)
			return false;
	return true;
}

static void remember_token(struct node_client *n)
{
	char h[65];
	token_hash(n->join_token, h);
	if (n->n_used_tokens == MAX_USED_TOKENS) {
		free(n->used_tokens[0]);
		memmove(n->used_tokens, n->used_tokens + 1, (MAX_USED_TOKENS - 1) * sizeof(char *));
		n->n_used_tokens--;
	}
	n->used_tokens = xrealloc(n->used_tokens, (n->n_used_tokens + 1) * sizeof(char *));
	n->used_tokens[n->n_used_tokens++] = xstrdup(h);
	n->state_dirty = true;
}

/* When to renew: rotation_fraction of the lifetime before the end, moved by up to 10% of that
 * window either way (drawn once per SVID) so that a fleet does not renew in the same second.
 * The lifetime counts from issued, the later of notBefore and the time we received the
 * certificate: the server backdates notBefore for clock skew, which would otherwise make short
 * lifetimes renew far too early. */
static int64_t renew_time(double fraction, int64_t issued, int64_t not_before, int64_t not_after)
{
	if (issued < not_before)
		issued = not_before;
	double life = (double)(not_after - issued);
	if (life < 1)
		life = 1;
	double window = fraction * life;
	uint32_t r = 0;
	random_bytes(&r, sizeof(r));
	double jitter = ((double)r / (double)UINT32_MAX * 2.0 - 1.0) * 0.1 * window;
	return not_after - (int64_t)llround(window + jitter);
}

/* ---- protobuf calls ---- */

/* A unary call. 0 when the call completed (*status set; on OK *resp holds the answer), -1 on a
 * transport failure (the connection is then unusable). */
static int call(struct node_client *n, const char *method, const ProtobufCMessage *req,
		const ProtobufCMessageDescriptor *rdesc, ProtobufCMessage **resp, int *status,
		char *err, size_t errlen)
{
	char path[96];
	snprintf(path, sizeof(path), NODE_PATH "%s", method);
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len ? len : 1);
	protobuf_c_message_pack(req, buf);
	uint8_t *out = NULL;
	size_t out_len = 0;
	*resp = NULL;
	int r = grpc_client_unary(n->gc, path, NULL, 0, buf, len, CALL_TIMEOUT_MS, &out, &out_len,
				  status, err, errlen);
	/* Requests may carry a join token. */
	secure_zero(buf, len);
	free(buf);
	if (r < 0) {
		free(out);
		return -1;
	}
	if (*status == GRPC_STATUS_OK) {
		*resp = protobuf_c_message_unpack(rdesc, NULL, out_len, out);
		if (!*resp) {
			*status = GRPC_STATUS_INTERNAL;
			seterr(err, errlen, "malformed %s response from the server", method);
		}
	}
	free(out);
	return 0;
}

/* ---- the connection ---- */

static void close_conn(struct node_client *n)
{
	if (!n->gc)
		return;
	pthread_mutex_lock(&n->mu);
	n->live_fd = -1;
	pthread_mutex_unlock(&n->mu);
	grpc_client_close(n->gc);
	n->gc = NULL;
}

static int add_roots(WOLFSSL_CTX *ctx, const uint8_t *der, size_t len, char *err, size_t errlen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	int ret = -1;
	if (x509_split_der(der, len, &certs, &lens, &cnt) < 0 || cnt == 0) {
		seterr(err, errlen, "the trust bundle holds no certificate");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (wolfSSL_CTX_load_verify_buffer(ctx, certs[i], (long)lens[i],
						   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			seterr(err, errlen, "certificate %zu of the trust bundle is not usable as a CA",
				 i + 1);
			goto out;
		}
	}
	ret = 0;
out:
	free(certs);
	free(lens);
	return ret;
}

static WOLFSSL_CTX *make_tls(struct node_client *n, bool client_cert, bool *insecure, char *err,
			     size_t errlen)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	char *pem = NULL;
	uint8_t *key = NULL;
	size_t key_len = 0;
	*insecure = false;
	if (!ctx) {
		seterr(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	/* The latest bundle from the server wins over the bootstrap file: after a CA rotation only
	 * the former is current, and it came over an authenticated connection. */
	const uint8_t *roots = n->bundle ? n->bundle : n->boot_roots;
	size_t roots_len = n->bundle ? n->bundle_len : n->boot_roots_len;
	if (roots) {
		if (add_roots(ctx, roots, roots_len, err, errlen) < 0)
			goto fail;
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
	} else if (n->insecure_bootstrap) {
		*insecure = true;
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	} else {
		seterr(err, errlen, "no trust bundle to check the server with");
		goto fail;
	}
	if (client_cert) {
		const uint8_t **certs = NULL;
		size_t *lens = NULL, cnt = 0;
		/* PEM, because wolfSSL reads a whole chain only from PEM. */
		if (x509_split_der(n->agent_chain, n->agent_chain_len, &certs, &lens, &cnt) == 0) {
			size_t total = 0;
			for (size_t i = 0; i < cnt; i++) {
				char *p = pem_encode("CERTIFICATE", certs[i], lens[i]);
				if (!p)
					break;
				size_t pl = strlen(p);
				pem = xrealloc(pem, total + pl + 1);
				memcpy(pem + total, p, pl + 1);
				total += pl;
				free(p);
			}
		}
		free(certs);
		free(lens);
		if (!pem || wolfSSL_CTX_use_certificate_chain_buffer(
				    ctx, (const unsigned char *)pem, (long)strlen(pem)) != WOLFSSL_SUCCESS) {
			seterr(err, errlen, "cannot load the agent SVID into TLS");
			goto fail;
		}
		if (lkey_to_pkcs8_der(n->agent_key, &key, &key_len) < 0 ||
		    wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len, WOLFSSL_FILETYPE_ASN1) !=
			    WOLFSSL_SUCCESS) {
			seterr(err, errlen, "cannot load the agent key into TLS");
			goto fail;
		}
	}
	free(pem);
	if (key) {
		secure_zero(key, key_len);
		free(key);
	}
	return ctx;
fail:
	free(pem);
	if (key) {
		secure_zero(key, key_len);
		free(key);
	}
	wolfSSL_CTX_free(ctx);
	return NULL;
}

/* Connects and checks that the peer is this trust domain's server. */
static int connect_server(struct node_client *n, bool client_cert, char *err, size_t errlen)
{
	bool insecure;
	char why[512];
	close_conn(n);
	WOLFSSL_CTX *ctx = make_tls(n, client_cert, &insecure, err, errlen);
	if (!ctx)
		return -1;
	if (insecure)
		log_warn("INSECURE BOOTSTRAP: connecting to %s:%d WITHOUT checking the server's "
			 "certificate (insecure_bootstrap is set). Anyone on the path can impersonate "
			 "the server. Use trust_bundle_path outside of tests.",
			 n->server_address, n->server_port);
	struct grpc_client *gc = NULL;
	int r = grpc_client_connect_tcp(n->server_address, n->server_port, ctx, NULL,
					CONNECT_TIMEOUT_MS, &gc, why, sizeof(why));
	wolfSSL_CTX_free(ctx);
	/* The handshake did all the public-key work this connection will ever do (TLS 1.3 has no
	 * renegotiation). */
	release_ecc_cache();
	if (r < 0) {
		bool tls = strstr(why, "TLS") != NULL;
		seterr(err, errlen, "%s%s", why,
			 tls && !insecure ? " (does the trust bundle hold the server's CA?)" : "");
		return -1;
	}
	size_t len = 0;
	const uint8_t *der = grpc_client_peer_cert(gc, &len);
	struct x509_info info = {0};
	if (!der || x509_parse(der, len, &info, why, sizeof(why)) < 0) {
		seterr(err, errlen, "the server at %s:%d presented no readable certificate",
			 n->server_address, n->server_port);
		goto fail;
	}
	if (info.n_uri_sans != 1 || strcmp(info.spiffe_id, n->server_id) != 0) {
		seterr(err, errlen, "server presented %s, expected %s",
			 *info.spiffe_id ? info.spiffe_id : "no SPIFFE ID", n->server_id);
		goto fail;
	}
	x509_info_free(&info);
	n->gc = gc;
	pthread_mutex_lock(&n->mu);
	n->live_fd = grpc_client_fd(gc);
	bool stopping = n->stopping;
	pthread_mutex_unlock(&n->mu);
	if (stopping) {
		close_conn(n);
		seterr(err, errlen, "stopping");
		return -1;
	}
	return 0;
fail:
	x509_info_free(&info);
	grpc_client_close(gc);
	return -1;
}

/* ---- bundle ---- */

/* Replaces the bundle with the server's. Returns 1 when it changed, 0 when not, -1 when refused
 * (err says why). */
static int apply_bundle(struct node_client *n, const Lanyard__Node__V1__Bundle *b, char *err,
			size_t errlen)
{
	if (!b)
		return 0;
	if (!b->trust_domain || strcmp(b->trust_domain, n->trust_domain) != 0) {
		seterr(err, errlen, "the server sent a bundle for trust domain \"%s\", not %s",
			 b->trust_domain ? b->trust_domain : "", n->trust_domain);
		return -1;
	}
	if (b->n_x509_authorities == 0) {
		seterr(err, errlen, "the server sent a bundle without X.509 authorities");
		return -1;
	}
	size_t len = 0;
	for (size_t i = 0; i < b->n_x509_authorities; i++)
		len += b->x509_authorities[i].len;
	uint8_t *der = xmalloc(len);
	size_t off = 0;
	for (size_t i = 0; i < b->n_x509_authorities; i++) {
		memcpy(der + off, b->x509_authorities[i].data, b->x509_authorities[i].len);
		off += b->x509_authorities[i].len;
	}
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	if (x509_split_der(der, len, &certs, &lens, &cnt) < 0 || cnt != b->n_x509_authorities) {
		free(certs);
		free(lens);
		free(der);
		seterr(err, errlen, "the server sent a bundle with a malformed certificate");
		return -1;
	}
	free(certs);
	free(lens);
	struct jwks *ks = jwks_new();
	for (size_t i = 0; ks && i < b->n_jwt_authorities; i++) {
		const Lanyard__Node__V1__JWTKey *k = b->jwt_authorities[i];
		if (jwks_add(ks, k->kid, k->public_key.data, k->public_key.len) < 0)
			log_warn("ignoring JWT authority \"%s\" of the bundle: unusable key", k->kid);
	}
	char *jwt = ks ? jwks_to_json(ks) : NULL;
	jwks_free(ks);
	if (!jwt)
		jwt = xstrdup("{\"keys\":[]}");
	bool same = n->bundle && n->bundle_len == len && memcmp(n->bundle, der, len) == 0 &&
		    n->jwt_bundle && strcmp(n->jwt_bundle, jwt) == 0 && n->bundle_seq == b->sequence;
	if (same) {
		free(der);
		free(jwt);
		return 0;
	}
	free(n->bundle);
	free(n->jwt_bundle);
	n->bundle = der;
	n->bundle_len = len;
	n->jwt_bundle = jwt;
	n->bundle_seq = b->sequence;
	n->publish_needed = true;
	log_info("trust bundle of %s updated: sequence %lld, %zu X.509 authorities, %zu JWT keys",
		 n->trust_domain, (long long)b->sequence, b->n_x509_authorities,
		 b->n_jwt_authorities);
	char why[256];
	if (persist_save_bundle(n->data_dir, n->trust_domain, n->bundle, n->bundle_len,
				n->jwt_bundle, n->bundle_seq, why, sizeof(why)) < 0)
		log_error("cannot persist the trust bundle: %s", why);
	return 1;
}

/* ---- the entry set ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_staged(const void *a, const void *b)
{
	const struct staged *x = a, *y = b;
	int c = strcmp(x->e->id, y->e->id);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static struct cache_entry *entry_from_proto(struct node_client *n, const Lanyard__Node__V1__Entry *p)
{
	if (!p->id || !*p->id) {
		log_warn("ignoring an entry without an id from the server");
		return NULL;
	}
	if (!p->spiffe_id || !spiffeid_member_of(p->spiffe_id, n->trust_domain) ||
	    spiffeid_validate_leaf(p->spiffe_id, NULL, 0) < 0) {
		log_warn("ignoring entry \"%s\" from the server: SPIFFE ID \"%s\" is not a workload ID "
			 "of %s",
			 p->id ? p->id : "", p->spiffe_id ? p->spiffe_id : "", n->trust_domain);
		return NULL;
	}
	struct cache_entry e = {
		.id = p->id,
		.spiffe_id = p->spiffe_id,
		.parent_id = p->parent_id ? p->parent_id : "",
		.selectors = p->selectors,
		.n_selectors = p->n_selectors,
		.x509_svid_ttl = p->x509_svid_ttl,
		.jwt_svid_ttl = p->jwt_svid_ttl,
		.dns_names = p->dns_names,
		.n_dns_names = p->n_dns_names,
		.hint = p->hint ? p->hint : "",
		.revision = p->revision,
	};
	struct cache_entry *c = cache_entry_dup(&e);
	qsort(c->selectors, c->n_selectors, sizeof(char *), cmp_str);
	return c;
}

static void drop_svid(struct wentry *w)
{
	svid_unref(w->svid);
	w->svid = NULL;
}

/* Sorts staged upserts and keeps the last copy of each id. */
static size_t sort_staged(struct staged *s, size_t cnt)
{
	if (cnt == 0)
		return 0;
	qsort(s, cnt, sizeof(*s), cmp_staged);
	size_t k = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (i + 1 < cnt && strcmp(s[i].e->id, s[i + 1].e->id) == 0) {
			cache_entry_free(s[i].e);
			continue;
		}
		s[k++] = s[i];
	}
	return k;
}

/* Merges sorted upserts and sorted removals into the set. full: a snapshot, so entries absent
 * from ups go away. Takes ownership of the upserts' entries. SVIDs of entries whose SPIFFE ID
 * is unchanged are kept (a changed revision gets them re-signed). */
static void merge(struct node_client *n, struct staged *ups, size_t n_ups, char **rm, size_t n_rm,
		  bool full)
{
	struct wentry *out = xcalloc(n->n_set + n_ups + 1, sizeof(*out));
	size_t i = 0, j = 0, r = 0, k = 0;
	size_t added = 0, removed = 0, changed = 0;
	while (i < n->n_set || j < n_ups) {
		int c = i == n->n_set ? 1 : j == n_ups ? -1 : strcmp(n->set[i].e->id, ups[j].e->id);
		const char *id = c <= 0 ? n->set[i].e->id : ups[j].e->id;
		while (r < n_rm && strcmp(rm[r], id) < 0)
			r++;
		bool in_rm = r < n_rm && strcmp(rm[r], id) == 0;
		if (c < 0) {
			if (full || in_rm) {
				drop_svid(&n->set[i]);
				cache_entry_free(n->set[i].e);
				removed++;
			} else {
				out[k++] = n->set[i];
			}
			i++;
		} else if (c > 0) {
			if (in_rm)
				cache_entry_free(ups[j].e);
			else
				out[k++] = (struct wentry){.e = ups[j].e};
			added += !in_rm;
			j++;
		} else {
			struct wentry w = n->set[i];
			if (in_rm) {
				drop_svid(&w);
				cache_entry_free(w.e);
				cache_entry_free(ups[j].e);
				removed++;
			} else {
				if (w.svid && strcmp(w.svid->spiffe_id, ups[j].e->spiffe_id) != 0)
					drop_svid(&w);
				if (w.e->revision != ups[j].e->revision) {
					w.retry_at = 0;
					changed++;
				}
				cache_entry_free(w.e);
				w.e = ups[j].e;
				out[k++] = w;
			}
			i++;
			j++;
		}
	}
	free(n->set);
	n->set = out;
	n->n_set = k;
	n->publish_needed = true;
	n->state_dirty = true;
	n->plan_dirty = true;
	n->trim_needed = true;
	if (added || removed || changed)
		log_debug("entries: %zu added, %zu changed, %zu removed, %zu in all", added, changed,
			  removed, k);
}

static void staging_clear(struct node_client *n)
{
	for (size_t i = 0; i < n->n_staging; i++)
		cache_entry_free(n->staging[i].e);
	n->n_staging = 0;
	n->staging_seq = 0;
}

static void staging_add(struct node_client *n, struct cache_entry *e)
{
	if (n->n_staging == n->cap_staging) {
		n->cap_staging = n->cap_staging ? n->cap_staging * 2 : 64;
		n->staging = xrealloc(n->staging, n->cap_staging * sizeof(*n->staging));
	}
	n->staging[n->n_staging++] = (struct staged){.e = e, .seq = n->staging_seq++};
}

static void staging_remove(struct node_client *n, const char *id)
{
	size_t k = 0;
	for (size_t i = 0; i < n->n_staging; i++) {
		if (strcmp(n->staging[i].e->id, id) == 0)
			cache_entry_free(n->staging[i].e);
		else
			n->staging[k++] = n->staging[i];
	}
	n->n_staging = k;
}

static void apply_sync(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m)
{
	char err[256];
	if (m->bundle && apply_bundle(n, m->bundle, err, sizeof(err)) < 0)
		log_error("ignoring a bundle update: %s", err);
	if (m->reset) {
		staging_clear(n);
		n->in_snapshot = true;
	}
	if (n->in_snapshot) {
		for (size_t i = 0; i < m->n_upserts; i++) {
			struct cache_entry *e = entry_from_proto(n, m->upserts[i]);
			if (e)
				staging_add(n, e);
		}
		for (size_t i = 0; i < m->n_removed_ids; i++)
			staging_remove(n, m->removed_ids[i]);
		if (m->complete) {
			size_t cnt = sort_staged(n->staging, n->n_staging);
			merge(n, n->staging, cnt, NULL, 0, true);
			n->n_staging = 0;
			n->staging_seq = 0;
			n->in_snapshot = false;
			bool first = !n->connected;
			n->synced = true;
			n->connected = true;
			if (first)
				set_state(n, NODE_STATE_CONNECTED,
					  "connected to server %s:%d as %s: %zu entries", n->server_address,
					  n->server_port, n->agent_id, n->n_set);
		}
	} else if (m->n_upserts || m->n_removed_ids) {
		struct staged *ups = xcalloc(m->n_upserts + 1, sizeof(*ups));
		size_t cnt = 0;
		for (size_t i = 0; i < m->n_upserts; i++) {
			struct cache_entry *e = entry_from_proto(n, m->upserts[i]);
			if (e)
				ups[cnt++] = (struct staged){.e = e, .seq = i};
		}
		cnt = sort_staged(ups, cnt);
		char **rm = xcalloc(m->n_removed_ids + 1, sizeof(char *));
		for (size_t i = 0; i < m->n_removed_ids; i++)
			rm[i] = m->removed_ids[i];
		qsort(rm, m->n_removed_ids, sizeof(char *), cmp_str);
		merge(n, ups, cnt, rm, m->n_removed_ids, false);
		free(rm);
		free(ups);
	}
	pthread_mutex_lock(&n->mu);
	n->st.last_sync = now_unix();
	pthread_mutex_unlock(&n->mu);
}

/* ---- publication and persistence ---- */

static void publish(struct node_client *n)
{
	int64_t now = now_unix();
	struct snapshot *s = snapshot_new();
	free(s->trust_domain);
	s->trust_domain = xstrdup(n->trust_domain);
	if (n->bundle) {
		s->bundle = xmalloc(n->bundle_len);
		memcpy(s->bundle, n->bundle, n->bundle_len);
		s->bundle_len = n->bundle_len;
	}
	if (n->jwt_bundle) {
		free(s->jwt_bundle);
		s->jwt_bundle = xstrdup(n->jwt_bundle);
	}
	s->bundle_sequence = n->bundle_seq;
	s->entries = xcalloc(n->n_set + 1, sizeof(*s->entries));
	s->svids = xcalloc(n->n_set + 1, sizeof(*s->svids));
	for (size_t i = 0; i < n->n_set; i++) {
		s->entries[s->n_entries++] = cache_entry_ref(n->set[i].e);
		struct svid *v = n->set[i].svid;
		if (v && v->not_after > now)
			s->svids[s->n_svids++] = svid_ref(v);
	}
	s->synced = n->synced;
	svid_cache_publish(n->cache, s);
	n->publish_needed = false;
}

static void persist_state(struct node_client *n)
{
	struct cache_entry **es = xcalloc(n->n_set + 1, sizeof(*es));
	struct svid **vs = xcalloc(n->n_set + 1, sizeof(*vs));
	size_t nv = 0;
	int64_t now = now_unix();
	for (size_t i = 0; i < n->n_set; i++) {
		es[i] = n->set[i].e;
		if (n->set[i].svid && n->set[i].svid->not_after > now)
			vs[nv++] = n->set[i].svid;
	}
	char err[256];
	if (persist_save_state(n->data_dir, n->used_tokens, n->n_used_tokens, es, n->n_set, vs, nv,
			       err, sizeof(err)) < 0)
		log_error("cannot persist the agent state: %s", err);
	free(es);
	free(vs);
	n->state_dirty = false;
	n->rotated_dirty = false;
	n->persist_before_publish = false;
	n->last_persist_us = now_mono_us();
	n->trim_needed = true;
}

/* Drops expired SVIDs, publishes and persists what is due, and computes the next due time. */
static void housekeeping(struct node_client *n)
{
	int64_t now = now_unix();
	if (n->plan_dirty || now >= n->next_due) {
		int64_t due = INT64_MAX, expiry = INT64_MAX;
		for (size_t i = 0; i < n->n_set; i++) {
			struct wentry *w = &n->set[i];
			if (w->svid && w->svid->not_after <= now) {
				log_warn("X509-SVID %s of entry %s expired before it could be renewed",
					 w->svid->spiffe_id, w->e->id);
				drop_svid(w);
				n->publish_needed = true;
			}
			if (w->svid && w->svid->not_after < expiry)
				expiry = w->svid->not_after;
			if (!n->synced)
				continue;
			int64_t t = w->retry_at > now ? w->retry_at
				    : !w->svid || w->svid->entry_revision != w->e->revision ? now
											    : w->svid->renew_at;
			if (t < due)
				due = t;
		}
		n->next_due = due < expiry ? due : expiry;
		n->next_expiry = expiry;
		n->plan_dirty = false;
	}
	if (n->persist_before_publish)
		persist_state(n);
	if (n->publish_needed)
		publish(n);
	int64_t since = now_mono_us() - n->last_persist_us;
	if ((n->state_dirty && since >= PERSIST_INTERVAL_US) ||
	    (n->rotated_dirty && (since >= PERSIST_ROTATION_US || now >= n->persist_by)))
		persist_state(n);
	release_memory(n);
}

/* ---- identity ---- */

static void set_identity_status(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	snprintf(n->st.agent_id, sizeof(n->st.agent_id), "%s", n->agent_key ? n->agent_id : "");
	n->st.agent_svid_not_after = n->agent_key ? n->agent_not_after : 0;
	n->st.agent_svid_renew_at = n->agent_key ? n->agent_renew_at : 0;
	pthread_mutex_unlock(&n->mu);
}

static void drop_identity(struct node_client *n)
{
	lkey_free(n->agent_key);
	n->agent_key = NULL;
	free(n->agent_chain);
	n->agent_chain = NULL;
	n->agent_chain_len = 0;
	set_identity_status(n);
}

/* Checks an agent SVID for key and takes it (and key) over. fresh: just issued (rather than
 * loaded from disk). -1 with err when unusable. */
static int take_identity(struct node_client *n, lkey *key, const uint8_t *chain, size_t chain_len,
			 const char *expect_id, bool fresh, char *err, size_t errlen)
{
	struct x509_info info = {0};
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	char why[256];
	int ret = -1;
	if (x509_split_der(chain, chain_len, &certs, &lens, &cnt) < 0 || cnt == 0) {
		seterr(err, errlen, "the agent SVID is not a DER certificate chain");
		goto out;
	}
	if (x509_parse(certs[0], lens[0], &info, why, sizeof(why)) < 0) {
		seterr(err, errlen, "the agent SVID is unreadable: %s", why);
		goto out;
	}
	if (info.n_uri_sans != 1 || !spiffeid_member_of(info.spiffe_id, n->trust_domain) ||
	    (expect_id && strcmp(info.spiffe_id, expect_id) != 0)) {
		seterr(err, errlen, "the agent SVID names \"%s\", not an agent of %s",
			 info.spiffe_id, n->trust_domain);
		goto out;
	}
	if (!lkey_matches_cert(key, certs[0], lens[0])) {
		seterr(err, errlen, "the agent SVID does not match the agent key");
		goto out;
	}
	if (n->bundle && x509_verify(chain, chain_len, n->bundle, n->bundle_len, now_unix(), why,
				     sizeof(why)) < 0) {
		seterr(err, errlen, "the agent SVID does not verify against the bundle: %s", why);
		goto out;
	}
	lkey_free(n->agent_key);
	free(n->agent_chain);
	n->agent_key = key;
	n->agent_chain = xmalloc(chain_len);
	memcpy(n->agent_chain, chain, chain_len);
	n->agent_chain_len = chain_len;
	snprintf(n->agent_id, sizeof(n->agent_id), "%s", info.spiffe_id);
	n->agent_not_after = info.not_after;
	n->agent_renew_at = renew_time(n->rotation_fraction, fresh ? now_unix() : info.not_before,
				       info.not_before, info.not_after);
	set_identity_status(n);
	ret = 0;
out:
	x509_info_free(&info);
	free(certs);
	free(lens);
	return ret;
}

static int save_identity(struct node_client *n)
{
	uint8_t *der = NULL;
	size_t len = 0;
	char err[256];
	int r = -1;
	if (lkey_to_pkcs8_der(n->agent_key, &der, &len) == 0)
		r = persist_save_agent(n->data_dir, der, len, n->agent_chain, n->agent_chain_len, err,
				       sizeof(err));
	else
		seterr(err, sizeof(err), "cannot encode the agent key");
	if (der) {
		secure_zero(der, len);
		free(der);
	}
	if (r < 0)
		log_error("cannot persist the agent identity: %s", err);
	return r;
}

static int attest(struct node_client *n)
{
	char err[512];
	lkey *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	ProtobufCMessage *resp = NULL;
	int status, rc = OUT_RETRY;
	char *psat = NULL;
	size_t psat_len = 0;
	const char *how = n->psat ? "a Kubernetes service account token (k8s_psat)" : "a join token";
	if (n->psat && k8s_psat_token_read(n->psat_token_path, &psat, &psat_len, err,
					   sizeof(err)) < 0) {
		set_state(n, NODE_STATE_NEEDS_TOKEN, "%s", err);
		goto out;
	}
	set_state(n, NODE_STATE_ATTESTING, "attesting to server %s:%d with %s", n->server_address,
		  n->server_port, how);
	if (lkey_generate(KEY_EC_P256, &key) < 0 || x509_csr_create(key, &csr, &csr_len) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "cannot create the agent key and CSR");
		goto out;
	}
	if (connect_server(n, false, err, sizeof(err)) < 0) {
		rc = is_stopping(n) ? OUT_STOP : OUT_RETRY;
		set_state(n, NODE_STATE_DISCONNECTED, "%s", err);
		goto out;
	}
	Lanyard__Node__V1__AttestRequest req = LANYARD__NODE__V1__ATTEST_REQUEST__INIT;
	req.attestor = n->psat ? "k8s_psat" : "join_token";
	req.payload.data = (uint8_t *)(n->psat ? psat : n->join_token);
	req.payload.len = n->psat ? psat_len : strlen(n->join_token);
	req.csr.data = csr;
	req.csr.len = csr_len;
	if (call(n, "Attest", &req.base, &lanyard__node__v1__attest_response__descriptor, &resp,
		 &status, err, sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "attestation call failed: %s", err);
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		if (status == GRPC_STATUS_PERMISSION_DENIED || status == GRPC_STATUS_INVALID_ARGUMENT ||
		    status == GRPC_STATUS_UNAUTHENTICATED)
			set_state(n, NODE_STATE_NEEDS_TOKEN,
				  "the server refused node attestation with %s: %s: %s", how,
				  grpc_status_name(status), err);
		else
			set_state(n, NODE_STATE_DISCONNECTED, "node attestation failed: %s: %s",
				  grpc_status_name(status), err);
		goto out;
	}
	Lanyard__Node__V1__AttestResponse *ar = (Lanyard__Node__V1__AttestResponse *)resp;
	if (!ar->bundle || apply_bundle(n, ar->bundle, err, sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "unusable attestation answer: %s",
			  ar->bundle ? err : "no bundle");
		goto out;
	}
	if (take_identity(n, key, ar->svid.data, ar->svid.len, ar->spiffe_id, true, err,
			  sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "unusable attestation answer: %s", err);
		goto out;
	}
	key = NULL;
	if (!n->psat)
		remember_token(n);
	save_identity(n);
	persist_state(n);
	char when[32];
	time_t t = (time_t)n->agent_not_after;
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	log_info("attested as %s; agent SVID valid until %s", n->agent_id, when);
	rc = OUT_RECONNECT;
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (psat) {
		secure_zero(psat, psat_len);
		free(psat);
	}
	free(csr);
	lkey_free(key);
	close_conn(n);
	release_ecc_cache();
	return rc;
}

static int renew_agent(struct node_client *n)
{
	char err[512];
	lkey *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	ProtobufCMessage *resp = NULL;
	int status, rc = OUT_RETRY;
	if (lkey_generate(KEY_EC_P256, &key) < 0 || x509_csr_create(key, &csr, &csr_len) < 0) {
		log_error("cannot create a key and CSR to renew the agent SVID");
		goto out;
	}
	Lanyard__Node__V1__RenewAgentRequest req = LANYARD__NODE__V1__RENEW_AGENT_REQUEST__INIT;
	req.csr.data = csr;
	req.csr.len = csr_len;
	if (call(n, "RenewAgent", &req.base, &lanyard__node__v1__renew_agent_response__descriptor,
		 &resp, &status, err, sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "renewing the agent SVID failed: %s", err);
		goto out;
	}
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to renew the agent SVID: %s", err);
		rc = OUT_DENIED;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		set_state(n, NODE_STATE_DISCONNECTED, "renewing the agent SVID failed: %s: %s",
			  grpc_status_name(status), err);
		goto out;
	}
	Lanyard__Node__V1__RenewAgentResponse *rr = (Lanyard__Node__V1__RenewAgentResponse *)resp;
	if (rr->bundle && apply_bundle(n, rr->bundle, err, sizeof(err)) < 0)
		log_error("ignoring the bundle of the RenewAgent answer: %s", err);
	char id[SPIFFEID_MAX + 1];
	snprintf(id, sizeof(id), "%s", n->agent_id);
	if (take_identity(n, key, rr->svid.data, rr->svid.len, id, true, err, sizeof(err)) < 0) {
		log_error("unusable renewed agent SVID: %s", err);
		goto out;
	}
	key = NULL;
	save_identity(n);
	pthread_mutex_lock(&n->mu);
	n->st.rotations++;
	pthread_mutex_unlock(&n->mu);
	log_info("agent SVID %s renewed; reconnecting with it", n->agent_id);
	rc = OUT_RECONNECT;
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	free(csr);
	lkey_free(key);
	release_ecc_cache();
	return rc;
}

/* ---- workload SVIDs ---- */

static bool needs_signing(const struct wentry *w, int64_t now)
{
	if (w->retry_at > now)
		return false;
	return !w->svid || w->svid->entry_revision != w->e->revision || w->svid->renew_at <= now;
}

/* A workload key waiting for its certificate. Only its encodings are kept, not the wolfSSL key:
 * an lkey is about 9 KB (room for the largest RSA key) against some 230 bytes here, which
 * matters with SIGN_BATCH keys in flight. */
struct batch_key {
	uint8_t *key; /* unencrypted PKCS#8 DER; wiped when freed */
	size_t key_len;
	uint8_t *spki; /* its SubjectPublicKeyInfo DER */
	size_t spki_len;
};

static void batch_key_clear(struct batch_key *k)
{
	if (k->key) {
		secure_zero(k->key, k->key_len);
		free(k->key);
	}
	free(k->spki);
	memset(k, 0, sizeof(*k));
}

/* A new key of the configured type with its CSR; 0, or -1 with nothing allocated. */
static int batch_key_new(struct node_client *n, struct batch_key *bk, uint8_t **csr,
			 size_t *csr_len)
{
	lkey *key = NULL;
	int r = -1;
	*csr = NULL;
	if (lkey_generate(n->key_type, &key) < 0 || x509_csr_create(key, csr, csr_len) < 0 ||
	    lkey_to_pkcs8_der(key, &bk->key, &bk->key_len) < 0 ||
	    lkey_public_der(key, &bk->spki, &bk->spki_len) < 0)
		goto out;
	r = 0;
out:
	lkey_free(key);
	if (r < 0) {
		batch_key_clear(bk);
		free(*csr);
		*csr = NULL;
	}
	return r;
}

/* Whether the certificate's public key is the batch key's. Equal bytes are the rule (the server
 * copies the CSR's key); anything else gets the full comparison, which re-encodes both sides. */
static bool batch_key_matches(const struct batch_key *bk, const struct x509_info *info,
			      const uint8_t *cert, size_t cert_len)
{
	if (info->spki && info->spki_len == bk->spki_len &&
	    memcmp(info->spki, bk->spki, bk->spki_len) == 0)
		return true;
	lkey *key = NULL;
	bool ok = lkey_from_der(bk->key, bk->key_len, &key) == 0 &&
		  lkey_matches_cert(key, cert, cert_len);
	lkey_free(key);
	return ok;
}

/* Checks a signed chain for entry e with the batch key and builds the SVID, which takes the key
 * over. NULL with err on failure. */
static struct svid *make_svid(struct node_client *n, const struct cache_entry *e,
			      struct batch_key *bk, const uint8_t *chain, size_t chain_len, char *err,
			      size_t errlen)
{
	struct x509_info info = {0};
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	struct svid *v = NULL;
	char why[256];
	if (x509_split_der(chain, chain_len, &certs, &lens, &cnt) < 0 || cnt == 0 ||
	    x509_parse(certs[0], lens[0], &info, why, sizeof(why)) < 0) {
		seterr(err, errlen, "the server returned an unreadable certificate");
		goto out;
	}
	if (info.n_uri_sans != 1 || info.is_ca || strcmp(info.spiffe_id, e->spiffe_id) != 0) {
		seterr(err, errlen, "the server returned a certificate for \"%s\", expected %s",
			 info.spiffe_id, e->spiffe_id);
		goto out;
	}
	if (!batch_key_matches(bk, &info, certs[0], lens[0])) {
		seterr(err, errlen, "the server returned a certificate for another key");
		goto out;
	}
	if (n->bundle && x509_verify(chain, chain_len, n->bundle, n->bundle_len, now_unix(), why,
				     sizeof(why)) < 0) {
		seterr(err, errlen, "the returned certificate does not verify: %s", why);
		goto out;
	}
	v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->key = bk->key;
	v->key_len = bk->key_len;
	bk->key = NULL;
	bk->key_len = 0;
	v->entry_id = xstrdup(e->id);
	v->spiffe_id = xstrdup(e->spiffe_id);
	v->hint = xstrdup(e->hint ? e->hint : "");
	v->chain = xmalloc(chain_len);
	memcpy(v->chain, chain, chain_len);
	v->chain_len = chain_len;
	snprintf(v->serial, sizeof(v->serial), "%s", info.serial);
	v->not_before = info.not_before;
	v->not_after = info.not_after;
	v->renew_at = renew_time(n->rotation_fraction, now_unix(), info.not_before, info.not_after);
	v->entry_revision = e->revision;
out:
	x509_info_free(&info);
	free(certs);
	free(lens);
	return v;
}

/* Gets one batch of SVIDs signed: OUT_CONTINUE, or OUT_RETRY / OUT_DENIED to end the session.
 * Failed entries are retried after SIGN_RETRY_S. */
static int sign_batch(struct node_client *n)
{
	int64_t now = now_unix();
	size_t idx[SIGN_BATCH];
	size_t cnt = 0;
	for (size_t i = 0; i < n->n_set && cnt < SIGN_BATCH; i++)
		if (needs_signing(&n->set[i], now))
			idx[cnt++] = i;
	if (cnt == 0)
		return OUT_CONTINUE;

	struct batch_key *keys = xcalloc(cnt, sizeof(*keys));
	bool *have = xcalloc(cnt, sizeof(*have));
	Lanyard__Node__V1__X509SignItem *items = xcalloc(cnt, sizeof(*items));
	Lanyard__Node__V1__X509SignItem **itemp = xcalloc(cnt, sizeof(*itemp));
	ProtobufCMessage *resp = NULL;
	char err[512];
	int status, rc = OUT_CONTINUE;
	size_t n_items = 0;
	for (size_t i = 0; i < cnt; i++) {
		uint8_t *csr = NULL;
		size_t csr_len = 0;
		if (batch_key_new(n, &keys[i], &csr, &csr_len) < 0) {
			log_error("cannot create a %s key and CSR for entry %s",
				  key_type_name(n->key_type), n->set[idx[i]].e->id);
			n->set[idx[i]].retry_at = now + SIGN_RETRY_S;
			continue;
		}
		have[i] = true;
		lanyard__node__v1__x509_sign_item__init(&items[i]);
		items[i].entry_id = n->set[idx[i]].e->id;
		items[i].csr.data = csr;
		items[i].csr.len = csr_len;
		itemp[n_items++] = &items[i];
	}
	Lanyard__Node__V1__SignX509Request req = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	req.items = itemp;
	req.n_items = n_items;
	if (n_items == 0)
		goto out;
	if (call(n, "SignX509", &req.base, &lanyard__node__v1__sign_x509_response__descriptor, &resp,
		 &status, err, sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "SignX509 failed: %s", err);
		rc = OUT_RETRY;
		goto out;
	}
	/* The CSRs have been sent: their memory is better used for the answers. */
	for (size_t i = 0; i < cnt; i++) {
		free(items[i].csr.data);
		items[i].csr.data = NULL;
	}
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to sign for this agent: %s", err);
		rc = OUT_DENIED;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		log_error("the server failed to sign %zu X509-SVIDs: %s: %s", n_items,
			  grpc_status_name(status), err);
		for (size_t i = 0; i < cnt; i++)
			n->set[idx[i]].retry_at = now + SIGN_RETRY_S;
		goto out;
	}
	Lanyard__Node__V1__SignX509Response *sr = (Lanyard__Node__V1__SignX509Response *)resp;
	uint64_t minted = 0, rotated = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (!have[i])
			continue;
		struct wentry *w = &n->set[idx[i]];
		const Lanyard__Node__V1__X509SignResult *res = NULL;
		/* One result per item in order; look further only if the server reordered. */
		if (i < sr->n_results && sr->results[i]->entry_id &&
		    strcmp(sr->results[i]->entry_id, w->e->id) == 0)
			res = sr->results[i];
		for (size_t j = 0; !res && j < sr->n_results; j++)
			if (sr->results[j]->entry_id && strcmp(sr->results[j]->entry_id, w->e->id) == 0)
				res = sr->results[j];
		struct svid *v = NULL;
		if (!res)
			seterr(err, sizeof(err), "the server returned no result for it");
		else if (res->error && *res->error)
			seterr(err, sizeof(err), "%s", res->error);
		else
			v = make_svid(n, w->e, &keys[i], res->svid.data, res->svid.len, err,
				      sizeof(err));
		if (!v) {
			log_error("cannot get an X509-SVID for entry %s (%s): %s", w->e->id,
				  w->e->spiffe_id, err);
			w->retry_at = now + SIGN_RETRY_S;
			continue;
		}
		if (w->svid) {
			rotated++;
			log_debug("rotated X509-SVID %s of entry %s: serial %s -> %s", v->spiffe_id,
				  w->e->id, w->svid->serial, v->serial);
		} else {
			log_debug("new X509-SVID %s for entry %s, serial %s", v->spiffe_id, w->e->id,
				  v->serial);
		}
		minted++;
		if (w->svid) {
			int64_t by = now + (w->svid->not_after - now) / 2;
			if (!n->rotated_dirty || by < n->persist_by)
				n->persist_by = by;
			n->rotated_dirty = true;
		}
		drop_svid(w);
		w->svid = v;
		w->retry_at = 0;
	}
	pthread_mutex_lock(&n->mu);
	n->st.svids_minted += minted;
	n->st.rotations += rotated;
	pthread_mutex_unlock(&n->mu);
	/* Renewals are routine (and frequent with many entries): only new SVIDs make info lines. */
	if (minted > rotated)
		log_info("got %llu new X509-SVIDs (and %llu renewals)",
			 (unsigned long long)(minted - rotated), (unsigned long long)rotated);
	else if (minted)
		log_debug("renewed %llu X509-SVIDs", (unsigned long long)minted);
	n->publish_needed = true;
	if (minted > rotated)
		n->state_dirty = n->persist_before_publish = true;
out:
	n->plan_dirty = true;
	n->trim_needed = true;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	for (size_t i = 0; i < cnt; i++) {
		batch_key_clear(&keys[i]);
		free(items[i].csr.data);
	}
	free(keys);
	free(have);
	free(items);
	free(itemp);
	release_ecc_cache();
	return rc;
}

/* ---- JWT-SVIDs ---- */

/* Hands an answered request back to the loop thread. */
static void finish_jwt(struct node_client *n, struct jwt_req *r, int status, const char *token,
		       int64_t expires_at, const char *message)
{
	jwt_cache_req_answer(r, status, token, expires_at, message);
	pthread_mutex_lock(&n->mu);
	r->next = n->done;
	n->done = r;
	pthread_mutex_unlock(&n->mu);
	uv_async_send(n->async);
}

/* The queued requests, in arrival order. */
static struct jwt_req *take_pending(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	struct jwt_req *list = n->pending;
	n->pending = NULL;
	pthread_mutex_unlock(&n->mu);
	return jwt_cache_req_reverse(list);
}

static void fail_pending_jwts(struct node_client *n, const char *why)
{
	for (struct jwt_req *r = take_pending(n), *next; r; r = next) {
		next = r->next;
		finish_jwt(n, r, GRPC_STATUS_UNAVAILABLE, NULL, 0, why);
	}
}

/* Asks the server for the queued JWT-SVIDs: OUT_CONTINUE, or OUT_RETRY on a transport failure. */
static int serve_jwts(struct node_client *n)
{
	struct jwt_req *list = take_pending(n);
	int rc = OUT_CONTINUE;
	for (struct jwt_req *r = list, *next; r; r = next) {
		next = r->next;
		if (rc != OUT_CONTINUE) {
			finish_jwt(n, r, GRPC_STATUS_UNAVAILABLE, NULL, 0,
				   "the agent lost its connection to the server");
			continue;
		}
		Lanyard__Node__V1__SignJWTRequest req = LANYARD__NODE__V1__SIGN_JWTREQUEST__INIT;
		req.entry_id = r->entry_id;
		req.audience = r->aud;
		req.n_audience = r->n_aud;
		ProtobufCMessage *resp = NULL;
		int status;
		char err[512];
		if (call(n, "SignJWT", &req.base, &lanyard__node__v1__sign_jwtresponse__descriptor,
			 &resp, &status, err, sizeof(err)) < 0) {
			set_state(n, NODE_STATE_DISCONNECTED, "SignJWT failed: %s", err);
			finish_jwt(n, r, GRPC_STATUS_UNAVAILABLE, NULL, 0, err);
			rc = OUT_RETRY;
			continue;
		}
		if (status != GRPC_STATUS_OK) {
			finish_jwt(n, r, status, NULL, 0, err);
			continue;
		}
		Lanyard__Node__V1__SignJWTResponse *jr = (Lanyard__Node__V1__SignJWTResponse *)resp;
		if (!jr->token || !*jr->token)
			finish_jwt(n, r, GRPC_STATUS_INTERNAL, NULL, 0,
				   "the server returned an empty JWT-SVID");
		else
			finish_jwt(n, r, GRPC_STATUS_OK, jr->token, jr->expires_at, NULL);
		secure_zero(jr->token, strlen(jr->token));
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return rc;
}

/* ---- the thread ---- */

/* Waits up to timeout_ms for the entry stream, then takes whatever else is already there (up to
 * DRAIN_MAX messages or DRAIN_US), so that a burst of deltas is signed and published once. */
static int read_stream(struct node_client *n, struct grpc_stream *stream, int timeout_ms)
{
	char err[512];
	int64_t start = now_mono_us();
	for (int i = 0; i < DRAIN_MAX && now_mono_us() - start < DRAIN_US; i++) {
		uint8_t *msg = NULL;
		size_t len = 0;
		int status = 0;
		int r = grpc_stream_next(stream, i == 0 ? timeout_ms : 0, &msg, &len, &status, err,
					 sizeof(err));
		if (r == 0)
			return OUT_CONTINUE;
		if (r < 0) {
			set_state(n, NODE_STATE_DISCONNECTED, "lost the connection: %s", err);
			return is_stopping(n) ? OUT_STOP : OUT_RETRY;
		}
		if (r == 2) {
			if (status == GRPC_STATUS_PERMISSION_DENIED) {
				log_error("the server ended the entry stream: %s", err);
				return OUT_DENIED;
			}
			set_state(n, NODE_STATE_DISCONNECTED, "the server ended the entry stream: %s: %s",
				  grpc_status_name(status), err);
			return OUT_RETRY;
		}
		Lanyard__Node__V1__SyncResponse *m =
			lanyard__node__v1__sync_response__unpack(NULL, len, msg);
		free(msg);
		if (!m) {
			set_state(n, NODE_STATE_DISCONNECTED, "malformed message on the entry stream");
			return OUT_RETRY;
		}
		apply_sync(n, m);
		lanyard__node__v1__sync_response__free_unpacked(m, NULL);
	}
	return OUT_CONTINUE;
}

/* One connection: renew the agent SVID when due, follow the entry stream, keep SVIDs fresh. */
static int session(struct node_client *n)
{
	char err[512];
	struct grpc_stream *stream = NULL;
	int rc = OUT_RETRY;
	n->connected = false;
	n->in_snapshot = false;
	staging_clear(n);
	if (connect_server(n, true, err, sizeof(err)) < 0) {
		if (is_stopping(n))
			return OUT_STOP;
		set_state(n, NODE_STATE_DISCONNECTED, "%s", err);
		return OUT_RETRY;
	}
	if (now_unix() >= n->agent_renew_at) {
		rc = renew_agent(n);
		goto out;
	}
	Lanyard__Node__V1__SyncRequest req = LANYARD__NODE__V1__SYNC_REQUEST__INIT;
	req.known_bundle_sequence = n->bundle ? n->bundle_seq : 0;
	uint8_t buf[32];
	size_t len = lanyard__node__v1__sync_request__pack(&req, buf);
	if (grpc_client_stream_open(n->gc, NODE_PATH "SyncEntries", NULL, 0, buf, len, &stream, err,
				    sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "cannot open the entry stream: %s", err);
		goto out;
	}
	for (;;) {
		if (is_stopping(n)) {
			rc = OUT_STOP;
			goto out;
		}
		if ((rc = serve_jwts(n)) != OUT_CONTINUE)
			goto out;
		if (now_unix() >= n->agent_renew_at) {
			rc = renew_agent(n);
			goto out;
		}
		housekeeping(n);
		int64_t now = now_unix();
		if (n->synced && n->connected && now >= n->next_due) {
			if ((rc = sign_batch(n)) != OUT_CONTINUE)
				goto out;
			housekeeping(n);
		}
		int timeout = n->plan_dirty || n->publish_needed ? 0 : POLL_CAP_MS;
		if ((rc = read_stream(n, stream, timeout)) != OUT_CONTINUE)
			goto out;
	}
out:
	grpc_stream_cancel(stream);
	close_conn(n);
	return rc;
}

/* Waits ms (or until stop) while still answering JWT requests, expiring SVIDs and persisting. */
static void idle_wait(struct node_client *n, int64_t ms)
{
	int64_t deadline = now_mono_us() + ms * 1000;
	for (;;) {
		fail_pending_jwts(n, "the agent is not connected to the server");
		housekeeping(n);
		int64_t left = deadline - now_mono_us();
		if (left <= 0)
			break;
		if (left > 1000000)
			left = 1000000;
		/* Wake up for the next expiry too: an expired SVID must leave the snapshot. */
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt);
		int64_t now_us = (int64_t)rt.tv_sec * 1000000 + rt.tv_nsec / 1000;
		if (n->next_expiry < INT64_MAX / 1000000 && n->next_expiry * 1000000 - now_us < left)
			left = n->next_expiry * 1000000 - now_us > 1000
				       ? n->next_expiry * 1000000 - now_us
				       : 1000;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += left / 1000000;
		ts.tv_nsec += (left % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&n->mu);
		if (!n->stopping && !n->pending)
			pthread_cond_timedwait(&n->cond, &n->mu, &ts);
		bool stop = n->stopping;
		pthread_mutex_unlock(&n->mu);
		if (stop)
			break;
	}
}

static int64_t next_backoff(int64_t cur)
{
	int64_t next = cur ? cur * 2 : BACKOFF_MIN_MS;
	if (next > BACKOFF_MAX_MS)
		next = BACKOFF_MAX_MS;
	return next;
}

static int64_t jittered(int64_t ms)
{
	uint32_t r = 0;
	random_bytes(&r, sizeof(r));
	/* 80% to 120%. */
	return ms * 8 / 10 + (int64_t)(r % (uint32_t)(ms * 4 / 10 + 1));
}

static void *thread_main(void *arg)
{
	struct node_client *n = arg;
	int64_t backoff = 0;
	while (!is_stopping(n)) {
		int rc;
		if (n->agent_key && now_unix() >= n->agent_not_after) {
			log_error("the agent SVID %s expired: attestation is needed again", n->agent_id);
			drop_identity(n);
		}
		if (!n->agent_key) {
			if (!token_usable(n)) {
				set_state(n, NODE_STATE_NEEDS_TOKEN,
					  "no valid agent SVID and no unused join token: restart the "
					  "agent with --join-token (or set join_token in its "
					  "configuration)");
				rc = OUT_RETRY;
			} else {
				rc = attest(n);
			}
		} else {
			rc = session(n);
		}
		if (n->connected)
			backoff = 0;
		n->connected = false;
		if (rc == OUT_STOP)
			break;
		if (rc == OUT_DENIED) {
			log_error("the server no longer accepts agent %s (evicted or banned): "
				  "dropping its identity",
				  n->agent_id);
			persist_forget_agent(n->data_dir);
			drop_identity(n);
			if (token_usable(n))
				continue;
		}
		if (rc == OUT_RECONNECT) {
			backoff = 0;
			continue;
		}
		backoff = next_backoff(backoff);
		idle_wait(n, jittered(backoff));
	}
	close_conn(n);
	if (n->state_dirty || n->rotated_dirty)
		persist_state(n);
	return NULL;
}

/* ---- loop side ---- */

static void deliver_done(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	struct jwt_req *list = n->done;
	n->done = NULL;
	pthread_mutex_unlock(&n->mu);
	for (struct jwt_req *r = list, *next; r; r = next) {
		next = r->next;
		if (r->status == GRPC_STATUS_OK)
			jwt_cache_put(n->jwt_cache, r, now_unix());
		r->cb(r->ud, r->status, r->token, r->message);
		jwt_cache_req_free(r);
	}
}

static void on_async(uv_async_t *h)
{
	struct node_client *n = h->data;
	if (n)
		deliver_done(n);
}

static void on_async_closed(uv_handle_t *h)
{
	free(h);
}

int node_client_fetch_jwt(struct node_client *n, const char *entry_id, char *const *audience,
			  size_t n_audience, node_jwt_cb cb, void *ud)
{
	if (!n || !entry_id || !cb || n_audience == 0)
		return -1;
	struct jwt_req *r = jwt_cache_req_new(entry_id, audience, n_audience, cb, ud, now_unix());

	/* The answer always comes through the async callback, never from inside this call. */
	if (jwt_cache_answer(n->jwt_cache, r)) {
		pthread_mutex_lock(&n->mu);
		r->next = n->done;
		n->done = r;
		pthread_mutex_unlock(&n->mu);
		uv_async_send(n->async);
		return 0;
	}
	pthread_mutex_lock(&n->mu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->mu);
		jwt_cache_req_free(r);
		return -1;
	}
	r->next = n->pending;
	n->pending = r;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

void node_client_status(struct node_client *n, struct node_status *out)
{
	pthread_mutex_lock(&n->mu);
	*out = n->st;
	pthread_mutex_unlock(&n->mu);
}

/* ---- start and stop ---- */

static void free_client(struct node_client *n)
{
	if (!n)
		return;
	staging_clear(n);
	free(n->staging);
	for (size_t i = 0; i < n->n_set; i++) {
		drop_svid(&n->set[i]);
		cache_entry_free(n->set[i].e);
	}
	free(n->set);
	for (size_t i = 0; i < n->n_used_tokens; i++)
		free(n->used_tokens[i]);
	free(n->used_tokens);
	jwt_cache_free(n->jwt_cache);
	lkey_free(n->agent_key);
	free(n->agent_chain);
	free(n->bundle);
	free(n->jwt_bundle);
	free(n->boot_roots);
	free(n->trust_domain);
	free(n->server_address);
	free(n->data_dir);
	free(n->psat_token_path);
	if (n->join_token) {
		secure_zero(n->join_token, strlen(n->join_token));
		free(n->join_token);
	}
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cond);
	free(n);
}

static int load_boot_roots(struct node_client *n, const char *path, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = file_read_all(path, 16u << 20, &buf, &len);
	if (r < 0) {
		seterr(err, errlen, "cannot read trust_bundle_path %s: %s", path, strerror(-r));
		return -1;
	}
	r = pem_decode_concat((const char *)buf, len, "CERTIFICATE", &n->boot_roots,
			      &n->boot_roots_len);
	free(buf);
	if (r < 0 || n->boot_roots_len == 0) {
		free(n->boot_roots);
		n->boot_roots = NULL;
		n->boot_roots_len = 0;
		seterr(err, errlen, "trust_bundle_path %s holds no PEM CERTIFICATE", path);
		return -1;
	}
	return 0;
}

/* Takes over what persist_load found: identity, bundle, tokens, entries and SVIDs. */
static int adopt_persisted(struct node_client *n, struct persist_data *pd, char *err, size_t errlen)
{
	if (pd->trust_domain && *pd->trust_domain && strcmp(pd->trust_domain, n->trust_domain)) {
		seterr(err, errlen,
			 "data_dir %s holds the state of trust domain %s, not %s: use another "
			 "data_dir",
			 n->data_dir, pd->trust_domain, n->trust_domain);
		return -1;
	}
	if (pd->bundle) {
		n->bundle = pd->bundle;
		n->bundle_len = pd->bundle_len;
		n->jwt_bundle = pd->jwt_bundle ? pd->jwt_bundle : xstrdup("{\"keys\":[]}");
		n->bundle_seq = pd->bundle_sequence;
		pd->bundle = NULL;
		pd->jwt_bundle = NULL;
	}
	n->used_tokens = pd->used_tokens;
	n->n_used_tokens = pd->n_used_tokens;
	pd->used_tokens = NULL;
	pd->n_used_tokens = 0;
	if (pd->agent_key) {
		lkey *k = NULL;
		char why[256];
		if (lkey_from_der(pd->agent_key, pd->agent_key_len, &k) < 0) {
			log_error("ignoring the persisted agent key in %s: unreadable", n->data_dir);
		} else if (take_identity(n, k, pd->agent_chain, pd->agent_chain_len, NULL, false,
					 why, sizeof(why)) < 0) {
			lkey_free(k);
			log_error("ignoring the persisted agent identity in %s: %s", n->data_dir, why);
		} else if (n->agent_not_after <= now_unix()) {
			log_warn("the persisted agent SVID %s has expired", n->agent_id);
		} else {
			log_info("loaded agent identity %s from %s", n->agent_id, n->data_dir);
		}
	}
	n->set = xcalloc(pd->n_entries + 1, sizeof(*n->set));
	size_t j = 0;
	for (size_t i = 0; i < pd->n_entries; i++) {
		struct wentry *w = &n->set[n->n_set++];
		w->e = pd->entries[i];
		pd->entries[i] = NULL;
		while (j < pd->n_svids && strcmp(pd->svids[j]->entry_id, w->e->id) < 0)
			j++;
		if (j < pd->n_svids && strcmp(pd->svids[j]->entry_id, w->e->id) == 0) {
			w->svid = pd->svids[j];
			pd->svids[j++] = NULL;
		}
	}
	n->synced = pd->have_state;
	return 0;
}

int node_client_start(const struct agent_config *cfg, struct svid_cache *cache, uv_loop_t *loop,
		      struct node_client **out, char *err, size_t errlen)
{
	struct persist_data pd = {0};
	struct node_client *n = xcalloc(1, sizeof(*n));
	int ret = -1;
	*out = NULL;
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cond, NULL);
	n->live_fd = -1;
	n->trust_domain = xstrdup(cfg->trust_domain);
	n->server_address = xstrdup(cfg->server_address);
	n->server_port = (int)cfg->server_port;
	n->data_dir = xstrdup(cfg->data_dir);
	n->join_token = cfg->join_token && *cfg->join_token ? xstrdup(cfg->join_token) : NULL;
	n->insecure_bootstrap = cfg->insecure_bootstrap;
	n->psat = cfg->node_attestor && strcmp(cfg->node_attestor, "k8s_psat") == 0;
	n->psat_token_path =
		xstrdup(cfg->psat_token_path ? cfg->psat_token_path : K8S_DEFAULT_PSAT_TOKEN);
	n->rotation_fraction = cfg->rotation_fraction;
	n->jwt_cache = jwt_cache_new();
	n->cache = cache;
	n->loop = loop;
	n->st.state = NODE_STATE_STARTING;
	snprintf(n->server_id, sizeof(n->server_id), "spiffe://%s/lanyard/server", n->trust_domain);
	if (key_type_parse(cfg->workload_key_type, &n->key_type) < 0) {
		seterr(err, errlen, "unknown workload_key_type \"%s\"", cfg->workload_key_type);
		goto out;
	}
	if (persist_prepare_dir(n->data_dir, err, errlen) < 0 ||
	    persist_load(n->data_dir, now_unix(), &pd, err, errlen) < 0 ||
	    adopt_persisted(n, &pd, err, errlen) < 0)
		goto out;
	if (cfg->trust_bundle_path) {
		char why[512];
		if (load_boot_roots(n, cfg->trust_bundle_path, why, sizeof(why)) < 0) {
			if (!n->bundle) {
				seterr(err, errlen, "%s", why);
				goto out;
			}
			log_warn("%s; using the bundle persisted in %s", why, n->data_dir);
		}
	}
	if (!n->bundle && !n->boot_roots && !n->insecure_bootstrap) {
		seterr(err, errlen,
			 "no way to authenticate the server: set trust_bundle_path to the PEM CA "
			 "certificates of %s (or, for testing only, insecure_bootstrap: true)",
			 n->trust_domain);
		goto out;
	}
	n->async = xcalloc(1, sizeof(*n->async));
	if (uv_async_init(loop, n->async, on_async) != 0) {
		free(n->async);
		n->async = NULL;
		seterr(err, errlen, "cannot create the node client's async handle");
		goto out;
	}
	n->async->data = n;
	n->plan_dirty = true;
	publish(n);
	size_t valid = 0;
	for (size_t i = 0; i < n->n_set; i++)
		valid += n->set[i].svid != NULL;
	log_info("loaded %zu entries and %zu valid X509-SVIDs from %s", n->n_set, valid, n->data_dir);
	n->last_persist_us = now_mono_us();

	/* The sync thread takes no signals: they belong to the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&n->thread, NULL, thread_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		seterr(err, errlen, "cannot start the sync thread: %s", strerror(r));
		goto out;
	}
	n->thread_started = true;
	*out = n;
	ret = 0;
out:
	persist_data_free(&pd);
	/* This runs on the loop thread, which has no ECC work of its own to keep tables for; and
	 * the parsed state file it just freed is the largest allocation burst of a restart. */
	release_ecc_cache();
	malloc_trim(0);
	if (ret < 0) {
		if (n->async) {
			n->async->data = NULL;
			uv_close((uv_handle_t *)n->async, on_async_closed);
		}
		free_client(n);
	}
	return ret;
}

void node_client_stop(struct node_client *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = true;
	/* Wakes a blocking call at once; the thread closes the socket itself. */
	if (n->live_fd >= 0)
		shutdown(n->live_fd, SHUT_RDWR);
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->mu);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	/* Every queued JWT request still gets its one callback. */
	fail_pending_jwts(n, "the agent is shutting down");
	deliver_done(n);
	n->async->data = NULL;
	uv_close((uv_handle_t *)n->async, on_async_closed);
	free_client(n);
}
