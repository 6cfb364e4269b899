/* datastore_pg.h: what the parts of the PostgreSQL backend share. datastore_pg.c holds the
 * connection pool, the statements and the operations table, datastore_pg_entry.c and
 * datastore_pg_records.c the operations; datastore_pg_conn.c opens connections for both;
 * datastore_pg_feed.c follows the shared change feed (the
 * `changes` table every change appends to) on a connection and thread of its own, and records
 * what it finds in the datastore's change journal. Only those files include this.
 *
 * Threads: the pool is used by any thread (its own lock); the feed thread owns its connection
 * and its position in the feed; feed_lock guards what writers wait on (delivered, holes). */
#ifndef LANYARD_DATASTORE_PG_H
#define LANYARD_DATASTORE_PG_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "datastore_backend.h"
#include "pq_dyn.h" /* every libpq call goes through pq_dyn: libpq is loaded on demand */

/* The channel every change transaction notifies (at commit) and every feed follower listens on. */
#define PG_FEED_CHANNEL "lanyard_changes"

/* The database's clock, in unix seconds. */
#define DB_NOW "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)"
/* The database's clock at this very moment (not the transaction's start), in milliseconds. */
#define DB_NOW_MS "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"

/* One pooled connection: used by one thread at a time. */
struct pgc {
	PGconn *conn;
	bool busy;
	bool broken; /* reconnect before the next use */
	int64_t seq; /* the change feed row the running transaction appended (0: none) */
	char sqlstate[6];
};

struct pg_feed;

struct pg {
	struct datastore base; /* first: datastore.c hands us &base */
	char *conninfo;	       /* may hold a password: wiped on close, never logged */
	char *password;	       /* the password in conninfo, if any, to scrub from messages */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct pgc *conns;
	size_t n_conns;
	struct pg_feed *feed;
};

/* Statement parameters: text format, except bytea in binary. At most PG_MAX_PARAMS. */
#define PG_MAX_PARAMS 16
struct params {
	const char *v[PG_MAX_PARAMS];
	int len[PG_MAX_PARAMS], fmt[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][24];
	int n;
};

static inline void p_str(struct params *p, const char *s)
{
	p->v[p->n++] = s; /* NULL is SQL NULL */
}

static inline void p_int(struct params *p, int64_t x)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)x);
	p->v[p->n] = p->num[p->n];
	p->n++;
}

static inline void p_bool(struct params *p, bool b)
{
	p->v[p->n++] = b ? "t" : "f";
}

static inline void p_bytes(struct params *p, const uint8_t *b, size_t len)
{
	p->v[p->n] = b && len ? (const char *)b : NULL;
	p->len[p->n] = (int)len;
	p->fmt[p->n] = 1;
	p->n++;
}

static inline int64_t r_int(const PGresult *r, int row, int col)
{
	return pq_dyn.getisnull(r, row, col) ? 0 : strtoll(pq_dyn.getvalue(r, row, col), NULL, 10);
}

/* The body of a transaction on a pooled connection (datastore_pg.c). */
typedef int (*tx_body)(struct pg *p, struct pgc *c, void *arg);
/* Runs body in one transaction on a pooled connection, retrying serialization failures and
 * deadlocks (body may run more than once: it must start from scratch each time); body's own
 * errors are returned as they are. */
int pg_with_tx(struct pg *p, tx_body body, void *arg);
/* Runs sql (not prepared) on c, within body. Errors as for the prepared statements: 0 with *out
 * (the caller's, may be NULL), -EEXIST, -EAGAIN (retryable), -EIO (logged, without secrets). */
int pg_exec(struct pg *p, struct pgc *c, const char *sql, const struct params *pa,
	    PGresult **out);

/* The parameters of an agent row (AGENT_COLS order; the JSON lists in *sel and *aliases, the
 * caller's to free, even on -ENOMEM) and of an authority row (CA_COLS order). */
int pg_agent_params(const struct agent_record *a, struct params *pa, char **sel, char **aliases);
void pg_ca_params(const struct ca_record *rec, struct params *pa);
/* The 7 FED_BUNDLE_COLS of b; *jwt is the JWK Set text the params point into (caller frees). */
struct fed_bundle;
int pg_fed_bundle_params(const struct fed_bundle *b, struct params *pa, char **jwt);

/* The import of a whole datastore (datastore_pg_import.c; ds_snapshot_import). */
int pg_snapshot_import(struct datastore *ds, const struct ds_snapshot *s, bool force, char *err,
		       size_t errlen);

/* A new connection with the server's session settings (timeouts, application_name); NULL and a
 * message without the password in err. */
PGconn *pg_connect(struct pg *p, char *err, size_t errlen);
/* Copies msg into out with every occurrence of the password replaced by "***". */
void pg_scrub(const struct pg *p, const char *msg, char *out, size_t outlen);

/* Starts following the feed from its current end; the thread calls datastore_feed_* on &p->base. */
int pg_feed_start(struct pg *p, char *err, size_t errlen);
/* Stops the thread and frees the follower. NULL-safe. */
void pg_feed_stop(struct pg_feed *f);
/* Wakes the follower (a transaction of ours appended seq) and waits, a bounded time, until seq
 * is in the journal, so that a change made through this process is journaled when its call
 * returns. */
void pg_feed_wait(struct pg_feed *f, int64_t seq);

