/* datastore_sqlite.c: the SQLite datastore backend.
 *
 * One connection, used by one thread at a time (datastore.c holds the lock around every call).
 * Every statement is prepared once at open time. Every change runs in one BEGIN IMMEDIATE
 * transaction, with the journal in WAL mode and synchronous=FULL, so that a crash leaves either
 * the old state or the new one, and a consumed join token stays consumed.
 *
 * Selector and DNS name lists are stored as compact JSON arrays. Selectors are sorted and unique
 * before they are written, so that their JSON text is canonical and a UNIQUE index on
 * (spiffe_id, parent_id, selectors) forbids duplicate entries at the database level too.
 *
 * This file holds the schema, the statements, transactions, the operations table, open and
 * close; the operations are in datastore_sqlite_entry.c and datastore_sqlite_records.c. */
#include "datastore_backend.h"
#include "datastore_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "strv.h"
#include "util.h"

#define BUSY_TIMEOUT_MS 5000
/* SQLite's page cache (default 2,000 KiB), a server's only copy of the database in its heap: the
 * index the node API serves from is in memory already (authz.h), and a page missed here is a
 * pread from the kernel's page cache. Measured (100,000 entries, tmpfs): the default cache was
 * full after the index build, ~1.7 MB of the server's heap more than 512 KiB. A batch of
 * thousands of inserts gets a larger one for its transaction (sq_cache_bulk), so that it does
 * not spill dirty pages to the WAL and read them back; shrinking it afterwards frees the pages. */
#define CACHE_PRAGMA "PRAGMA cache_size = -512" /* KiB */
#define BULK_CACHE_PRAGMA "PRAGMA cache_size = -8192"
#define CHANGE_COUNTER_KEY "change_counter"

/* Schema migrations: migrations[i] takes the schema from version i to i + 1. Never edit a
 * released step; append a new one. */
