/* datastore_sqlite_entry.c: the SQLite backend's entries and join tokens (see
 * datastore_sqlite.c): rows to entries and back, duplicate checks, batches in one transaction,
 * listings, counts.
 *
 * Threads: one thread at a time (datastore.c holds the lock around every call), on the backend's
 * one connection. */
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

#include "datastore_sqlite_internal.h"

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

int sq_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen)
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

int sq_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen)
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

int sq_entry_create_batch(struct datastore *ds, struct entry **v, size_t n,
				 size_t *failed, char *err, size_t errlen)
{
	struct sq *s = sq_of(ds);
	sq_cache_bulk(s, true);
	int ret = tx_begin(s);
	if (ret < 0) {
		snprintf(err, errlen, "database error");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = entry_write(s, v[i], ST_ENTRY_INSERT, err, errlen);
		if (ret < 0) {
			*failed = i;
			tx_rollback(s);
			goto out;
		}
	}
	ret = tx_commit(s);
	if (ret < 0)
		snprintf(err, errlen, "database error");
out:
	sq_cache_bulk(s, false);
	return ret;
}

/* Runs a one-row change (delete, ban) in a transaction that bumps the change counter;
 * -ENOENT when no row matched. */
int sq_change_one(struct sq *s, sqlite3_stmt *st)
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
int change_by_key(struct sq *s, enum stmt_id which, const char *key)
{
	int ret = tx_begin(s);
	if (ret < 0)
		return ret;
	sqlite3_stmt *st = stmt(s, which);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	ret = sq_change_one(s, st);
	if (ret < 0) {
		tx_rollback(s);
		return ret;
	}
	return tx_commit(s);
}

int sq_entry_delete(struct datastore *ds, const char *id)
{
	return change_by_key(sq_of(ds), ST_ENTRY_DELETE, id);
}

int sq_entry_get(struct datastore *ds, const char *id, struct entry **out)
{
	return sq_entry_get_locked(sq_of(ds), id, out);
}

int sq_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
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

int64_t sq_change_counter(struct datastore *ds)
{
	return sq_of(ds)->counter;
}

/* ---- join tokens ---- */

int sq_token_create(struct datastore *ds, const char *hash, const char *alias,
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

int sq_token_consume(struct datastore *ds, const char *hash, int64_t now, char **alias_out)
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

int sq_token_count(struct datastore *ds, int64_t now, int64_t *n)
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

int sq_entry_count(struct datastore *ds, int64_t *n)
{
	return count_rows(sq_of(ds), ST_ENTRY_COUNT, "entry count", n);
}

int sq_agent_count(struct datastore *ds, int64_t *n)
{
	return count_rows(sq_of(ds), ST_AGENT_COUNT, "agent count", n);
}

int sq_token_prune(struct datastore *ds, int64_t now)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_TOKEN_PRUNE);
	sqlite3_bind_int64(st, 1, now);
	return exec_done(s, st);
}

int sq_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n)
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
