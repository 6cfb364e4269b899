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
 * The entry set and the renewal plan live in entry_set.c, the TLS connection in server_conn.c,
 * the agent identity in node_identity.c, what the entry stream brings in node_sync.c.
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
#include "node_client_internal.h"

#include <errno.h>
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
#include "thread_stack.h"
#include "util.h"
#include "x509.h"

/* snprintf for messages that may be cut short without harm. */
void seterr(char *err, size_t errlen, const char *fmt, ...)
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
void release_ecc_cache(void)
{
	keys_release_thread_ecc_cache();
}

/* Gives the memory of a burst back to the system. glibc keeps freed small blocks in the arena
 * of the thread that freed them, and after a peak (hundreds of keys and CSRs, the state of
 * thousands of entries) most of it would stay resident for the life of the agent; so would the
 * sync thread's stack pages that a TLS handshake or a signing batch reached (60-130 KB idle).
 * Sync thread, from housekeeping()'s shallow frame. */
void release_memory(struct node_client *n)
{
	if (!n->trim_needed)
		return;
	n->trim_needed = false;
	heap_trim();
	if (thread_stack_release() < 0)
		log_debug("cannot release the sync thread's unused stack");
}

bool is_stopping(struct node_client *n)
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
void set_state(struct node_client *n, enum node_conn_state s, const char *fmt, ...)
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

/* ---- the connection ---- */

/* Shows the current candidate in the status. */
static void note_server(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	snprintf(n->st.server, sizeof(n->st.server), "%s", server_conn_current(n->conn));
	pthread_mutex_unlock(&n->mu);
}

/* Connects with the agent SVID (client_cert) or without it (attestation). */
int connect_server(struct node_client *n, bool client_cert, char *err, size_t errlen)
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
void note_connected(struct node_client *n)
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
	n->trim_needed = true; /* the handshake's burst */
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
	heap_trim();
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