/* The prepared statements (datastore_pg.c prepares them on every pooled connection). */
enum stmt_id {
	ST_CHANGE_ADD,
	ST_ENTRY_INSERT, ST_ENTRY_UPDATE, ST_ENTRY_DELETE, ST_ENTRY_GET, ST_ENTRY_LOCK, ST_ENTRY_FIND_DUP,
	ST_ENTRY_LIST_ALL, ST_ENTRY_LIST_SPIFFE, ST_ENTRY_LIST_PARENT, ST_ENTRY_LIST_BOTH,
	ST_TOKEN_INSERT, ST_TOKEN_CONSUME, ST_TOKEN_COUNT, ST_TOKEN_PRUNE, ST_TOKEN_LIST,
	ST_AGENT_UPSERT, ST_AGENT_GET, ST_AGENT_LIST, ST_AGENT_DELETE, ST_AGENT_BAN, ST_AGENT_TOUCH,
	ST_CA_PUT, ST_CA_LIST, ST_CA_DELETE, ST_CA_SET_STATE,
	ST_FED_REL_INSERT, ST_FED_REL_UPDATE, ST_FED_REL_GET, ST_FED_REL_LIST, ST_FED_REL_DELETE,
	ST_FED_PUT, ST_FED_GET, ST_FED_LIST, ST_FED_DELETE,
	ST_KV_GET, ST_KV_SET,
	ST_PING, ST_ENTRY_COUNT, ST_AGENT_COUNT,
	ST_SERVER_BEAT, ST_SERVER_LIST, ST_SERVER_PRUNE,
	ST_LEASE_TAKE, ST_LEASE_DROP,
	ST__COUNT
};

typedef void *(*row_reader)(const PGresult *r, int row);

/* Shared by datastore_pg.c (statements, the pool, transactions, the operations table) and the
 * operations in datastore_pg_entry.c and datastore_pg_records.c. */
int change_add(struct pg *p, struct pgc *c, enum ds_change_kind kind, const char *id);
int one(struct pg *p, enum stmt_id id, const struct params *pa, PGresult **out);
int one_row(struct pg *p, enum stmt_id id, const struct params *pa);
struct pg *pg_of(struct datastore *ds);
bool r_bool(const PGresult *r, int row, int col);
uint8_t *r_bytes(const PGresult *r, int row, int col, size_t *len);
char *r_strdup(const PGresult *r, int row, int col);
int run(struct pg *p, struct pgc *c, enum stmt_id id, const struct params *pa,
	       PGresult **out);
int with_conn(struct pg *p, bool tx, tx_body body, void *arg);
int change_one(struct pg *p, enum stmt_id id, const struct params *pa,
		      enum ds_change_kind kind, const char *key);
int get_row(struct datastore *ds, enum stmt_id id, const char *key, row_reader reader,
		   void **out);
int pg_agent_count(struct datastore *ds, int64_t *n);
int64_t pg_change_counter(struct datastore *ds);
int pg_entry_count(struct datastore *ds, int64_t *n);
int pg_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen);
int pg_entry_create_batch(struct datastore *ds, struct entry **v, size_t n,
				 size_t *failed, char *err, size_t errlen);
int pg_entry_delete(struct datastore *ds, const char *id);
int pg_entry_get(struct datastore *ds, const char *id, struct entry **out);
int pg_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			 size_t *n);
int pg_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen);
int pg_token_consume(struct datastore *ds, const char *hash, int64_t now, char **alias_out);
int pg_token_count(struct datastore *ds, int64_t now, int64_t *n);
int pg_token_create(struct datastore *ds, const char *hash, const char *alias,
			   int64_t expires_at);
int pg_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n);
int pg_token_prune(struct datastore *ds, int64_t now);
int pg_agent_delete(struct datastore *ds, const char *spiffe_id);
int pg_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out);
int pg_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n);
int pg_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned);
int pg_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
			  int64_t not_after, int64_t now);
int pg_agent_upsert(struct datastore *ds, const struct agent_record *a);
int pg_ca_delete(struct datastore *ds, const char *id);
int pg_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n);
int pg_ca_put(struct datastore *ds, const struct ca_record *rec);
int pg_ca_set_state(struct datastore *ds, const char *id, int *state);
int pg_fed_bundle_delete(struct datastore *ds, const char *trust_domain);
int pg_fed_bundle_get(struct datastore *ds, const char *trust_domain,
			     struct fed_bundle **out);
int pg_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n);
int pg_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, bool force);
int pg_fed_rel_delete(struct datastore *ds, const char *td);
int pg_fed_rel_get(struct datastore *ds, const char *td, char **doc);
int pg_fed_rel_list(struct datastore *ds, char ***docs, size_t *n);
int pg_fed_rel_put(struct datastore *ds, const char *td, const char *doc, bool create);
int pg_kv_get_int(struct datastore *ds, const char *key, int64_t *out);
int pg_kv_set_int(struct datastore *ds, const char *key, int64_t v);
int pg_lease_acquire(struct datastore *ds, const char *name, const char *holder,
			    int64_t ttl_s);
int pg_lease_release(struct datastore *ds, const char *name, const char *holder);
int pg_ping(struct datastore *ds);
int pg_server_heartbeat(struct datastore *ds, const struct server_record *rec);
int pg_server_list(struct datastore *ds, int64_t live_s, struct server_record ***out,
			  size_t *n);

#endif
