/* authz.h: which registration entries an agent may see and get signed.
 *
 * An agent is entitled to the entries parented to its own SPIFFE ID, to one of its aliases (the
 * SPIFFE ID of the join token it used), or to a node alias: an entry parented to the server's ID
 * (spiffe://<td>/lanyard/server) whose selectors are all among the agent's node selectors names
 * a group of agents, and entries parented to that alias's SPIFFE ID are served to the group.
 *
 * The index is built once and shared by every agent connection, so that pushing a change to a
 * thousand agents costs one datastore read, not a thousand; afterwards it is kept up to date one
 * changed entry at a time (authz_index_update, authz_index_expire), and holds exactly what a full
 * rebuild would. Not thread-safe: used on the node API's loop. */
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

/* Brings the entry id up to date from ds after it was created, updated or deleted: it is added,
 * replaced or removed (also removed when it has expired at now). *alias_changed is set to true
 * (never reset) when the entry is or was a node alias, which changes which agents act as which
 * alias. Returns 0, or a negative datastore error with the index unchanged. */
int authz_index_update(struct authz_index *ix, struct datastore *ds, const char *id, int64_t now,
		       bool *alias_changed);
/* Removes the entries expired at now. Their ids are appended to *ids (malloc'd strings in a
 * realloc'd array holding *n) and *alias_changed set as above. Cheap when nothing is due. */
void authz_index_expire(struct authz_index *ix, int64_t now, char ***ids, size_t *n,
			bool *alias_changed);
/* The index keeps entries packed (entry_pool.h): readers get views, struct entry values that
 * borrow the index's strings, valid until the index changes; never entry_free'd. */

/* Number of entries, and a view of the i-th by id in *view (for tests and diagnostics): view,
 * or NULL past the end. */
size_t authz_index_count(const struct authz_index *ix);
const struct entry *authz_index_at(const struct authz_index *ix, size_t i, struct entry *view);

/* Views of the entries the agent may see, sorted by id. The caller frees *out (the array
 * only). */
int authz_entries_for(const struct authz_index *ix, const struct agent_record *agent,
		      struct entry **out, size_t *n);
/* A view of the entry id in *view: view, or NULL when the index does not hold it. */
const struct entry *authz_find(const struct authz_index *ix, const char *id, struct entry *view);
/* True when agent may get entry e signed. */
bool authz_allows(const struct authz_index *ix, const struct agent_record *agent,
		  const struct entry *e);
/* The SPIFFE IDs the agent acts as (its own, its aliases, the node aliases it matches), sorted
 * and unique, as malloc'd copies in a malloc'd array: an entry is the agent's exactly when its
 * parent_id is one of them. Changes only when the agent record or a node alias changes. */
size_t authz_agent_parents(const struct authz_index *ix, const struct agent_record *agent,
			   char ***out);

#endif
