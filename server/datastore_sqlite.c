/* datastore_sqlite.c: the SQLite datastore backend.
 *
 * One connection, used by one thread at a time (datastore.c holds the lock around every call).
 * Every statement is prepared once at open time. Every change runs in one BEGIN IMMEDIATE
 * transaction, with the journal in WAL mode and synchronous=FULL, so that a crash leaves either
 * the old state or the new one, and a consumed join token stays consumed.
 *
 * Selector and DNS name lists are stored as compact JSON arrays. Selectors are sorted and unique
 * before they are written, so that their JSON text is canonical and a UNIQUE index on
 * (spiffe_id, parent_id, selectors) forbids duplicate entries at the database level too. */
#include "datastore_backend.h"

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

#define ENTRY_AFTER "(created_at, id) > (?3, ?4)"

enum stmt_id {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK,
	ST_META_GET, ST_META_SET,
	ST_ENTRY_INSERT, ST_ENTRY_UPDATE, ST_ENTRY_DELETE, ST_ENTRY_GET, ST_ENTRY_FIND_DUP,
	ST_ENTRY_LIST_ALL, ST_ENTRY_LIST_SPIFFE, ST_ENTRY_LIST_PARENT, ST_ENTRY_LIST_BOTH,
	ST_TOKEN_INSERT, ST_TOKEN_GET, ST_TOKEN_DELETE, ST_TOKEN_COUNT, ST_TOKEN_PRUNE, ST_TOKEN_LIST,
	ST_AGENT_UPSERT, ST_AGENT_GET, ST_AGENT_LIST, ST_AGENT_DELETE, ST_AGENT_BAN, ST_AGENT_TOUCH,
	ST_CA_PUT, ST_CA_LIST, ST_CA_DELETE,
	ST_FED_REL_INSERT, ST_FED_REL_UPDATE, ST_FED_REL_GET, ST_FED_REL_LIST, ST_FED_REL_DELETE,
	ST_FED_PUT, ST_FED_GET, ST_FED_LIST, ST_FED_DELETE,
	ST_KV_GET, ST_KV_SET,
	ST_PING, ST_ENTRY_COUNT, ST_AGENT_COUNT,
	ST_LEASE_TAKE, ST_LEASE_DROP,
	ST__COUNT
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
	[ST_CA_PUT] = "INSERT OR REPLACE INTO ca_authorities (" CA_COLS ") VALUES "
		      "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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

struct sq {
	struct datastore base;	/* first: datastore.c hands us &base */
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	int64_t counter;	/* last committed value of the change counter */
	int64_t pending;	/* value written by the open transaction, if any */
};

static struct sq *sq_of(struct datastore *ds)
{
	return (struct sq *)ds;
}

static int db_error(struct sq *s, const char *what)
{
	log_error("datastore: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

/* A prepared statement, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(struct sq *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no row; resets it. -EEXIST on a constraint violation. */
static int exec_done(struct sq *s, sqlite3_stmt *st)
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

static int tx_begin(struct sq *s)
{
	s->pending = s->counter;
	return exec_done(s, stmt(s, ST_BEGIN));
}

static int tx_commit(struct sq *s)
{
	int ret = exec_done(s, stmt(s, ST_COMMIT));
	if (ret < 0) {
		exec_done(s, stmt(s, ST_ROLLBACK));
		return ret;
	}
	s->counter = s->pending;
	return 0;
}

static void tx_rollback(struct sq *s)
{
	if (!sqlite3_get_autocommit(s->db))
		exec_done(s, stmt(s, ST_ROLLBACK));
}

/* Moves the change counter within the open transaction; returns the new value or < 0. */
static int64_t counter_bump(struct sq *s)
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

static char *col_strdup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	return t ? xstrdup((const char *)t) : NULL;
}

static uint8_t *col_blobdup(sqlite3_stmt *st, int col, size_t *len)
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

/* ---- entries ---- */

static struct entry *entry_from_row(struct sq *s, sqlite3_stmt *st)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	const unsigned char *id = sqlite3_column_text(st, 0);
	snprintf(e->id, sizeof(e->id), "%s", id ? (const char *)id : "");
	e->spiffe_id = col_strdup(st, 1);
	e->parent_id = col_strdup(st, 2);
	if (datastore_strv_from_text((const char *)sqlite3_column_text(st, 3), &e->selectors,
			   &e->n_selectors) < 0 ||
	    datastore_strv_from_text((const char *)sqlite3_column_text(st, 6), &e->dns_names,
			   &e->n_dns_names) < 0 ||
	    datastore_strv_from_text((const char *)sqlite3_column_text(st, 13), &e->federates_with,
			   &e->n_federates_with) < 0) {
		log_error("datastore: entry %s: corrupt list column", e->id);
		entry_free(e);
		return NULL;
	}
	e->x509_svid_ttl = (int32_t)sqlite3_column_int64(st, 4);
	e->jwt_svid_ttl = (int32_t)sqlite3_column_int64(st, 5);
	e->hint = col_strdup(st, 7);
	e->admin = sqlite3_column_int(st, 8) != 0;
	e->downstream = sqlite3_column_int(st, 9) != 0;
	e->expires_at = sqlite3_column_int64(st, 10);
	e->revision = sqlite3_column_int64(st, 11);
	e->created_at = sqlite3_column_int64(st, 12);
	e->managed = sqlite3_column_int(st, 14) != 0;
	(void)s;
	return e;
}

/* The JSON texts of an entry's list columns, owned by the caller of entry_bind. */
struct entry_lists {
	char *sel, *dns, *fed;
};

/* Binds all 15 entry columns. */
static void entry_bind(sqlite3_stmt *st, const struct entry *e, const struct entry_lists *l)
{
	const char *sel = l->sel, *dns = l->dns;
	sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->spiffe_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->parent_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sel, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, e->x509_svid_ttl);
	sqlite3_bind_int64(st, 6, e->jwt_svid_ttl);
	sqlite3_bind_text(st, 7, dns, -1, SQLITE_STATIC);
	if (e->hint)
		sqlite3_bind_text(st, 8, e->hint, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_int(st, 9, e->admin);
	sqlite3_bind_int(st, 10, e->downstream);
	sqlite3_bind_int64(st, 11, e->expires_at);
	sqlite3_bind_int64(st, 12, e->revision);
	sqlite3_bind_int64(st, 13, e->created_at);
	sqlite3_bind_text(st, 14, l->fed, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 15, e->managed);
}

/* Looks for another entry with the same identity; 0 when none, -EEXIST (with err) or -EIO. */
static int entry_check_dup(struct sq *s, const struct entry *e, const char *sel, char *err,
			   size_t errlen)
{
	sqlite3_stmt *st = stmt(s, ST_ENTRY_FIND_DUP);
	sqlite3_bind_text(st, 1, e->spiffe_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, e->parent_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, e->id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW) {
		snprintf(err, errlen,
			 "an entry with the same SPIFFE ID, parent ID and selectors already exists (id %s)",
			 (const char *)sqlite3_column_text(st, 0));
		ret = -EEXIST;
	} else if (rc != SQLITE_DONE) {
		ret = db_error(s, "entry duplicate check");
		snprintf(err, errlen, "database error");
	}
	sqlite3_reset(st);
	return ret;
}

/* The common part of create and update: e is complete (id, created_at) except the revision. */
static int entry_write(struct sq *s, struct entry *e, enum stmt_id which, char *err, size_t errlen)
{
	struct entry_lists l;
	int ret = -ENOMEM;
	int64_t rev;

	entry_normalize(e);
	l.sel = datastore_strv_to_text(e->selectors, e->n_selectors);
	l.dns = datastore_strv_to_text(e->dns_names, e->n_dns_names);
	l.fed = datastore_strv_to_text(e->federates_with, e->n_federates_with);
	const char *sel = l.sel;
	if (!l.sel || !l.dns || !l.fed) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ret = entry_check_dup(s, e, sel, err, errlen);
	if (ret < 0)
		goto out;
	rev = counter_bump(s);
	if (rev < 0) {
		ret = (int)rev;
		snprintf(err, errlen, "database error");
		goto out;
	}
	int64_t old_rev = e->revision;
	e->revision = rev;
	sqlite3_stmt *st = stmt(s, which);
	entry_bind(st, e, &l);
	ret = exec_done(s, st);
	if (ret < 0) {
		e->revision = old_rev;
		if (ret == -EEXIST)
			snprintf(err, errlen, "an entry with the same SPIFFE ID, parent ID and "
				 "selectors already exists");
		else
			snprintf(err, errlen, "database error");
	}
out:
	free(l.sel);
	free(l.dns);
	free(l.fed);
	return ret;
}

static int sq_entry_get_locked(struct sq *s, const char *id, struct entry **out)
{
	sqlite3_stmt *st = stmt(s, ST_ENTRY_GET);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW) {
		*out = entry_from_row(s, st);
		if (!*out)
			ret = -EIO;
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	} else {
		ret = db_error(s, "entry get");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	struct sq *s = sq_of(ds);
	char saved_id[sizeof(e->id)];
	int64_t saved_created = e->created_at;
	memcpy(saved_id, e->id, sizeof(saved_id));
	if (uuid_v4(e->id) < 0) {
		snprintf(err, errlen, "cannot generate an entry id");
		return -EIO;
	}
	if (e->created_at == 0)
		e->created_at = now_unix();
	int ret = tx_begin(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		goto fail;
	}
	ret = entry_write(s, e, ST_ENTRY_INSERT, err, errlen);
	if (ret < 0) {
		tx_rollback(s);
		goto fail;
	}
	ret = tx_commit(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		goto fail;
	}
	return 0;
fail:
	memcpy(e->id, saved_id, sizeof(saved_id));
	e->created_at = saved_created;
	return ret;
}

static int sq_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	struct sq *s = sq_of(ds);
	struct entry *old = NULL;
	int64_t saved_created = e->created_at;
	int ret = tx_begin(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		return ret;
	}
	ret = sq_entry_get_locked(s, e->id, &old);
	if (ret == -ENOENT) {
		snprintf(err, errlen, "no entry with id %s", e->id);
		goto fail;
	} else if (ret < 0) {
		snprintf(err, errlen, "database error");
		goto fail;
	}
	e->created_at = old->created_at;
	ret = entry_write(s, e, ST_ENTRY_UPDATE, err, errlen);
	if (ret < 0)
		goto fail;
	ret = tx_commit(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		e->created_at = saved_created;
	}
	entry_free(old);
	return ret;
fail:
	tx_rollback(s);
	e->created_at = saved_created;
	entry_free(old);
	return ret;
}

