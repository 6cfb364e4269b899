/* datastore.c: the backend-neutral half of the datastore: locking and dispatch to the backend's
 * vtable, and the record helpers shared by all backends; the records' memory and JSON are in
 * datastore_records.c. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "datastore_backend.h"
#include "datastore_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
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
	/* Most entries have no DNS names and no federations: no parser for those. */
	if (!txt || strcmp(txt, "[]") == 0)
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

const char *const ds_op_names[DS_OP__COUNT] = {
	[DS_OP_ENTRY_CREATE] = "entry_create",
	[DS_OP_ENTRY_UPDATE] = "entry_update",
	[DS_OP_ENTRY_DELETE] = "entry_delete",
	[DS_OP_ENTRY_GET] = "entry_get",
	[DS_OP_ENTRY_LIST] = "entry_list",
	[DS_OP_ENTRY_COUNT] = "entry_count",
	[DS_OP_AGENT_COUNT] = "agent_count",
	[DS_OP_TOKEN_CREATE] = "token_create",
	[DS_OP_TOKEN_CONSUME] = "token_consume",
	[DS_OP_TOKEN_COUNT] = "token_count",
	[DS_OP_TOKEN_PRUNE] = "token_prune",
	[DS_OP_TOKEN_LIST] = "token_list",
	[DS_OP_AGENT_UPSERT] = "agent_upsert",
	[DS_OP_AGENT_GET] = "agent_get",
	[DS_OP_AGENT_LIST] = "agent_list",
	[DS_OP_AGENT_DELETE] = "agent_delete",
	[DS_OP_AGENT_SET_BANNED] = "agent_set_banned",
	[DS_OP_AGENT_TOUCH] = "agent_touch",
	[DS_OP_CA_PUT] = "ca_put",
	[DS_OP_CA_LIST] = "ca_list",
	[DS_OP_CA_DELETE] = "ca_delete",
	[DS_OP_CA_SET_STATE] = "ca_set_state",
	[DS_OP_KV_GET_INT] = "kv_get",
	[DS_OP_KV_SET_INT] = "kv_set",
	[DS_OP_PING] = "ping",
	[DS_OP_SNAPSHOT_IMPORT] = "snapshot_import",
	[DS_OP_SERVER_HEARTBEAT] = "server_heartbeat",
	[DS_OP_SERVER_LIST] = "server_list",
};

const double ds_latency_buckets[DS_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
						       0.05, 0.1, 0.25, 0.5, 1, 5};

static void hist_observe(struct ds_atomic_hist *h, int64_t us)
{
	double secs = (double)(us < 0 ? 0 : us) / 1e6;
	for (size_t i = 0; i < DS_LATENCY_BUCKETS; i++)
		if (secs <= ds_latency_buckets[i])
			atomic_fetch_add_explicit(&h->le[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(us < 0 ? 0 : us), memory_order_relaxed);
}

static void hist_read(struct ds_atomic_hist *h, struct ds_histogram *out)
{
	/* count first: a bucket read later may be ahead of it, never behind. */
	out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
	for (size_t i = 0; i < DS_LATENCY_BUCKETS; i++) {
		out->le[i] = atomic_load_explicit(&h->le[i], memory_order_relaxed);
		if (out->le[i] > out->count)
			out->le[i] = out->count;
	}
	out->sum = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}

/* Outcomes a caller expects are not errors of the datastore. */
static bool is_error(int ret)
{
	return ret < 0 && ret != -ENOENT && ret != -EEXIST && ret != -ETIMEDOUT && ret != -EINVAL &&
	       ret != -ENOTEMPTY && ret != -EBUSY && ret != -ENOTSUP;
}

/* Around every backend call: the lock (see lock) and the statistics. */
int64_t op_begin(struct datastore *ds)
{
	int64_t t0 = now_mono_us();
	lock(ds);
	return t0;
}

void op_end(struct datastore *ds, enum ds_op op, int ret, int64_t t0)
{
	unlock(ds);
	hist_observe(&ds->op_hist[op], now_mono_us() - t0);
	if (is_error(ret))
		atomic_fetch_add_explicit(&ds->op_errors[op], 1, memory_order_relaxed);
}

void datastore_feed_lag(struct datastore *ds, double lag_seconds)
{
	hist_observe(&ds->feed_lag, (int64_t)(lag_seconds * 1e6));
}

void datastore_count_retry(struct datastore *ds)
{
	atomic_fetch_add_explicit(&ds->retries, 1, memory_order_relaxed);
}

void ds_stats_get(struct datastore *ds, struct ds_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < DS_OP__COUNT; i++) {
		hist_read(&ds->op_hist[i], &out->op[i]);
		out->op_errors[i] = atomic_load_explicit(&ds->op_errors[i], memory_order_relaxed);
	}
	out->retries = atomic_load_explicit(&ds->retries, memory_order_relaxed);
	out->has_feed = ds->has_feed;
	hist_read(&ds->feed_lag, &out->feed_lag);
	out->feed_holes = atomic_load_explicit(&ds->feed_holes, memory_order_relaxed);
}

