/* refcount.h: the one reference-counting convention for objects shared between threads
 * (svid_cache snapshots, SVIDs and entries, the kubelet's pod tables).
 *
 * The count is an int holding the number of owners: 1 when the object is made, ref_get() by
 * anyone who already holds a reference (or holds the lock that guards the pointer), ref_put()
 * by every owner once; the owner whose ref_put() returns true frees the object. Objects used by
 * one thread only (grpc calls, workload API calls) count with plain ++/-- under the same
 * convention. Call sites never use atomics on a count directly. */
#ifndef LANYARD_REFCOUNT_H
#define LANYARD_REFCOUNT_H

#include <stdbool.h>

/* Relaxed: the caller already owns a reference, so the object cannot go away meanwhile. */
static inline void ref_get(int *refs)
{
	__atomic_add_fetch(refs, 1, __ATOMIC_RELAXED);
}

/* Acquire-release: the last owner sees every write the others made before they let go. */
static inline bool ref_put(int *refs)
{
	return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL) == 0;
}

#endif
