/* entry_pool.h: compact, read-only copies of registration entries for the server's
 * authorization index, and the interned strings they share.
 *
 * The index holds every entry of the datastore (100,000 in the fleet benchmark). A struct entry
 * as the datastore returns it is six or more allocations; here it is one block holding the
 * struct, its pointer arrays and its own strings, while the strings that repeat across entries
 * (parent IDs: an agent parents all its workloads' entries; selectors; federated trust domains)
 * are kept once, with a reference count, in the pool's hash table (sized to its load: it grows
 * and shrinks with the number of distinct strings).
 *
 * Ownership: an entry from entry_pool_add belongs to the caller until it is given back with
 * entry_pool_put; it must never be passed to entry_free or modified (its members point into its
 * block and into the pool). entry_pool_free frees the table and what is left in it; the
 * entries must have been put back before. Not thread-safe: the pool belongs to one index, used on
 * one thread. */
#ifndef LANYARD_ENTRY_POOL_H
#define LANYARD_ENTRY_POOL_H

#include <stddef.h>

#include "entry.h"

struct entry_pool;

struct entry_pool *entry_pool_new(void);
/* NULL-safe. */
void entry_pool_free(struct entry_pool *p);

/* A packed copy of e (e is not changed and stays the caller's). Aborts on allocation failure
 * like xmalloc. */
struct entry *entry_pool_add(struct entry_pool *p, const struct entry *e);
/* Gives back an entry from entry_pool_add: its interned strings lose a reference, the block is
 * freed. NULL-safe. */
void entry_pool_put(struct entry_pool *p, struct entry *e);

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
