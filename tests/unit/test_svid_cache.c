#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "svid_cache.h"
#include "util.h"

static struct svid *mk_svid(const char *entry_id, int64_t not_after)
{
	struct svid *v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->entry_id = xstrdup(entry_id);
	v->spiffe_id = xstrdup("spiffe://example.org/w");
	v->hint = xstrdup("");
	v->chain = xmalloc(4);
	memcpy(v->chain, "\x30\x02\x01\x00", 4);
	v->chain_len = 4;
	v->key = xmalloc(8);
	memset(v->key, 0xAB, 8);
	v->key_len = 8;
	v->not_after = not_after;
	return v;
}

static struct entry *mk_entry(const char *id, const char *const *sel, size_t n)
{
	struct entry e = {.spiffe_id = "spiffe://example.org/w",
				.parent_id = "spiffe://example.org/agent", .hint = "",
				.selectors = (char **)sel, .n_selectors = n, .x509_svid_ttl = 60,
				.revision = 3};
	snprintf(e.id, sizeof(e.id), "%s", id);
	return cache_entry_dup(&e);
}

static void push_entry(struct snapshot *s, struct entry *e)
{
	s->entries = xrealloc(s->entries, (s->n_entries + 1) * sizeof(*s->entries));
	s->entries[s->n_entries++] = e;
}

static void push_svid(struct snapshot *s, struct svid *v)
{
	s->svids = xrealloc(s->svids, (s->n_svids + 1) * sizeof(*s->svids));
	s->svids[s->n_svids++] = v;
}