static int sq_entry_create_batch(struct datastore *ds, struct entry **v, size_t n,
				 size_t *failed, char *err, size_t errlen)
{
	struct sq *s = sq_of(ds);
	int ret = tx_begin(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		ret = entry_write(s, v[i], ST_ENTRY_INSERT, err, errlen);
		if (ret < 0) {
			*failed = i;
			tx_rollback(s);
			return ret;
		}
	}
	ret = tx_commit(s);
	if (ret < 0)
		snprintf(err, errlen, "database error");
	return ret;
}

/* Runs a one-row change (delete, ban) in a transaction that bumps the change counter;
 * -ENOENT when no row matched. */
static int change_one(struct sq *s, sqlite3_stmt *st)
{
	int ret = exec_done(s, st);
	if (ret < 0)
		return ret;
	if (sqlite3_changes(s->db) == 0)
		return -ENOENT;
	int64_t v = counter_bump(s);
	return v < 0 ? (int)v : 0;
}

/* A one-row change keyed by ?1 (a delete) in its own transaction; -ENOENT when none matched. */
static int change_by_key(struct sq *s, enum stmt_id which, const char *key)
{
	int ret = tx_begin(s);
	if (ret < 0)
		return ret;
	sqlite3_stmt *st = stmt(s, which);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	ret = change_one(s, st);
	if (ret < 0) {
		tx_rollback(s);
		return ret;
	}
	return tx_commit(s);
}

