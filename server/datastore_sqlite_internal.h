/* datastore_sqlite_internal.h: what the pieces of the SQLite backend share: datastore_sqlite.c
 * (schema, statements, transactions, the operations table, open and close) and the operations in
 * datastore_sqlite_entry.c and datastore_sqlite_records.c. Only those files include this.
 *
 * Threads: one thread at a time (datastore.c holds the lock around every call). */
#ifndef LANYARD_DATASTORE_SQLITE_INTERNAL_H
#define LANYARD_DATASTORE_SQLITE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "datastore_backend.h"

#define ENTRY_AFTER "(created_at, id) > (?3, ?4)"

enum stmt_id {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_META_GET, ST_META_SET,
	ST_ENTRY_INSERT, ST_ENTRY_UPDATE, ST_ENTRY_DELETE, ST_ENTRY_GET, ST_ENTRY_FIND_DUP,
	ST_ENTRY_LIST_ALL, ST_ENTRY_LIST_SPIFFE, ST_ENTRY_LIST_PARENT, ST_ENTRY_LIST_BOTH,
	ST_TOKEN_INSERT, ST_TOKEN_GET, ST_TOKEN_DELETE, ST_TOKEN_COUNT, ST_TOKEN_PRUNE, ST_TOKEN_LIST,
	ST_AGENT_UPSERT, ST_AGENT_GET, ST_AGENT_LIST, ST_AGENT_DELETE, ST_AGENT_BAN, ST_AGENT_TOUCH,
	ST_CA_PUT, ST_CA_LIST, ST_CA_DELETE, ST_CA_SET_STATE,
	ST_FED_REL_INSERT, ST_FED_REL_UPDATE, ST_FED_REL_GET, ST_FED_REL_LIST, ST_FED_REL_DELETE,
	ST_FED_PUT, ST_FED_GET, ST_FED_LIST, ST_FED_DELETE,
	ST_KV_GET, ST_KV_SET,
	ST_PING, ST_ENTRY_COUNT, ST_AGENT_COUNT,
	ST_LEASE_TAKE, ST_LEASE_DROP,
	ST__COUNT
};

struct sq {
	struct datastore base;	/* first: datastore.c hands us &base */
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	int64_t counter;	/* last committed value of the change counter */
	int64_t pending;	/* value written by the open transaction, if any */
};

/* Shared between the pieces of this module. */
uint8_t *col_blobdup(sqlite3_stmt *st, int col, size_t *len);
char *col_strdup(sqlite3_stmt *st, int col);
int64_t counter_bump(struct sq *s);
int db_error(struct sq *s, const char *what);
int exec_done(struct sq *s, sqlite3_stmt *st);
struct sq *sq_of(struct datastore *ds);
sqlite3_stmt *stmt(struct sq *s, enum stmt_id id);
/* The page cache for a bulk transaction (true) or the usual small one (false). */
void sq_cache_bulk(struct sq *s, bool bulk);
int tx_begin(struct sq *s);
int tx_commit(struct sq *s);
void tx_rollback(struct sq *s);
int change_by_key(struct sq *s, enum stmt_id which, const char *key);
int sq_change_one(struct sq *s, sqlite3_stmt *st);
int sq_agent_count(struct datastore *ds, int64_t *n);
int64_t sq_change_counter(struct datastore *ds);
int sq_entry_count(struct datastore *ds, int64_t *n);
int sq_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen);
int sq_entry_create_batch(struct datastore *ds, struct entry **v, size_t n,
				 size_t *failed, char *err, size_t errlen);
int sq_entry_delete(struct datastore *ds, const char *id);
int sq_entry_get(struct datastore *ds, const char *id, struct entry **out);
int sq_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			 size_t *n);
int sq_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen);
int sq_token_consume(struct datastore *ds, const char *hash, int64_t now, char **alias_out);
int sq_token_count(struct datastore *ds, int64_t now, int64_t *n);
int sq_token_create(struct datastore *ds, const char *hash, const char *alias,
			   int64_t expires_at);
int sq_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n);
int sq_token_prune(struct datastore *ds, int64_t now);
int get_int(struct sq *s, enum stmt_id which, const char *key, int64_t *out);
int sq_agent_delete(struct datastore *ds, const char *spiffe_id);
int sq_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out);
int sq_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n);
int sq_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned);
int sq_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
			  int64_t not_after, int64_t now);
int sq_agent_upsert(struct datastore *ds, const struct agent_record *a);
int sq_ca_delete(struct datastore *ds, const char *id);
int sq_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n);
int sq_ca_put(struct datastore *ds, const struct ca_record *r);
int sq_ca_set_state(struct datastore *ds, const char *id, int *state);
int sq_fed_bundle_delete(struct datastore *ds, const char *trust_domain);
int sq_fed_bundle_get(struct datastore *ds, const char *trust_domain,
			     struct fed_bundle **out);
int sq_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n);
int sq_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, bool force);
int sq_fed_rel_delete(struct datastore *ds, const char *td);
int sq_fed_rel_get(struct datastore *ds, const char *td, char **doc);
int sq_fed_rel_list(struct datastore *ds, char ***docs, size_t *n);
int sq_fed_rel_put(struct datastore *ds, const char *td, const char *doc, bool create);
int sq_kv_get_int(struct datastore *ds, const char *key, int64_t *out);
int sq_kv_set_int(struct datastore *ds, const char *key, int64_t v);
int sq_lease_acquire(struct datastore *ds, const char *name, const char *holder,
			    int64_t ttl_s);
int sq_lease_release(struct datastore *ds, const char *name, const char *holder);
int sq_ping(struct datastore *ds);

#endif
