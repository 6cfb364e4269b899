/* entry_set.h: the registration entries an agent serves, each with its current X509-SVID, and
 * the plan of which SVIDs to mint or renew when.
 *
 * The set follows the server's entry stream: a snapshot (which may span several messages) is
 * staged until its last message and then replaces the set; a delta is merged at once. SVIDs of
 * entries whose SPIFFE ID is unchanged survive both; a changed revision gets them re-signed.
 * For a SignX509 request it picks the entries due, makes their keys and CSRs, and turns the
 * signed chains of the answer into SVIDs with a jittered renewal time.
 * No I/O and no locking. The sync thread of node_client.c owns the set (and
 * node_client_start fills it before that thread exists), so it is used by one thread at a time.
 *
 * Ownership: the set owns its slots, each slot's cache_entry and one reference to its svid, and
 * the staged entries of a snapshot being received; a batch owns its keys, CSRs and request
 * items until entry_set_batch_free(). */
#ifndef LANYARD_ENTRY_SET_H
#define LANYARD_ENTRY_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "node.pb-c.h"
#include "svid_cache.h"

struct entry_slot {
	struct entry *e;
	struct svid *svid; /* NULL until signed */
	int64_t retry_at;  /* after a signing failure: not before this time */
	int64_t taint_at;  /* svid was signed by a tainted authority: renew at this time (0: no) */
};

struct entry_staged;

/* Callers read slots[0..n) and may set a slot's retry_at; everything else changes only through
 * the functions below. Zero-initialised is an empty set. */
struct entry_set {
	struct entry_slot *slots; /* sorted by entry id */
	size_t n;
	/* A snapshot being received. */
	struct entry_staged *staging;
	size_t n_staging, cap_staging, staging_seq;
	bool in_snapshot;
};

/* What entry_set_apply() did with a message. */
enum entry_set_change {
	ENTRY_SET_UNCHANGED = 0, /* nothing merged (yet) */
	ENTRY_SET_MERGED,        /* a delta was merged */
	ENTRY_SET_SNAPSHOT,      /* a complete snapshot replaced the set */
};

/* Applies the entries of one SyncResponse (its bundle is the caller's business). Entries whose
 * SPIFFE ID is not a workload ID of trust_domain are ignored with a warning. */
enum entry_set_change entry_set_apply(struct entry_set *s, const char *trust_domain,
				      const Lanyard__Node__V1__SyncResponse *m);
/* Forgets a partly received snapshot: a new stream starts with a fresh one. */
void entry_set_restart(struct entry_set *s);
/* Takes over persisted entries (sorted by id) and SVIDs (sorted by entry id) into an empty set.
 * Each adopted pointer is set to NULL in the caller's arrays; what is left there stays the
 * caller's. */
void entry_set_adopt(struct entry_set *s, struct entry **entries, size_t n_entries,
		     struct svid **svids, size_t n_svids);
void entry_set_free(struct entry_set *s);

/* Drops SVIDs that expired by now (true when one was dropped). Sets *next_due to the next time
 * something must be signed (only when synced: an unsynced set may be stale) or an SVID expires,
 * and *next_expiry to the first expiry; INT64_MAX when there is none. */
bool entry_set_plan(struct entry_set *s, int64_t now, bool synced, int64_t *next_due,
		    int64_t *next_expiry);
/* The entries of the set and the SVIDs still valid at now, in arrays of their own (the
 * caller's to free). refs: each element is a new reference (for a snapshot to publish);
 * otherwise they are borrowed from the set. Returns the number of SVIDs. */
size_t entry_set_list(const struct entry_set *s, int64_t now, bool refs,
		      struct entry ***entries, struct svid ***svids);
bool entry_set_needs_signing(const struct entry_slot *w, int64_t now);
/* Gives slot w the new SVID v (taking over its reference) in place of the old one. */
void entry_set_install(struct entry_slot *w, struct svid *v);

/* One SignX509 request: the entries due, each with a fresh key and its CSR. The set must not
 * change from entry_set_batch_new() to entry_set_batch_free(): the batch refers to its slots. */
struct entry_set_batch;
/* NULL when nothing needs signing. Otherwise req is filled with items the batch owns (none when
 * every key generation failed; those entries are retried at retry_at, and so are all entries
 * of the batch after entry_set_batch_retry()). */
struct entry_set_batch *entry_set_batch_new(struct entry_set *s, enum key_type kt, size_t max,
					    int64_t now, int64_t retry_at,
					    Lanyard__Node__V1__SignX509Request *req);
/* Frees the CSRs once sent: their memory is better used for the answers. */
void entry_set_batch_sent(struct entry_set_batch *b);
void entry_set_batch_retry(struct entry_set *s, struct entry_set_batch *b);
void entry_set_batch_free(struct entry_set_batch *b);

/* How answers are checked and planned: the bundle the chains must verify against (NULL: no
 * check) and the rotation_fraction for their renewal times. */
struct entry_set_signing {
	const uint8_t *bundle;
	size_t bundle_len;
	double rotation_fraction;
};

struct entry_set_minted {
	uint64_t minted;   /* SVIDs installed, renewals included */
	uint64_t rotated;  /* of which renewals of an SVID the slot held */
	int64_t persist_by; /* with rotated: half way to the earliest expiry of a replaced SVID */
};

/* Installs the SVIDs of a successful SignX509 answer. Entries without a usable result (an
 * error, a chain for another SPIFFE ID or key, one that does not verify) are logged and retried
 * at the batch's retry_at. */
void entry_set_batch_accept(struct entry_set *s, struct entry_set_batch *b,
			    const Lanyard__Node__V1__SignX509Response *sr,
			    const struct entry_set_signing *how, struct entry_set_minted *out);

/* The operator tainted the authorities whose DER certificates are certs[0..n): every SVID one
 * of them signed is renewed early, at a random time in [now, now + window) (a time already
 * planned is kept). Returns how many SVIDs of the set such an authority signed: 0 means the set
 * is clear of them. */
size_t entry_set_taint(struct entry_set *s, const uint8_t *const *certs, const size_t *lens,
		       size_t n, int64_t now, int64_t window);
/* How many SVIDs entry_set_taint marked are still held (a new SVID or a dropped one clears the
 * mark): no signature check, so it is cheap to ask often. */
size_t entry_set_tainted_left(const struct entry_set *s);
/* True when one of certs[0..n) signed the leaf of chain (which must be valid at now). */
bool entry_set_signed_by_any(const uint8_t *chain, size_t chain_len, const uint8_t *const *certs,
			     const size_t *lens, size_t n, int64_t now);

/* When to renew a certificate: rotation_fraction of its lifetime before the end, with jitter. */
int64_t entry_set_renew_time(double fraction, int64_t issued, int64_t not_before,
			     int64_t not_after);

#endif
