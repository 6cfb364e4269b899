/* datastore_pg_records.c: the PostgreSQL backend's other rows (see datastore_pg.h): agents, CA
 * authorities, federated bundles and federation relationships, key/value counters, leases and
 * the servers' heartbeats.
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

/* The row of a server not seen for this long is removed (it is long dead). */
#define SERVER_FORGET_S (7 * 24 * 3600)
/* ---- agents ---- */

static struct agent_record *agent_from_row(const PGresult *r, int row)
{
	struct agent_record *a = xcalloc(1, sizeof(*a));
	a->spiffe_id = r_strdup(r, row, 0);
	a->attestor = r_strdup(r, row, 1);
	if (datastore_strv_from_text(pq_dyn.getvalue(r, row, 2), &a->selectors, &a->n_selectors) < 0 ||
	    datastore_strv_from_text(pq_dyn.getvalue(r, row, 3), &a->aliases, &a->n_aliases) < 0) {
		log_error("datastore: agent %s: corrupt list column", a->spiffe_id);
		agent_record_free(a);
		return NULL;
	}
	a->serial = r_strdup(r, row, 4);
	a->not_after = r_int(r, row, 5);
	a->created_at = r_int(r, row, 6);
	a->last_seen = r_int(r, row, 7);
	a->banned = r_bool(r, row, 8);
	return a;
}

int pg_agent_params(const struct agent_record *a, struct params *pa, char **sel, char **aliases)
{
	*sel = datastore_strv_to_text(a->selectors, a->n_selectors);
	*aliases = datastore_strv_to_text(a->aliases, a->n_aliases);
	if (!*sel || !*aliases)
		return -ENOMEM;
	p_str(pa, a->spiffe_id);
	p_str(pa, a->attestor);
	p_str(pa, *sel);
	p_str(pa, *aliases);
	p_str(pa, a->serial);
	p_int(pa, a->not_after);
	p_int(pa, a->created_at ? a->created_at : now_unix());
	p_int(pa, a->last_seen);
	p_bool(pa, a->banned);
	return 0;
}

int pg_agent_upsert(struct datastore *ds, const struct agent_record *a)
{
	struct params pa = {0};
	char *sel = NULL, *aliases = NULL;
	int ret = pg_agent_params(a, &pa, &sel, &aliases);
	if (ret == 0)
		ret = change_one(pg_of(ds), ST_AGENT_UPSERT, &pa, DS_CHANGE_AGENT, a->spiffe_id);
	free(sel);
	free(aliases);
	return ret;
}

static void *agent_reader(const PGresult *r, int row)
{
	return agent_from_row(r, row);
}

int pg_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out)
{
	void *a = NULL;
	int ret = get_row(ds, ST_AGENT_GET, spiffe_id, agent_reader, &a);
	if (ret == 0)
		*out = a;
	return ret;
}

int pg_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), ST_AGENT_LIST, NULL, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	struct agent_record **v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++) {
		if (!(v[i] = agent_from_row(r, i))) {
			agent_record_array_free(v, (size_t)i);
			pq_dyn.clear(r);
			return -EIO;
		}
	}
	pq_dyn.clear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_agent_delete(struct datastore *ds, const char *spiffe_id)
{
	struct params pa = {0};
	p_str(&pa, spiffe_id);
	return change_one(pg_of(ds), ST_AGENT_DELETE, &pa, DS_CHANGE_AGENT, spiffe_id);
}

int pg_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned)
{
	struct params pa = {0};
	p_str(&pa, spiffe_id);
	p_bool(&pa, banned);
	return change_one(pg_of(ds), ST_AGENT_BAN, &pa, DS_CHANGE_AGENT, spiffe_id);
}

int pg_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
			  int64_t not_after, int64_t now)
{
	struct params pa = {0};
	p_str(&pa, spiffe_id);
	p_str(&pa, serial);
	p_int(&pa, not_after);
	p_int(&pa, now);
	return one_row(pg_of(ds), ST_AGENT_TOUCH, &pa);
}

/* ---- CA authorities ---- */

void pg_ca_params(const struct ca_record *rec, struct params *pa)
{
	p_str(pa, rec->id);
	p_int(pa, rec->state);
	p_bytes(pa, rec->cert_der, rec->cert_len);
	p_str(pa, rec->jwt_kid);
	p_bytes(pa, rec->jwt_spki, rec->jwt_spki_len);
	p_int(pa, rec->not_before);
	p_int(pa, rec->not_after);
	p_int(pa, rec->created_at ? rec->created_at : now_unix());
}

