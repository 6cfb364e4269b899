/* node_api_internal.h: what the pieces of the node API share: node_api.c (TLS credentials,
 * authorization, Attest, RenewAgent, SignJWT, GetBundle, start and shutdown) and node_api_sign.c
 * (SignX509). Only those files include this.
 *
 * Threads: the server's loop thread owns struct node_api; see node_api.h. */
#ifndef LANYARD_NODE_API_INTERNAL_H
#define LANYARD_NODE_API_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "authz.h"
#include "entry_streams.h"
#include "grpc_server.h"
#include "keys.h"
#include "node_api.h"
#include "prev_svids.h"

#define PATH_PREFIX "/lanyard.node.v1.Node/"
#define MAX_SIGN_BATCH 1000

struct node_api {
	uv_loop_t *loop;
	struct datastore *ds;
	struct ca *ca;
	char *trust_domain;
	char *server_id;
	int64_t default_x509_ttl, default_jwt_ttl, agent_ttl;
	struct psat *psat;
	struct grpc_server *grpc;
	lkey *tls_key;
	int64_t tls_renew_at;
	uv_timer_t tls_timer;
	struct entry_streams *es; /* the SyncEntries streams and the authz index */
	struct prev_svids *prev;  /* agent SVIDs replaced by a renewal, until they expire */
	struct node_api_stats stats;
	bool stopping;
	void (*done)(void *);
	void *done_arg;
	int pending_closes;
};

/* Shared between the pieces of this module. */
struct node_api *api_of(struct grpc_call *call);
struct agent_record *authorize(struct node_api *n, struct grpc_call *call);
/* The same check with the record kept on the connection while the datastore says no agent
 * record changed (ds_agent_generation): borrowed, valid until the handler returns. */
const struct agent_record *authorize_cached(struct node_api *n, struct grpc_call *call);
void finishf(struct grpc_call *call, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void histogram_add(struct node_api *n, double secs);
void on_sign_x509(struct grpc_call *call, const uint8_t *msg, size_t len);

#endif
