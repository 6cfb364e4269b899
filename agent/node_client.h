/* node_client.h: the agent's side of the node API. One thread that talks to the server with
 * blocking calls (so nothing on the event loop ever waits on the network): attest or load the
 * persisted agent SVID, follow the entry stream, mint keys and get SVIDs signed in batches,
 * rotate them, persist them, and publish every change to the svid_cache. */
#ifndef LANYARD_NODE_CLIENT_H
#define LANYARD_NODE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "svid_cache.h"

struct agent_config;
struct node_client;

/* Loads persisted state from cfg->data_dir and publishes it at once (so a restarted agent
 * serves its still-valid SVIDs before the server answers). Nothing talks to the server until
 * node_client_run(). */
int node_client_start(const struct agent_config *cfg, struct svid_cache *cache, uv_loop_t *loop,
		      struct node_client **out, char *err, size_t errlen);
/* Starts the sync thread (attestation, entry stream, rotation). The agent calls it once its
 * listeners are bound, so an agent that cannot serve never spends its join token. 0 or -1. */
int node_client_run(struct node_client *n, char *err, size_t errlen);
/* Stops the thread (closes its connection), flushes state, frees. Call on the loop thread. */
void node_client_stop(struct node_client *n);

/* Asynchronous JWT-SVID fetch for one entry: the sync thread asks the server (the cache of
 * signed tokens is the Workload API's, jwt_cache.h, on the loop thread). cb runs exactly once, on
 * the loop thread, never from inside this call: status is a gRPC status code (0 = OK, then token
 * and its expires_at, unix seconds, are set; otherwise message says why). Returns 0, or -1 when
 * the request could not be queued (cb is then not called). Loop thread only. */
typedef void (*node_jwt_cb)(void *ud, int status, const char *token, int64_t expires_at,
			    const char *message);
int node_client_fetch_jwt(struct node_client *n, const char *entry_id, char *const *audience,
			  size_t n_audience, node_jwt_cb cb, void *ud);
/* Bumped whenever tokens signed before must no longer be served (an authority of the trust
 * domain was tainted). Any thread may read it: an atomic load, no lock. */
uint64_t node_client_jwt_generation(struct node_client *n);

/* The server refused the agent for good (its join token was rejected, or it is banned): the
 * sync thread has ended and will not retry. Runs once, on the loop thread; reason says why. */
typedef void (*node_refused_cb)(void *ud, const char *reason);
/* Call before the loop runs (the callback runs from it). */
void node_client_on_refused(struct node_client *n, node_refused_cb cb, void *ud);

enum node_conn_state {
	NODE_STATE_STARTING = 0,
	NODE_STATE_ATTESTING,
	NODE_STATE_CONNECTED,     /* stream open, in sync */
	NODE_STATE_DISCONNECTED,  /* retrying with backoff */
	NODE_STATE_NEEDS_TOKEN,   /* SVID expired or agent evicted, and no usable join token */
	NODE_STATE_REFUSED,       /* refused for good (join token rejected, agent banned) */
};

struct node_status {
	enum node_conn_state state;
	char agent_id[2049];     /* "" before attestation */
	char server[320];        /* the server connected to or tried next, "" before the first */
	uint64_t failovers;      /* moves from one candidate server to another */
	uint64_t attestations;   /* node attestations that gave this agent an SVID */
	uint64_t resumes;        /* entry streams opened with the agent SVID alone */
	int64_t agent_svid_not_after;
	int64_t agent_svid_renew_at;
	int64_t last_sync;       /* unix seconds of the last message from the server, 0 = never */
	uint64_t sync_errors;
	uint64_t svids_minted;
	uint64_t rotations;
	char last_error[256];
};
const char *node_state_name(enum node_conn_state s);
/* A consistent copy of the current status; any thread. */
void node_client_status(struct node_client *n, struct node_status *out);

#endif
