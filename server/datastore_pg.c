/* datastore_pg.c: the PostgreSQL datastore backend, for several servers sharing one database.
 *
 * A pool of at most max_connections connections, opened on demand, each used by one thread at a
 * time; every statement prepared once per connection. Calls run in parallel (ops.concurrent):
 * the admin API, the node API's workers and the loop do not queue behind one another.
 *
 * Every change is one READ COMMITTED transaction that also appends a row to the `changes` table
 * (the shared change feed, followed by datastore_pg_feed.c) and notifies PG_FEED_CHANNEL, so that
 * every server learns of it at once. Correctness under concurrency comes from single statements,
 * not from isolation: unique indexes forbid duplicate entries, a join token is consumed by one
 * DELETE ... RETURNING (two servers presented the same token at once: one gets the row), agents
 * are upserted with ON CONFLICT. A serialization failure or deadlock (SQLSTATE 40001, 40P01) is
 * retried with a jittered, growing backoff, a bounded number of times, then reported.
 *
 * The schema is versioned (schema_version) and migrated at open under a session advisory lock,
 * so that servers starting together migrate it exactly once.
 *
 * Selector and DNS name lists are compact JSON arrays, as in the SQLite backend. This file holds
 * the schema, the statements, the pool and transactions, and the operations table; the
 * operations are in datastore_pg_entry.c and datastore_pg_records.c. */
#include "datastore_pg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define TX_ATTEMPTS 6
#define BACKOFF_BASE_MS 5
/* Any number: the key of the advisory lock held while migrating. */
#define MIGRATE_LOCK_KEY 7273697465LL

static const char *const migrations[] = {
	/* v1. Long text keys (SPIFFE IDs up to 2048 bytes, selector lists) are indexed through
	 * md5() or hash indexes: a B-tree refuses keys above ~2.7 kB. */
	"CREATE TABLE kv (key TEXT PRIMARY KEY, value BIGINT NOT NULL);"
	"CREATE SEQUENCE entry_revision;"
	"CREATE TABLE entries ("
	" id TEXT PRIMARY KEY,"
	" spiffe_id TEXT NOT NULL,"
	" parent_id TEXT NOT NULL,"
	" selectors TEXT NOT NULL,"
	" x509_svid_ttl BIGINT NOT NULL DEFAULT 0,"
	" jwt_svid_ttl BIGINT NOT NULL DEFAULT 0,"
	" dns_names TEXT NOT NULL DEFAULT '[]',"
	" hint TEXT,"
	" admin BOOLEAN NOT NULL DEFAULT false,"
	" downstream BOOLEAN NOT NULL DEFAULT false,"
	" expires_at BIGINT NOT NULL DEFAULT 0,"
	" revision BIGINT NOT NULL,"
	" created_at BIGINT NOT NULL);"
	"CREATE UNIQUE INDEX entries_unique ON entries "
	" (md5(spiffe_id || chr(10) || parent_id || chr(10) || selectors));"
	"CREATE INDEX entries_parent ON entries USING hash (parent_id);"
	"CREATE INDEX entries_spiffe ON entries USING hash (spiffe_id);"
	"CREATE TABLE join_tokens ("
	" hash TEXT PRIMARY KEY,"
	" alias TEXT,"
	" expires_at BIGINT NOT NULL);"
	"CREATE TABLE agents ("
	" spiffe_id TEXT PRIMARY KEY,"
	" attestor TEXT,"
	" selectors TEXT NOT NULL DEFAULT '[]',"
	" aliases TEXT NOT NULL DEFAULT '[]',"
	" serial TEXT,"
	" not_after BIGINT NOT NULL DEFAULT 0,"
	" created_at BIGINT NOT NULL,"
	" last_seen BIGINT NOT NULL DEFAULT 0,"
	" banned BOOLEAN NOT NULL DEFAULT false);"
	"CREATE TABLE ca_authorities ("
	" id TEXT PRIMARY KEY,"
	" state INTEGER NOT NULL,"
	" cert BYTEA,"
	" jwt_kid TEXT,"
	" jwt_spki BYTEA,"
	" not_before BIGINT NOT NULL,"
	" not_after BIGINT NOT NULL,"
	" created_at BIGINT NOT NULL);"
	"CREATE TABLE changes ("
	" seq BIGSERIAL PRIMARY KEY,"
	" kind SMALLINT NOT NULL,"
	" id TEXT NOT NULL,"
	" at BIGINT NOT NULL);"
	"CREATE INDEX changes_at ON changes (at);",
	/* v2. The servers sharing the database, each refreshing its row (a heartbeat). */
	"CREATE TABLE servers ("
	" id TEXT PRIMARY KEY,"
	" address TEXT NOT NULL,"
	" version TEXT NOT NULL,"
	" started_at BIGINT NOT NULL,"
	" last_seen BIGINT NOT NULL,"
	" authorities BIGINT NOT NULL DEFAULT 0);",
	/* v3. When a change was written, in milliseconds by the database's clock (the feed's lag). */
	"ALTER TABLE changes ADD COLUMN at_ms BIGINT;",
	/* v4: federation. The bundles of foreign trust domains, and the trust domains an entry's
	 * workloads federate with (a JSON array, like selectors). */
	"CREATE TABLE fed_bundles ("
	" trust_domain TEXT PRIMARY KEY,"
	" x509 BYTEA,"
	" jwt_keys TEXT,"
	" sequence BIGINT NOT NULL,"
	" refresh_hint BIGINT NOT NULL DEFAULT 0,"
	" refreshed_at BIGINT NOT NULL,"
	" source TEXT NOT NULL);"
	"ALTER TABLE entries ADD COLUMN federates_with TEXT NOT NULL DEFAULT '[]';",
	/* v5. Federation relationships: the validated JSON document per trust domain. */
	"CREATE TABLE federation_relationships ("
	" trust_domain TEXT PRIMARY KEY,"
	" doc TEXT NOT NULL);",
	/* v6. Entries kept by automatic registration (k8s_reg.c); the lease that lets one
	 * server at a time keep them, dated by the database's clock. */
	"ALTER TABLE entries ADD COLUMN managed BOOLEAN NOT NULL DEFAULT false;"
	"CREATE TABLE leases ("
	" name TEXT PRIMARY KEY,"
	" holder TEXT NOT NULL,"
	" expires_at BIGINT NOT NULL);",
	/* v7. The order of entry listings, so that a page is read without sorting the table. */
	"CREATE INDEX entries_order ON entries (created_at, id);",
};

