/* workload_api.h: the SPIFFE Workload API (SPIFFE_Workload_API.md) on the agent's Unix socket.
 *
 * Serves FetchX509SVID, FetchX509Bundles, FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID and
 * grpc.health.v1.Health/Check from the svid_cache, identifying each caller with the workload
 * attestors (attestor.h). Envoy SDS calls on the same socket are attested the same way and then
 * handed to sds.c. Attestation runs on the libuv threadpool; everything else on the loop.
 * Every function here must be called on the loop thread. */
#ifndef LANYARD_WORKLOAD_API_H
#define LANYARD_WORKLOAD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "node_client.h"
#include "sds.h"

struct agent_config;
struct attestor;
struct svid_cache;
struct workload_api;

enum workload_method {
	WL_METHOD_FETCH_X509_SVID = 0,
	WL_METHOD_FETCH_X509_BUNDLES,
	WL_METHOD_FETCH_JWT_SVID,
	WL_METHOD_FETCH_JWT_BUNDLES,
	WL_METHOD_VALIDATE_JWT_SVID,
	WL_METHOD_HEALTH_CHECK,
	WL_METHOD_SDS_STREAM, /* Envoy SDS v3 (sds.h) on the same socket */
	WL_METHOD_SDS_FETCH,
	WL_METHOD_COUNT,
};

#define WL_STATUS_COUNT 17 /* gRPC status codes 0..16 */

/* "FetchX509SVID", ... "HealthCheck"; "unknown" outside the enum. */
const char *workload_method_name(int method);

#define WL_ATTEST_BUCKETS 8
extern const double workload_attest_buckets[WL_ATTEST_BUCKETS];

/* The last callers refused an identity ("no identity issued"), for the status page. */
#define WL_DENIALS 8
struct wl_denial {
	int64_t at;
	int pid;
	unsigned uid, gid;
	char method[32];
	char selectors[256]; /* the caller's, control characters shown as '?' */
	char why[512];	     /* the closest entries and the selectors they lack */
};

struct workload_api_stats {
	unsigned conns;   /* open connections */
	unsigned streams; /* open server streams (FetchX509SVID, FetchX509Bundles, FetchJWTBundles) */
	uint64_t conns_refused;
	/* Calls by method and final gRPC status (a stream counts when it ends). */
	uint64_t requests[WL_METHOD_COUNT][WL_STATUS_COUNT];
	uint64_t updates_sent; /* stream messages after the first one */
	/* Attestation latency (accept of the call to selectors ready), cumulative per bucket bound
	 * of workload_attest_buckets, as a Prometheus histogram wants it. */
	uint64_t attest_hist[WL_ATTEST_BUCKETS];
	double attest_sum;
	uint64_t attest_count;
	struct sds_stats sds;
	/* Newest first; n_denials of them. */
	struct wl_denial denials[WL_DENIALS];
	size_t n_denials;
};

/* The settings workload_api_start() takes from struct agent_config, spelt out so that tests and
 * other embedders need no configuration file. */
struct workload_api_opts {
	const char *socket_path;
	const char *trust_domain;     /* "example.org" */
	bool unix_path_selectors;     /* emit unix:path and unix:sha256 */
	int64_t sha256_max_size;      /* binaries above this are not hashed; <= 0: no limit */
	unsigned max_conns_per_process; /* per caller process (pid + start time); 0 = unlimited */
	unsigned max_conns_per_uid;   /* per caller uid; 0 = unlimited */
	unsigned idle_timeout_ms;     /* close connections without an open call; 0 = never */
	const char *proc_root;        /* NULL = "/proc" */
	/* How FetchJWTSVID gets a token for an entry, with node_client_fetch_jwt's contract.
	 * NULL = node_client_fetch_jwt on the node_client given to start. */
	int (*fetch_jwt)(void *ud, const char *entry_id, char *const *audience, size_t n_audience,
			 node_jwt_cb cb, void *cb_ud);
	void *fetch_jwt_ud;
	/* Attestors that run after the unix one (k8s, ...), their selectors merged with its. The
	 * API takes them over: they are freed by workload_api_stop, or by a failing start. */
	struct attestor **attestors;
	size_t n_attestors;
	/* Envoy SDS resource names (NULL: "default", "ROOTCA", "ALL"); read during start only. */
	struct sds_names sds_names;
};

/* Creates the socket (see workload_api_start_opts) and starts serving. FetchJWTSVID answers
 * UNAVAILABLE when nc is NULL. 0, or -1 with a reason in err. */
int workload_api_start(uv_loop_t *loop, const struct agent_config *cfg, struct svid_cache *cache,
		       struct node_client *nc, struct workload_api **out, char *err, size_t errlen);
/* Same with explicit options (copied). The socket's parent directory is created 0755 when
 * missing; an existing socket answered by a live process makes this fail, a stale one is
 * replaced; the socket is created with mode 0777 (attestation, not file modes, controls access). */
int workload_api_start_opts(uv_loop_t *loop, const struct workload_api_opts *o,
			    struct svid_cache *cache, struct node_client *nc,
			    struct workload_api **out, char *err, size_t errlen);
/* Stops accepting, ends open calls, unlinks the socket and frees w once its handles are closed
 * (the loop must keep running for that). NULL-safe. */
void workload_api_stop(struct workload_api *w);

void workload_api_stats(struct workload_api *w, struct workload_api_stats *out);
/* True when the agent can answer: the entry set is synced (or SVIDs were loaded) and a bundle is
 * present. The Health/Check answer. */
bool workload_api_ready(struct workload_api *w);

#endif
