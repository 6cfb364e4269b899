/* node_client.c: the sync thread (see node_client.h).
 *
 * Threads and ownership:
 *  - The sync thread owns the connection, the agent identity, the entry set with its SVIDs, the
 *    bundle and the persisted state; nothing else touches them once it runs.
 *  - The loop thread calls node_client_fetch_jwt() on a cache miss of the Workload API's JWT
 *    cache (workload_jwt.c), which a hit never leaves. Requests travel to the sync thread on a mutex-protected queue; answers come back on another
 *    queue and a uv_async_t runs their callbacks on the loop.
 *  - n->mu guards the queues, the status and the stop flag. The connection (server_conn.h) has
 *    its own lock, so that stop can shut a blocking call down at once.
 * The sync thread never blocks longer than POLL_CAP_MS without looking at the stop flag and the
 * JWT queue, except inside a connect (server_conn.c's CONNECT_TIMEOUT_MS) or a call the stop
 * shut down.
 * The entry set and the renewal plan live in entry_set.c, the TLS connection in server_conn.c.
 *
 * Failover: when a connect fails, the connection is lost, or a server answers Unavailable, the
 * sync thread marks the state disconnected and back_off() moves the connection to the next
 * candidate server (one log line per move: from, to, reason) and waits the connection's jittered
 * backoff, still serving the Workload API from the snapshot cache. The next session presents the
 * agent SVID to the new server and opens the entry stream there: no attestation. Only a refusal
 * of attestation (NODE_STATE_NEEDS_TOKEN) backs off without moving, since every server of the
 * trust domain would answer the same. */
#include <wolfssl/options.h>

#include "node_client.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent_config.h"
#include "attestor_k8s.h"
#include "entry_set.h"
#include "grpc_client.h"
#include "jwt_cache.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "persist.h"
#include "server_conn.h"
#include "spiffeid.h"
#include "taint_set.h"
#include "util.h"
#include "x509.h"

#define SIGN_BATCH 500
#define POLL_CAP_MS 100
#define DRAIN_MAX 1000
#define DRAIN_US 200000
#define SIGN_RETRY_S 5
#define PERSIST_INTERVAL_US 1000000
#define PERSIST_ROTATION_US 30000000
#define MAX_USED_TOKENS 64
/* SVIDs of a tainted authority are re-issued at random times over this window, so that a
 * fleet does not hit the server in the same second; the agent checks at most this often
 * whether it is clear of them (then it renews its own SVID and acknowledges). */
#define TAINT_WINDOW_S 10
#define TAINT_CHECK_S 1

/* What a connection attempt or session ended with. */
enum outcome {
	OUT_CONTINUE,  /* carry on with the session */
	OUT_STOP,      /* the client is stopping */
	OUT_RETRY,     /* transport or server trouble: back off and try again */
	OUT_RECONNECT, /* new credentials: connect again at once */
	OUT_DENIED,    /* the server no longer knows this agent: its identity is gone */
	OUT_REFUSED,   /* refused for good (bad join token, banned): the agent must exit */
};

struct node_client {
	/* Settings, copied at start. */
	char *trust_domain;
	char *data_dir;
	char *join_token;
	bool psat;             /* node_attestor k8s_psat: the token comes from psat_token_path */
	char *psat_token_path;
	bool insecure_bootstrap;
	enum key_type key_type;
	double rotation_fraction;

	struct svid_cache *cache;
	uv_loop_t *loop;
	uv_async_t *async;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Guarded by mu. */
	bool stopping;
	/* A CA authority was tainted: the loop thread drops the cached JWT-SVIDs (some may carry
	 * its kid) before it answers the next request. */
	uint64_t jwt_generation; /* atomic: node_client_jwt_generation() */
	/* An eventfd the sync thread polls with the server connection: the loop thread writes it
	 * when it queues a JWT request, so a request never waits out a poll of the entry stream. */
	int wake_fd;
	struct jwt_req *pending, *done;
	struct node_status st;

