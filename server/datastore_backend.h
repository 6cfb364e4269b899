/* datastore_backend.h: what a datastore backend (datastore_sqlite.c, later PostgreSQL) provides.
 * Only backends and datastore.c include this; everyone else uses datastore.h.
 *
 * datastore.c serialises every call with the mutex in struct datastore, so an operation never
 * runs concurrently with another on the same datastore: backends need no locking of their own.
 * The contracts of the operations are those of the ds_* functions of the same name. */
#ifndef LANYARD_DATASTORE_BACKEND_H
#define LANYARD_DATASTORE_BACKEND_H

#include <pthread.h>

#include "datastore.h"

struct datastore_ops {
	const char *name;
	void (*close)(struct datastore *ds);
	int (*entry_create)(struct datastore *ds, struct entry *e, char *err, size_t errlen);
	int (*entry_update)(struct datastore *ds, struct entry *e, char *err, size_t errlen);
	int (*entry_delete)(struct datastore *ds, const char *id);
	int (*entry_get)(struct datastore *ds, const char *id, struct entry **out);
	int (*entry_list)(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			  size_t *n);
	int (*entry_count)(struct datastore *ds, int64_t *n);
	int (*agent_count)(struct datastore *ds, int64_t *n);
	int64_t (*change_counter)(struct datastore *ds);
	int (*token_create)(struct datastore *ds, const char *token_hash, const char *alias,
			    int64_t expires_at);
	int (*token_consume)(struct datastore *ds, const char *token_hash, int64_t now,
			     char **alias_out);
	int (*token_count)(struct datastore *ds, int64_t now, int64_t *n);
	int (*token_prune)(struct datastore *ds, int64_t now);
	int (*agent_upsert)(struct datastore *ds, const struct agent_record *a);
	int (*agent_get)(struct datastore *ds, const char *spiffe_id, struct agent_record **out);
	int (*agent_list)(struct datastore *ds, struct agent_record ***out, size_t *n);
	int (*agent_delete)(struct datastore *ds, const char *spiffe_id);
	int (*agent_set_banned)(struct datastore *ds, const char *spiffe_id, bool banned);
	int (*agent_touch)(struct datastore *ds, const char *spiffe_id, const char *serial,
			   int64_t not_after, int64_t now);
	int (*ca_put)(struct datastore *ds, const struct ca_record *r);
	int (*ca_list)(struct datastore *ds, struct ca_record ***out, size_t *n);
	int (*ca_delete)(struct datastore *ds, const char *id);
	int (*kv_get_int)(struct datastore *ds, const char *key, int64_t *out);
	int (*kv_set_int)(struct datastore *ds, const char *key, int64_t v);
	int (*ping)(struct datastore *ds);
};

/* The first member of every backend's own struct. journal is a ring of the last changes (see
 * ds_changes_since), kept by datastore.c under lock: backends never touch it. */
struct datastore {
	const struct datastore_ops *ops;
	pthread_mutex_t lock;
	struct ds_change *journal;
	size_t journal_cap, journal_len, journal_head; /* head: index of the oldest record */
};

/* Backends call this on their freshly allocated struct, and datastore_fini_base in close. */
void datastore_init_base(struct datastore *ds, const struct datastore_ops *ops);
void datastore_fini_base(struct datastore *ds);

/* Shared helpers for backends: the hex SHA-256 under which a join token is stored (65 bytes). */
int datastore_token_hash(const char *token, char out[65]);

#endif
