/* taint_ack.h: which agents are clear of a tainted CA authority, the condition for revoking it.
 *
 * An agent told that an authority is tainted re-issues every SVID that authority signed, then
 * renews its own SVID and lists the authority in RenewAgentRequest.cleared_tainted (node.proto):
 * from then on nothing it holds or serves depends on that authority. The server records each
 * acknowledgement in the datastore (key/value "taint_ack/<authority>/<agent>"), so that with a
 * shared datastore any server sees every agent's acknowledgement.
 *
 * The revocation rule (admin API, "authority revoke"): the authority is tainted, and every agent
 * the datastore knows, banned ones included, has acknowledged it. An agent that is gone for good
 * must be evicted first ("agent evict"): its workloads' SVIDs might still be live. SVIDs minted
 * by hand on the server are not tracked.
 *
 * The acknowledgements stay in the datastore (one small row per agent and tainted authority);
 * an agent attested later acknowledges too, on its first taint renewal.
 *
 * Thread-safety: the functions only call the datastore, which is thread-safe. */
#ifndef LANYARD_TAINT_ACK_H
#define LANYARD_TAINT_ACK_H

#include <stddef.h>
#include <stdint.h>

#include "datastore.h"

/* Records agent_id's acknowledgement of each authority ID in ids (at most TAINT_ACK_MAX; IDs
 * that are not authority IDs are ignored). Best effort: a failure is logged, and the agent acks
 * again on its next taint renewal. */
#define TAINT_ACK_MAX 16
void taint_ack_record(struct datastore *ds, const char *agent_id, const char *const *ids,
		      size_t n, int64_t now);
/* The agents that have not acknowledged authority_id: a new array of new strings in *pending
 * (the caller frees with strv_free-like loops), *n of them. 0, or negative on a datastore error. */
int taint_ack_pending(struct datastore *ds, const char *authority_id, char ***pending, size_t *n);

#endif
