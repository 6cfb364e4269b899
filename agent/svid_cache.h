/* svid_cache.h: what the agent serves, as immutable snapshots.
 *
 * The sync thread (node_client.c) owns all changes: it publishes a complete new snapshot after
 * every change (entries, SVIDs, bundle), and readers on the event loop (Workload API, status)
 * take a reference to the current one. A renewed SVID therefore replaces the old one for every
 * consumer at once (the "hot swap"), and a reader never sees a half-applied update.
 *
 * Snapshots and the SVIDs in them are reference counted and never change after publication;
 * consecutive snapshots share unchanged SVIDs (refcount.h's convention). Thread-safety: every
 * function may be called from any thread; subscriber callbacks run on the loop thread given to
 * svid_cache_new(). */
#ifndef LANYARD_SVID_CACHE_H
#define LANYARD_SVID_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "entry.h"

/* The entries the agent is authorized to serve are the server's struct entry (entry.h), shared
 * between snapshots by reference (entry.refs). */

/* An X509-SVID with its private key. Immutable once published. */
struct svid {
	int refs; /* atomic */
	char *entry_id;
	char *spiffe_id;
	char *hint;
	uint8_t *chain; /* DER certificates, leaf first */
	size_t chain_len;
	uint8_t *key; /* unencrypted PKCS#8 DER; wiped when freed */
	size_t key_len;
	char serial[80];
	int64_t not_before, not_after;
	int64_t renew_at;       /* when the agent will renew it (rotation_fraction, jitter) */
	int64_t entry_revision; /* the entry revision it was signed for */
};

/* The bundle of a foreign trust domain some entry federates with. */
struct fed_snap {
	char *trust_domain;  /* "two.test" */
	uint8_t *x509;       /* concatenated DER CA certificates; may be empty */
	size_t x509_len;
	char *jwt_bundle;    /* JWK Set JSON */
	int64_t sequence;
};

struct snapshot {
	int refs; /* atomic */
	uint64_t generation; /* increases with every publication */
	char *trust_domain;  /* "example.org" */
	uint8_t *bundle;     /* X.509 authorities: concatenated DER CA certificates */
	size_t bundle_len;
	char *jwt_bundle;    /* JWK Set JSON {"keys":[...]} for JWT-SVID validation */
	int64_t bundle_sequence;
	struct entry **entries; /* sorted by id */
	size_t n_entries;
	struct svid **svids; /* at most one per entry, sorted by entry_id; only unexpired ones */
	size_t n_svids;
	struct fed_snap *fed; /* sorted by trust domain */
	size_t n_fed;
	bool synced; /* the entry set has been received from the server (or loaded from disk) */
};

struct svid_cache;

struct svid_cache *svid_cache_new(uv_loop_t *loop);
/* Call on the loop thread, after every other thread stopped using the cache. */
void svid_cache_free(struct svid_cache *c);

/* The current snapshot with a reference taken (never NULL: an empty snapshot at first). */
struct snapshot *svid_cache_acquire(struct svid_cache *c);
/* Another reference to s, which the caller already holds one to; returns s. NULL-safe. */
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_release(struct snapshot *s);

/* Publishes s as the current snapshot (the cache takes over the caller's reference) and wakes
 * the subscribers on the loop. Its generation is assigned here. */
void svid_cache_publish(struct svid_cache *c, struct snapshot *s);

/* Subscribers are called on the loop thread after each publication (coalesced: several quick
 * publications may give one call). Returns a handle for unsubscribe, or NULL. */
struct cache_sub;
struct cache_sub *svid_cache_subscribe(struct svid_cache *c, void (*cb)(void *ud), void *ud);
void svid_cache_unsubscribe(struct svid_cache *c, struct cache_sub *sub);

/* Builders, for the publisher. */
struct snapshot *snapshot_new(void);
/* A shallow copy of s: shares (and references) its entries and SVIDs, copies the rest. */
struct snapshot *snapshot_copy(const struct snapshot *s);
struct svid *svid_ref(struct svid *v);
void svid_unref(struct svid *v);
/* Drops one reference to e (frees it with the last one). NULL-safe. */
void cache_entry_free(struct entry *e);
/* Takes another reference to e (which must no longer change) and returns it. */
struct entry *cache_entry_ref(struct entry *e);
/* A deep copy with a single owner. */
struct entry *cache_entry_dup(const struct entry *e);
/* Replaces s's federated bundles with a copy of v[0..n) (sorted by trust domain). */
void snapshot_set_fed(struct snapshot *s, const struct fed_snap *v, size_t n);
/* The federated bundle of td in s, or NULL. */
const struct fed_snap *snapshot_fed(const struct snapshot *s, const char *td);
void fed_snap_clear(struct fed_snap *v, size_t n);
/* Frees the members of one (not the struct itself) and zeroes it. */
void fed_snap_clear_one(struct fed_snap *f);
/* Looks up by entry id in a snapshot (binary search). NULL when absent. */
const struct entry *snapshot_entry(const struct snapshot *s, const char *entry_id);
struct svid *snapshot_svid(const struct snapshot *s, const char *entry_id);

/* True when every selector of the entry is among the caller's (both sorted). */
bool selectors_subset(char *const *entry_sel, size_t n_entry, char *const *caller_sel,
		      size_t n_caller);

#endif