static int sq_entry_delete(struct datastore *ds, const char *id)
{
	return change_by_key(sq_of(ds), ST_ENTRY_DELETE, id);
}

static int sq_entry_get(struct datastore *ds, const char *id, struct entry **out)
{
	return sq_entry_get_locked(sq_of(ds), id, out);
}

static int sq_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			 size_t *n)
{
	struct sq *s = sq_of(ds);
	const char *sid = f ? f->spiffe_id : NULL, *pid = f ? f->parent_id : NULL;
	enum stmt_id which = sid && pid ? ST_ENTRY_LIST_BOTH : sid ? ST_ENTRY_LIST_SPIFFE :
			     pid ? ST_ENTRY_LIST_PARENT : ST_ENTRY_LIST_ALL;
	sqlite3_stmt *st = stmt(s, which);
	struct entry **v = NULL;
	size_t len = 0, cap = 0;
	int ret = 0, rc = SQLITE_DONE;

	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	if (sid)
		sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
	if (pid)
		sqlite3_bind_text(st, 2, pid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, f && f->after_id ? f->after_created_at : INT64_MIN);
	sqlite3_bind_text(st, 4, f && f->after_id ? f->after_id : "", -1, SQLITE_STATIC);
	/* Rows are read as they are stepped over: stopping at the limit reads no more. */
	while (len < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct entry *e = entry_from_row(s, st);
		if (!e) {
			ret = -EIO;
			goto out;
		}
		if (f && f->n_selectors && !entry_has_selectors(e, f->selectors, f->n_selectors)) {
			entry_free(e);
			continue;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[len++] = e;
	}
	if (len < limit && rc != SQLITE_DONE)
		ret = db_error(s, "entry list");
out:
	sqlite3_reset(st);
	if (ret < 0) {
		entry_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

static int64_t sq_change_counter(struct datastore *ds)
{
	return sq_of(ds)->counter;
}

/* ---- join tokens ---- */

static int sq_token_create(struct datastore *ds, const char *hash, const char *alias,
			   int64_t expires_at)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_TOKEN_INSERT);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	if (alias)
		sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int64(st, 3, expires_at);
	return exec_done(s, st);
}

static int sq_token_consume(struct datastore *ds, const char *hash, int64_t now, char **alias_out)
{
	struct sq *s = sq_of(ds);
	char *alias = NULL;
	int64_t expires_at = 0;
	int ret = tx_begin(s);
	if (ret < 0)
		return ret;
	sqlite3_stmt *st = stmt(s, ST_TOKEN_GET);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		alias = col_strdup(st, 0);
		expires_at = sqlite3_column_int64(st, 1);
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	} else {
		ret = db_error(s, "token get");
	}
	sqlite3_reset(st);
	if (ret < 0)
		goto fail;
	st = stmt(s, ST_TOKEN_DELETE);
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	ret = exec_done(s, st);
	if (ret < 0)
		goto fail;
	ret = tx_commit(s);
	if (ret < 0)
		goto out;
	if (expires_at != 0 && expires_at <= now) {
		ret = -ETIMEDOUT;
		goto out;
	}
	if (alias_out) {
		*alias_out = alias;
		alias = NULL;
	}
	ret = 0;
	goto out;
fail:
	tx_rollback(s);
out:
	free(alias);
	return ret;
}

