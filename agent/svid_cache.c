/* svid_cache.c: immutable, reference-counted snapshots published by the sync thread.
 *
 * Threads: the current-snapshot pointer is guarded by a mutex held only for a pointer swap and
 * a reference increment, so readers never wait on a publisher's work. Reference counts use
 * atomics. Publication wakes the loop with a uv_async_t (the only libuv call that is safe from
 * another thread); the async callback runs the subscribers on the loop thread. The subscriber
 * list itself is touched only on the loop thread: svid_cache_subscribe() and
 * svid_cache_unsubscribe() must be called there (Workload API handlers and the status endpoint
 * all live on the loop). */
#include "svid_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "refcount.h"
#include "util.h"

struct cache_sub {
	struct cache_sub *next;
	void (*cb)(void *ud);
	void *ud;
	bool removed;
};

struct svid_cache {
	uv_loop_t *loop;
	pthread_mutex_t mu;
	struct snapshot *cur; /* guarded by mu */
	uint64_t generation;  /* guarded by mu */
	uv_async_t *async;    /* separately allocated: its memory outlives the cache until closed */
	struct cache_sub *subs;
	int notifying; /* > 0 while subscribers are being called */
	bool dirty;    /* an unsubscribe happened during notification */
};

static void on_async(uv_async_t *h);

struct snapshot *snapshot_new(void)
{
	struct snapshot *s = xcalloc(1, sizeof(*s));
	s->refs = 1;
	/* Readers may rely on these strings being non-NULL, even before the first sync. */
	s->trust_domain = xstrdup("");
	s->jwt_bundle = xstrdup("{\"keys\":[]}");
	return s;
}

struct snapshot *snapshot_copy(const struct snapshot *s)
{
	struct snapshot *c = xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->generation = s->generation;
	c->trust_domain = xstrdup(s->trust_domain ? s->trust_domain : "");
	c->jwt_bundle = xstrdup(s->jwt_bundle ? s->jwt_bundle : "{\"keys\":[]}");
	if (s->bundle_len) {
		c->bundle = xmalloc(s->bundle_len);
		memcpy(c->bundle, s->bundle, s->bundle_len);
		c->bundle_len = s->bundle_len;
	}
	c->bundle_sequence = s->bundle_sequence;
	c->entries = xcalloc(s->n_entries + 1, sizeof(*c->entries));
	for (size_t i = 0; i < s->n_entries; i++)
		c->entries[i] = cache_entry_ref(s->entries[i]);
	c->n_entries = s->n_entries;
	c->svids = xcalloc(s->n_svids + 1, sizeof(*c->svids));
	for (size_t i = 0; i < s->n_svids; i++)
		c->svids[i] = svid_ref(s->svids[i]);
	c->n_svids = s->n_svids;
	snapshot_set_fed(c, s->fed, s->n_fed);
	c->synced = s->synced;
	return c;
}

void fed_snap_clear_one(struct fed_snap *f)
{
	free(f->trust_domain);
	free(f->x509);
	free(f->jwt_bundle);
	memset(f, 0, sizeof(*f));
}

void fed_snap_clear(struct fed_snap *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		fed_snap_clear_one(&v[i]);
	free(v);
}

void snapshot_set_fed(struct snapshot *s, const struct fed_snap *v, size_t n)
{
	fed_snap_clear(s->fed, s->n_fed);
	s->fed = xcalloc(n + 1, sizeof(*s->fed));
	for (size_t i = 0; i < n; i++) {
		s->fed[i].trust_domain = xstrdup(v[i].trust_domain);
		s->fed[i].x509 = xmalloc(v[i].x509_len + 1);
		memcpy(s->fed[i].x509, v[i].x509, v[i].x509_len);
		s->fed[i].x509_len = v[i].x509_len;
		s->fed[i].jwt_bundle = xstrdup(v[i].jwt_bundle ? v[i].jwt_bundle : "{\"keys\":[]}");
		s->fed[i].sequence = v[i].sequence;
	}
	s->n_fed = n;
}

const struct fed_snap *snapshot_fed(const struct snapshot *s, const char *td)
{
	for (size_t i = 0; i < s->n_fed; i++)
		if (strcmp(s->fed[i].trust_domain, td) == 0)
			return &s->fed[i];
	return NULL;
}

void snapshot_release(struct snapshot *s)
{
	if (!s || !ref_put(&s->refs))
		return;
	free(s->trust_domain);
	free(s->bundle);
	free(s->jwt_bundle);
	fed_snap_clear(s->fed, s->n_fed);
	for (size_t i = 0; i < s->n_entries; i++)
		cache_entry_free(s->entries[i]);
	free(s->entries);
	for (size_t i = 0; i < s->n_svids; i++)
		svid_unref(s->svids[i]);
	free(s->svids);
	free(s);
}

struct svid *svid_ref(struct svid *v)
{
	if (v)
		ref_get(&v->refs);
	return v;
}

