/* entry_pool.h: compact, read-only copies of registration entries for the server's
 * authorization index, and the interned strings they share.
 *
 * The index holds every entry of the datastore (100,000 in the fleet benchmark). A struct entry
 * as the datastore returns it is six or more allocations and a 152-byte struct; here it is one
 * block: a 56-byte header (the id packed in 16 bytes, entry_id.h; no created_at, which the node
 * API never sends), the pointer arrays, and the entry's own strings (SPIFFE ID, hint, DNS names),
 * while the strings that repeat across entries (parent IDs: an agent parents all its workloads'
 * entries; selectors; federated trust domains) are kept once, with a reference count, in the
 * pool's hash table (sized to its load: it grows and shrinks with the number of distinct
 * strings). Readers get a struct entry view (entry_pool_view) borrowing the block's strings.
 *
 * Ownership: an entry from entry_pool_add belongs to the caller until it is given back with
 * entry_pool_put; a view is valid while its entry is held, and must never be passed to
 * entry_free or modified. entry_pool_free frees the table and what is left in it; the entries
 * must have been put back before. Not thread-safe: the pool belongs to one index, used on one
 * thread. */
#ifndef LANYARD_ENTRY_POOL_H
#define LANYARD_ENTRY_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "entry_id.h"

struct entry_pool;

/* A packed entry: the members the index sorts and filters by are here; the rest through a view.
 * Read-only for everyone but entry_pool.c. */
struct pentry {
	int64_t revision, expires_at;
	const char *parent_id; /* interned */
	int32_t x509_svid_ttl, jwt_svid_ttl;
	uint8_t id[ENTRY_ID_BYTES];
	uint16_t n_selectors, n_dns_names, n_federates_with;
	uint8_t flags; /* PENTRY_* */
	/* Then selectors and federates_with (interned), dns_names (into the block), then the
	 * strings: spiffe_id, hint when PENTRY_HINT, the DNS names. */
	char *ptrs[];
};

struct entry_pool *entry_pool_new(void);
/* NULL-safe. */
void entry_pool_free(struct entry_pool *p);

/* A packed copy of e (e is not changed and stays the caller's); NULL when e's id does not pack
 * (entry_id.h) or a list is longer than a packed entry holds (65,535). Aborts on allocation
 * failure like xmalloc. */
struct pentry *entry_pool_add(struct entry_pool *p, const struct entry *e);
/* Gives back an entry from entry_pool_add: its interned strings lose a reference, the block is
 * freed. NULL-safe. */
void entry_pool_put(struct entry_pool *p, struct pentry *e);
/* Fills *view with e's members (created_at and refs 0), borrowing e's strings; returns view. */
const struct entry *entry_pool_view(const struct pentry *e, struct entry *view);
/* e's SPIFFE ID (in its block). */
const char *entry_pool_spiffe_id(const struct pentry *e);

/* The interned copy of s with one more reference (NULL for NULL). */
const char *entry_pool_intern(struct entry_pool *p, const char *s);
/* Drops one reference to s, a pointer entry_pool_intern returned; the string is freed with its
 * last reference. NULL-safe. */
void entry_pool_release(struct entry_pool *p, const char *s);

/* Distinct strings held, and the slots of the hash table (for tests and diagnostics). */
size_t entry_pool_strings(const struct entry_pool *p);
size_t entry_pool_slots(const struct entry_pool *p);
/* The references to the interned copy of s (0: s is not interned). */
unsigned entry_pool_refs(const struct entry_pool *p, const char *s);

#endif