static int sq_token_count(struct datastore *ds, int64_t now, int64_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_TOKEN_COUNT);
	sqlite3_bind_int64(st, 1, now);
	int ret = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	else
		ret = db_error(s, "token count");
	sqlite3_reset(st);
	return ret;
}

/* Counts rows without reading them: a probe asks every few seconds. */
static int count_rows(struct sq *s, int which, const char *what, int64_t *n)
{
	sqlite3_stmt *st = stmt(s, which);
	int ret = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	else
		ret = db_error(s, what);
	sqlite3_reset(st);
	return ret;
}

static int sq_entry_count(struct datastore *ds, int64_t *n)
{
	return count_rows(sq_of(ds), ST_ENTRY_COUNT, "entry count", n);
}

static int sq_agent_count(struct datastore *ds, int64_t *n)
{
	return count_rows(sq_of(ds), ST_AGENT_COUNT, "agent count", n);
}

static int sq_token_prune(struct datastore *ds, int64_t now)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_TOKEN_PRUNE);
	sqlite3_bind_int64(st, 1, now);
	return exec_done(s, st);
}

static int sq_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_TOKEN_LIST);
	struct ds_token_record *v = NULL;
	size_t len = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		const unsigned char *h = sqlite3_column_text(st, 0);
		snprintf(v[len].hash, sizeof(v[len].hash), "%s", h ? (const char *)h : "");
		v[len].alias = col_strdup(st, 1);
		v[len].expires_at = sqlite3_column_int64(st, 2);
		len++;
	}
	int ret = rc == SQLITE_DONE ? 0 : db_error(s, "token list");
	sqlite3_reset(st);
	if (ret < 0) {
		ds_token_record_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

/* ---- agents ---- */

static struct agent_record *agent_from_row(sqlite3_stmt *st)
{
	struct agent_record *a = xcalloc(1, sizeof(*a));
	a->spiffe_id = col_strdup(st, 0);
	a->attestor = col_strdup(st, 1);
	if (datastore_strv_from_text((const char *)sqlite3_column_text(st, 2), &a->selectors,
			   &a->n_selectors) < 0 ||
	    datastore_strv_from_text((const char *)sqlite3_column_text(st, 3), &a->aliases,
			   &a->n_aliases) < 0) {
		log_error("datastore: agent %s: corrupt list column", a->spiffe_id);
		agent_record_free(a);
		return NULL;
	}
	a->serial = col_strdup(st, 4);
	a->not_after = sqlite3_column_int64(st, 5);
	a->created_at = sqlite3_column_int64(st, 6);
	a->last_seen = sqlite3_column_int64(st, 7);
	a->banned = sqlite3_column_int(st, 8) != 0;
	return a;
}

static int sq_agent_upsert(struct datastore *ds, const struct agent_record *a)
{
	struct sq *s = sq_of(ds);
	char *sel = datastore_strv_to_text(a->selectors, a->n_selectors);
	char *aliases = datastore_strv_to_text(a->aliases, a->n_aliases);
	int ret = -ENOMEM;
	if (!sel || !aliases)
		goto out;
	ret = tx_begin(s);
	if (ret < 0)
		goto out;
	sqlite3_stmt *st = stmt(s, ST_AGENT_UPSERT);
	sqlite3_bind_text(st, 1, a->spiffe_id, -1, SQLITE_STATIC);
	if (a->attestor)
		sqlite3_bind_text(st, 2, a->attestor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, aliases, -1, SQLITE_STATIC);
	if (a->serial)
		sqlite3_bind_text(st, 5, a->serial, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, a->not_after);
	sqlite3_bind_int64(st, 7, a->created_at ? a->created_at : now_unix());
	sqlite3_bind_int64(st, 8, a->last_seen);
	sqlite3_bind_int(st, 9, a->banned);
	ret = exec_done(s, st);
	if (ret == 0) {
		int64_t v = counter_bump(s);
		ret = v < 0 ? (int)v : 0;
	}
	if (ret < 0) {
		tx_rollback(s);
		goto out;
	}
	ret = tx_commit(s);
out:
	free(sel);
	free(aliases);
	return ret;
}

static int sq_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_AGENT_GET);
	sqlite3_bind_text(st, 1, spiffe_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW) {
		*out = agent_from_row(st);
		if (!*out)
			ret = -EIO;
	} else if (rc == SQLITE_DONE) {
		ret = -ENOENT;
	} else {
		ret = db_error(s, "agent get");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_AGENT_LIST);
	struct agent_record **v = NULL;
	size_t len = 0, cap = 0;
	int ret = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct agent_record *a = agent_from_row(st);
		if (!a) {
			ret = -EIO;
			goto out;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[len++] = a;
	}
	if (rc != SQLITE_DONE)
		ret = db_error(s, "agent list");