static const char *const migrations[] = {
	/* v1 */
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE entries ("
	" id TEXT PRIMARY KEY,"
	" spiffe_id TEXT NOT NULL,"
	" parent_id TEXT NOT NULL,"
	" selectors TEXT NOT NULL,"
	" x509_svid_ttl INTEGER NOT NULL DEFAULT 0,"
	" jwt_svid_ttl INTEGER NOT NULL DEFAULT 0,"
	" dns_names TEXT NOT NULL DEFAULT '[]',"
	" hint TEXT,"
	" admin INTEGER NOT NULL DEFAULT 0,"
	" downstream INTEGER NOT NULL DEFAULT 0,"
	" expires_at INTEGER NOT NULL DEFAULT 0,"
	" revision INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL);"
	"CREATE UNIQUE INDEX entries_unique ON entries (spiffe_id, parent_id, selectors);"
	"CREATE INDEX entries_parent ON entries (parent_id);"
	"CREATE TABLE join_tokens ("
	" hash TEXT PRIMARY KEY,"
	" alias TEXT,"
	" expires_at INTEGER NOT NULL);"
	"CREATE TABLE agents ("
	" spiffe_id TEXT PRIMARY KEY,"
	" attestor TEXT,"
	" selectors TEXT NOT NULL DEFAULT '[]',"
	" aliases TEXT NOT NULL DEFAULT '[]',"
	" serial TEXT,"
	" not_after INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL DEFAULT 0,"
	" banned INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE ca_authorities ("
	" id TEXT PRIMARY KEY,"
	" state INTEGER NOT NULL,"
	" cert BLOB,"
	" jwt_kid TEXT,"
	" jwt_spki BLOB,"
	" not_before INTEGER NOT NULL,"
	" not_after INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL);",
	/* v2: federation. The bundles of foreign trust domains, and the trust domains an entry's
	 * workloads federate with (a JSON array, like selectors). */
	"CREATE TABLE fed_bundles ("
	" trust_domain TEXT PRIMARY KEY,"
	" x509 BLOB,"
	" jwt_keys TEXT,"
	" sequence INTEGER NOT NULL,"
	" refresh_hint INTEGER NOT NULL DEFAULT 0,"
	" refreshed_at INTEGER NOT NULL,"
	" source TEXT NOT NULL);"
	"ALTER TABLE entries ADD COLUMN federates_with TEXT NOT NULL DEFAULT '[]';",
	/* v3. Federation relationships: the validated JSON document per trust domain. */
	"CREATE TABLE federation_relationships ("
	" trust_domain TEXT PRIMARY KEY,"
	" doc TEXT NOT NULL);",
	/* v4. Entries kept by automatic registration (k8s_reg.c); the lease that lets one
	 * server at a time keep them. */
	"ALTER TABLE entries ADD COLUMN managed INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE leases ("
	" name TEXT PRIMARY KEY,"
	" holder TEXT NOT NULL,"
	" expires_at INTEGER NOT NULL);",
	/* v5. The order of entry listings, so that a page is read without sorting the table. */
	"CREATE INDEX entries_order ON entries (created_at, id);",
};

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[ST_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2) "
			"ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_ENTRY_INSERT] = "INSERT INTO entries (" ENTRY_COLS ") VALUES "
			    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
	[ST_ENTRY_UPDATE] = "UPDATE entries SET spiffe_id = ?2, parent_id = ?3, selectors = ?4, "
			    "x509_svid_ttl = ?5, jwt_svid_ttl = ?6, dns_names = ?7, hint = ?8, "
			    "admin = ?9, downstream = ?10, expires_at = ?11, revision = ?12, "
			    "created_at = ?13, federates_with = ?14, managed = ?15 WHERE id = ?1",
	[ST_ENTRY_DELETE] = "DELETE FROM entries WHERE id = ?1",
	[ST_ENTRY_GET] = "SELECT " ENTRY_COLS " FROM entries WHERE id = ?1",
	[ST_ENTRY_FIND_DUP] = "SELECT id FROM entries WHERE spiffe_id = ?1 AND parent_id = ?2 "
			      "AND selectors = ?3 AND id != ?4",
	/* ?3, ?4: the (created_at, id) key the list starts after (see struct entry_filter). */
	[ST_ENTRY_LIST_ALL] = "SELECT " ENTRY_COLS " FROM entries WHERE " ENTRY_AFTER
			      " ORDER BY created_at, id",
	[ST_ENTRY_LIST_SPIFFE] = "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = ?1 "
				 "AND " ENTRY_AFTER " ORDER BY created_at, id",
	[ST_ENTRY_LIST_PARENT] = "SELECT " ENTRY_COLS " FROM entries WHERE parent_id = ?2 "
				 "AND " ENTRY_AFTER " ORDER BY created_at, id",
	[ST_ENTRY_LIST_BOTH] = "SELECT " ENTRY_COLS " FROM entries WHERE spiffe_id = ?1 "
			       "AND parent_id = ?2 AND " ENTRY_AFTER " ORDER BY created_at, id",
	[ST_TOKEN_INSERT] = "INSERT INTO join_tokens (hash, alias, expires_at) VALUES (?1, ?2, ?3)",
	[ST_TOKEN_GET] = "SELECT alias, expires_at FROM join_tokens WHERE hash = ?1",
	[ST_TOKEN_DELETE] = "DELETE FROM join_tokens WHERE hash = ?1",
	[ST_TOKEN_COUNT] = "SELECT COUNT(*) FROM join_tokens WHERE expires_at = 0 OR expires_at > ?1",
	[ST_TOKEN_PRUNE] = "DELETE FROM join_tokens WHERE expires_at != 0 AND expires_at <= ?1",
	[ST_TOKEN_LIST] = "SELECT hash, alias, expires_at FROM join_tokens ORDER BY hash",
	[ST_AGENT_UPSERT] = "INSERT INTO agents (" AGENT_COLS ") VALUES "
			    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
			    "ON CONFLICT (spiffe_id) DO UPDATE SET attestor = excluded.attestor, "
			    "selectors = excluded.selectors, aliases = excluded.aliases, "
			    "serial = excluded.serial, not_after = excluded.not_after, "
			    "last_seen = excluded.last_seen, banned = excluded.banned",
	[ST_AGENT_GET] = "SELECT " AGENT_COLS " FROM agents WHERE spiffe_id = ?1",
	[ST_AGENT_LIST] = "SELECT " AGENT_COLS " FROM agents ORDER BY spiffe_id",
	[ST_AGENT_DELETE] = "DELETE FROM agents WHERE spiffe_id = ?1",
	[ST_AGENT_BAN] = "UPDATE agents SET banned = ?2 WHERE spiffe_id = ?1",
	[ST_AGENT_TOUCH] = "UPDATE agents SET serial = COALESCE(?2, serial), not_after = ?3, "
			   "last_seen = ?4 WHERE spiffe_id = ?1",
	[ST_CA_PUT] = "INSERT INTO ca_authorities (" CA_COLS ") VALUES "
		      "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET "
		      "state = " CA_STATE_MERGE_SQL("ca_authorities.state", "excluded.state") ", "
		      "cert = excluded.cert, jwt_kid = excluded.jwt_kid, "
		      "jwt_spki = excluded.jwt_spki, not_before = excluded.not_before, "
		      "not_after = excluded.not_after, created_at = excluded.created_at",
	[ST_CA_SET_STATE] = "UPDATE ca_authorities SET state = " CA_STATE_MERGE_SQL("state", "?2")
			    " WHERE id = ?1 RETURNING state",
	[ST_CA_LIST] = "SELECT " CA_COLS " FROM ca_authorities ORDER BY not_before, id",
	[ST_CA_DELETE] = "DELETE FROM ca_authorities WHERE id = ?1",
	/* ?8: force. Otherwise an older sequence leaves the row alone (sqlite3_changes() = 0). */
	[ST_FED_PUT] = "INSERT INTO fed_bundles (" FED_BUNDLE_COLS ") VALUES "
		       "(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (trust_domain) DO UPDATE SET "
		       "x509 = excluded.x509, jwt_keys = excluded.jwt_keys, "
		       "sequence = excluded.sequence, refresh_hint = excluded.refresh_hint, "
		       "refreshed_at = excluded.refreshed_at, source = excluded.source "
		       "WHERE ?8 OR fed_bundles.sequence <= excluded.sequence",
	[ST_FED_GET] = "SELECT " FED_BUNDLE_COLS " FROM fed_bundles WHERE trust_domain = ?1",
	[ST_FED_LIST] = "SELECT " FED_BUNDLE_COLS " FROM fed_bundles ORDER BY trust_domain",
	[ST_FED_DELETE] = "DELETE FROM fed_bundles WHERE trust_domain = ?1",
	[ST_FED_REL_INSERT] = "INSERT INTO federation_relationships (trust_domain, doc) "
			      "VALUES (?1, ?2)",
	[ST_FED_REL_UPDATE] = "UPDATE federation_relationships SET doc = ?2 WHERE trust_domain = ?1",
	[ST_FED_REL_GET] = "SELECT doc FROM federation_relationships WHERE trust_domain = ?1",
	[ST_FED_REL_LIST] = "SELECT doc FROM federation_relationships ORDER BY trust_domain",
	[ST_FED_REL_DELETE] = "DELETE FROM federation_relationships WHERE trust_domain = ?1",
	[ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
	[ST_KV_SET] = "INSERT INTO kv (key, value) VALUES (?1, ?2) "
		      "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_PING] = "SELECT 1",
	[ST_LEASE_TAKE] = "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3 + ?4) "
			  "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
			  "expires_at = excluded.expires_at "
			  "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3",
	[ST_LEASE_DROP] = "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
	[ST_ENTRY_COUNT] = "SELECT COUNT(*) FROM entries",
	[ST_AGENT_COUNT] = "SELECT COUNT(*) FROM agents",
};

struct sq *sq_of(struct datastore *ds)
{
	return (struct sq *)ds;
}

int db_error(struct sq *s, const char *what)
{
	log_error("datastore: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

/* A prepared statement, reset and with its bindings cleared. */
sqlite3_stmt *stmt(struct sq *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no row; resets it. -EEXIST on a constraint violation. */
int exec_done(struct sq *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW)
		rc = SQLITE_DONE;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		ret = -EEXIST;
	else if (rc != SQLITE_DONE)
		ret = db_error(s, sqlite3_sql(st));
	sqlite3_reset(st);
	return ret;
}

void sq_cache_bulk(struct sq *s, bool bulk)
{
	/* Only a cache size: a failure costs speed, never correctness. */
	sqlite3_exec(s->db, bulk ? BULK_CACHE_PRAGMA : CACHE_PRAGMA, NULL, NULL, NULL);
}

int tx_begin(struct sq *s)
{
	s->pending = s->counter;
	return exec_done(s, stmt(s, ST_BEGIN));
}

int tx_commit(struct sq *s)
{
	int ret = exec_done(s, stmt(s, ST_COMMIT));
	if (ret < 0) {
		exec_done(s, stmt(s, ST_ROLLBACK));
		return ret;
	}
	s->counter = s->pending;
	return 0;
}

void tx_rollback(struct sq *s)
{
	if (!sqlite3_get_autocommit(s->db))
		exec_done(s, stmt(s, ST_ROLLBACK));
}

/* Moves the change counter within the open transaction; returns the new value or < 0. */
int64_t counter_bump(struct sq *s)
{
	sqlite3_stmt *st = stmt(s, ST_META_SET);
	int64_t v = s->pending + 1;
	sqlite3_bind_text(st, 1, CHANGE_COUNTER_KEY, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	int ret = exec_done(s, st);
	if (ret < 0)
		return ret;
	s->pending = v;
	return v;
}

char *col_strdup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? xstrdup((const char *)t) : NULL;
}

uint8_t *col_blobdup(sqlite3_stmt *st, int col, size_t *len)
{
	const void *b = sqlite3_column_blob(st, col);
	int n = sqlite3_column_bytes(st, col);
	*len = 0;
	if (!b || n <= 0)
		return NULL;
	uint8_t *out = xmalloc((size_t)n);
	memcpy(out, b, (size_t)n);
	*len = (size_t)n;
	return out;
}

/* ---- open / close ---- */

static void sq_close(struct datastore *ds)
{
	struct sq *s = sq_of(ds);
	for (size_t i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	datastore_fini_base(&s->base);
	free(s);
}

static const struct datastore_ops sqlite_ops = {
	.name = "sqlite",
	.close = sq_close,
	.entry_create = sq_entry_create,
	.entry_update = sq_entry_update,
	.entry_delete = sq_entry_delete,
	.entry_get = sq_entry_get,
	.entry_list = sq_entry_list,
	.entry_create_batch = sq_entry_create_batch,
	.entry_count = sq_entry_count,
	.agent_count = sq_agent_count,
	.change_counter = sq_change_counter,
	.token_create = sq_token_create,
	.token_consume = sq_token_consume,
	.token_count = sq_token_count,
	.token_prune = sq_token_prune,
	.token_list = sq_token_list,
	.agent_upsert = sq_agent_upsert,
	.agent_get = sq_agent_get,
	.agent_list = sq_agent_list,
	.agent_delete = sq_agent_delete,
	.agent_set_banned = sq_agent_set_banned,
	.agent_touch = sq_agent_touch,
	.ca_put = sq_ca_put,
	.ca_set_state = sq_ca_set_state,
	.ca_list = sq_ca_list,
	.ca_delete = sq_ca_delete,
	.fed_bundle_put = sq_fed_bundle_put,
	.fed_bundle_get = sq_fed_bundle_get,
	.fed_bundle_list = sq_fed_bundle_list,
	.fed_bundle_delete = sq_fed_bundle_delete,
	.fed_rel_put = sq_fed_rel_put,
	.fed_rel_get = sq_fed_rel_get,
	.fed_rel_list = sq_fed_rel_list,
	.fed_rel_delete = sq_fed_rel_delete,
	.kv_get_int = sq_kv_get_int,
	.kv_set_int = sq_kv_set_int,
	.lease_acquire = sq_lease_acquire,
	.lease_release = sq_lease_release,
	.ping = sq_ping,
};

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int schema_version(sqlite3 *db, int64_t *v)
{
	sqlite3_stmt *st = NULL;
	int ret = -EIO;
	if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st,
			       NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*v = sqlite3_column_int64(st, 0);
		ret = 0;
	}
	sqlite3_finalize(st);
	return ret;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	int64_t v = 0;
	const int64_t latest = (int64_t)ARRAY_LEN(migrations);
	char why[256];
	if (exec_sql(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
		     why, sizeof(why)) < 0 ||
	    schema_version(db, &v) < 0) {
		snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(db));
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
		if (exec_sql(db, "BEGIN IMMEDIATE", why, sizeof(why)) < 0)
			goto fail;
		if (exec_sql(db, migrations[v], why, sizeof(why)) < 0 ||
		    exec_sql(db, bump, why, sizeof(why)) < 0) {
			exec_sql(db, "ROLLBACK", bump, sizeof(bump));
			goto fail;
		}
		if (exec_sql(db, "COMMIT", why, sizeof(why)) < 0) {
			exec_sql(db, "ROLLBACK", bump, sizeof(bump));
			goto fail;
		}
		log_info("datastore: schema migrated to version %lld", (long long)v + 1);
	}
	return 0;
fail:
	snprintf(err, errlen, "schema migration to version %lld failed: %.160s", (long long)v + 1, why);
	return -EIO;
}

/* Creates the file 0600 before SQLite does, so the database never exists with a wider mode. */
static int precreate(const char *path, char *err, size_t errlen)
{
	if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
		return 0;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open database %s: %s", path, strerror(errno));
		return -errno;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		log_warnx("datastore: %s is accessible by group or others (mode %03o)", path,
			 (unsigned)(st.st_mode & 0777));
	close(fd);
	return 0;
}

static int prepare_all(struct sq *s, const char *path, char *err, size_t errlen)
{
	for (size_t i = 0; i < ST__COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "database %s: cannot prepare \"%s\": %s", path,
				 stmt_sql[i], sqlite3_errmsg(s->db));
			return -EIO;
		}
	}
	return 0;
}