void svid_unref(struct svid *v)
{
	if (!v || !ref_put(&v->refs))
		return;
	if (v->key)
		secure_zero(v->key, v->key_len);
	free(v->key);
	free(v->chain);
	free(v->entry_id);
	free(v->spiffe_id);
	free(v->hint);
	free(v);
}

void cache_entry_free(struct entry *e)
{
	if (!e || !ref_put(&e->refs))
		return;
	entry_free(e);
}

struct entry *cache_entry_ref(struct entry *e)
{
	if (e)
		ref_get(&e->refs);
	return e;
}

struct entry *cache_entry_dup(const struct entry *e)
{
	return entry_dup(e);
}

const struct entry *snapshot_entry(const struct snapshot *s, const char *entry_id)
{
	size_t lo = 0, hi = s->n_entries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->entries[mid]->id, entry_id);
		if (c == 0)
			return s->entries[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct svid *snapshot_svid(const struct snapshot *s, const char *entry_id)
{
	size_t lo = 0, hi = s->n_svids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->svids[mid]->entry_id, entry_id);
		if (c == 0)
			return s->svids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool selectors_subset(char *const *entry_sel, size_t n_entry, char *const *caller_sel,
		      size_t n_caller)
{
	/* A merge walk over both sorted lists; the caller's index only moves forward, and
	 * duplicates in the entry's list match the same caller selector. */
	size_t j = 0;
	for (size_t i = 0; i < n_entry; i++) {
		int c = 1;
		while (j < n_caller && (c = strcmp(caller_sel[j], entry_sel[i])) < 0)
			j++;
		if (j == n_caller || c != 0)
			return false;
	}
	return true;
}

struct svid_cache *svid_cache_new(uv_loop_t *loop)
{
	struct svid_cache *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	pthread_mutex_init(&c->mu, NULL);
	c->cur = snapshot_new();
	c->async = xcalloc(1, sizeof(*c->async));
	if (uv_async_init(loop, c->async, on_async) != 0) {
		free(c->async);
		snapshot_release(c->cur);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return NULL;
	}
	c->async->data = c;
	/* The cache alone must not keep the loop running: it only relays publications. */
	uv_unref((uv_handle_t *)c->async);
	return c;
}

static void on_async_closed(uv_handle_t *h)
{
	free(h);
}

void svid_cache_free(struct svid_cache *c)
{
	if (!c)
		return;
	c->async->data = NULL;
	uv_close((uv_handle_t *)c->async, on_async_closed);
	for (struct cache_sub *s = c->subs, *next; s; s = next) {
		next = s->next;
		free(s);
	}
	snapshot_release(c->cur);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
	if (s)
		ref_get(&s->refs);
	return s;
}

struct snapshot *svid_cache_acquire(struct svid_cache *c)
{
	pthread_mutex_lock(&c->mu);
	struct snapshot *s = c->cur;
	ref_get(&s->refs);
	pthread_mutex_unlock(&c->mu);
	return s;
}

void svid_cache_publish(struct svid_cache *c, struct snapshot *s)
{
	pthread_mutex_lock(&c->mu);
	s->generation = ++c->generation;
	struct snapshot *old = c->cur;
	c->cur = s;
	pthread_mutex_unlock(&c->mu);
	snapshot_release(old);
	uv_async_send(c->async);
}

struct cache_sub *svid_cache_subscribe(struct svid_cache *c, void (*cb)(void *ud), void *ud)
{
	if (!cb)
		return NULL;
	struct cache_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cb = cb;
	s->ud = ud;
	/* Appended, so a subscriber added during a notification is called in the same round at
	 * the latest, which is harmless: it reads the current snapshot either way. */
	struct cache_sub **pp = &c->subs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = s;
	return s;
}

static void sweep(struct svid_cache *c)
{
	struct cache_sub **pp = &c->subs;
	while (*pp) {
		if ((*pp)->removed) {
			struct cache_sub *dead = *pp;
			*pp = dead->next;
			free(dead);
		} else {
			pp = &(*pp)->next;
		}
	}
	c->dirty = false;
}

void svid_cache_unsubscribe(struct svid_cache *c, struct cache_sub *sub)
{
	if (!c || !sub)
		return;
	for (struct cache_sub *s = c->subs; s; s = s->next) {
		if (s == sub) {
			/* Never free a node the notification loop may still step through. */
			s->removed = true;
			c->dirty = true;
			break;
		}
	}
	if (!c->notifying)
		sweep(c);
}

static void on_async(uv_async_t *h)
{
	struct svid_cache *c = h->data;
	if (!c)
		return;
	c->notifying++;
	for (struct cache_sub *s = c->subs; s; s = s->next)
		if (!s->removed)
			s->cb(s->ud);
	c->notifying--;
	if (!c->notifying && c->dirty)
		sweep(c);
}
