/* datastore_records.c: the records the datastore hands out (see datastore.h): freeing agents,
 * authorities and servers, their JSON for the admin API and the status pages, and the servers'
 * heartbeats (kept in memory when the backend has no table for them).
 *
 * Threads: any thread; the heartbeat kept in memory is guarded by the journal lock
 * (datastore.c). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "datastore_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strv.h"
#include "util.h"

#include "datastore_internal.h"

void agent_record_free(struct agent_record *a)
{
	if (!a)
		return;
	free(a->spiffe_id);
	free(a->attestor);
	strv_free(a->selectors, a->n_selectors);
	strv_free(a->aliases, a->n_aliases);
	free(a->serial);
	free(a);
}

void agent_record_array_free(struct agent_record **a, size_t n)
{
	if (!a)
		return;
	for (size_t i = 0; i < n; i++)
		agent_record_free(a[i]);
	free(a);
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *agent_record_to_json(const struct agent_record *a)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:b}",
			 "spiffe_id", str_or_null(a->spiffe_id),
			 "attestor", str_or_null(a->attestor),
			 "selectors", strv_to_json(a->selectors, a->n_selectors),
			 "aliases", strv_to_json(a->aliases, a->n_aliases),
			 "serial", str_or_null(a->serial),
			 "not_after", (json_int_t)a->not_after,
			 "created_at", (json_int_t)a->created_at,
			 "last_seen", (json_int_t)a->last_seen,
			 "banned", (int)a->banned);
}

void ca_record_free(struct ca_record *r)
{
	if (!r)
		return;
	free(r->cert_der);
	free(r->jwt_kid);
	free(r->jwt_spki);
	free(r);
}

void ca_record_array_free(struct ca_record **r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++)
		ca_record_free(r[i]);
	free(r);
}

/* ---- servers ---- */

static struct server_record *server_record_dup(const struct server_record *r, int64_t last_seen)
{
	struct server_record *c = xcalloc(1, sizeof(*c));
	c->id = xstrdup(r->id);
	c->address = xstrdup(r->address);
	c->version = xstrdup(r->version);
	c->started_at = r->started_at;
	c->last_seen = last_seen;
	c->authorities = r->authorities;
	return c;
}

int ds_server_heartbeat(struct datastore *ds, const struct server_record *r)
{
	if (ds->ops->server_heartbeat) {
		int64_t t0 = op_begin(ds);
		int ret = ds->ops->server_heartbeat(ds, r);
		op_end(ds, DS_OP_SERVER_HEARTBEAT, ret, t0);
		return ret;
	}
	struct server_record *c = server_record_dup(r, now_unix());
	journal_lock(ds);
	server_record_free(ds->self);
	ds->self = c;
	journal_unlock(ds);
	return 0;
}

int ds_server_list(struct datastore *ds, int64_t live_s, struct server_record ***out, size_t *n)
{
	if (ds->ops->server_list) {
		int64_t t0 = op_begin(ds);
		int ret = ds->ops->server_list(ds, live_s, out, n);
		op_end(ds, DS_OP_SERVER_LIST, ret, t0);
		return ret;
	}
	*out = NULL;
	*n = 0;
	journal_lock(ds);
	if (ds->self && ds->self->last_seen >= now_unix() - live_s) {
		*out = xcalloc(1, sizeof(**out));
		(*out)[0] = server_record_dup(ds->self, ds->self->last_seen);
		*n = 1;
	}
	journal_unlock(ds);
	return 0;
}

void server_record_free(struct server_record *r)
{
	if (!r)
		return;
	free(r->id);
	free(r->address);
	free(r->version);
	free(r);
}

void server_record_array_free(struct server_record **r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++)
		server_record_free(r[i]);
	free(r);
}

json_t *server_record_to_json(const struct server_record *r)
{
	return json_pack("{s:o, s:o, s:o, s:I, s:I, s:I}", "id", str_or_null(r->id), "address",
			 str_or_null(r->address), "version", str_or_null(r->version), "started_at",
			 (json_int_t)r->started_at, "last_seen", (json_int_t)r->last_seen,
			 "authorities", (json_int_t)r->authorities);
}
