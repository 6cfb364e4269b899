/* taint_set.h: the CA authorities the operator tainted, as the server's bundle lists them
 * (node.proto Bundle.tainted), and whether this agent has acknowledged them.
 *
 * When a new tainted authority appears, the agent re-issues every X509-SVID it signed over a
 * short jittered window (entry_set_taint), drops its cached JWT-SVIDs (the next request gets a
 * token of the active authority), then renews its own SVID listing the authorities in
 * RenewAgentRequest.cleared_tainted: the server may revoke an authority once every agent has
 * (taint_ack.h on the server). The acknowledgements live in memory only: a restarted agent
 * acknowledges again, which costs one renewal.
 *
 * Threading: owned by node_client.c's sync thread, like the bundle. */
#ifndef LANYARD_TAINT_SET_H
#define LANYARD_TAINT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node.pb-c.h"

#define TAINT_SET_MAX 16 /* more tainted authorities than this are ignored (logged) */

struct taint_set {
	size_t n;
	char *ids[TAINT_SET_MAX];
	uint8_t *certs[TAINT_SET_MAX]; /* DER */
	size_t lens[TAINT_SET_MAX];
	bool pending;            /* an authority of the set is not acknowledged yet */
	int64_t pending_since;   /* unix seconds */
	int64_t next_check;      /* unix seconds: when to look whether the entry set is clear */
	char *acked[TAINT_SET_MAX];
	size_t n_acked;
};

/* Takes the tainted authorities of a bundle. Returns true when one of them is new (not
 * acknowledged): the caller re-issues what it signed. */
bool taint_set_update(struct taint_set *t, const Lanyard__Node__V1__Bundle *b, int64_t now);
/* The server took the acknowledgement of every authority of the set. */
void taint_set_acked(struct taint_set *t);
void taint_set_free(struct taint_set *t);

#endif
