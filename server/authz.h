/* authz.h: which registration entries an agent may see and get signed.
 *
 * An agent is entitled to the entries parented to its own SPIFFE ID, to one of its aliases (the
 * SPIFFE ID of the join token it used), or to a node alias: an entry parented to the server's ID
 * (spiffe://<td>/lanyard/server) whose selectors are all among the agent's node selectors names
 * a group of agents, and entries parented to that alias's SPIFFE ID are served to the group.
 *
 * The index is built once per datastore change and shared by every agent connection, so that
 * pushing a change to a thousand agents costs one datastore read, not a thousand. Not
 * thread-safe: used on the node API's loop. */
#ifndef LANYARD_AUTHZ_H
#define LANYARD_AUTHZ_H

#include <stddef.h>
#include <stdint.h>

#include "datastore.h"

struct authz_index;

/* Reads every unexpired entry from ds. server_id is "spiffe://<td>/lanyard/server". */
int authz_index_build(struct datastore *ds, const char *server_id, int64_t now,
		      struct authz_index **out);
void authz_index_free(struct authz_index *ix);

/* The entries the agent may see, sorted by id (pointers into the index, valid while it lives).
 * The caller frees *out (the array only). */
int authz_entries_for(const struct authz_index *ix, const struct agent_record *agent,
		      const struct entry ***out, size_t *n);
/* One entry by id, or NULL. */
const struct entry *authz_find(const struct authz_index *ix, const char *id);
/* True when agent may get entry e signed. */
bool authz_allows(const struct authz_index *ix, const struct agent_record *agent,
		  const struct entry *e);

#endif