int pg_ca_put(struct datastore *ds, const struct ca_record *rec)
{
	struct params pa = {0};
	pg_ca_params(rec, &pa);
	/* In the feed: the other servers add it to their bundle at once. */
	return change_one(pg_of(ds), ST_CA_PUT, &pa, DS_CHANGE_BUNDLE, rec->id);
}

struct ca_state_arg {
	const char *id;
	int *state;
};

/* The merge and its feed row (the other servers re-read the authorities), in one transaction. */
static int ca_set_state_body(struct pg *p, struct pgc *c, void *arg)
{
	struct ca_state_arg *a = arg;
	struct params pa = {0};
	PGresult *r;
	p_str(&pa, a->id);
	p_int(&pa, *a->state);
	int ret = run(p, c, ST_CA_SET_STATE, &pa, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	if (rows == 1)
		*a->state = (int)r_int(r, 0, 0);
	pq_dyn.clear(r);
	return rows == 1 ? change_add(p, c, DS_CHANGE_BUNDLE, a->id) : -ENOENT;
}

int pg_ca_set_state(struct datastore *ds, const char *id, int *state)
{
	struct ca_state_arg a = {.id = id, .state = state};
	return with_conn(pg_of(ds), true, ca_set_state_body, &a);
}

int pg_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), ST_CA_LIST, NULL, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	struct ca_record **v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++) {
		struct ca_record *c = xcalloc(1, sizeof(*c));
		snprintf(c->id, sizeof(c->id), "%s", pq_dyn.getvalue(r, i, 0));
		c->state = (int)r_int(r, i, 1);
		c->cert_der = r_bytes(r, i, 2, &c->cert_len);
		c->jwt_kid = r_strdup(r, i, 3);
		c->jwt_spki = r_bytes(r, i, 4, &c->jwt_spki_len);
		c->not_before = r_int(r, i, 5);
		c->not_after = r_int(r, i, 6);
		c->created_at = r_int(r, i, 7);
		v[i] = c;
	}
	pq_dyn.clear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_ca_delete(struct datastore *ds, const char *id)
{
	struct params pa = {0};
	p_str(&pa, id);
	return change_one(pg_of(ds), ST_CA_DELETE, &pa, DS_CHANGE_BUNDLE, id);
}

/* ---- federated bundles ---- */

int pg_fed_bundle_params(const struct fed_bundle *b, struct params *pa, char **jwt)
{
	bool ok;
	*jwt = datastore_fed_jwt_text(b, &ok);
	if (!ok)
		return -ENOMEM;
	p_str(pa, b->trust_domain);
	p_bytes(pa, b->x509, b->x509_len);
	p_str(pa, *jwt);
	p_int(pa, b->sequence);
	p_int(pa, b->refresh_hint);
	p_int(pa, b->refreshed_at);
	p_str(pa, fed_bundle_source_name(b->source));
	return 0;
}

int pg_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, bool force)
{
	struct params pa = {0};
	char *jwt = NULL;
	if (pg_fed_bundle_params(b, &pa, &jwt) < 0)
		return -ENOMEM;
	p_bool(&pa, force);
	int ret = change_one(pg_of(ds), ST_FED_PUT, &pa, DS_CHANGE_FED_BUNDLE, b->trust_domain);
	free(jwt);
	return ret == -ENOENT ? -ESTALE : ret;
}

static void *fed_bundle_reader(const PGresult *r, int row)
{
	size_t x509_len;
	uint8_t *x509 = r_bytes(r, row, 1, &x509_len);
	struct fed_bundle *b = datastore_fed_bundle_from_cols(
		pq_dyn.getvalue(r, row, 0), x509, x509_len,
		pq_dyn.getisnull(r, row, 2) ? NULL : pq_dyn.getvalue(r, row, 2), r_int(r, row, 3),
		r_int(r, row, 4), r_int(r, row, 5), pq_dyn.getvalue(r, row, 6));
	free(x509);
	return b;
}

int pg_fed_bundle_get(struct datastore *ds, const char *trust_domain,
			     struct fed_bundle **out)
{
	void *b = NULL;
	int ret = get_row(ds, ST_FED_GET, trust_domain, fed_bundle_reader, &b);
	if (ret == 0)
		*out = b;
	return ret;
}

int pg_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), ST_FED_LIST, NULL, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	struct fed_bundle **v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++) {
		if (!(v[i] = fed_bundle_reader(r, i))) {
			fed_bundle_array_free(v, (size_t)i);
			pq_dyn.clear(r);
			return -EIO;
		}
	}
	pq_dyn.clear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}

int pg_fed_bundle_delete(struct datastore *ds, const char *trust_domain)
{
	struct params pa = {0};
	p_str(&pa, trust_domain);
	return change_one(pg_of(ds), ST_FED_DELETE, &pa, DS_CHANGE_FED_BUNDLE, trust_domain);
}

