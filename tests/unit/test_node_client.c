/* Unit tests of node_client.c's internals: applying entry snapshots and deltas (SVIDs kept,
 * dropped or marked for re-signing), renewal times with jitter, the signing plan and JWT cache
 * keys. The .c is included to reach its statics; nothing here talks to a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/node_client.c"

static struct node_client *new_client(void)
{
	struct node_client *n = xcalloc(1, sizeof(*n));
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cond, NULL);
	n->trust_domain = xstrdup("example.org");
	n->server_address = xstrdup("127.0.0.1");
	n->data_dir = xstrdup("/nonexistent");
	n->rotation_fraction = 0.5;
	n->live_fd = -1;
	return n;
}

static Lanyard__Node__V1__Entry *pentry(const char *id, const char *sid, int64_t rev)
{
	Lanyard__Node__V1__Entry *e = xcalloc(1, sizeof(*e));
	lanyard__node__v1__entry__init(e);
	e->id = (char *)id;
	e->spiffe_id = (char *)sid;
	e->revision = rev;
	static char *sel[] = {"unix:uid:1", "unix:gid:2"};
	e->selectors = sel;
	e->n_selectors = 2;
	return e;
}

/* A SyncResponse over the given entries (freed by deliver()). */
static void deliver(struct node_client *n, bool reset, bool complete, Lanyard__Node__V1__Entry **ups,
		 size_t n_ups, char **rm, size_t n_rm)
{
	Lanyard__Node__V1__SyncResponse m = LANYARD__NODE__V1__SYNC_RESPONSE__INIT;
	m.reset = reset;
	m.complete = complete;
	m.upserts = ups;
	m.n_upserts = n_ups;
	m.removed_ids = rm;
	m.n_removed_ids = n_rm;
	apply_sync(n, &m);
	for (size_t i = 0; i < n_ups; i++)
		free(ups[i]);
}

static struct svid *fake_svid(const char *entry_id, const char *sid, int64_t rev)
{
	struct svid *v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->entry_id = xstrdup(entry_id);
	v->spiffe_id = xstrdup(sid);
	v->hint = xstrdup("");
	v->not_after = now_unix() + 3600;
	v->renew_at = now_unix() + 1800;
	v->entry_revision = rev;
	return v;
}

static struct wentry *find(struct node_client *n, const char *id)
{
	for (size_t i = 0; i < n->n_set; i++)
		if (strcmp(n->set[i].e->id, id) == 0)
			return &n->set[i];
	return NULL;
}

static void free_client_test(struct node_client *n)
{
	free_client(n);
}

static void snapshot_then_deltas(void **state)
{
	struct node_client *n = new_client();
	/* A snapshot in two messages, with a duplicate id: the later copy wins. */
	deliver(n, true, false,
	     (Lanyard__Node__V1__Entry *[]){pentry("b", "spiffe://example.org/b", 1),
					    pentry("a", "spiffe://example.org/a", 1)},
	     2, NULL, 0);
	assert_int_equal(n->n_set, 0);
	assert_false(n->synced);
	deliver(n, false, true,
	     (Lanyard__Node__V1__Entry *[]){pentry("c", "spiffe://example.org/c", 1),
					    pentry("a", "spiffe://example.org/a2", 2)},
	     2, NULL, 0);
	assert_true(n->synced);
	assert_int_equal(n->n_set, 3);
	assert_string_equal(n->set[0].e->id, "a");
	assert_string_equal(n->set[0].e->spiffe_id, "spiffe://example.org/a2");
	assert_string_equal(n->set[2].e->id, "c");
	/* Selectors arrive unsorted and are kept sorted. */
	assert_string_equal(n->set[0].e->selectors[0], "unix:gid:2");

	n->set[0].svid = fake_svid("a", "spiffe://example.org/a2", 2);
	n->set[1].svid = fake_svid("b", "spiffe://example.org/b", 1);
	n->set[2].svid = fake_svid("c", "spiffe://example.org/c", 1);

	/* Delta: a new revision of b with the same ID keeps its SVID (re-signed later), c gets a
	 * new SPIFFE ID and loses its SVID, d is added, a removed. */
	deliver(n, false, true,
	     (Lanyard__Node__V1__Entry *[]){pentry("d", "spiffe://example.org/d", 1),
					    pentry("b", "spiffe://example.org/b", 5),
					    pentry("c", "spiffe://example.org/c-new", 2)},
	     3, (char *[]){"a"}, 1);
	assert_int_equal(n->n_set, 3);
	assert_null(find(n, "a"));
	struct wentry *b = find(n, "b"), *c = find(n, "c"), *d = find(n, "d");
	assert_non_null(b->svid);
	assert_int_equal(b->e->revision, 5);
	assert_true(needs_signing(b, now_unix()));
	assert_null(c->svid);
	assert_null(d->svid);

	/* Removing an unknown id and upserting+removing the same id in one delta: removal wins. */
	deliver(n, false, true, (Lanyard__Node__V1__Entry *[]){pentry("e", "spiffe://example.org/e", 1)},
	     1, (char *[]){"e", "zzz"}, 2);
	assert_null(find(n, "e"));
	assert_int_equal(n->n_set, 3);

	/* A new snapshot replaces the set: entries absent from it go, unchanged ones keep their
	 * SVIDs. */
	struct svid *keep = find(n, "b")->svid;
	deliver(n, true, true, (Lanyard__Node__V1__Entry *[]){pentry("b", "spiffe://example.org/b", 5)},
	     1, NULL, 0);
	assert_int_equal(n->n_set, 1);
	assert_ptr_equal(n->set[0].svid, keep);
	assert_true(n->publish_needed && n->state_dirty && n->plan_dirty);
	free_client_test(n);
}