out:
	sqlite3_reset(st);
	if (ret < 0) {
		agent_record_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

static int sq_agent_delete(struct datastore *ds, const char *spiffe_id)
{
	return change_by_key(sq_of(ds), ST_AGENT_DELETE, spiffe_id);
}

static int sq_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned)
{
	struct sq *s = sq_of(ds);
	int ret = tx_begin(s);
	if (ret < 0)
		return ret;
	sqlite3_stmt *st = stmt(s, ST_AGENT_BAN);
	sqlite3_bind_text(st, 1, spiffe_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, banned);
	ret = change_one(s, st);
	if (ret < 0) {
		tx_rollback(s);
		return ret;
	}
	return tx_commit(s);
}

static int sq_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
			  int64_t not_after, int64_t now)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_AGENT_TOUCH);
	sqlite3_bind_text(st, 1, spiffe_id, -1, SQLITE_STATIC);
	if (serial)
		sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, not_after);
	sqlite3_bind_int64(st, 4, now);
	int ret = exec_done(s, st);
	if (ret == 0 && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	return ret;
}

/* ---- CA authorities ---- */

static int sq_ca_put(struct datastore *ds, const struct ca_record *r)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_CA_PUT);
	sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, r->state);
	if (r->cert_der && r->cert_len)
		sqlite3_bind_blob(st, 3, r->cert_der, (int)r->cert_len, SQLITE_STATIC);
	if (r->jwt_kid)
		sqlite3_bind_text(st, 4, r->jwt_kid, -1, SQLITE_STATIC);
	if (r->jwt_spki && r->jwt_spki_len)
		sqlite3_bind_blob(st, 5, r->jwt_spki, (int)r->jwt_spki_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, r->not_before);
	sqlite3_bind_int64(st, 7, r->not_after);
	sqlite3_bind_int64(st, 8, r->created_at ? r->created_at : now_unix());
	return exec_done(s, st);
}