/* The statement names are "s<id>". */
static const char *const stmt_sql[ST__COUNT] = {
	[ST_CHANGE_ADD] = "WITH c AS (INSERT INTO changes (kind, id, at, at_ms) VALUES ($1, $2, $3, "
			  DB_NOW_MS ") RETURNING seq) SELECT seq, pg_notify('" PG_FEED_CHANNEL
			  "', '') FROM c",
	[ST_ENTRY_INSERT] = "INSERT INTO entries (" ENTRY_COLS ") VALUES ($1, $2, $3, $4, $5, $6, "
			    "$7, $8, $9, $10, $11, nextval('entry_revision'), $12, $13, $14) "
			    "RETURNING revision",
	[ST_ENTRY_UPDATE] = "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors = $4, "
			    "x509_svid_ttl = $5, jwt_svid_ttl = $6, dns_names = $7, hint = $8, "
			    "admin = $9, downstream = $10, expires_at = $11, federates_with = $12, "
			    "managed = $13, "
			    "revision = nextval('entry_revision') WHERE id = $1 "
			    "RETURNING revision, created_at",
	[ST_ENTRY_DELETE] = "DELETE FROM entries WHERE id = $1",
	[ST_ENTRY_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE id = $1",
	[ST_ENTRY_LOCK] = "SELECT 1 FROM entries WHERE id = $1 FOR UPDATE",
	[ST_ENTRY_FIND_DUP] = "SELECT id FROM entries WHERE spiffe_id = $1 AND parent_id = $2 "
			      "AND selectors = $3 AND id != $4",
	/* The last three parameters: the (created_at, id) key the list starts after, and a row
	 * limit (NULL: none). See struct entry_filter. */
	[ST_ENTRY_LIST_ALL] = "SELECT " ENTRY_COLS " FROM entries WHERE (created_at, id) > ($1, $2) "
			      "ORDER BY created_at, id LIMIT $3",
	[ST_ENTRY_LIST_SPIFFE] = "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = $1 "
				 "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4",
	[ST_ENTRY_LIST_PARENT] = "SELECT " ENTRY_COLS " FROM entries WHERE parent_id = $1 "
				 "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4",
	[ST_ENTRY_LIST_BOTH] = "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = $1 "
			       "AND parent_id = $2 AND (created_at, id) > ($3, $4) "
			       "ORDER BY created_at, id LIMIT $5",
	[ST_TOKEN_INSERT] = "INSERT INTO join_tokens (hash, alias, expires_at) VALUES ($1, $2, $3)",
	[ST_TOKEN_CONSUME] = "DELETE FROM join_tokens WHERE hash = $1 RETURNING alias, expires_at",
	[ST_TOKEN_COUNT] = "SELECT COUNT(*) FROM join_tokens WHERE expires_at = 0 OR expires_at > $1",
	[ST_TOKEN_PRUNE] = "DELETE FROM join_tokens WHERE expires_at != 0 AND expires_at <= $1",
	[ST_TOKEN_LIST] = "SELECT hash, alias, expires_at FROM join_tokens ORDER BY hash",
	[ST_AGENT_UPSERT] = "INSERT INTO agents (" AGENT_COLS ") VALUES "
			    "($1, $2, $3, $4, $5, $6, $7, $8, $9) "
			    "ON CONFLICT (spiffe_id) DO UPDATE SET attestor = excluded.attestor, "
			    "selectors = excluded.selectors, aliases = excluded.aliases, "
			    "serial = excluded.serial, not_after = excluded.not_after, "
			    "last_seen = excluded.last_seen, banned = excluded.banned",
	[ST_AGENT_GET] = "SELECT " AGENT_COLS " FROM agents WHERE spiffe_id = $1",
	[ST_AGENT_LIST] = "SELECT " AGENT_COLS " FROM agents ORDER BY spiffe_id",
	[ST_AGENT_DELETE] = "DELETE FROM agents WHERE spiffe_id = $1",
	[ST_AGENT_BAN] = "UPDATE agents SET banned = $2 WHERE spiffe_id = $1",
	[ST_AGENT_TOUCH] = "UPDATE agents SET serial = COALESCE($2, serial), not_after = $3, "
			   "last_seen = $4 WHERE spiffe_id = $1",
	[ST_CA_PUT] = "INSERT INTO ca_authorities (" CA_COLS ") VALUES "
		      "($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET "
		      "state = " CA_STATE_MERGE_SQL("ca_authorities.state", "excluded.state") ", "
		      "cert = excluded.cert, jwt_kid = excluded.jwt_kid, "
		      "jwt_spki = excluded.jwt_spki, not_before = excluded.not_before, "
		      "not_after = excluded.not_after, created_at = excluded.created_at",
	[ST_CA_LIST] = "SELECT " CA_COLS " FROM ca_authorities ORDER BY not_before, id",
	[ST_CA_SET_STATE] = "UPDATE ca_authorities SET state = "
			    CA_STATE_MERGE_SQL("ca_authorities.state", "$2::integer")
			    " WHERE id = $1 RETURNING state",
	[ST_CA_DELETE] = "DELETE FROM ca_authorities WHERE id = $1",
	/* $8: force. Otherwise an older sequence leaves the row alone (no row touched): the
	 * comparison and the write are one statement, atomic between servers. */
	[ST_FED_PUT] = "INSERT INTO fed_bundles (" FED_BUNDLE_COLS ") VALUES "
		       "($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (trust_domain) DO UPDATE SET "
		       "x509 = excluded.x509, jwt_keys = excluded.jwt_keys, "
		       "sequence = excluded.sequence, refresh_hint = excluded.refresh_hint, "
		       "refreshed_at = excluded.refreshed_at, source = excluded.source "
		       "WHERE $8::boolean OR fed_bundles.sequence <= excluded.sequence",
	[ST_FED_GET] = "SELECT " FED_BUNDLE_COLS " FROM fed_bundles WHERE trust_domain = $1",
	[ST_FED_LIST] = "SELECT " FED_BUNDLE_COLS " FROM fed_bundles ORDER BY trust_domain",
	[ST_FED_DELETE] = "DELETE FROM fed_bundles WHERE trust_domain = $1",
	[ST_FED_REL_INSERT] = "INSERT INTO federation_relationships (trust_domain, doc) "
			      "VALUES ($1, $2) ON CONFLICT (trust_domain) DO NOTHING",
	[ST_FED_REL_UPDATE] = "UPDATE federation_relationships SET doc = $2 WHERE trust_domain = $1",
	[ST_FED_REL_GET] = "SELECT doc FROM federation_relationships WHERE trust_domain = $1",
	[ST_FED_REL_LIST] = "SELECT doc FROM federation_relationships ORDER BY trust_domain",
	[ST_FED_REL_DELETE] = "DELETE FROM federation_relationships WHERE trust_domain = $1",
	[ST_KV_GET] = "SELECT value FROM kv WHERE key = $1",
	[ST_KV_SET] = "INSERT INTO kv (key, value) VALUES ($1, $2) "
		      "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_PING] = "SELECT 1",
	[ST_ENTRY_COUNT] = "SELECT COUNT(*) FROM entries",
	[ST_AGENT_COUNT] = "SELECT COUNT(*) FROM agents",
	/* last_seen by the database's clock: the servers' clocks may disagree. */
	[ST_SERVER_BEAT] = "INSERT INTO servers (id, address, version, started_at, last_seen, "
			   "authorities) VALUES ($1, $2, $3, $4, " DB_NOW ", $5) "
			   "ON CONFLICT (id) DO UPDATE SET address = excluded.address, "
			   "version = excluded.version, started_at = excluded.started_at, "
			   "last_seen = excluded.last_seen, authorities = excluded.authorities",
	[ST_SERVER_LIST] = "SELECT id, address, version, started_at, last_seen, authorities "
			   "FROM servers WHERE last_seen >= " DB_NOW " - $1 ORDER BY id",
	[ST_SERVER_PRUNE] = "DELETE FROM servers WHERE last_seen < " DB_NOW " - $1",
	[ST_LEASE_TAKE] = "INSERT INTO leases (name, holder, expires_at) "
			  "VALUES ($1, $2, " DB_NOW " + $3) "
			  "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
			  "expires_at = excluded.expires_at "
			  "WHERE leases.holder = excluded.holder OR leases.expires_at <= " DB_NOW,
	[ST_LEASE_DROP] = "DELETE FROM leases WHERE name = $1 AND holder = $2",
};

struct pg *pg_of(struct datastore *ds)
{
	return (struct pg *)ds;
}

/* ---- results ---- */

bool r_bool(const PGresult *r, int row, int col)
{
	return !pq_dyn.getisnull(r, row, col) && pq_dyn.getvalue(r, row, col)[0] == 't';
}

char *r_strdup(const PGresult *r, int row, int col)
{
	return pq_dyn.getisnull(r, row, col) ? NULL : xstrdup(pq_dyn.getvalue(r, row, col));
}

uint8_t *r_bytes(const PGresult *r, int row, int col, size_t *len)
{
	*len = 0;
	if (pq_dyn.getisnull(r, row, col))
		return NULL;
	size_t n = 0;
	unsigned char *raw = pq_dyn.unescape_bytea((const unsigned char *)pq_dyn.getvalue(r, row, col), &n);
	if (!raw || n == 0) {
		pq_dyn.freemem(raw);
		return NULL;
	}
	uint8_t *out = xmalloc(n);
	memcpy(out, raw, n);
	pq_dyn.freemem(raw);
	*len = n;
	return out;
}

/* ---- connections ---- */

static int prepare_all(struct pg *p, PGconn *c, char *err, size_t errlen)
{
	for (int i = 0; i < ST__COUNT; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		PGresult *r = pq_dyn.prepare(c, name, stmt_sql[i], 0, NULL);
		bool ok = pq_dyn.result_status(r) == PGRES_COMMAND_OK;
		pq_dyn.clear(r);
		if (!ok) {
			char why[256];
			pg_scrub(p, pq_dyn.error_message(c), why, sizeof(why));
			snprintf(err, errlen, "cannot prepare \"%.80s\": %s", stmt_sql[i], why);
			return -EIO;
		}
	}
	return 0;
}

/* A connection of the pool, connected and prepared; NULL (logged) when the database cannot be
 * reached. Waits while all max_connections are in use. */
static struct pgc *acquire(struct pg *p)
{
	struct pgc *c = NULL;
	pthread_mutex_lock(&p->pool_lock);
	for (;;) {
		/* An open connection first; an unopened slot only when none is idle. */
		for (size_t i = 0; i < p->n_conns && !c; i++)
			if (!p->conns[i].busy && p->conns[i].conn)
				c = &p->conns[i];
		for (size_t i = 0; i < p->n_conns && !c; i++)
			if (!p->conns[i].busy)
				c = &p->conns[i];
		if (c)
			break;
		pthread_cond_wait(&p->pool_cond, &p->pool_lock);
	}
	c->busy = true;
	pthread_mutex_unlock(&p->pool_lock);
	if (c->conn && (c->broken || pq_dyn.status(c->conn) != CONNECTION_OK)) {
		pq_dyn.finish(c->conn);
		c->conn = NULL;
	}
	if (!c->conn) {
		char err[512];
		c->conn = pg_connect(p, err, sizeof(err));
		if (c->conn && prepare_all(p, c->conn, err, sizeof(err)) < 0) {
			pq_dyn.finish(c->conn);
			c->conn = NULL;
		}
		if (!c->conn) {
			log_error("datastore: cannot connect to PostgreSQL: %s", err);
			pthread_mutex_lock(&p->pool_lock);
			c->busy = false;
			pthread_cond_signal(&p->pool_cond);
			pthread_mutex_unlock(&p->pool_lock);
			return NULL;
		}
	}
	c->broken = false;
	c->seq = 0;
	return c;
}

static void release(struct pg *p, struct pgc *c)
{
	if (pq_dyn.status(c->conn) != CONNECTION_OK || pq_dyn.transaction_status(c->conn) != PQTRANS_IDLE)
		c->broken = true;
	pthread_mutex_lock(&p->pool_lock);
	c->busy = false;
	pthread_cond_signal(&p->pool_cond);
	pthread_mutex_unlock(&p->pool_lock);
}

static bool retryable(const char *sqlstate)
{
	return strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0;
}

/* Runs a prepared statement. 0 with *out (the caller's, may be NULL to discard) on success;
 * -EEXIST on a unique violation; -EAGAIN on a serialization failure or deadlock (c->sqlstate
 * says which); -EIO otherwise (logged). */
/* The outcome of a statement (what for the log): see run. Takes r. */
static int result(struct pg *p, struct pgc *c, PGresult *r, const char *what, PGresult **out)
{
	ExecStatusType st = pq_dyn.result_status(r);
	if (out)
		*out = NULL;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (out)
			*out = r;
		else
			pq_dyn.clear(r);
		return 0;
	}
	const char *state = pq_dyn.result_error_field(r, PG_DIAG_SQLSTATE);
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
	int ret = -EIO;
	if (strcmp(c->sqlstate, "23505") == 0) {
		ret = -EEXIST;
	} else if (retryable(c->sqlstate)) {
		ret = -EAGAIN;
	} else {
		char why[512];
		pg_scrub(p, pq_dyn.error_message(c->conn), why, sizeof(why));
		log_error("datastore: %.60s: %s", what, why);
	}
	pq_dyn.clear(r);
	return ret;
}