/* Around journal reads: always. */
void journal_lock(struct datastore *ds)
{
	pthread_mutex_lock(&ds->lock);
}

void journal_unlock(struct datastore *ds)
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
	} else if (kind == DS_CHANGE_ENTRY || kind == DS_CHANGE_AGENT ||
		   kind == DS_CHANGE_FED_BUNDLE) {
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
	atomic_fetch_add_explicit(&ds->feed_holes, 1, memory_order_relaxed);
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
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_create(ds, e, err, errlen);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, e->id);
	op_end(ds, DS_OP_ENTRY_CREATE, ret, t0);
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
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_update(ds, e, err, errlen);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, e->id);
	op_end(ds, DS_OP_ENTRY_UPDATE, ret, t0);
	return ret;
}

int ds_entry_delete(struct datastore *ds, const char *id)
{
	if (!id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->entry_delete(ds, id);
	journal_add(ds, before, ret, DS_CHANGE_ENTRY, id);
	op_end(ds, DS_OP_ENTRY_DELETE, ret, t0);
	return ret;
}

int ds_entry_get(struct datastore *ds, const char *id, struct entry **out)
{
	if (!id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->entry_get(ds, id, out);
	op_end(ds, DS_OP_ENTRY_GET, ret, t0);
	return ret;
}

int ds_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->entry_list(ds, f, out, n);
	op_end(ds, DS_OP_ENTRY_LIST, ret, t0);
	return ret;
}

int ds_entry_count(struct datastore *ds, int64_t *n)
{
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->entry_count(ds, n);
	op_end(ds, DS_OP_ENTRY_COUNT, ret, t0);
	return ret;
}

int ds_agent_count(struct datastore *ds, int64_t *n)
{
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->agent_count(ds, n);
	op_end(ds, DS_OP_AGENT_COUNT, ret, t0);
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
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->token_create(ds, hash, alias, expires_at);
	op_end(ds, DS_OP_TOKEN_CREATE, ret, t0);
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
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->token_consume(ds, hash, now, alias_out);
	op_end(ds, DS_OP_TOKEN_CONSUME, ret, t0);
	return ret;
}

int ds_token_count(struct datastore *ds, int64_t now, int64_t *n)
{
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->token_count(ds, now, n);
	op_end(ds, DS_OP_TOKEN_COUNT, ret, t0);
	return ret;
}

int ds_token_prune(struct datastore *ds, int64_t now)
{
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->token_prune(ds, now);
	op_end(ds, DS_OP_TOKEN_PRUNE, ret, t0);
	return ret;
}

int ds_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->token_list(ds, out, n);
	op_end(ds, DS_OP_TOKEN_LIST, ret, t0);
	return ret;
}

void ds_token_record_array_free(struct ds_token_record *t, size_t n)
{
	if (!t)
		return;
	for (size_t i = 0; i < n; i++)
		free(t[i].alias);
	free(t);
}

/* After a write that may change agent records, still under the lock (ds_agent_generation): even
 * a failed write may have changed something before it failed. */
static void agent_changed(struct datastore *ds)
{
	atomic_fetch_add_explicit(&ds->agent_gen, 1, memory_order_release);
}

