/* datastore_pg_entry.c: the PostgreSQL backend's entries and join tokens (see datastore_pg.h):
 * rows to entries and back, duplicate checks, batches, listings a chunk at a time, counts.
 *
 * Threads: any thread; every call takes a pooled connection (datastore_pg.c) for its own use and
 * datastore.c serialises the calls. */
#include "datastore_pg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* ---- entries ---- */

static struct entry *entry_from_row(const PGresult *r, int row)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", pq_dyn.getvalue(r, row, 0));
	e->spiffe_id = r_strdup(r, row, 1);
	e->parent_id = r_strdup(r, row, 2);
	if (datastore_strv_from_text(pq_dyn.getvalue(r, row, 3), &e->selectors, &e->n_selectors) < 0 ||
	    datastore_strv_from_text(pq_dyn.getvalue(r, row, 6), &e->dns_names, &e->n_dns_names) < 0 ||
	    datastore_strv_from_text(pq_dyn.getvalue(r, row, 13), &e->federates_with,
				     &e->n_federates_with) < 0) {
		log_error("datastore: entry %s: corrupt list column", e->id);
		entry_free(e);
		return NULL;
	}
	e->x509_svid_ttl = (int32_t)r_int(r, row, 4);
	e->jwt_svid_ttl = (int32_t)r_int(r, row, 5);
	e->hint = r_strdup(r, row, 7);
	e->admin = r_bool(r, row, 8);
	e->downstream = r_bool(r, row, 9);
	e->expires_at = r_int(r, row, 10);
	e->revision = r_int(r, row, 11);
	e->created_at = r_int(r, row, 12);
	e->managed = r_bool(r, row, 14);
	return e;
}

/* Appends the rows of r that match f's selectors to *v (*len of them, room for *cap), at most
 * limit in all. */
static int entries_from_result(const PGresult *r, const struct entry_filter *f, size_t limit,
			       struct entry ***v, size_t *len, size_t *cap)
{
	int rows = pq_dyn.ntuples(r);
	for (int i = 0; i < rows && *len < limit; i++) {
		struct entry *e = entry_from_row(r, i);
		if (!e)
			return -EIO;
		if (f && f->n_selectors && !entry_has_selectors(e, f->selectors, f->n_selectors)) {
			entry_free(e);
			continue;
		}
		if (*len == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*v = xrealloc(*v, *cap * sizeof(**v));
		}
		(*v)[(*len)++] = e;
	}
	return 0;
}

struct entry_write {
	struct entry *e;
	bool update;
	const char *sel, *dns, *fed;
	char *err;
	size_t errlen;
};

static int entry_check_dup(struct pg *p, struct pgc *c, struct entry_write *w)
{
	struct params pa = {0};
	PGresult *r;
	p_str(&pa, w->e->spiffe_id);
	p_str(&pa, w->e->parent_id);
	p_str(&pa, w->sel);
	p_str(&pa, w->e->id);
	int ret = run(p, c, ST_ENTRY_FIND_DUP, &pa, &r);
	if (ret < 0)
		return ret;
	if (pq_dyn.ntuples(r) > 0) {
		snprintf(w->err, w->errlen,
			 "an entry with the same SPIFFE ID, parent ID and selectors already exists (id %s)",
			 pq_dyn.getvalue(r, 0, 0));
		ret = -EEXIST;
	}
	pq_dyn.clear(r);
	return ret;
}