/* ---- federation relationships ---- */

int pg_fed_rel_put(struct datastore *ds, const char *td, const char *doc, bool create)
{
	struct params pa = {0};
	p_str(&pa, td);
	p_str(&pa, doc);
	int ret = one_row(pg_of(ds), create ? ST_FED_REL_INSERT : ST_FED_REL_UPDATE, &pa);
	return create && ret == -ENOENT ? -EEXIST : ret;
}

static void *doc_reader(const PGresult *r, int row)
{
	return r_strdup(r, row, 0);
}

int pg_fed_rel_get(struct datastore *ds, const char *td, char **doc)
{
	return get_row(ds, ST_FED_REL_GET, td, doc_reader, (void **)doc);
}

int pg_fed_rel_list(struct datastore *ds, char ***docs, size_t *n)
{
	PGresult *r;
	int ret = one(pg_of(ds), ST_FED_REL_LIST, NULL, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	char **v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++)
		v[i] = r_strdup(r, i, 0);
	pq_dyn.clear(r);
	*docs = v;
	*n = (size_t)rows;
	return 0;
}

int pg_fed_rel_delete(struct datastore *ds, const char *td)
{
	struct params pa = {0};
	p_str(&pa, td);
	return one_row(pg_of(ds), ST_FED_REL_DELETE, &pa);
}

/* ---- key/value ---- */

int pg_kv_get_int(struct datastore *ds, const char *key, int64_t *out)
{
	struct params pa = {0};
	PGresult *r;
	p_str(&pa, key);
	int ret = one(pg_of(ds), ST_KV_GET, &pa, &r);
	if (ret < 0)
		return ret;
	if (pq_dyn.ntuples(r) == 0)
		ret = -ENOENT;
	else
		*out = r_int(r, 0, 0);
	pq_dyn.clear(r);
	return ret;
}

int pg_kv_set_int(struct datastore *ds, const char *key, int64_t v)
{
	struct params pa = {0};
	p_str(&pa, key);
	p_int(&pa, v);
	return one(pg_of(ds), ST_KV_SET, &pa, NULL);
}

int pg_ping(struct datastore *ds)
{
	return one(pg_of(ds), ST_PING, NULL, NULL);
}

/* ---- leases ---- */

int pg_lease_acquire(struct datastore *ds, const char *name, const char *holder,
			    int64_t ttl_s)
{
	struct params pa = {0};
	p_str(&pa, name);
	p_str(&pa, holder);
	p_int(&pa, ttl_s);
	int ret = one_row(pg_of(ds), ST_LEASE_TAKE, &pa);
	return ret == -ENOENT ? 0 : ret < 0 ? ret : 1;
}

int pg_lease_release(struct datastore *ds, const char *name, const char *holder)
{
	struct params pa = {0};
	p_str(&pa, name);
	p_str(&pa, holder);
	return one(pg_of(ds), ST_LEASE_DROP, &pa, NULL);
}

/* ---- servers ---- */

int pg_server_heartbeat(struct datastore *ds, const struct server_record *rec)
{
	struct params pa = {0};
	p_str(&pa, rec->id);
	p_str(&pa, rec->address);
	p_str(&pa, rec->version);
	p_int(&pa, rec->started_at);
	p_int(&pa, rec->authorities);
	int ret = one(pg_of(ds), ST_SERVER_BEAT, &pa, NULL);
	if (ret == 0) {
		struct params pp = {0};
		p_int(&pp, SERVER_FORGET_S);
		ret = one(pg_of(ds), ST_SERVER_PRUNE, &pp, NULL);
	}
	return ret;
}

int pg_server_list(struct datastore *ds, int64_t live_s, struct server_record ***out,
			  size_t *n)
{
	struct params pa = {0};
	PGresult *r;
	p_int(&pa, live_s);
	int ret = one(pg_of(ds), ST_SERVER_LIST, &pa, &r);
	if (ret < 0)
		return ret;
	int rows = pq_dyn.ntuples(r);
	struct server_record **v = rows ? xcalloc((size_t)rows, sizeof(*v)) : NULL;
	for (int i = 0; i < rows; i++) {
		struct server_record *c = xcalloc(1, sizeof(*c));
		c->id = r_strdup(r, i, 0);
		c->address = r_strdup(r, i, 1);
		c->version = r_strdup(r, i, 2);
		c->started_at = r_int(r, i, 3);
		c->last_seen = r_int(r, i, 4);
		c->authorities = r_int(r, i, 5);
		v[i] = c;
	}
	pq_dyn.clear(r);
	*out = v;
	*n = (size_t)rows;
	return 0;
}