static int sq_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_CA_LIST);
	struct ca_record **v = NULL;
	size_t len = 0, cap = 0;
	int ret = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct ca_record *r = xcalloc(1, sizeof(*r));
		const unsigned char *id = sqlite3_column_text(st, 0);
		snprintf(r->id, sizeof(r->id), "%s", id ? (const char *)id : "");
		r->state = sqlite3_column_int(st, 1);
		r->cert_der = col_blobdup(st, 2, &r->cert_len);
		r->jwt_kid = col_strdup(st, 3);
		r->jwt_spki = col_blobdup(st, 4, &r->jwt_spki_len);
		r->not_before = sqlite3_column_int64(st, 5);
		r->not_after = sqlite3_column_int64(st, 6);
		r->created_at = sqlite3_column_int64(st, 7);
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[len++] = r;
	}
	if (rc != SQLITE_DONE)
		ret = db_error(s, "ca list");
	sqlite3_reset(st);
	if (ret < 0) {
		ca_record_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

static int sq_ca_delete(struct datastore *ds, const char *id)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_CA_DELETE);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int ret = exec_done(s, st);
	if (ret == 0 && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	return ret;
}

/* ---- federated bundles ---- */

static int sq_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, bool force)
{
	struct sq *s = sq_of(ds);
	bool ok;
	char *jwt = datastore_fed_jwt_text(b, &ok);
	if (!ok)
		return -ENOMEM;
	int ret = tx_begin(s);
	if (ret < 0)
		goto out;
	sqlite3_stmt *st = stmt(s, ST_FED_PUT);
	sqlite3_bind_text(st, 1, b->trust_domain, -1, SQLITE_STATIC);
	if (b->x509_len)
		sqlite3_bind_blob(st, 2, b->x509, (int)b->x509_len, SQLITE_STATIC);
	if (jwt)
		sqlite3_bind_text(st, 3, jwt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, b->sequence);
	sqlite3_bind_int64(st, 5, b->refresh_hint);
	sqlite3_bind_int64(st, 6, b->refreshed_at);
	sqlite3_bind_text(st, 7, fed_bundle_source_name(b->source), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, force);
	ret = change_one(s, st);
	if (ret == -ENOENT)
		ret = -ESTALE;
	if (ret < 0) {
		tx_rollback(s);
		goto out;
	}
	ret = tx_commit(s);
out:
	free(jwt);
	return ret;
}

static struct fed_bundle *fed_bundle_from_row(sqlite3_stmt *st)
{
	const void *x509 = sqlite3_column_blob(st, 1);
	int x509_len = sqlite3_column_bytes(st, 1);
	return datastore_fed_bundle_from_cols((const char *)sqlite3_column_text(st, 0), x509,
					      x509 && x509_len > 0 ? (size_t)x509_len : 0,
					      (const char *)sqlite3_column_text(st, 2),
					      sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
					      sqlite3_column_int64(st, 5),
					      (const char *)sqlite3_column_text(st, 6));
}