static int entry_write_body(struct pg *p, struct pgc *c, void *arg)
{
	struct entry_write *w = arg;
	const struct entry *e = w->e;
	struct params pa = {0};
	PGresult *r;
	int ret;
	if (w->update) {
		p_str(&pa, e->id);
		if ((ret = run(p, c, ST_ENTRY_LOCK, &pa, &r)) < 0)
			return ret;
		int rows = pq_dyn.ntuples(r);
		pq_dyn.clear(r);
		pa.n = 0;
		if (rows == 0) {
			snprintf(w->err, w->errlen, "no entry with id %s", e->id);
			return -ENOENT;
		}
	}
	if ((ret = entry_check_dup(p, c, w)) < 0)
		return ret;
	p_str(&pa, e->id);
	p_str(&pa, e->spiffe_id);
	p_str(&pa, e->parent_id);
	p_str(&pa, w->sel);
	p_int(&pa, e->x509_svid_ttl);
	p_int(&pa, e->jwt_svid_ttl);
	p_str(&pa, w->dns);
	p_str(&pa, e->hint);
	p_bool(&pa, e->admin);
	p_bool(&pa, e->downstream);
	p_int(&pa, e->expires_at);
	if (!w->update)
		p_int(&pa, e->created_at);
	p_str(&pa, w->fed);
	p_bool(&pa, e->managed);
	ret = run(p, c, w->update ? ST_ENTRY_UPDATE : ST_ENTRY_INSERT, &pa, &r);
	if (ret == -EEXIST)
		snprintf(w->err, w->errlen, "an entry with the same SPIFFE ID, parent ID and "
			 "selectors already exists");
	if (ret < 0)
		return ret;
	if (pq_dyn.ntuples(r) != 1) {
		pq_dyn.clear(r);
		snprintf(w->err, w->errlen, "no entry with id %s", e->id);
		return -ENOENT;
	}
	w->e->revision = r_int(r, 0, 0);
	if (w->update)
		w->e->created_at = r_int(r, 0, 1);
	pq_dyn.clear(r);
	return change_add(p, c, DS_CHANGE_ENTRY, e->id);
}

static int entry_write(struct pg *p, struct entry *e, bool update, char *err, size_t errlen)
{
	struct entry saved = *e;
	entry_normalize(e);
	char *sel = datastore_strv_to_text(e->selectors, e->n_selectors);
	char *dns = datastore_strv_to_text(e->dns_names, e->n_dns_names);
	char *fed = datastore_strv_to_text(e->federates_with, e->n_federates_with);
	int ret = -ENOMEM;
	if (!sel || !dns || !fed) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	struct entry_write w = {.e = e, .update = update, .sel = sel, .dns = dns, .fed = fed,
				.err = err, .errlen = errlen};
	err[0] = '\0';
	ret = with_conn(p, true, entry_write_body, &w);
	if (ret < 0) {
		e->revision = saved.revision;
		e->created_at = saved.created_at;
		if (!err[0])
			snprintf(err, errlen, "database error");
	}
out:
	free(sel);
	free(dns);
	free(fed);
	return ret;
}

int pg_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	char saved_id[sizeof(e->id)];
	int64_t saved_created = e->created_at;
	memcpy(saved_id, e->id, sizeof(saved_id));
	if (uuid_v4(e->id) < 0) {
		snprintf(err, errlen, "cannot generate an entry id");
		return -EIO;
	}
	if (e->created_at == 0)
		e->created_at = now_unix();
	int ret = entry_write(pg_of(ds), e, false, err, errlen);
	if (ret < 0) {
		memcpy(e->id, saved_id, sizeof(saved_id));
		e->created_at = saved_created;
	}
	return ret;
}

int pg_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	return entry_write(pg_of(ds), e, true, err, errlen);
}

struct entry_batch {
	struct entry **v;
	size_t n, *failed;
	char *err;
	size_t errlen;
};

static int entry_batch_body(struct pg *p, struct pgc *c, void *arg)
{
	struct entry_batch *b = arg;
	int ret = 0;
	for (size_t i = 0; i < b->n && ret == 0; i++) {
		char *sel = datastore_strv_to_text(b->v[i]->selectors, b->v[i]->n_selectors);
		char *dns = datastore_strv_to_text(b->v[i]->dns_names, b->v[i]->n_dns_names);
		char *fed = datastore_strv_to_text(b->v[i]->federates_with,
						   b->v[i]->n_federates_with);
		struct entry_write w = {.e = b->v[i], .sel = sel, .dns = dns, .fed = fed,
					.err = b->err, .errlen = b->errlen};
		ret = sel && dns && fed ? entry_write_body(p, c, &w) : -ENOMEM;
		if (ret < 0)
			*b->failed = i;
		free(sel);
		free(dns);
		free(fed);
	}
	return ret;
}

