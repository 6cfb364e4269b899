/* node_client_internal.h: what the pieces of the agent's sync thread share: node_client.c (the
 * thread, its sessions, the loop side, start and stop), node_identity.c (the agent identity:
 * join tokens, attestation, renewal) and node_sync.c (bundle, entries, publication, persistence,
 * workload SVID signing). Only those files include this.
 *
 * Threads: struct node_client is owned by the sync thread once it runs, except what n->mu
 * guards (the queues, the status, the stop flag); see node_client.c. */
#ifndef LANYARD_NODE_CLIENT_INTERNAL_H
#define LANYARD_NODE_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "agent_config.h"
#include "entry_set.h"
#include "grpc_client.h"
#include "jwt_cache.h"
#include "keys.h"
#include "node.pb-c.h"
#include "node_client.h"
#include "persist.h"
#include "server_conn.h"
#include "spiffeid.h"
#include "taint_set.h"

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
	/* Bumped when a CA authority was tainted: the Workload API drops its cached JWT-SVIDs (some
	 * may carry its kid) before it answers the next request. Atomic, not guarded by mu:
	 * node_client_jwt_generation(). */
	uint64_t jwt_generation;
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

/* Shared between the pieces of this module. */
int connect_server(struct node_client *n, bool client_cert, char *err, size_t errlen);
bool is_stopping(struct node_client *n);
void note_connected(struct node_client *n);
void release_ecc_cache(void);
void release_memory(struct node_client *n);
void set_state(struct node_client *n, enum node_conn_state s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int attest(struct node_client *n);
int denied_outcome(struct node_client *n, const char *msg);
void drop_identity(struct node_client *n);
int renew_agent(struct node_client *n, bool clear);
int take_identity(struct node_client *n, lkey *key, const uint8_t *chain, size_t chain_len,
			 const char *expect_id, bool fresh, char *err, size_t errlen);
bool token_usable(struct node_client *n);
int apply_bundle(struct node_client *n, const Lanyard__Node__V1__Bundle *b, char *err,
			size_t errlen);
void apply_sync(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m);
void housekeeping(struct node_client *n);
void persist_state(struct node_client *n);
void publish(struct node_client *n);
int sign_batch(struct node_client *n);
bool taint_clear(struct node_client *n);

#endif