static void foreign_and_invalid_entries_ignored(void **state)
{
	struct node_client *n = new_client();
	deliver(n, true, true,
	     (Lanyard__Node__V1__Entry *[]){pentry("x", "spiffe://other.org/x", 1),
					    pentry("y", "spiffe://example.org", 1),
					    pentry("", "spiffe://example.org/z", 1),
					    pentry("ok", "spiffe://example.org/ok", 1)},
	     4, NULL, 0);
	assert_int_equal(n->n_set, 1);
	assert_string_equal(n->set[0].e->id, "ok");
	free_client_test(n);
}

static void empty_snapshot(void **state)
{
	struct node_client *n = new_client();
	deliver(n, true, true, NULL, 0, NULL, 0);
	assert_true(n->synced);
	assert_int_equal(n->n_set, 0);
	free_client_test(n);
}

static void renewal_times(void **state)
{
	/* 1 h lifetime, fraction 0.5: renew 30 min before expiry, +-3 min. Issued 10 s after a
	 * backdated notBefore: the lifetime counts from issuance. */
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	for (int i = 0; i < 2000; i++) {
		int64_t t = renew_time(0.5, 1000010, 1000000, 1003610);
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	assert_true(lo >= 1003610 - 1800 - 180);
	assert_true(hi <= 1003610 - 1800 + 180);
	/* The jitter really varies. */
	assert_true(hi - lo > 60);
	/* Short lifetimes still renew before expiry. */
	for (int i = 0; i < 100; i++) {
		int64_t t = renew_time(0.5, 100, 90, 120);
		assert_true(t >= 108 && t <= 112);
	}
	assert_true(renew_time(0.05, 0, 0, 1000) >= 1000 - 55);
}

static void signing_plan(void **state)
{
	struct cache_entry e = {.id = "a", .spiffe_id = "spiffe://example.org/a", .revision = 3};
	struct wentry w = {.e = &e};
	int64_t now = now_unix();
	assert_true(needs_signing(&w, now));
	w.retry_at = now + 5;
	assert_false(needs_signing(&w, now));
	w.retry_at = 0;
	w.svid = fake_svid("a", "spiffe://example.org/a", 3);
	assert_false(needs_signing(&w, now));
	w.svid->renew_at = now;
	assert_true(needs_signing(&w, now));
	w.svid->renew_at = now + 100;
	w.svid->entry_revision = 2;
	assert_true(needs_signing(&w, now));
	svid_unref(w.svid);
}

static void jwt_keys_are_unambiguous(void **state)
{
	char *a1[] = {"x|y"}, *a2[] = {"x", "y"}, *a3[] = {"y", "x"};
	char *k1 = jwt_cache_key("e", a1, 1), *k2 = jwt_cache_key("e", a2, 2), *k3 = jwt_cache_key("e", a3, 2);
	char *k4 = jwt_cache_key("e:x", a1, 1);
	assert_string_not_equal(k1, k2);
	assert_string_not_equal(k2, k3); /* callers sort first; the key itself keeps order */
	assert_string_not_equal(k1, k4);
	free(k1);
	free(k2);
	free(k3);
	free(k4);
}

static void token_memory(void **state)
{
	struct node_client *n = new_client();
	assert_false(token_usable(n));
	n->join_token = xstrdup("tok-1");
	assert_true(token_usable(n));
	remember_token(n);
	assert_false(token_usable(n));
	assert_int_equal(strlen(n->used_tokens[0]), 64);
	/* The hash, never the token, is kept. */
	assert_null(strstr(n->used_tokens[0], "tok-1"));
	free(n->join_token);
	n->join_token = xstrdup("tok-2");
	assert_true(token_usable(n));
	for (int i = 0; i < MAX_USED_TOKENS + 5; i++)
		remember_token(n);
	assert_int_equal(n->n_used_tokens, MAX_USED_TOKENS);
	free_client_test(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(snapshot_then_deltas),
		cmocka_unit_test(foreign_and_invalid_entries_ignored),
		cmocka_unit_test(empty_snapshot),
		cmocka_unit_test(renewal_times),
		cmocka_unit_test(signing_plan),
		cmocka_unit_test(jwt_keys_are_unambiguous),
		cmocka_unit_test(token_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
