/* datastore.c: the backend-neutral half of the datastore: locking and dispatch to the backend's
 * vtable, and the record helpers shared by all backends. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "datastore_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"
#include "util.h"

void datastore_init_base(struct datastore *ds, const struct datastore_ops *ops)
{
	ds->ops = ops;
	pthread_mutex_init(&ds->lock, NULL);
	ds->journal_cap = DS_JOURNAL_CAP;
	ds->journal = xcalloc(ds->journal_cap, sizeof(*ds->journal));
	ds->journal_len = ds->journal_head = 0;
}

void datastore_fini_base(struct datastore *ds)
{
	for (size_t i = 0; i < ds->journal_len; i++)
		free(ds->journal[(ds->journal_head + i) % ds->journal_cap].id);
	free(ds->journal);
	ds->journal = NULL;
	ds->journal_len = 0;
	server_record_free(ds->self);
	ds->self = NULL;
	pthread_mutex_destroy(&ds->lock);
}

int datastore_token_hash(const char *token, char out[65])
{
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	if (wc_Sha256Hash((const uint8_t *)token, (word32)strlen(token), h) != 0)
		return -EIO;
	hex_encode(h, sizeof(h), out);
	return 0;
}

char *datastore_strv_to_text(char *const *v, size_t n)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	char *txt = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return txt;
}

int datastore_strv_from_text(const char *txt, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!txt)
		return 0;
	json_t *a = json_loads(txt, 0, NULL);
	if (!json_is_array(a)) {
		json_decref(a);
		return -EIO;
	}
	size_t len = json_array_size(a);
	char **v = len ? xcalloc(len, sizeof(*v)) : NULL;
	for (size_t i = 0; i < len; i++) {
		const char *str = json_string_value(json_array_get(a, i));
		v[i] = xstrdup(str ? str : "");
	}
	json_decref(a);
	*out = v;
	*n = len;
	return 0;
}

void datastore_close(struct datastore *ds)
{
	if (ds)
		ds->ops->close(ds);
}

/* Around backend calls: only a backend that cannot be called concurrently is serialised. */
static void lock(struct datastore *ds)
{
	if (!ds->ops->concurrent)
		pthread_mutex_lock(&ds->lock);
}

static void unlock(struct datastore *ds)
{
	if (!ds->ops->concurrent)
		pthread_mutex_unlock(&ds->lock);
}

/* Around journal reads: always. */
static void journal_lock(struct datastore *ds)
{
	pthread_mutex_lock(&ds->lock);
}

static void journal_unlock(struct datastore *ds)
{
	pthread_mutex_unlock(&ds->lock);
}

/* Called under lock after a change, with the counter read before it. A change is recorded only
 * when it moved the counter by exactly one; any other movement leaves a hole in the journal,
 * which ds_changes_since reports as -ESTALE (readers then re-read everything): a missed record
 * can cost time, never correctness. */
static void journal_record(struct datastore *ds, int64_t counter, enum ds_change_kind kind,
			   const char *id)
{
	struct ds_change *slot;
	if (ds->journal_len == ds->journal_cap) {
		slot = &ds->journal[ds->journal_head];
		free(slot->id);
		ds->journal_head = (ds->journal_head + 1) % ds->journal_cap;
	} else {
		slot = &ds->journal[(ds->journal_head + ds->journal_len) % ds->journal_cap];
		ds->journal_len++;
	}
	slot->counter = counter;
	slot->kind = kind;
	slot->id = xstrdup(id);
}

static void journal_add(struct datastore *ds, int64_t before, int ret, enum ds_change_kind kind,
			const char *id)
{
	if (ds->ops->concurrent)
		return; /* the backend records its changes itself */
	int64_t after = ds->ops->change_counter(ds);
	if (ret < 0 || after != before + 1 || !id || !*id)
		return;
	journal_record(ds, after, kind, id);
}

/* The counter value before a change, for journal_add; called under lock. */
static int64_t change_before(struct datastore *ds)
{
	return ds->ops->concurrent ? 0 : ds->ops->change_counter(ds);
}

void datastore_feed_add(struct datastore *ds, enum ds_change_kind kind, const char *id)
{
	journal_lock(ds);
	if (kind == DS_CHANGE_BUNDLE) {
		ds->bundle_gen++;
	} else if (kind == DS_CHANGE_ENTRY || kind == DS_CHANGE_AGENT) {
		ds->feed_counter++;
		journal_record(ds, ds->feed_counter, kind, id);
	} else {
		ds->feed_counter++; /* a kind this version does not know: re-read everything */
	}
	journal_unlock(ds);
}

int64_t ds_bundle_generation(struct datastore *ds)
{
	journal_lock(ds);
	int64_t g = ds->bundle_gen;
	journal_unlock(ds);
	return g;
}

void datastore_feed_hole(struct datastore *ds)
{
	journal_lock(ds);
	ds->feed_counter++;
	journal_unlock(ds);
}