/* A read-only handle keeps one read transaction open from here to its close, so that every read
 * through it sees the same snapshot of the file. */
static int readonly_check(struct sq *s, const char *path, char *err, size_t errlen)
{
	char why[256];
	int64_t v = 0;
	if (exec_sql(s->db, "BEGIN", why, sizeof(why)) < 0 || schema_version(s->db, &v) < 0) {
		const char *msg = sqlite3_errmsg(s->db);
		if (strstr(msg, "no such table"))
			snprintf(err, errlen, "%s is not a lanyard-server datastore (no schema_version "
				 "table)", path);
		else
			snprintf(err, errlen, "%s is not a readable SQLite database: %s", path, msg);
		return -EPROTO;
	}
	if (v != (int64_t)ARRAY_LEN(migrations)) {
		snprintf(err, errlen, "%s has datastore schema version %lld; this lanyard-server reads "
			 "version %lld (run that server's own version to copy it)", path,
			 (long long)v, (long long)ARRAY_LEN(migrations));
		return -EPROTO;
	}
	return 0;
}

int datastore_open_sqlite_readonly(const char *path, struct datastore **out, char *err,
				   size_t errlen)
{
	*out = NULL;
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file (the datastore is "
			 "<data_dir>/datastore.sqlite3)", path);
		return -EINVAL;
	}
	struct sq *s = xcalloc(1, sizeof(*s));
	datastore_init_base(&s->base, &sqlite_ops);
	int ret = -EIO;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "cannot open database %s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if ((ret = readonly_check(s, path, err, errlen)) < 0 ||
	    (ret = prepare_all(s, path, err, errlen)) < 0)
		goto fail;
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return ret;
}