int pg_entry_create_batch(struct datastore *ds, struct entry **v, size_t n,
				 size_t *failed, char *err, size_t errlen)
{
	struct entry_batch b = {.v = v, .n = n, .failed = failed, .err = err, .errlen = errlen};
	for (size_t i = 0; i < n; i++)
		entry_normalize(v[i]);
	err[0] = '\0';
	int ret = with_conn(pg_of(ds), true, entry_batch_body, &b);
	if (ret < 0 && !err[0])
		snprintf(err, errlen, "database error");
	return ret;
}

/* A one-row change (delete, ban) and its feed row, in one transaction. */
struct change_one {
	enum stmt_id id;
	const struct params *pa;
	enum ds_change_kind kind;
	const char *key;
};

static int change_one_body(struct pg *p, struct pgc *c, void *arg)
{
	struct change_one *a = arg;
	PGresult *r;
	int ret = run(p, c, a->id, a->pa, &r);
	if (ret < 0)
		return ret;
	bool none = strcmp(pq_dyn.cmd_tuples(r), "0") == 0;
	pq_dyn.clear(r);
	return none ? -ENOENT : change_add(p, c, a->kind, a->key);
}

int change_one(struct pg *p, enum stmt_id id, const struct params *pa,
		      enum ds_change_kind kind, const char *key)
{
	struct change_one a = {.id = id, .pa = pa, .kind = kind, .key = key};
	return with_conn(p, true, change_one_body, &a);
}

int pg_entry_delete(struct datastore *ds, const char *id)
{
	struct params pa = {0};
	p_str(&pa, id);
	return change_one(pg_of(ds), ST_ENTRY_DELETE, &pa, DS_CHANGE_ENTRY, id);
}

/* The one row a statement keyed by key returns, read by reader: -ENOENT when none. */
int get_row(struct datastore *ds, enum stmt_id id, const char *key, row_reader reader,
		   void **out)
{
	struct params pa = {0};
	PGresult *r;
	p_str(&pa, key);
	int ret = one(pg_of(ds), id, &pa, &r);
	if (ret < 0)
		return ret;
	if (pq_dyn.ntuples(r) == 0)
		ret = -ENOENT;
	else if (!(*out = reader(r, 0)))
		ret = -EIO;
	pq_dyn.clear(r);
	return ret;
}

static void *entry_reader(const PGresult *r, int row)
{
	return entry_from_row(r, row);
}

int pg_entry_get(struct datastore *ds, const char *id, struct entry **out)
{
	void *e = NULL;
	int ret = get_row(ds, ST_ENTRY_GET, id, entry_reader, &e);
	if (ret == 0)
		*out = e;
	return ret;
}

/* A page with a selector filter reads the rows in chunks until it has its entries: the
 * selectors are matched here, not in SQL. */
#define LIST_CHUNK 512

