/* prev_svids.h: the agent SVIDs that a renewal replaced, remembered until they expire.
 *
 * The node API admits an agent only with the SVID whose serial its record holds (the one issued
 * last). An agent that received a renewed SVID but could not persist it (disk full, killed at the
 * wrong moment) comes back with the previous one: that SVID was issued to the agent too, so it is
 * admitted until it expires instead of locking the agent out until an operator acts. Only the
 * last replaced SVID of each agent is kept, in memory (a server restart forgets them).
 *
 * Threading: one thread (the node API's loop). */
#ifndef LANYARD_PREV_SVIDS_H
#define LANYARD_PREV_SVIDS_H

#include <stdbool.h>
#include <stdint.h>

#define PREV_SVIDS_MAX 100000

struct prev_svids;

struct prev_svids *prev_svids_new(void);
/* NULL-safe. */
void prev_svids_free(struct prev_svids *p);
/* Remembers serial (hex), valid until not_after, as agent_id's previous SVID, replacing any
 * earlier one; forgets every entry expired at now. Ignored when PREV_SVIDS_MAX are kept. */
void prev_svids_put(struct prev_svids *p, const char *agent_id, const char *serial,
		    int64_t not_after, int64_t now);
/* Whether serial is agent_id's previous SVID and has not expired at now. */
bool prev_svids_match(const struct prev_svids *p, const char *agent_id, const char *serial,
		      int64_t now);
/* Forgets agent_id's previous SVID (the agent attested anew). */
void prev_svids_forget(struct prev_svids *p, const char *agent_id);

#endif