int run(struct pg *p, struct pgc *c, enum stmt_id id, const struct params *pa,
	       PGresult **out)
{
	char name[16];
	snprintf(name, sizeof(name), "s%d", (int)id);
	PGresult *r = pq_dyn.exec_prepared(c->conn, name, pa ? pa->n : 0, pa ? pa->v : NULL,
					   pa ? pa->len : NULL, pa ? pa->fmt : NULL, 0);
	return result(p, c, r, stmt_sql[id], out);
}

int pg_exec(struct pg *p, struct pgc *c, const char *sql, const struct params *pa,
	    PGresult **out)
{
	PGresult *r = pq_dyn.exec_params(c->conn, sql, pa ? pa->n : 0, NULL, pa ? pa->v : NULL,
					 pa ? pa->len : NULL, pa ? pa->fmt : NULL, 0);
	return result(p, c, r, sql, out);
}

static int simple(struct pgc *c, const char *sql)
{
	PGresult *r = pq_dyn.exec(c->conn, sql);
	ExecStatusType st = pq_dyn.result_status(r);
	const char *state = pq_dyn.result_error_field(r, PG_DIAG_SQLSTATE);
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
	pq_dyn.clear(r);
	if (st == PGRES_COMMAND_OK)
		return 0;
	return retryable(c->sqlstate) ? -EAGAIN : -EIO;
}

