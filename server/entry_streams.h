/* entry_streams.h: the node API's SyncEntries streams and the authorization index behind them.
 *
 * Owns the authz index (kept current from the datastore's change journal, ds_changes_since,
 * and rebuilt when the journal cannot account for every change), the changes applied to it but
 * not yet pushed, and every open SyncEntries stream: the stream's agent record, the parents it
 * acts as, and what it was sent, so that a refresh pushes deltas to only the streams the
 * changed entries and agents concern (through a parent ID -> streams map), pushes a new bundle,
 * and ends the streams of evicted or banned agents. node_api.c authorizes the calls and hands
 * the streams over; it owns the struct entry_streams.
 *
 * Not thread-safe: every function is called on the node API's loop thread. */
#ifndef LANYARD_ENTRY_STREAMS_H
#define LANYARD_ENTRY_STREAMS_H

#include <stddef.h>
#include <stdint.h>

#include "authz.h"
#include "ca.h"
#include "datastore.h"
#include "grpc_server.h"
#include "node.pb-c.h"

struct entry_streams;

/* ds and ca are borrowed and must outlive the result; the strings are copied. server_id is
 * the server's SPIFFE ID (the parent of node aliases). */
struct entry_streams *entry_streams_new(struct datastore *ds, struct ca *ca,
					const char *trust_domain, const char *server_id);
/* Every stream must have been closed (entry_streams_call_closed) before. NULL-safe. */
void entry_streams_free(struct entry_streams *es);

/* Brings the index up to date and returns it (NULL while the datastore could never be read);
 * valid until the next call on es. The changes found are kept for entry_streams_refresh. */
const struct authz_index *entry_streams_index(struct entry_streams *es);

/* Opens a stream on an authorized SyncEntries call and sends it the snapshot. Takes over a.
 * counter: ds_change_counter() read before a was, so older agent changes are known to be in a. */
void entry_streams_open(struct entry_streams *es, struct grpc_call *call, struct agent_record *a,
			int64_t counter);
/* The SyncEntries call ended (the server's on_call_closed): its stream, if any, goes. */
void entry_streams_call_closed(struct grpc_call *call);

/* Applies the change journal to the index and pushes the differences (and a new bundle) to the
 * streams concerned; ends the streams of evicted or banned agents (PERMISSION_DENIED). */
void entry_streams_refresh(struct entry_streams *es);
/* Ends every stream with UNAVAILABLE: the server is shutting down. */
void entry_streams_shutdown(struct entry_streams *es);
unsigned entry_streams_count(const struct entry_streams *es);
/* The bytes the open streams hold (each stream's own structure, its agent record, its parents
 * and what it was sent; the allocator's own overhead not counted): for tests and figures. */
size_t entry_streams_held_bytes(const struct entry_streams *es);

/* The bundle as the node API sends it (streams, Attest, RenewAgent, GetBundle); NULL when the
 * CA cannot give it. Free with entry_streams_bundle_free (NULL-safe). */
Lanyard__Node__V1__Bundle *entry_streams_bundle(struct entry_streams *es);
void entry_streams_bundle_free(Lanyard__Node__V1__Bundle *pb);

#endif