bool ds_agent_generation(struct datastore *ds, uint64_t *gen)
{
	*gen = atomic_load_explicit(&ds->agent_gen, memory_order_acquire);
	return !ds->ops->concurrent;
}

int ds_agent_upsert(struct datastore *ds, const struct agent_record *a)
{
	if (!a || !a->spiffe_id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_upsert(ds, a);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, a->spiffe_id);
	agent_changed(ds);
	op_end(ds, DS_OP_AGENT_UPSERT, ret, t0);
	return ret;
}

int ds_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out)
{
	if (!spiffe_id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->agent_get(ds, spiffe_id, out);
	op_end(ds, DS_OP_AGENT_GET, ret, t0);
	return ret;
}

int ds_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->agent_list(ds, out, n);
	op_end(ds, DS_OP_AGENT_LIST, ret, t0);
	return ret;
}

int ds_agent_delete(struct datastore *ds, const char *spiffe_id)
{
	if (!spiffe_id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_delete(ds, spiffe_id);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, spiffe_id);
	agent_changed(ds);
	op_end(ds, DS_OP_AGENT_DELETE, ret, t0);
	return ret;
}

int ds_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned)
{
	if (!spiffe_id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->agent_set_banned(ds, spiffe_id, banned);
	journal_add(ds, before, ret, DS_CHANGE_AGENT, spiffe_id);
	agent_changed(ds);
	op_end(ds, DS_OP_AGENT_SET_BANNED, ret, t0);
	return ret;
}

int ds_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
		   int64_t not_after, int64_t now)
{
	if (!spiffe_id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->agent_touch(ds, spiffe_id, serial, not_after, now);
	agent_changed(ds);
	op_end(ds, DS_OP_AGENT_TOUCH, ret, t0);
	return ret;
}

int ds_ca_put(struct datastore *ds, const struct ca_record *r)
{
	if (!r || !r->id[0] || memchr(r->id, '\0', sizeof(r->id)) == NULL)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->ca_put(ds, r);
	op_end(ds, DS_OP_CA_PUT, ret, t0);
	return ret;
}

int ds_ca_set_state(struct datastore *ds, const char *id, int *state)
{
	if (!id || !state)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->ca_set_state(ds, id, state);
	op_end(ds, DS_OP_CA_SET_STATE, ret, t0);
	return ret;
}

int ds_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->ca_list(ds, out, n);
	op_end(ds, DS_OP_CA_LIST, ret, t0);
	return ret;
}

int ds_ca_delete(struct datastore *ds, const char *id)
{
	if (!id)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->ca_delete(ds, id);
	op_end(ds, DS_OP_CA_DELETE, ret, t0);
	return ret;
}

/* ---- federated bundles ---- */

char *datastore_fed_jwt_text(const struct fed_bundle *b, bool *ok)
{
	*ok = true;
	if (jwks_count(b->jwt) == 0)
		return NULL;
	char *t = jwks_to_json(b->jwt);
	*ok = t != NULL;
	return t;
}

struct fed_bundle *datastore_fed_bundle_from_cols(const char *td, const uint8_t *x509,
						  size_t x509_len, const char *jwt_keys,
						  int64_t sequence, int64_t refresh_hint,
						  int64_t refreshed_at, const char *source)
{
	struct fed_bundle *b = xcalloc(1, sizeof(*b));
	char why[256];
	b->trust_domain = xstrdup(td ? td : "");
	if (x509_len) {
		b->x509 = xmalloc(x509_len);
		memcpy(b->x509, x509, x509_len);
		b->x509_len = x509_len;
	}
	b->sequence = sequence;
	b->refresh_hint = refresh_hint;
	b->refreshed_at = refreshed_at;
	if (fed_bundle_source_parse(source, &b->source) < 0) {
		log_error("datastore: federated bundle of %s: unknown source \"%s\"", b->trust_domain,
			  source ? source : "");
		goto fail;
	}
	if (jwt_keys && jwks_from_json(jwt_keys, strlen(jwt_keys), &b->jwt, why, sizeof(why)) < 0) {
		log_error("datastore: federated bundle of %s: corrupt JWT keys: %s", b->trust_domain,
			  why);
		goto fail;
	}
	return b;
fail:
	fed_bundle_free(b);
	return NULL;
}