/* Appends the change to the feed, in the running transaction. */
int change_add(struct pg *p, struct pgc *c, enum ds_change_kind kind, const char *id)
{
	struct params pa = {0};
	PGresult *r;
	p_int(&pa, kind);
	p_str(&pa, id);
	p_int(&pa, now_unix());
	int ret = run(p, c, ST_CHANGE_ADD, &pa, &r);
	if (ret < 0)
		return ret;
	c->seq = pq_dyn.ntuples(r) == 1 ? r_int(r, 0, 0) : 0;
	pq_dyn.clear(r);
	return c->seq > 0 ? 0 : -EIO;
}

static void backoff(int attempt)
{
	/* Jittered and growing: two servers that collided do not collide again in step. */
	static __thread unsigned seed;
	if (!seed)
		seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
	long ms = (long)BACKOFF_BASE_MS << attempt;
	ms = ms / 2 + rand_r(&seed) % (ms + 1);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Runs body on a pooled connection, in a transaction when tx, retrying serialization failures
 * and deadlocks; then, when the body appended to the change feed, waits until the change is in
 * the journal. body's own errors are returned as they are. */
int with_conn(struct pg *p, bool tx, tx_body body, void *arg)
{
	struct pgc *c = acquire(p);
	if (!c)
		return -EIO;
	int ret = -EIO;
	for (int attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
		c->seq = 0;
		if (attempt)
			backoff(attempt);
		if (tx && (ret = simple(c, "BEGIN")) < 0)
			break;
		ret = body(p, c, arg);
		if (ret == 0 && tx)
			ret = simple(c, "COMMIT");
		else if (tx)
			simple(c, "ROLLBACK");
		if (ret != -EAGAIN)
			break;
		datastore_count_retry(&p->base);
		log_debug("datastore: %s (SQLSTATE %s), retrying",
			  strcmp(c->sqlstate, "40P01") == 0 ? "deadlock" : "serialization failure",
			  c->sqlstate);
	}
	if (ret == -EAGAIN) {
		log_error("datastore: transaction failed %d times (SQLSTATE %s): giving up",
			  TX_ATTEMPTS, c->sqlstate);
		ret = -EIO;
	}
	int64_t seq = ret == 0 ? c->seq : 0;
	release(p, c);
	if (seq > 0)
		pg_feed_wait(p->feed, seq);
	return ret;
}

int pg_with_tx(struct pg *p, tx_body body, void *arg)
{
	return with_conn(p, true, body, arg);
}

/* ---- single statements ---- */

struct one_arg {
	enum stmt_id id;
	const struct params *pa;
	PGresult **out;
};

static int one_body(struct pg *p, struct pgc *c, void *arg)
{
	struct one_arg *a = arg;
	return run(p, c, a->id, a->pa, a->out);
}

/* One statement outside any explicit transaction; *out (may be NULL) is the caller's. */
int one(struct pg *p, enum stmt_id id, const struct params *pa, PGresult **out)
{
	struct one_arg a = {.id = id, .pa = pa, .out = out};
	return with_conn(p, false, one_body, &a);
}

/* One statement that must touch one row: -ENOENT when it touched none. */
int one_row(struct pg *p, enum stmt_id id, const struct params *pa)
{
	PGresult *r;
	int ret = one(p, id, pa, &r);
	if (ret < 0)
		return ret;
	ret = strcmp(pq_dyn.cmd_tuples(r), "0") == 0 ? -ENOENT : 0;
	pq_dyn.clear(r);
	return ret;
}

/* ---- open / close ---- */

static void pg_close(struct datastore *ds)
{
	struct pg *p = pg_of(ds);
	pg_feed_stop(p->feed);
	for (size_t i = 0; i < p->n_conns; i++)
		if (p->conns[i].conn)
			pq_dyn.finish(p->conns[i].conn);
	free(p->conns);
	if (p->conninfo) {
		explicit_bzero(p->conninfo, strlen(p->conninfo));
		free(p->conninfo);
	}
	if (p->password) {
		explicit_bzero(p->password, strlen(p->password));
		free(p->password);
	}
	pthread_mutex_destroy(&p->pool_lock);
	pthread_cond_destroy(&p->pool_cond);
	datastore_fini_base(&p->base);
	free(p);
}

static const struct datastore_ops pg_ops = {
	.name = "postgres",
	.concurrent = true,
	.close = pg_close,
	.entry_create = pg_entry_create,
	.entry_update = pg_entry_update,
	.entry_delete = pg_entry_delete,
	.entry_get = pg_entry_get,
	.entry_list = pg_entry_list,
	.entry_create_batch = pg_entry_create_batch,
	.entry_count = pg_entry_count,
	.agent_count = pg_agent_count,
	.change_counter = pg_change_counter,
	.token_create = pg_token_create,
	.token_consume = pg_token_consume,
	.token_count = pg_token_count,
	.token_prune = pg_token_prune,
	.token_list = pg_token_list,
	.agent_upsert = pg_agent_upsert,
	.agent_get = pg_agent_get,
	.agent_list = pg_agent_list,
	.agent_delete = pg_agent_delete,
	.agent_set_banned = pg_agent_set_banned,
	.agent_touch = pg_agent_touch,
	.ca_put = pg_ca_put,
	.ca_set_state = pg_ca_set_state,
	.ca_list = pg_ca_list,
	.ca_delete = pg_ca_delete,
	.fed_bundle_put = pg_fed_bundle_put,
	.fed_bundle_get = pg_fed_bundle_get,
	.fed_bundle_list = pg_fed_bundle_list,
	.fed_bundle_delete = pg_fed_bundle_delete,
	.fed_rel_put = pg_fed_rel_put,
	.fed_rel_get = pg_fed_rel_get,
	.fed_rel_list = pg_fed_rel_list,
	.fed_rel_delete = pg_fed_rel_delete,
	.kv_get_int = pg_kv_get_int,
	.kv_set_int = pg_kv_set_int,
	.lease_acquire = pg_lease_acquire,
	.lease_release = pg_lease_release,
	.ping = pg_ping,
	.server_heartbeat = pg_server_heartbeat,
	.server_list = pg_server_list,
	.snapshot_import = pg_snapshot_import,
};

/* Runs sql on c; 0, or -EIO with the (scrubbed) reason in err. */
static int exec_sql(struct pg *p, PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = pq_dyn.exec(c, sql);
	ExecStatusType st = pq_dyn.result_status(r);
	pq_dyn.clear(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	pg_scrub(p, pq_dyn.error_message(c), err, errlen);
	return -EIO;
}

static int schema_version(PGconn *c, int64_t *v)
{
	PGresult *r = pq_dyn.exec(c, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
	int ret = -EIO;
	if (pq_dyn.result_status(r) == PGRES_TUPLES_OK && pq_dyn.ntuples(r) == 1) {
		*v = r_int(r, 0, 0);
		ret = 0;
	}
	pq_dyn.clear(r);
	return ret;
}

static int migrate_locked(struct pg *p, PGconn *c, char *err, size_t errlen)
{
	const int64_t latest = (int64_t)ARRAY_LEN(migrations);
	int64_t v = 0;
	char why[512];
	if (exec_sql(p, c, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
		     why, sizeof(why)) < 0 ||
	    schema_version(c, &v) < 0) {
		snprintf(err, errlen, "cannot read the schema version: %s", why);
		return -EIO;
	}
	if (v > latest) {
		snprintf(err, errlen, "database schema version %lld is newer than this server "
			 "supports (%lld)", (long long)v, (long long)latest);
		return -EPROTO;
	}
	for (; v < latest; v++) {
		char bump[96];
		snprintf(bump, sizeof(bump), "INSERT INTO schema_version (version) VALUES (%lld)",
			 (long long)v + 1);
		if (exec_sql(p, c, "BEGIN", why, sizeof(why)) < 0 ||
		    exec_sql(p, c, migrations[v], why, sizeof(why)) < 0 ||
		    exec_sql(p, c, bump, why, sizeof(why)) < 0 ||
		    exec_sql(p, c, "COMMIT", why, sizeof(why)) < 0) {
			exec_sql(p, c, "ROLLBACK", bump, sizeof(bump));
			snprintf(err, errlen, "schema migration to version %lld failed: %.300s",
				 (long long)v + 1, why);
			return -EIO;
		}
		log_info("datastore: PostgreSQL schema migrated to version %lld", (long long)v + 1);
	}
	return 0;
}

/* One server migrates; the others wait on the lock and then find the schema current. */
static int migrate(struct pg *p, char *err, size_t errlen)
{
	char why[512];
	PGconn *c = pg_connect(p, why, sizeof(why));
	if (!c) {
		snprintf(err, errlen, "cannot connect: %s", why);
		return -EIO;
	}
	char lock[96], unlock[96];
	snprintf(lock, sizeof(lock), "SELECT pg_advisory_lock(%lld)", MIGRATE_LOCK_KEY);
	snprintf(unlock, sizeof(unlock), "SELECT pg_advisory_unlock(%lld)", MIGRATE_LOCK_KEY);
	int ret = exec_sql(p, c, lock, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "cannot take the migration lock: %s", why);
		goto out;
	}
	ret = migrate_locked(p, c, err, errlen);
	exec_sql(p, c, unlock, why, sizeof(why));
out:
	pq_dyn.finish(c);
	return ret;
}

int datastore_pg_conninfo_check(const char *conninfo, char *safe, size_t safelen, char *err,
				size_t errlen)
{
	/* The first PostgreSQL string the process sees: libpq is loaded here (pq_dyn.h). */
	if (pq_dyn_load(err, errlen) < 0)
		return -ENOENT;
	char *msg = NULL;
	PQconninfoOption *opts = conninfo ? pq_dyn.conninfo_parse(conninfo, &msg) : NULL;
	if (!opts) {
		/* libpq's message may quote the string, password included: not repeated. */
		snprintf(err, errlen, "not a valid libpq connection string (key=value ...) or "
			 "postgresql:// URI");
		pq_dyn.freemem(msg);
		return -EINVAL;
	}
	if (safe && safelen) {
		static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user",
						    "sslmode", NULL};
		size_t w = 0;
		safe[0] = '\0';
		for (PQconninfoOption *o = opts; o->keyword; o++) {
			for (size_t i = 0; shown[i]; i++) {
				if (strcmp(o->keyword, shown[i]) != 0 || !o->val || !o->val[0])
					continue;
				int k = snprintf(safe + w, safelen - w, "%s%s=%s", w ? " " : "",
						 o->keyword, o->val);
				if (k > 0 && (size_t)k < safelen - w)
					w += (size_t)k;
			}
		}
	}
	pq_dyn.conninfo_free(opts);
	return 0;
}

/* The password written in the string, if any (to scrub it from libpq's messages). */
static char *conninfo_password(const char *conninfo)
{
	char *pw = NULL;
	PQconninfoOption *opts = pq_dyn.conninfo_parse(conninfo, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
			pw = xstrdup(o->val);
	pq_dyn.conninfo_free(opts);
	return pw;
}

int datastore_open_pg(const char *conninfo, int max_connections, struct datastore **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	if (datastore_pg_conninfo_check(conninfo, NULL, 0, err, errlen) < 0)
		return -EINVAL;
	if (max_connections < 1)
		max_connections = 1;
	struct pg *p = xcalloc(1, sizeof(*p));
	datastore_init_base(&p->base, &pg_ops);
	pthread_mutex_init(&p->pool_lock, NULL);
	pthread_cond_init(&p->pool_cond, NULL);
	p->conninfo = xstrdup(conninfo);
	p->password = conninfo_password(conninfo);
	p->n_conns = (size_t)max_connections;
	p->conns = xcalloc(p->n_conns, sizeof(*p->conns));
	int ret = migrate(p, err, errlen);
	if (ret < 0)
		goto fail;
	ret = pg_feed_start(p, err, errlen);
	if (ret < 0)
		goto fail;
	p->base.has_feed = true;
	*out = &p->base;
	return 0;
fail:
	pg_close(&p->base);
	return ret;
}