/* The hook runs under the lock, so that once ds_set_change_hook(ds, NULL, NULL) returns it is
 * not running and will not run (its handle may then be closed). */
void datastore_feed_wake(struct datastore *ds)
{
	journal_lock(ds);
	if (ds->change_hook)
		ds->change_hook(ds->change_hook_ud);
	journal_unlock(ds);
}

int64_t datastore_feed_counter(struct datastore *ds)
{
	return ds->feed_counter;
}

void ds_set_change_hook(struct datastore *ds, void (*hook)(void *ud), void *ud)
{
	journal_lock(ds);
	ds->change_hook = hook;
	ds->change_hook_ud = ud;
	journal_unlock(ds);
}

int ds_changes_since(struct datastore *ds, int64_t since, struct ds_change **out, size_t *n,
		     int64_t *counter)
{
	*out = NULL;
	*n = 0;
	journal_lock(ds);
	int64_t cur = ds->ops->change_counter(ds);
	int ret = 0;
	if (cur < 0) {
		ret = -EIO;
		goto out;
	}
	*counter = cur;
	if (since == cur)
		goto out;
	if (since > cur || since < 0 || (uint64_t)(cur - since) > ds->journal_len) {
		ret = -ESTALE;
		goto out;
	}
	/* The journal holds contiguous counter values ending at cur (checked below), so the last
	 * cur - since records are exactly the changes wanted. */
	size_t want = (size_t)(cur - since);
	struct ds_change *v = xcalloc(want, sizeof(*v));
	for (size_t i = 0; i < want; i++) {
		size_t at = (ds->journal_head + ds->journal_len - want + i) % ds->journal_cap;
		const struct ds_change *c = &ds->journal[at];
		if (c->counter != since + 1 + (int64_t)i) {
			ds_change_array_free(v, i);
			ret = -ESTALE;
			goto out;
		}
		v[i].counter = c->counter;
		v[i].kind = c->kind;
		v[i].id = xstrdup(c->id);
	}
	*out = v;
	*n = want;
out:
	journal_unlock(ds);
	return ret;
}

void ds_change_array_free(struct ds_change *c, size_t n)
{
	if (!c)
		return;
	for (size_t i = 0; i < n; i++)
		free(c[i].id);
	free(c);
}

int ds_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	if (!e || !e->spiffe_id || !e->parent_id) {
		snprintf(err, errlen, "spiffe_id and parent_id are required");
		return -EINVAL;
	}
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_create(ds, e, err, errlen);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, e->id);
	unlock(ds);
	return ret;
}

/* Assigns the ids and creation times of a batch before the backend writes it, so that the
 * backend's retries (PostgreSQL) write the same entries; undone on failure. */
static int batch_prepare(struct entry **v, size_t n, size_t *failed, char *err, size_t errlen)
{
	int64_t now = now_unix();
	for (size_t i = 0; i < n; i++) {
		if (!v[i] || !v[i]->spiffe_id || !v[i]->parent_id) {
			*failed = i;
			snprintf(err, errlen, "spiffe_id and parent_id are required");
			return -EINVAL;
		}
		if (uuid_v4(v[i]->id) < 0) {
			snprintf(err, errlen, "cannot generate an entry id");
			return -EIO;
		}
		if (v[i]->created_at == 0)
			v[i]->created_at = now;
	}
	return 0;
}

int ds_entry_create_batch(struct datastore *ds, struct entry **v, size_t n, size_t *failed,
			  char *err, size_t errlen)
{
	int64_t *created = n ? xcalloc(n, sizeof(*created)) : NULL;
	*failed = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		created[i] = v[i] ? v[i]->created_at : 0;
	int ret = batch_prepare(v, n, failed, err, errlen);
	if (ret < 0 || n == 0)
		goto out;
	lock(ds);
	int64_t before = change_before(ds);
	ret = ds->ops->entry_create_batch(ds, v, n, failed, err, errlen);
	/* One record per entry, each under the counter value its write produced (its revision). */
	if (ret == 0 && !ds->ops->concurrent &&
	    ds->ops->change_counter(ds) == before + (int64_t)n) {
		for (size_t i = 0; i < n; i++)
			journal_record(ds, before + 1 + (int64_t)i, DS_CHANGE_ENTRY, v[i]->id);
	}
	unlock(ds);
out:
	for (size_t i = 0; ret < 0 && i < n; i++) {
		if (!v[i])
			continue;
		v[i]->id[0] = '\0';
		v[i]->revision = 0;
		v[i]->created_at = created[i];
	}
	free(created);
	return ret;
}

int ds_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen)
{
	if (!e || !e->spiffe_id || !e->parent_id) {
		snprintf(err, errlen, "spiffe_id and parent_id are required");
		return -EINVAL;
	}
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_update(ds, e, err, errlen);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, e->id);
	unlock(ds);
	return ret;
}