int datastore_open_sqlite(const char *path, struct datastore **out, char *err, size_t errlen)
{
	struct sq *s = NULL;
	char why[256];
	int ret;

	*out = NULL;
	ret = precreate(path, err, errlen);
	if (ret < 0)
		return ret;
	s = xcalloc(1, sizeof(*s));
	datastore_init_base(&s->base, &sqlite_ops);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open database %s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		ret = -EIO;
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if (exec_sql(s->db, "PRAGMA journal_mode = WAL", why, sizeof(why)) < 0 ||
	    exec_sql(s->db, "PRAGMA synchronous = FULL", why, sizeof(why)) < 0 ||
	    exec_sql(s->db, "PRAGMA foreign_keys = ON", why, sizeof(why)) < 0 ||
	    exec_sql(s->db, CACHE_PRAGMA, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot set up database %s: %s", path, why);
		ret = -EIO;
		goto fail;
	}
	ret = migrate(s->db, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "database %s: %s", path, why);
		goto fail;
	}
	ret = prepare_all(s, path, err, errlen);
	if (ret < 0)
		goto fail;
	ret = get_int(s, ST_META_GET, CHANGE_COUNTER_KEY, &s->counter);
	if (ret == -ENOENT) {
		s->counter = 0;
	} else if (ret < 0) {
		snprintf(err, errlen, "database %s: cannot read the change counter", path);
		goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return ret;
}
