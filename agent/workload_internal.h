/* workload_internal.h: what the modules of the Workload API server share (not a public API).
 *
 * workload_api.c owns the server, the calls and their lifetimes; workload_selset.c interns the
 * callers' selector sets and caches their matches; workload_answers.c builds what a stream sends
 * (and explains denials); workload_jwt.c serves FetchJWTSVID and ValidateJWTSVID;
 * workload_conns.c admits connections (per-process and per-uid limits) and closes idle ones.
 * Everything declared here runs on the loop thread only, like workload_api.h. */
#ifndef LANYARD_WORKLOAD_INTERNAL_H
#define LANYARD_WORKLOAD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "attestor.h"
#include "grpc_server.h"
#include "svid_cache.h"
#include "workload_api.h"

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
	struct jwt_cache *jwt_cache; /* signed tokens (workload_jwt.c) */
	uint64_t jwt_generation;     /* node_client_jwt_generation() the cache was filled in */

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

/* workload_api.c */
const char *wl_td_of(struct workload_api *w);
void wl_maybe_free(struct workload_api *w);
void wconn_unref(struct wconn *wc);
void wcall_unref(struct wcall *c);
void wcall_finish(struct wcall *c, int status, const char *message);

/* workload_selset.c */
/* Takes over the strings of l (l is emptied). NULL on allocation failure. */
struct selset *selset_intern(struct workload_api *w, struct selector_list *l);
void selset_unref(struct workload_api *w, struct selset *s);
/* The entries of the current snapshot the set is entitled to. 0 or -1 (no memory). */
int selset_match(struct workload_api *w, struct selset *s);

/* workload_answers.c */
void wl_explain_denial(struct wcall *c);
/* The federated bundles at least one of the caller's matched entries federates with, in trust
 * domain order, borrowed from the snapshot. *n may be 0; NULL only when out of memory. */
const struct fed_snap **wl_caller_fed(struct workload_api *w, const struct selset *s, size_t *n);
/* Sends the stream's current answer if it differs from the last one; ends the stream when the
 * caller lost every identity. Called on the first request and after every publication. */
void wl_stream_update(struct wcall *c);

/* workload_jwt.c */
void wl_jwt_svid_fetch(struct wcall *c);
void wl_jwt_svid_validate(struct wcall *c);

/* workload_conns.c */
int wl_on_connect(struct grpc_conn *conn, int fd);
void wl_on_disconnect(struct grpc_conn *conn);
void wl_on_idle_sweep(uv_timer_t *t);
void wl_on_idle_timer_closed(uv_handle_t *h);
/* Logs the refusals counted but not logged in the interval that ended. */
void wl_refusals_flush(struct workload_api *w, uint64_t now);

#endif