int ds_entry_delete(struct datastore *ds, const char *id)
{
	if (!id)
		return -EINVAL;
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_delete(ds, id);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, id);
	unlock(ds);
	return ret;
}

int ds_entry_get(struct datastore *ds, const char *id, struct entry **out)
{
	if (!id)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->entry_get(ds, id, out);
	unlock(ds);
	return ret;
}

int ds_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	lock(ds);
	int ret = ds->ops->entry_list(ds, f, out, n);
	unlock(ds);
	return ret;
}

int ds_entry_count(struct datastore *ds, int64_t *n)
{
	lock(ds);
	int ret = ds->ops->entry_count(ds, n);
	unlock(ds);
	return ret;
}

int ds_agent_count(struct datastore *ds, int64_t *n)
{
	lock(ds);
	int ret = ds->ops->agent_count(ds, n);
	unlock(ds);
	return ret;
}

int64_t ds_change_counter(struct datastore *ds)
{
	journal_lock(ds);
	int64_t ret = ds->ops->change_counter(ds);
	journal_unlock(ds);
	return ret;
}

int ds_token_create(struct datastore *ds, const char *token, const char *alias, int64_t expires_at)
{
	char hash[65];
	if (!token || !*token)
		return -EINVAL;
	if (datastore_token_hash(token, hash) < 0)
		return -EIO;
	lock(ds);
	int ret = ds->ops->token_create(ds, hash, alias, expires_at);
	unlock(ds);
	return ret;
}

int ds_token_consume(struct datastore *ds, const char *token, int64_t now, char **alias_out)
{
	char hash[65];
	if (alias_out)
		*alias_out = NULL;
	if (!token || !*token)
		return -ENOENT;
	if (datastore_token_hash(token, hash) < 0)
		return -EIO;
	lock(ds);
	int ret = ds->ops->token_consume(ds, hash, now, alias_out);
	unlock(ds);
	return ret;
}

int ds_token_count(struct datastore *ds, int64_t now, int64_t *n)
{
	lock(ds);
	int ret = ds->ops->token_count(ds, now, n);
	unlock(ds);
	return ret;
}

int ds_token_prune(struct datastore *ds, int64_t now)
{
	lock(ds);
	int ret = ds->ops->token_prune(ds, now);
	unlock(ds);
	return ret;
}

int ds_agent_upsert(struct datastore *ds, const struct agent_record *a)
{
	if (!a || !a->spiffe_id)
		return -EINVAL;
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_upsert(ds, a);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, a->spiffe_id);
	unlock(ds);
	return ret;
}

int ds_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out)
{
	if (!spiffe_id)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->agent_get(ds, spiffe_id, out);
	unlock(ds);
	return ret;
}

int ds_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	lock(ds);
	int ret = ds->ops->agent_list(ds, out, n);
	unlock(ds);
	return ret;
}

int ds_agent_delete(struct datastore *ds, const char *spiffe_id)
{
	if (!spiffe_id)
		return -EINVAL;
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_delete(ds, spiffe_id);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, spiffe_id);
	unlock(ds);
	return ret;
}

int ds_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned)
{
	if (!spiffe_id)
		return -EINVAL;
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_set_banned(ds, spiffe_id, banned);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, spiffe_id);
	unlock(ds);
	return ret;
}

int ds_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
		   int64_t not_after, int64_t now)
{
	if (!spiffe_id)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->agent_touch(ds, spiffe_id, serial, not_after, now);
	unlock(ds);
	return ret;
}

int ds_ca_put(struct datastore *ds, const struct ca_record *r)
{
	if (!r || !r->id[0] || memchr(r->id, '\0', sizeof(r->id)) == NULL)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->ca_put(ds, r);
	unlock(ds);
	return ret;
}

int ds_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	lock(ds);
	int ret = ds->ops->ca_list(ds, out, n);
	unlock(ds);
	return ret;
}

int ds_ca_delete(struct datastore *ds, const char *id)
{
	if (!id)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->ca_delete(ds, id);
	unlock(ds);
	return ret;
}

int ds_kv_get_int(struct datastore *ds, const char *key, int64_t *out)
{
	if (!key)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->kv_get_int(ds, key, out);
	unlock(ds);
	return ret;
}

int ds_kv_set_int(struct datastore *ds, const char *key, int64_t v)
{
	if (!key)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->kv_set_int(ds, key, v);
	unlock(ds);
	return ret;
}

int ds_ping(struct datastore *ds)
{
	lock(ds);
	int ret = ds->ops->ping(ds);
	unlock(ds);
	return ret;
}

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

static json_t *strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
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
			 "selectors", strv_json(a->selectors, a->n_selectors),
			 "aliases", strv_json(a->aliases, a->n_aliases),
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
		lock(ds);
		int ret = ds->ops->server_heartbeat(ds, r);
		unlock(ds);
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
		lock(ds);
		int ret = ds->ops->server_list(ds, live_s, out, n);
		unlock(ds);
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