int ds_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, char *err, size_t errlen)
{
	char why[256];
	if (fed_bundle_validate(b, why, sizeof(why)) < 0) {
		if (err)
			snprintf(err, errlen, "%s", why);
		return -EINVAL;
	}
	struct fed_bundle *c = fed_bundle_dup(b);
	if (c->refreshed_at == 0)
		c->refreshed_at = now_unix();
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->fed_bundle_put(ds, c, c->source == FED_SOURCE_MANUAL);
	journal_add(ds, before, ret, DS_CHANGE_FED_BUNDLE, c->trust_domain);
	unlock(ds);
	if (ret == -ESTALE && err) {
		struct fed_bundle *old = NULL;
		if (ds_fed_bundle_get(ds, c->trust_domain, &old) == 0)
			snprintf(err, errlen, "bundle of %s: sequence %lld is older than the stored "
				 "one (%lld)", c->trust_domain, (long long)c->sequence,
				 (long long)old->sequence);
		else
			snprintf(err, errlen, "bundle of %s: sequence %lld is older than the stored "
				 "one", c->trust_domain, (long long)c->sequence);
		fed_bundle_free(old);
	} else if (ret < 0 && err) {
		snprintf(err, errlen, "database error");
	}
	fed_bundle_free(c);
	return ret;
}

int ds_fed_bundle_get(struct datastore *ds, const char *trust_domain, struct fed_bundle **out)
{
	*out = NULL;
	if (!trust_domain)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->fed_bundle_get(ds, trust_domain, out);
	unlock(ds);
	return ret;
}

int ds_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	lock(ds);
	int ret = ds->ops->fed_bundle_list(ds, out, n);
	unlock(ds);
	return ret;
}

int ds_fed_bundle_delete(struct datastore *ds, const char *trust_domain)
{
	if (!trust_domain)
		return -EINVAL;
	lock(ds);
	int64_t before = change_before(ds);
	int ret = ds->ops->fed_bundle_delete(ds, trust_domain);
	journal_add(ds, before, ret, DS_CHANGE_FED_BUNDLE, trust_domain);
	unlock(ds);
	return ret;
}

/* ---- federation relationships ---- */

static struct fed_relationship *fed_rel_from_text(const char *td, const char *doc)
{
	json_error_t je;
	char err[256];
	struct fed_relationship *r = NULL;
	if (!doc)
		return NULL;
	json_t *j = json_loads(doc, 0, &je);
	if (!j || fed_relationship_from_json(j, &r, err, sizeof(err)) < 0)
		log_error("datastore: federation relationship %s: corrupt row: %s", td,
			  j ? err : je.text);
	json_decref(j);
	return r;
}

int ds_fed_rel_put(struct datastore *ds, struct fed_relationship *r, bool create, char *err,
		   size_t errlen)
{
	struct fed_relationship *copy = NULL;
	int64_t now = now_unix();
	r->updated_at = now;
	if (create || !r->created_at)
		r->created_at = now;
	json_t *j = fed_relationship_to_json(r);
	if (!j || fed_relationship_from_json(j, &copy, err, errlen) < 0) {
		json_decref(j);
		return j ? -EINVAL : -ENOMEM;
	}
	fed_relationship_free(copy);
	char *doc = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (!doc)
		return -ENOMEM;
	lock(ds);
	int ret = ds->ops->fed_rel_put(ds, r->trust_domain, doc, create);
	unlock(ds);
	free(doc);
	return ret;
}

int ds_fed_rel_get(struct datastore *ds, const char *trust_domain, struct fed_relationship **out)
{
	char *doc = NULL;
	*out = NULL;
	if (!trust_domain)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->fed_rel_get(ds, trust_domain, &doc);
	unlock(ds);
	if (ret == 0 && !(*out = fed_rel_from_text(trust_domain, doc)))
		ret = -EIO;
	free(doc);
	return ret;
}

