/* datastore_sqlite_records.c: the SQLite backend's other rows (see datastore_sqlite.c): agents,
 * CA authorities, federated bundles and federation relationships, key/value counters and leases.
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

int sq_agent_upsert(struct datastore *ds, const struct agent_record *a)
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

int sq_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out)
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

int sq_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n)
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

int sq_agent_delete(struct datastore *ds, const char *spiffe_id)
{
	return change_by_key(sq_of(ds), ST_AGENT_DELETE, spiffe_id);
}

int sq_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned)
{
	struct sq *s = sq_of(ds);
	int ret = tx_begin(s);
	if (ret < 0)
		return ret;
	sqlite3_stmt *st = stmt(s, ST_AGENT_BAN);
	sqlite3_bind_text(st, 1, spiffe_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, banned);
	ret = sq_change_one(s, st);
	if (ret < 0) {
		tx_rollback(s);
		return ret;
	}
	return tx_commit(s);
}

int sq_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
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

int sq_ca_put(struct datastore *ds, const struct ca_record *r)
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

int sq_ca_set_state(struct datastore *ds, const char *id, int *state)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_CA_SET_STATE);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, *state);
	int rc = sqlite3_step(st), ret = 0;
	if (rc == SQLITE_ROW)
		*state = sqlite3_column_int(st, 0);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_error(s, "ca set state");
	sqlite3_reset(st);
	return ret;
}

int sq_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n)
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

int sq_ca_delete(struct datastore *ds, const char *id)
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

int sq_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, bool force)
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
	ret = sq_change_one(s, st);
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

int sq_fed_bundle_get(struct datastore *ds, const char *trust_domain,
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

int sq_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n)
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

int sq_fed_bundle_delete(struct datastore *ds, const char *trust_domain)
{
	return change_by_key(sq_of(ds), ST_FED_DELETE, trust_domain);
}

/* ---- federation relationships ---- */

int sq_fed_rel_put(struct datastore *ds, const char *td, const char *doc, bool create)
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

int sq_fed_rel_get(struct datastore *ds, const char *td, char **doc)
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

int sq_fed_rel_list(struct datastore *ds, char ***docs, size_t *n)
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

int sq_fed_rel_delete(struct datastore *ds, const char *td)
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

int get_int(struct sq *s, enum stmt_id which, const char *key, int64_t *out)
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

int sq_kv_get_int(struct datastore *ds, const char *key, int64_t *out)
{
	return get_int(sq_of(ds), ST_KV_GET, key, out);
}

int sq_kv_set_int(struct datastore *ds, const char *key, int64_t v)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_KV_SET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	return exec_done(s, st);
}

int sq_ping(struct datastore *ds)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_PING);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, "ping");
}

int sq_lease_acquire(struct datastore *ds, const char *name, const char *holder,
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

int sq_lease_release(struct datastore *ds, const char *name, const char *holder)
{
	struct sq *s = sq_of(ds);
	sqlite3_stmt *st = stmt(s, ST_LEASE_DROP);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
	return exec_done(s, st);
}
