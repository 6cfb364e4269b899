/* node_api.h: the gRPC service agents talk to (proto/node.proto), over TLS 1.3 on the loop.
 *
 * Attest runs with server-only authentication; every other method is authorized by the caller's
 * agent X509-SVID (mutual TLS): the agent must be known, not banned, and sees and gets signed only
 * the entries authz.h entitles it to. Signing batches run on libuv's worker threads. */
#ifndef LANYARD_NODE_API_H
#define LANYARD_NODE_API_H

#include <stdint.h>

#include <uv.h>

#include "ca.h"
#include "grpc_server.h"
#include "datastore.h"
#include "psat.h"

struct node_api_options {
	const char *bind_address;
	int port;
	const char *trust_domain;
	int64_t default_x509_svid_ttl;
	int64_t default_jwt_svid_ttl;
	int64_t agent_svid_ttl;
	struct psat *psat; /* k8s_psat node attestation; NULL = not offered. Not owned. */
	/* Admission control (see grpc_server_config; the total is also kept below RLIMIT_NOFILE). */
	unsigned max_connections;
	unsigned max_connections_per_source;
	unsigned max_handshakes;
	unsigned handshake_timeout_ms;
	unsigned idle_timeout_ms;
	size_t unauthenticated_max_message_size;
};

struct node_api_stats {
	unsigned connections;
	unsigned max_connections; /* the limit in force: connections == max_connections = saturated */
	uint64_t refused[GRPC_REFUSED_N]; /* admission control refusals by enum grpc_refusal */
	unsigned streams; /* open SyncEntries streams = connected agents */
	uint64_t attest_ok, attest_err;
	uint64_t x509_ok, x509_err;
	uint64_t jwt_ok, jwt_err;
	uint64_t renew_ok, renew_err;
	/* Signing latency histogram (seconds): counts per bucket bound, cumulative like Prometheus. */
	uint64_t sign_hist[8];
	double sign_sum;
	uint64_t sign_count;
};
extern const double node_api_sign_buckets[8];

struct node_api;

int node_api_start(uv_loop_t *loop, const struct node_api_options *o, struct datastore *ds,
		   struct ca *ca, struct node_api **out, char *err, size_t errlen);
/* Applies the datastore's change journal (ds_changes_since; a full re-read when it cannot
 * account for every change) and pushes the differences to the entry streams the changed entries
 * and agents concern (and ends the streams of evicted or banned agents). Loop thread. */
void node_api_refresh(struct node_api *n);
/* The CA rotated: new TLS credentials for new connections, the new bundle to every stream. */
void node_api_ca_changed(struct node_api *n);
int node_api_port(struct node_api *n);
void node_api_stats(struct node_api *n, struct node_api_stats *out);
/* Stops accepting, ends the streams (UNAVAILABLE), lets in-flight calls finish, then done(arg). */
void node_api_shutdown(struct node_api *n, void (*done)(void *arg), void *arg);

#endif