int pg_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			 size_t *n)
{
	const char *sid = f ? f->spiffe_id : NULL, *pid = f ? f->parent_id : NULL;
	enum stmt_id which = sid && pid ? ST_ENTRY_LIST_BOTH : sid ? ST_ENTRY_LIST_SPIFFE :
			     pid ? ST_ENTRY_LIST_PARENT : ST_ENTRY_LIST_ALL;
	size_t limit = f && f->limit ? f->limit : SIZE_MAX;
	bool chunked = limit != SIZE_MAX && f->n_selectors;
	int64_t chunk = (int64_t)(limit > LIST_CHUNK ? limit : LIST_CHUNK);
	int64_t after_created = f && f->after_id ? f->after_created_at : INT64_MIN;
	char after_id[sizeof(((struct entry *)0)->id)];
	struct entry **v = NULL;
	size_t len = 0, cap = 0;
	int ret = 0;

	snprintf(after_id, sizeof(after_id), "%s", f && f->after_id ? f->after_id : "");
	for (;;) {
		struct params pa = {0};
		PGresult *r;
		if (sid)
			p_str(&pa, sid);
		if (pid)
			p_str(&pa, pid);
		p_int(&pa, after_created);
		p_str(&pa, after_id);
		if (chunked)
			p_int(&pa, chunk);
		else if (limit != SIZE_MAX)
			p_int(&pa, (int64_t)limit);
		else
			p_str(&pa, NULL);
		if ((ret = one(pg_of(ds), which, &pa, &r)) < 0)
			break;
		int rows = pq_dyn.ntuples(r);
		ret = entries_from_result(r, f, limit, &v, &len, &cap);
		if (ret == 0 && rows > 0) {
			after_created = r_int(r, rows - 1, 12);
			snprintf(after_id, sizeof(after_id), "%s", pq_dyn.getvalue(r, rows - 1, 0));
		}
		bool more = chunked && rows == chunk;
		pq_dyn.clear(r);
		if (ret < 0 || !more || len >= limit)
			break;
	}
	if (ret < 0) {
		entry_array_free(v, len);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

static int count(struct datastore *ds, enum stmt_id id, const struct params *pa, int64_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), id, pa, &r);
	if (ret < 0)
		return ret;
	*n = pq_dyn.ntuples(r) == 1 ? r_int(r, 0, 0) : 0;
	pq_dyn.clear(r);
	return 0;
}

int pg_entry_count(struct datastore *ds, int64_t *n)
{
	return count(ds, ST_ENTRY_COUNT, NULL, n);
}

int pg_agent_count(struct datastore *ds, int64_t *n)
{
	return count(ds, ST_AGENT_COUNT, NULL, n);
}

int64_t pg_change_counter(struct datastore *ds)
{
	return datastore_feed_counter(ds);
}

/* ---- join tokens ---- */

int pg_token_create(struct datastore *ds, const char *hash, const char *alias,
			   int64_t expires_at)
{
	struct params pa = {0};
	p_str(&pa, hash);
	p_str(&pa, alias);
	p_int(&pa, expires_at);
	return one(pg_of(ds), ST_TOKEN_INSERT, &pa, NULL);
}

int pg_token_consume(struct datastore *ds, const char *hash, int64_t now, char **alias_out)
{
	struct params pa = {0};
	PGresult *r;
	p_str(&pa, hash);
	/* One statement: of two servers deleting the same row at once, one gets it. */
	int ret = one(pg_of(ds), ST_TOKEN_CONSUME, &pa, &r);
	if (ret < 0)
		return ret;
	if (pq_dyn.ntuples(r) == 0) {
		ret = -ENOENT;
	} else {
		int64_t expires_at = r_int(r, 0, 1);
		if (expires_at != 0 && expires_at <= now)
			ret = -ETIMEDOUT;
		else if (alias_out)
			*alias_out = r_strdup(r, 0, 0);
	}
	pq_dyn.clear(r);
	return ret;
}

int pg_token_count(struct datastore *ds, int64_t now, int64_t *n)
{
	struct params pa = {0};
	p_int(&pa, now);
	return count(ds, ST_TOKEN_COUNT, &pa, n);
}

int pg_token_prune(struct datastore *ds, int64_t now)
{
	struct params pa = {0};
	p_int(&pa, now);
	return one(pg_of(ds), ST_TOKEN_PRUNE, &pa, NULL);
}

int pg_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), ST_TOKEN_LIST, NULL, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	struct ds_token_record *v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++) {
		snprintf(v[i].hash, sizeof(v[i].hash), "%s", pq_dyn.getvalue(r, i, 0));
		v[i].alias = r_strdup(r, i, 1);
		v[i].expires_at = r_int(r, i, 2);
	}
	pq_dyn.clear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}