static void empty_at_first(void **state)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct svid_cache *c = svid_cache_new(&loop);
	assert_non_null(c);
	struct snapshot *s = svid_cache_acquire(c);
	assert_non_null(s);
	assert_int_equal(s->n_entries, 0);
	assert_int_equal(s->n_svids, 0);
	assert_false(s->synced);
	assert_non_null(s->trust_domain);
	assert_non_null(s->jwt_bundle);
	snapshot_release(s);
	svid_cache_free(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void publish_acquire_and_refcounts(void **state)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct svid_cache *c = svid_cache_new(&loop);

	struct snapshot *a = snapshot_new();
	struct svid *v = mk_svid("e1", 1000);
	push_svid(a, v);
	push_entry(a, mk_entry("e1", NULL, 0));
	svid_cache_publish(c, a);
	assert_int_equal(a->generation, 1);

	struct snapshot *r1 = svid_cache_acquire(c);
	assert_ptr_equal(r1, a);
	assert_int_equal(__atomic_load_n(&a->refs, __ATOMIC_SEQ_CST), 2);

	/* A copy shares the SVID and the entries (each with a reference of its own). */
	struct snapshot *b = snapshot_copy(a);
	assert_ptr_equal(b->svids[0], v);
	assert_int_equal(v->refs, 2);
	assert_ptr_equal(b->entries[0], a->entries[0]);
	assert_int_equal(__atomic_load_n(&a->entries[0]->refs, __ATOMIC_SEQ_CST), 2);
	assert_string_equal(b->entries[0]->id, "e1");
	svid_cache_publish(c, b);
	assert_int_equal(b->generation, 2);

	/* The old snapshot survives while a reader holds it. */
	assert_int_equal(a->refs, 1);
	assert_string_equal(r1->svids[0]->entry_id, "e1");
	struct snapshot *r2 = svid_cache_acquire(c);
	assert_ptr_equal(r2, b);
	snapshot_release(r1);
	/* a is gone now; v and the entry are still referenced by b. */
	assert_int_equal(v->refs, 1);
	assert_ptr_equal(snapshot_svid(r2, "e1"), v);
	assert_int_equal(__atomic_load_n(&r2->entries[0]->refs, __ATOMIC_SEQ_CST), 1);
	assert_string_equal(snapshot_entry(r2, "e1")->spiffe_id, "spiffe://example.org/w");
	snapshot_release(r2);

	svid_cache_free(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

struct counter {
	int calls;
	uint64_t last_gen;
	struct svid_cache *c;
	pthread_t loop_thread;
	bool wrong_thread;
	struct cache_sub *self; /* unsubscribes itself on the first call when set */
	bool unsub_self;
};

static void on_publish(void *ud)
{
	struct counter *k = ud;
	k->calls++;
	if (!pthread_equal(pthread_self(), k->loop_thread))
		k->wrong_thread = true;
	struct snapshot *s = svid_cache_acquire(k->c);
	k->last_gen = s->generation;
	snapshot_release(s);
	if (k->unsub_self && k->self) {
		svid_cache_unsubscribe(k->c, k->self);
		k->self = NULL;
	}
}

struct publisher {
	struct svid_cache *c;
	int n;
};

static void *publish_thread(void *arg)
{
	struct publisher *p = arg;
	for (int i = 0; i < p->n; i++) {
		struct snapshot *cur = svid_cache_acquire(p->c);
		struct snapshot *s = snapshot_copy(cur);
		snapshot_release(cur);
		svid_cache_publish(p->c, s);
	}
	return NULL;
}

static void stop_timer_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void subscribers_run_on_loop_thread(void **state)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct svid_cache *c = svid_cache_new(&loop);
	struct counter k1 = {.c = c, .loop_thread = pthread_self()};
	struct counter k2 = {.c = c, .loop_thread = pthread_self(), .unsub_self = true};
	struct cache_sub *s1 = svid_cache_subscribe(c, on_publish, &k1);
	k2.self = svid_cache_subscribe(c, on_publish, &k2);
	assert_non_null(s1);
	assert_non_null(k2.self);

	struct publisher p = {.c = c, .n = 50};
	pthread_t th;
	pthread_create(&th, NULL, publish_thread, &p);
	pthread_join(th, NULL);

	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, stop_timer_cb, 200, 0);
	uv_run(&loop, UV_RUN_DEFAULT);

	/* Coalesced: at least one call, at most one per publication, and the last call saw the
	 * last generation. */
	assert_true(k1.calls >= 1 && k1.calls <= 50);
	assert_int_equal(k1.last_gen, 50);
	assert_false(k1.wrong_thread);
	/* k2 removed itself during its first call and was not called again. */
	assert_int_equal(k2.calls, 1);

	int before = k1.calls;
	svid_cache_unsubscribe(c, s1);
	svid_cache_publish(c, snapshot_new());
	uv_timer_start(&t, stop_timer_cb, 50, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(k1.calls, before);

	uv_close((uv_handle_t *)&t, NULL);
	svid_cache_free(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void unsubscribed_not_called(void **state)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct svid_cache *c = svid_cache_new(&loop);
	struct counter k = {.c = c, .loop_thread = pthread_self()};
	struct cache_sub *s = svid_cache_subscribe(c, on_publish, &k);
	svid_cache_publish(c, snapshot_new());
	svid_cache_unsubscribe(c, s);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(k.calls, 0);
	svid_cache_free(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void lookups_scale(void **state)
{
	struct snapshot *s = snapshot_new();
	char id[32];
	for (int i = 0; i < 10000; i++) {
		snprintf(id, sizeof(id), "entry-%05d", i);
		push_entry(s, mk_entry(id, NULL, 0));
		if (i % 2 == 0)
			push_svid(s, mk_svid(id, 1000 + i));
	}
	int64_t t0 = now_mono_us();
	struct snapshot *c = snapshot_copy(s);
	int64_t dt = now_mono_us() - t0;
	print_message("snapshot_copy of 10000 entries: %lld us\n", (long long)dt);
	for (int i = 0; i < 10000; i++) {
		snprintf(id, sizeof(id), "entry-%05d", i);
		const struct entry *e = snapshot_entry(c, id);
		assert_non_null(e);
		assert_string_equal(e->id, id);
		struct svid *v = snapshot_svid(c, id);
		if (i % 2 == 0) {
			assert_non_null(v);
			assert_int_equal(v->not_after, 1000 + i);
			assert_int_equal(v->refs, 2);
		} else {
			assert_null(v);
		}
	}
	assert_null(snapshot_entry(c, "entry-10000"));
	assert_null(snapshot_entry(c, ""));
	snapshot_release(s);
	assert_int_equal(c->svids[0]->refs, 1);
	snapshot_release(c);
}

static void subset(void **state)
{
	char *e1[] = {"unix:gid:5", "unix:uid:1000"};
	char *caller[] = {"unix:gid:5", "unix:group:x", "unix:uid:1000", "unix:user:bob"};
	char *e2[] = {"unix:uid:1001"};
	char *e3[] = {"unix:gid:5", "unix:gid:5"};
	char *e4[] = {"unix:zz"};
	assert_true(selectors_subset(e1, 2, caller, 4));
	assert_false(selectors_subset(e2, 1, caller, 4));
	assert_true(selectors_subset(e3, 2, caller, 4));
	assert_false(selectors_subset(e4, 1, caller, 4));
	assert_true(selectors_subset(NULL, 0, caller, 4));
	assert_false(selectors_subset(e1, 2, NULL, 0));
	assert_false(selectors_subset(caller, 4, e1, 2));
	assert_true(selectors_subset(caller, 4, caller, 4));
}

/* The wipe itself cannot be observed after free; ASan catches a use after the last unref. */
static void refcount_edges(void **state)
{
	struct svid *v = mk_svid("e", 1);
	svid_ref(v);
	assert_int_equal(v->refs, 2);
	svid_unref(v);
	assert_int_equal(v->refs, 1);
	assert_int_equal(v->key[0], 0xAB);
	svid_unref(v);
	svid_unref(NULL);
	snapshot_release(NULL);
	cache_entry_free(NULL);
}

/* Entries are shared by reference (refcount.h): a duplicated entry has one owner, every
 * cache_entry_ref() adds one, and only the last cache_entry_free() frees (ASan reports a leak
 * or a use after free otherwise). A duplicate is independent of its source. */
static void entry_refcounts(void **state)
{
	const char *sel[] = {"unix:uid:1"};
	struct entry *e = mk_entry("e", sel, 1);
	assert_int_equal(e->refs, 1);
	assert_ptr_equal(cache_entry_ref(e), e);
	assert_ptr_equal(cache_entry_ref(e), e);
	assert_int_equal(e->refs, 3);
	struct entry *d = cache_entry_dup(e);
	assert_ptr_not_equal(d, e);
	assert_int_equal(d->refs, 1);
	assert_string_equal(d->selectors[0], "unix:uid:1");
	cache_entry_free(e);
	cache_entry_free(e);
	assert_int_equal(e->refs, 1);
	assert_string_equal(e->selectors[0], "unix:uid:1");
	cache_entry_free(e);
	/* The duplicate survives its source. */
	assert_string_equal(d->id, "e");
	cache_entry_free(d);
	assert_null(cache_entry_ref(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_at_first),
		cmocka_unit_test(publish_acquire_and_refcounts),
		cmocka_unit_test(subscribers_run_on_loop_thread),
		cmocka_unit_test(unsubscribed_not_called),
		cmocka_unit_test(lookups_scale),
		cmocka_unit_test(subset),
		cmocka_unit_test(refcount_edges),
		cmocka_unit_test(entry_refcounts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