	/* Loop thread only. */
	node_refused_cb on_refused;
	void *refused_ud;
	bool refusal_reported;

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
	struct taint_set taint;
	/* The federated bundles the server sent for our entries, sorted by trust domain. */
	struct fed_snap *fed;
	size_t n_fed;
	char **used_tokens;
	size_t n_used_tokens;
	struct entry_set es;
	bool synced;
	/* Also aborted by node_client_stop (the one call server_conn allows from another thread). */
	struct server_conn *conn;
	bool connected; /* the current session received a complete snapshot */
	bool just_attested; /* no session since attest(): the next snapshot is not a resume */
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

_Static_assert(sizeof(((struct node_status *)0)->server) >= SERVER_LABEL_MAX,
	       "node_status.server holds a candidate label");

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
	keys_release_thread_ecc_cache();
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
	case NODE_STATE_REFUSED:
		return "refused";
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
	case NODE_STATE_REFUSED:
		break;
	case NODE_STATE_NEEDS_TOKEN:
		log_error("agent needs a join token: %s", msg);
		break;
	case NODE_STATE_DISCONNECTED:
		/* With several candidates, back_off() logs the move to the next one instead. */
		if (server_conn_candidates(n->conn) > 1)
			log_debug("server %s unavailable: %s", server_conn_current(n->conn), msg);
		else
			log_warnx("server %s unavailable, serving cached SVIDs and retrying: %s",
				 server_conn_current(n->conn), msg);
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

/* ---- the connection ---- */

/* Shows the current candidate in the status. */
static void note_server(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	snprintf(n->st.server, sizeof(n->st.server), "%s", server_conn_current(n->conn));
	pthread_mutex_unlock(&n->mu);
}

/* Connects with the agent SVID (client_cert) or without it (attestation). */
static int connect_server(struct node_client *n, bool client_cert, char *err, size_t errlen)
{
	/* The latest bundle from the server wins over the bootstrap file: after a CA rotation only
	 * the former is current, and it came over an authenticated connection. */
	const uint8_t *roots = n->bundle ? n->bundle : n->boot_roots;
	size_t roots_len = n->bundle ? n->bundle_len : n->boot_roots_len;
	int r;
	if (!client_cert)
		r = server_conn_open(n->conn, roots, roots_len, NULL, 0, NULL, err, errlen);
	else
		r = server_conn_open(n->conn, roots, roots_len, n->agent_chain, n->agent_chain_len,
				     n->agent_key, err, errlen);
	note_server(n);
	return r;
}

/* The first complete snapshot of a session. Any session but the first after an attestation
 * resumed the entry stream with the agent SVID alone. */
static void note_connected(struct node_client *n)
{
	bool resumed = !n->just_attested;
	n->just_attested = false;
	if (resumed) {
		pthread_mutex_lock(&n->mu);
		n->st.resumes++;
		pthread_mutex_unlock(&n->mu);
	}
	set_state(n, NODE_STATE_CONNECTED, "connected to server %s as %s: %zu entries%s",
		  server_conn_current(n->conn), n->agent_id, n->es.n,
		  resumed ? " (entry stream resumed with the agent SVID, no attestation)" : "");
}

/* ---- bundle ---- */

/* A new tainted authority: every SVID it signed is re-issued within TAINT_WINDOW_S. */
static void apply_taint(struct node_client *n, const Lanyard__Node__V1__Bundle *b)
{
	int64_t now = now_unix();
	if (!taint_set_update(&n->taint, b, now))
		return;
	size_t k = entry_set_taint(&n->es, (const uint8_t *const *)n->taint.certs, n->taint.lens,
				   n->taint.n, now, TAINT_WINDOW_S);
	bool own = n->agent_chain &&
		   entry_set_signed_by_any(n->agent_chain, n->agent_chain_len,
					   (const uint8_t *const *)n->taint.certs, n->taint.lens,
					   n->taint.n, now);
	log_warnx("%zu CA authorit%s of %s tainted (first %s): re-issuing %zu X509-SVIDs within "
		  "%d s%s", n->taint.n, n->taint.n == 1 ? "y" : "ies", n->trust_domain,
		  n->taint.ids[0], k, TAINT_WINDOW_S, own ? ", then the agent SVID" : "");
	n->plan_dirty = true;
	__atomic_add_fetch(&n->jwt_generation, 1, __ATOMIC_RELEASE);
}

/* True when a taint is pending and no SVID of the set depends on a tainted authority any more:
 * time to renew the agent SVID and acknowledge. */
static bool taint_clear(struct node_client *n)
{
	int64_t now = now_unix();
	if (!n->taint.pending || !n->synced || !n->agent_key || now < n->taint.next_check)
		return false;
	n->taint.next_check = now + TAINT_CHECK_S;
	return entry_set_tainted_left(&n->es) == 0;
}

/* Replaces the bundle with the server's. Returns 1 when it changed, 0 when not, -1 when refused
 * (err says why). */
static int apply_bundle(struct node_client *n, const Lanyard__Node__V1__Bundle *b, char *err,
			size_t errlen)
{
	if (!b)
		return 0;
	uint8_t *der = NULL;
	size_t len = 0;
	char *jwt = NULL;
	if (server_conn_decode_bundle(n->conn, b, &der, &len, &jwt, err, errlen) < 0)
		return -1;
	apply_taint(n, b);
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

/* ---- the entry stream ---- */

static int cmp_fed_snap(const void *a, const void *b)
{
	return strcmp(((const struct fed_snap *)a)->trust_domain,
		      ((const struct fed_snap *)b)->trust_domain);
}

/* Replaces the federated bundles with the complete set m carries. A malformed one is left out
 * (logged): its trust domain is then not trusted, never trusted with something else. */
static void apply_fed(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m)
{
	struct fed_snap *v = xcalloc(m->n_federated_bundles + 1, sizeof(*v));
	size_t len = 0;
	char err[256];
	for (size_t i = 0; i < m->n_federated_bundles; i++) {
		const Lanyard__Node__V1__Bundle *b = m->federated_bundles[i];
		struct fed_snap *f = &v[len];
		if (server_conn_decode_foreign_bundle(n->conn, b, &f->x509, &f->x509_len,
						      &f->jwt_bundle, err, sizeof(err)) < 0) {
			log_error("ignoring a federated bundle: %s", err);
			continue;
		}
		f->trust_domain = xstrdup(b->trust_domain);
		f->sequence = b->sequence;
		len++;
	}
	qsort(v, len, sizeof(*v), cmp_fed_snap);
	for (size_t i = 0; i < len; i++)
		log_info("federated bundle of %s: sequence %lld", v[i].trust_domain,
			 (long long)v[i].sequence);
	if (len == 0 && n->n_fed)
		log_info("no federated bundle any more");
	fed_snap_clear(n->fed, n->n_fed);
	n->fed = v;
	n->n_fed = len;
	n->publish_needed = true;
	if (persist_save_federated(n->data_dir, n->fed, n->n_fed, err, sizeof(err)) < 0)
		log_error("cannot persist the federated bundles: %s", err);
}

static void apply_sync(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m)
{
	char err[256];
	if (m->bundle && apply_bundle(n, m->bundle, err, sizeof(err)) < 0)
		log_error("ignoring a bundle update: %s", err);
	if (m->federated_bundles_set)
		apply_fed(n, m);
	enum entry_set_change c = entry_set_apply(&n->es, n->trust_domain, m);
	if (c != ENTRY_SET_UNCHANGED) {
		n->publish_needed = true;
		n->state_dirty = true;
		n->plan_dirty = true;
		n->trim_needed = true;
	}
	if (c == ENTRY_SET_SNAPSHOT) {
		bool first = !n->connected;
		n->synced = true;
		n->connected = true;
		if (first)
			note_connected(n);
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
	snapshot_set_fed(s, n->fed, n->n_fed);
	s->n_svids = entry_set_list(&n->es, now, true, &s->entries, &s->svids);
	s->n_entries = n->es.n;
	s->synced = n->synced;
	svid_cache_publish(n->cache, s);
	n->publish_needed = false;
}

static void persist_state(struct node_client *n)
{
	struct cache_entry **es;
	struct svid **vs;
	size_t nv = entry_set_list(&n->es, now_unix(), false, &es, &vs);
	char err[256];
	if (persist_save_state(n->data_dir, n->used_tokens, n->n_used_tokens, es, n->es.n, vs, nv,
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
		if (entry_set_plan(&n->es, now, n->synced, &n->next_due, &n->next_expiry))
			n->publish_needed = true;
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
	n->agent_renew_at = entry_set_renew_time(n->rotation_fraction, fresh ? now_unix() : info.not_before,
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

/* Whether the server's refusal is final, so that retrying cannot help and the agent exits with
 * the reason (under a service manager a retrying agent looks healthy): a join token the server
 * rejected (unknown, used, expired: a token never becomes valid again) and a banned agent.
 * Everything else (transport errors, an unavailable server, a refused projected service account
 * token, which the kubelet replaces) is retried with backoff. The server says "banned" in the
 * message only, as eviction shares PERMISSION_DENIED. */
static bool is_banned(int status, const char *msg)
{
	return status == GRPC_STATUS_PERMISSION_DENIED && strstr(msg, " is banned");
}

static bool attestation_refused_for_good(const struct node_client *n, int status, const char *msg)
{
	return is_banned(status, msg) ||
	       (!n->psat && (status == GRPC_STATUS_PERMISSION_DENIED ||
			     status == GRPC_STATUS_INVALID_ARGUMENT ||
			     status == GRPC_STATUS_UNAUTHENTICATED));
}

/* The outcome of a PERMISSION_DENIED from a call made with the agent SVID: evicted (attest again)
 * or banned (for good). */
static int denied_outcome(struct node_client *n, const char *msg)
{
	if (!is_banned(GRPC_STATUS_PERMISSION_DENIED, msg))
		return OUT_DENIED;
	set_state(n, NODE_STATE_REFUSED, "%s", msg);
	return OUT_REFUSED;
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
	set_state(n, NODE_STATE_ATTESTING, "attesting to server %s with %s",
		  server_conn_current(n->conn), how);
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
	if (server_conn_call(n->conn, "Attest", &req.base,
			     &lanyard__node__v1__attest_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "attestation call failed: %s", err);
		goto out;
	}
	if (status != GRPC_STATUS_OK && attestation_refused_for_good(n, status, err)) {
		set_state(n, NODE_STATE_REFUSED, "the server refused node attestation with %s: %s: %s",
			  how, grpc_status_name(status), err);
		rc = OUT_REFUSED;
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
	n->just_attested = true;
	pthread_mutex_lock(&n->mu);
	n->st.attestations++;
	pthread_mutex_unlock(&n->mu);
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
	server_conn_close(n->conn);
	release_ecc_cache();
	return rc;
}

/* clear: acknowledge the tainted authorities (the set is clear of them). */
static int renew_agent(struct node_client *n, bool clear)
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
	if (clear) {
		req.cleared_tainted = n->taint.ids;
		req.n_cleared_tainted = n->taint.n;
	}
	if (server_conn_call(n->conn, "RenewAgent", &req.base,
			     &lanyard__node__v1__renew_agent_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "renewing the agent SVID failed: %s", err);
		goto out;
	}
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to renew the agent SVID: %s", err);
		rc = denied_outcome(n, err);
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
	if (clear) {
		log_info("clear of %zu tainted CA authorit%s (first %s) %lld s after the taint",
			 n->taint.n, n->taint.n == 1 ? "y" : "ies", n->taint.ids[0],
			 (long long)(now_unix() - n->taint.pending_since));
		taint_set_acked(&n->taint);
	}
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

/* Gets one batch of SVIDs signed: OUT_CONTINUE, or OUT_RETRY / OUT_DENIED to end the session.
 * Failed entries are retried after SIGN_RETRY_S. */
static int sign_batch(struct node_client *n)
{
	int64_t now = now_unix();
	Lanyard__Node__V1__SignX509Request req = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	struct entry_set_batch *b = entry_set_batch_new(&n->es, n->key_type, SIGN_BATCH, now,
							now + SIGN_RETRY_S, &req);
	if (!b)
		return OUT_CONTINUE;
	ProtobufCMessage *resp = NULL;
	char err[512];
	int status, rc = OUT_CONTINUE;
	if (req.n_items == 0)
		goto out;
	if (server_conn_call(n->conn, "SignX509", &req.base,
			     &lanyard__node__v1__sign_x509_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "SignX509 failed: %s", err);
		rc = OUT_RETRY;
		goto out;
	}
	entry_set_batch_sent(b);
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to sign for this agent: %s", err);
		rc = denied_outcome(n, err);
		goto out;
	}
	if (status == GRPC_STATUS_UNAVAILABLE) {
		set_state(n, NODE_STATE_DISCONNECTED, "the server answered SignX509 with %s: %s",
			  grpc_status_name(status), err);
		entry_set_batch_retry(&n->es, b);
		rc = OUT_RETRY;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		log_error("the server failed to sign %zu X509-SVIDs: %s: %s", req.n_items,
			  grpc_status_name(status), err);
		entry_set_batch_retry(&n->es, b);
		goto out;
	}
	const struct entry_set_signing how = {
		.bundle = n->bundle,
		.bundle_len = n->bundle_len,
		.rotation_fraction = n->rotation_fraction,
	};
	struct entry_set_minted m;
	entry_set_batch_accept(&n->es, b, (Lanyard__Node__V1__SignX509Response *)resp, &how, &m);
	if (m.rotated) {
		if (!n->rotated_dirty || m.persist_by < n->persist_by)
			n->persist_by = m.persist_by;
		n->rotated_dirty = true;
	}
	pthread_mutex_lock(&n->mu);
	n->st.svids_minted += m.minted;
	n->st.rotations += m.rotated;
	pthread_mutex_unlock(&n->mu);
	/* Renewals are routine (and frequent with many entries): only new SVIDs make info lines. */
	if (m.minted > m.rotated)
		log_info("got %llu new X509-SVIDs (and %llu renewals)",
			 (unsigned long long)(m.minted - m.rotated), (unsigned long long)m.rotated);
	else if (m.minted)
		log_debug("renewed %llu X509-SVIDs", (unsigned long long)m.minted);
	n->publish_needed = true;
	if (m.minted > m.rotated)
		n->state_dirty = n->persist_before_publish = true;
out:
	n->plan_dirty = true;
	n->trim_needed = true;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	entry_set_batch_free(b);
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
		if (server_conn_call(n->conn, "SignJWT", &req.base,
				     &lanyard__node__v1__sign_jwtresponse__descriptor, &resp, &status,
				     err, sizeof(err)) < 0) {
			set_state(n, NODE_STATE_DISCONNECTED, "SignJWT failed: %s", err);
			finish_jwt(n, r, GRPC_STATUS_UNAVAILABLE, NULL, 0, err);
			rc = OUT_RETRY;
			continue;
		}
		if (status == GRPC_STATUS_UNAVAILABLE) {
			set_state(n, NODE_STATE_DISCONNECTED, "the server answered SignJWT with %s: %s",
				  grpc_status_name(status), err);
			rc = OUT_RETRY;
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
				return denied_outcome(n, err);
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
	entry_set_restart(&n->es);
	if (connect_server(n, true, err, sizeof(err)) < 0) {
		if (is_stopping(n))
			return OUT_STOP;
		set_state(n, NODE_STATE_DISCONNECTED, "%s", err);
		return OUT_RETRY;
	}
	if (now_unix() >= n->agent_renew_at) {
		rc = renew_agent(n, false);
		goto out;
	}
	Lanyard__Node__V1__SyncRequest req = LANYARD__NODE__V1__SYNC_REQUEST__INIT;
	req.known_bundle_sequence = n->bundle ? n->bundle_seq : 0;
	if (server_conn_stream(n->conn, "SyncEntries", &req.base, &stream, err, sizeof(err)) < 0) {
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
		bool clear = taint_clear(n);
		if (now_unix() >= n->agent_renew_at || clear) {
			rc = renew_agent(n, clear);
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
	server_conn_close(n->conn);
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

/* After a failed attempt: moves to the next candidate server when the failure was the server's
 * (not a refused attestation, which any server would repeat), then waits the backoff. */
static void back_off(struct node_client *n)
{
	int64_t ms = server_conn_backoff_ms(n->conn);
	pthread_mutex_lock(&n->mu);
	bool server_failed = n->st.state == NODE_STATE_DISCONNECTED;
	char why[sizeof(n->st.last_error)];
	snprintf(why, sizeof(why), "%s", n->st.last_error);
	bool stopping = n->stopping;
	pthread_mutex_unlock(&n->mu);
	if (server_failed && !stopping) {
		char from[SERVER_LABEL_MAX];
		snprintf(from, sizeof(from), "%s", server_conn_current(n->conn));
		if (server_conn_failover(n->conn)) {
			pthread_mutex_lock(&n->mu);
			n->st.failovers++;
			pthread_mutex_unlock(&n->mu);
			note_server(n);
			log_warnx("server failover: %s -> %s (%s); serving cached SVIDs, next attempt in "
				 "%lld ms",
				 from, server_conn_current(n->conn), why, (long long)ms);
		}
	}
	idle_wait(n, ms);
}

static void *thread_main(void *arg)
{
	struct node_client *n = arg;
	server_conn_resolve(n->conn);
	note_server(n);
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
			server_conn_connected(n->conn);
		n->connected = false;
		if (rc == OUT_STOP)
			break;
		if (rc == OUT_REFUSED) {
			uv_async_send(n->async);
			break;
		}
		if (rc == OUT_DENIED) {
			log_error("the server no longer accepts agent %s (evicted or banned): "
				  "dropping its identity",
				  n->agent_id);
			persist_forget_agent(n->data_dir);
			drop_identity(n);
			if (token_usable(n))
				continue;
		}
		if (rc == OUT_RECONNECT)
			continue;
		back_off(n);
	}
	server_conn_close(n->conn);
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
		r->cb(r->ud, r->status, r->token, r->expires_at, r->message);
		jwt_cache_req_free(r);
	}
}

/* Tells the owner, once, that the server refused the agent for good. */
static void report_refusal(struct node_client *n)
{
	struct node_status st;
	node_client_status(n, &st);
	if (st.state != NODE_STATE_REFUSED || n->refusal_reported || !n->on_refused)
		return;
	n->refusal_reported = true;
	n->on_refused(n->refused_ud, st.last_error);
}

static void on_async(uv_async_t *h)
{
	struct node_client *n = h->data;
	if (!n)
		return;
	deliver_done(n);
	report_refusal(n);
}

void node_client_on_refused(struct node_client *n, node_refused_cb cb, void *ud)
{
	n->on_refused = cb;
	n->refused_ud = ud;
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
	uint64_t one = 1;
	if (write(n->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("cannot wake the sync thread for a JWT-SVID request");
	return 0;
}

uint64_t node_client_jwt_generation(struct node_client *n)
{
	return __atomic_load_n(&n->jwt_generation, __ATOMIC_ACQUIRE);
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
	server_conn_free(n->conn);
	if (n->wake_fd >= 0)
		close(n->wake_fd);
	entry_set_free(&n->es);
	taint_set_free(&n->taint);
	for (size_t i = 0; i < n->n_used_tokens; i++)
		free(n->used_tokens[i]);
	free(n->used_tokens);
	lkey_free(n->agent_key);
	free(n->agent_chain);
	free(n->bundle);
	free(n->jwt_bundle);
	fed_snap_clear(n->fed, n->n_fed);
	free(n->boot_roots);
	free(n->trust_domain);
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
	/* Served until the server sends the current set (right after the first snapshot). */
	n->fed = pd->fed;
	n->n_fed = pd->n_fed;
	pd->fed = NULL;
	pd->n_fed = 0;
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
			log_warnx("the persisted agent SVID %s has expired", n->agent_id);
		} else {
			log_info("loaded agent identity %s from %s", n->agent_id, n->data_dir);
		}
	}
	entry_set_adopt(&n->es, pd->entries, pd->n_entries, pd->svids, pd->n_svids);
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
	n->wake_fd = -1;
	n->trust_domain = xstrdup(cfg->trust_domain);
	n->data_dir = xstrdup(cfg->data_dir);
	n->join_token = cfg->join_token && *cfg->join_token ? xstrdup(cfg->join_token) : NULL;
	n->insecure_bootstrap = cfg->insecure_bootstrap;
	n->psat = cfg->node_attestor && strcmp(cfg->node_attestor, "k8s_psat") == 0;
	n->psat_token_path =
		xstrdup(cfg->psat_token_path ? cfg->psat_token_path : K8S_DEFAULT_PSAT_TOKEN);
	n->rotation_fraction = cfg->rotation_fraction;
	n->cache = cache;
	n->loop = loop;
	n->st.state = NODE_STATE_STARTING;
	if (cfg->n_servers == 0) {
		seterr(err, errlen, "no server address configured");
		goto out;
	}
	n->conn = server_conn_new(cfg->servers, cfg->n_servers, n->trust_domain,
				  n->insecure_bootstrap);
	n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->wake_fd < 0) {
		seterr(err, errlen, "eventfd: %s", strerror(errno));
		goto out;
	}
	server_conn_set_wake_fd(n->conn, n->wake_fd);
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
			log_warnx("%s; using the bundle persisted in %s", why, n->data_dir);
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
	for (size_t i = 0; i < n->es.n; i++)
		valid += n->es.slots[i].svid != NULL;
	log_info("loaded %zu entries and %zu valid X509-SVIDs from %s", n->es.n, valid, n->data_dir);
	n->last_persist_us = now_mono_us();
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

int node_client_run(struct node_client *n, char *err, size_t errlen)
{
	/* The sync thread takes no signals: they belong to the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&n->thread, NULL, thread_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		seterr(err, errlen, "cannot start the sync thread: %s", strerror(r));
		return -1;
	}
	n->thread_started = true;
	return 0;
}

void node_client_stop(struct node_client *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = true;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->mu);
	/* After the stop flag: whatever the cut-short call fails with, the thread sees the flag. */
	server_conn_abort(n->conn);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	/* Every queued JWT request still gets its one callback. */
	fail_pending_jwts(n, "the agent is shutting down");
	deliver_done(n);
	n->async->data = NULL;
	uv_close((uv_handle_t *)n->async, on_async_closed);
	free_client(n);
}