int ds_fed_rel_list(struct datastore *ds, struct fed_relationship ***out, size_t *n)
{
	char **docs = NULL;
	size_t nd = 0;
	*out = NULL;
	*n = 0;
	lock(ds);
	int ret = ds->ops->fed_rel_list(ds, &docs, &nd);
	unlock(ds);
	if (ret < 0)
		return ret;
	struct fed_relationship **v = nd ? xcalloc(nd, sizeof(*v)) : NULL;
	for (size_t i = 0; i < nd; i++) {
		struct fed_relationship *r = fed_rel_from_text("(listed)", docs[i]);
		if (r)
			v[(*n)++] = r;
		free(docs[i]);
	}
	free(docs);
	*out = v;
	return 0;
}

int ds_fed_rel_delete(struct datastore *ds, const char *trust_domain)
{
	if (!trust_domain)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->fed_rel_delete(ds, trust_domain);
	unlock(ds);
	return ret;
}

int ds_kv_get_int(struct datastore *ds, const char *key, int64_t *out)
{
	if (!key)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->kv_get_int(ds, key, out);
	op_end(ds, DS_OP_KV_GET_INT, ret, t0);
	return ret;
}

int ds_kv_set_int(struct datastore *ds, const char *key, int64_t v)
{
	if (!key)
		return -EINVAL;
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->kv_set_int(ds, key, v);
	op_end(ds, DS_OP_KV_SET_INT, ret, t0);
	return ret;
}

int ds_lease_acquire(struct datastore *ds, const char *name, const char *holder, int64_t ttl_s)
{
	if (!name || !holder || ttl_s <= 0)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->lease_acquire(ds, name, holder, ttl_s);
	unlock(ds);
	return ret;
}

int ds_lease_release(struct datastore *ds, const char *name, const char *holder)
{
	if (!name || !holder)
		return -EINVAL;
	lock(ds);
	int ret = ds->ops->lease_release(ds, name, holder);
	unlock(ds);
	return ret;
}

int ds_ping(struct datastore *ds)
{
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->ping(ds);
	op_end(ds, DS_OP_PING, ret, t0);
	return ret;
}

/* ---- copying a datastore ---- */

int ds_snapshot_read(struct datastore *ds, struct ds_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	int ret = ds_entry_list(ds, NULL, &out->entries, &out->n_entries);
	if (ret == 0)
		ret = ds_agent_list(ds, &out->agents, &out->n_agents);
	if (ret == 0)
		ret = ds_token_list(ds, &out->tokens, &out->n_tokens);
	if (ret == 0)
		ret = ds_ca_list(ds, &out->cas, &out->n_cas);
	if (ret == 0)
		ret = ds_fed_bundle_list(ds, &out->fed_bundles, &out->n_fed_bundles);
	if (ret == 0)
		ret = ds_fed_rel_list(ds, &out->fed_rels, &out->n_fed_rels);
	if (ret == 0) {
		ret = ds_kv_get_int(ds, "bundle_sequence", &out->bundle_sequence);
		out->has_bundle_sequence = ret == 0;
		if (ret == -ENOENT)
			ret = 0;
	}
	if (ret < 0)
		ds_snapshot_free(out);
	return ret;
}

void ds_snapshot_free(struct ds_snapshot *s)
{
	entry_array_free(s->entries, s->n_entries);
	agent_record_array_free(s->agents, s->n_agents);
	ds_token_record_array_free(s->tokens, s->n_tokens);
	ca_record_array_free(s->cas, s->n_cas);
	fed_bundle_array_free(s->fed_bundles, s->n_fed_bundles);
	fed_relationship_array_free(s->fed_rels, s->n_fed_rels);
	memset(s, 0, sizeof(*s));
}

int ds_snapshot_import(struct datastore *ds, const struct ds_snapshot *s, bool force, char *err,
		       size_t errlen)
{
	if (!ds->ops->snapshot_import) {
		snprintf(err, errlen, "the %s datastore cannot be the target of a copy",
			 ds->ops->name);
		return -ENOTSUP;
	}
	int64_t t0 = op_begin(ds);
	int ret = ds->ops->snapshot_import(ds, s, force, err, errlen);
	agent_changed(ds);
	op_end(ds, DS_OP_SNAPSHOT_IMPORT, ret, t0);
	return ret;
}

