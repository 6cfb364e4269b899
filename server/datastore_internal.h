/* datastore_internal.h: what the pieces of the datastore front end share: datastore.c (the
 * calls, statistics, change journal) and datastore_records.c (records, servers' heartbeats).
 * Only those files include this; backends see datastore_backend.h.
 *
 * Threads: any thread; see datastore.c for the locks. */
#ifndef LANYARD_DATASTORE_INTERNAL_H
#define LANYARD_DATASTORE_INTERNAL_H

#include <stdint.h>

#include "datastore_backend.h"

/* Shared between the pieces of this module. */
void journal_lock(struct datastore *ds);
void journal_unlock(struct datastore *ds);
int64_t op_begin(struct datastore *ds);
void op_end(struct datastore *ds, enum ds_op op, int ret, int64_t t0);

#endif