static int sq_fed_bundle_get(struct datastore *ds, const char *trust_domain,
			     struct fed_bundle **out)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_FED_GET);
	sqlite3_bind_text(st, 1, trust_domain, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW)
		ret = (*out = fed_bundle_from_row(st)) ? 0 : -EIO;
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_error(s, "federated bundle get");
	sqlite3_reset(st);
	return ret;
}

static int sq_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_FED_LIST);
	struct fed_bundle **v = NULL;
	size_t len = 0, cap = 0;
	int ret = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct fed_bundle *b = fed_bundle_from_row(st);
		if (!b) {
			ret = -EIO;
			break;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[len++] = b;
	}
	if (ret == 0 && rc != SQLITE_DONE)
		ret = db_error(s, "federated bundle list");
	sqlite3_reset(st);
	if (ret < 0) {
		fed_bundle_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

static int sq_fed_bundle_delete(struct datastore *ds, const char *trust_domain)
{
	return change_by_key(sq_of(ds), ST_FED_DELETE, trust_domain);
}

/* ---- federation relationships ---- */

static int sq_fed_rel_put(struct datastore *ds, const char *td, const char *doc, bool create)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, create ? ST_FED_REL_INSERT : ST_FED_REL_UPDATE);
	sqlite3_bind_text(st, 1, td, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, doc, -1, SQLITE_STATIC);
	int ret = exec_done(s, st);
	if (ret == 0 && !create && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	return ret;
}

static int sq_fed_rel_get(struct datastore *ds, const char *td, char **doc)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_FED_REL_GET);
	sqlite3_bind_text(st, 1, td, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st), ret = 0;
	if (rc == SQLITE_ROW)
		*doc = col_strdup(st, 0);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : db_error(s, "federation relationship get");
	sqlite3_reset(st);
	return ret == 0 && !*doc ? -EIO : ret;
}

static int sq_fed_rel_list(struct datastore *ds, char ***docs, size_t *n)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_FED_REL_LIST);
	char **v = NULL;
	size_t len = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char *d = col_strdup(st, 0);
		if (!d)
			continue;
		v = xrealloc(v, (len + 1) * sizeof(*v));
		v[len++] = d;
	}
	int ret = rc == SQLITE_DONE ? 0 : db_error(s, "federation relationship list");
	sqlite3_reset(st);
	if (ret < 0) {
		strv_free(v, len);
		return ret;
	}
	*docs = v;
	*n = len;
	return 0;
}

static int sq_fed_rel_delete(struct datastore *ds, const char *td)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_FED_REL_DELETE);
	sqlite3_bind_text(st, 1, td, -1, SQLITE_STATIC);
	int ret = exec_done(s, st);
	if (ret == 0 && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	return ret;
}

/* ---- key/value ---- */

static int get_int(struct sq *s, enum stmt_id which, const char *key, int64_t *out)
{
	sqlite3_stmt *st = stmt(s, which);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_error(s, "kv get");
	sqlite3_reset(st);
	return ret;
}

static int sq_kv_get_int(struct datastore *ds, const char *key, int64_t *out)
{
	return get_int(sq_of(ds), ST_KV_GET, key, out);
}

static int sq_kv_set_int(struct datastore *ds, const char *key, int64_t v)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_KV_SET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	return exec_done(s, st);
}

static int sq_ping(struct datastore *ds)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_PING);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, "ping");
}

static int sq_lease_acquire(struct datastore *ds, const char *name, const char *holder,
			    int64_t ttl_s)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_LEASE_TAKE);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now_unix());
	sqlite3_bind_int64(st, 4, ttl_s);
	int ret = exec_done(s, st);
	return ret < 0 ? ret : sqlite3_changes(s->db) > 0;
}

static int sq_lease_release(struct datastore *ds, const char *name, const char *holder)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_LEASE_DROP);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
	return exec_done(s, st);
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
	    exec_sql(s->db, "PRAGMA foreign_keys = ON", why, sizeof(why)) < 0) {
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
