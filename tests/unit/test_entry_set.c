/* Unit tests of entry_set.c through its header: applying entry snapshots and deltas (SVIDs
 * kept, dropped or marked for re-signing), the renewal plan, renewal times with jitter and
 * SignX509 batches. Nothing here talks to a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "entry_set.h"
#include "util.h"
#include "x509.h"

#define TD "example.org"

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

/* Applies a SyncResponse over the given entries (freed here). */
static enum entry_set_change deliver(struct entry_set *s, bool reset, bool complete,
				     Lanyard__Node__V1__Entry **ups, size_t n_ups, char **rm,
				     size_t n_rm)
{
	Lanyard__Node__V1__SyncResponse m = LANYARD__NODE__V1__SYNC_RESPONSE__INIT;
	m.reset = reset;
	m.complete = complete;
	m.upserts = ups;
	m.n_upserts = n_ups;
	m.removed_ids = rm;
	m.n_removed_ids = n_rm;
	enum entry_set_change c = entry_set_apply(s, TD, &m);
	for (size_t i = 0; i < n_ups; i++)
		free(ups[i]);
	return c;
}

/* A set of entries a, b and c, without SVIDs. */
static void abc(struct entry_set *s)
{
	deliver(s, true, true,
		(Lanyard__Node__V1__Entry *[]){pentry("a", "spiffe://example.org/a", 1),
					       pentry("b", "spiffe://example.org/b", 1),
					       pentry("c", "spiffe://example.org/c", 1)},
		3, NULL, 0);
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

static struct entry_slot *find(struct entry_set *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->slots[i].e->id, id) == 0)
			return &s->slots[i];
	return NULL;
}

static void snapshot_then_deltas(void **state)
{
	struct entry_set s = {0};
	/* A snapshot in two messages, with a duplicate id: the later copy wins. */
	Lanyard__Node__V1__Entry *part1[] = {pentry("b", "spiffe://example.org/b", 1),
					     pentry("a", "spiffe://example.org/a", 1)};
	assert_int_equal(deliver(&s, true, false, part1, 2, NULL, 0), ENTRY_SET_UNCHANGED);
	assert_int_equal(s.n, 0);
	enum entry_set_change ch = deliver(
		&s, false, true,
		(Lanyard__Node__V1__Entry *[]){pentry("c", "spiffe://example.org/c", 1),
					       pentry("a", "spiffe://example.org/a2", 2)},
		2, NULL, 0);
	assert_int_equal(ch, ENTRY_SET_SNAPSHOT);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.slots[0].e->id, "a");
	assert_string_equal(s.slots[0].e->spiffe_id, "spiffe://example.org/a2");
	assert_string_equal(s.slots[2].e->id, "c");
	/* Selectors arrive unsorted and are kept sorted. */
	assert_string_equal(s.slots[0].e->selectors[0], "unix:gid:2");

	entry_set_install(&s.slots[0], fake_svid("a", "spiffe://example.org/a2", 2));
	entry_set_install(&s.slots[1], fake_svid("b", "spiffe://example.org/b", 1));
	entry_set_install(&s.slots[2], fake_svid("c", "spiffe://example.org/c", 1));

	/* Delta: a new revision of b with the same ID keeps its SVID (re-signed later), c gets a
	 * new SPIFFE ID and loses its SVID, d is added, a removed. */
	assert_int_equal(deliver(&s, false, true,
				 (Lanyard__Node__V1__Entry *[]){pentry("d", "spiffe://example.org/d", 1),
								pentry("b", "spiffe://example.org/b", 5),
								pentry("c", "spiffe://example.org/c-new", 2)},
				 3, (char *[]){"a"}, 1),
			 ENTRY_SET_MERGED);
	assert_int_equal(s.n, 3);
	assert_null(find(&s, "a"));
	struct entry_slot *b = find(&s, "b"), *c = find(&s, "c"), *d = find(&s, "d");
	assert_non_null(b->svid);
	assert_int_equal(b->e->revision, 5);
	assert_true(entry_set_needs_signing(b, now_unix()));
	assert_null(c->svid);
	assert_null(d->svid);

	/* Removing an unknown id and upserting+removing the same id in one delta: removal wins. */
	deliver(&s, false, true, (Lanyard__Node__V1__Entry *[]){pentry("e", "spiffe://example.org/e", 1)},
		1, (char *[]){"e", "zzz"}, 2);
	assert_null(find(&s, "e"));
	assert_int_equal(s.n, 3);
	/* A message without entries changes nothing. */
	assert_int_equal(deliver(&s, false, true, NULL, 0, NULL, 0), ENTRY_SET_UNCHANGED);

	/* A new snapshot replaces the set: entries absent from it go, unchanged ones keep their
	 * SVIDs. */
	struct svid *keep = find(&s, "b")->svid;
	assert_int_equal(deliver(&s, true, true,
				 (Lanyard__Node__V1__Entry *[]){pentry("b", "spiffe://example.org/b", 5)},
				 1, NULL, 0),
			 ENTRY_SET_SNAPSHOT);
	assert_int_equal(s.n, 1);
	assert_ptr_equal(s.slots[0].svid, keep);
	entry_set_free(&s);
	assert_int_equal(s.n, 0);
}

static void restart_forgets_partial_snapshot(void **state)
{
	struct entry_set s = {0};
	deliver(&s, true, false, (Lanyard__Node__V1__Entry *[]){pentry("a", "spiffe://example.org/a", 1)},
		1, NULL, 0);
	entry_set_restart(&s);
	/* Without a reset, a message after the restart is a delta, not the rest of the snapshot. */
	assert_int_equal(deliver(&s, false, true,
				 (Lanyard__Node__V1__Entry *[]){pentry("b", "spiffe://example.org/b", 1)},
				 1, NULL, 0),
			 ENTRY_SET_MERGED);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.slots[0].e->id, "b");
	entry_set_free(&s);
}

static void foreign_and_invalid_entries_ignored(void **state)
{
	struct entry_set s = {0};
	deliver(&s, true, true,
		(Lanyard__Node__V1__Entry *[]){pentry("x", "spiffe://other.org/x", 1),
					       pentry("y", "spiffe://example.org", 1),
					       pentry("", "spiffe://example.org/z", 1),
					       pentry("ok", "spiffe://example.org/ok", 1)},
		4, NULL, 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.slots[0].e->id, "ok");
	entry_set_free(&s);
}

static void empty_snapshot(void **state)
{
	struct entry_set s = {0};
	assert_int_equal(deliver(&s, true, true, NULL, 0, NULL, 0), ENTRY_SET_SNAPSHOT);
	assert_int_equal(s.n, 0);
	entry_set_free(&s);
}

static void plan_and_lists(void **state)
{
	struct entry_set s = {0};
	abc(&s);
	int64_t now = now_unix(), due, expiry;
	struct svid *va = fake_svid("a", "spiffe://example.org/a", 1);
	struct svid *vb = fake_svid("b", "spiffe://example.org/b", 1);
	va->renew_at = now + 100;
	va->not_after = now + 200;
	vb->not_after = now - 1; /* expired */
	entry_set_install(&s.slots[0], va);
	entry_set_install(&s.slots[1], vb);
	s.slots[2].retry_at = now + 50;
	/* Not synced: only expiries count. The expired SVID is dropped. */
	assert_true(entry_set_plan(&s, now, false, &due, &expiry));
	assert_null(s.slots[1].svid);
	assert_int_equal(expiry, now + 200);
	assert_int_equal(due, now + 200);
	/* Synced: b (no SVID) is due now. */
	assert_false(entry_set_plan(&s, now, true, &due, &expiry));
	assert_int_equal(due, now);
	struct entry **es;
	struct svid **vs;
	assert_int_equal(entry_set_list(&s, now, false, &es, &vs), 1);
	assert_ptr_equal(es[2], s.slots[2].e);
	assert_ptr_equal(vs[0], va);
	free(es);
	free(vs);
	/* With references the lists outlive the set. */
	assert_int_equal(entry_set_list(&s, now, true, &es, &vs), 1);
	entry_set_free(&s);
	assert_string_equal(es[0]->id, "a");
	assert_string_equal(vs[0]->entry_id, "a");
	for (size_t i = 0; i < 3; i++)
		cache_entry_free(es[i]);
	svid_unref(vs[0]);
	free(es);
	free(vs);
}

static void adopt_matches_svids(void **state)
{
	struct entry_set s = {0};
	struct entry a = {.id = "a", .spiffe_id = "spiffe://example.org/a", .parent_id = "",
				.hint = ""};
	struct entry c = a;
	snprintf(c.id, sizeof(c.id), "c");
	struct entry *es[] = {cache_entry_dup(&a), cache_entry_dup(&c)};
	struct svid *vs[] = {fake_svid("b", "spiffe://example.org/b", 0),
			     fake_svid("c", "spiffe://example.org/c", 0)};
	entry_set_adopt(&s, es, 2, vs, 2);
	assert_int_equal(s.n, 2);
	assert_null(es[0]);
	assert_null(s.slots[0].svid);
	assert_string_equal(s.slots[1].svid->entry_id, "c");
	assert_null(vs[1]);
	/* The SVID without an entry stays the caller's. */
	assert_non_null(vs[0]);
	svid_unref(vs[0]);
	entry_set_free(&s);
}

static void renewal_times(void **state)
{
	/* 1 h lifetime, fraction 0.5: renew 30 min before expiry, +-3 min. Issued 10 s after a
	 * backdated notBefore: the lifetime counts from issuance. */
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	for (int i = 0; i < 2000; i++) {
		int64_t t = entry_set_renew_time(0.5, 1000010, 1000000, 1003610);
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	assert_true(lo >= 1003610 - 1800 - 180);
	assert_true(hi <= 1003610 - 1800 + 180);
	/* The jitter really varies. */
	assert_true(hi - lo > 60);
	/* Short lifetimes still renew before expiry. */
	for (int i = 0; i < 100; i++) {
		int64_t t = entry_set_renew_time(0.5, 100, 90, 120);
		assert_true(t >= 108 && t <= 112);
	}
	assert_true(entry_set_renew_time(0.05, 0, 0, 1000) >= 1000 - 55);
}

static void signing_plan(void **state)
{
	struct entry e = {.id = "a", .spiffe_id = "spiffe://example.org/a", .revision = 3};
	struct entry_slot w = {.e = &e};
	int64_t now = now_unix();
	assert_true(entry_set_needs_signing(&w, now));
	w.retry_at = now + 5;
	assert_false(entry_set_needs_signing(&w, now));
	w.retry_at = 0;
	w.svid = fake_svid("a", "spiffe://example.org/a", 3);
	assert_false(entry_set_needs_signing(&w, now));
	w.svid->renew_at = now;
	assert_true(entry_set_needs_signing(&w, now));
	w.svid->renew_at = now + 100;
	w.svid->entry_revision = 2;
	assert_true(entry_set_needs_signing(&w, now));
	svid_unref(w.svid);
}

static void batches(void **state)
{
	struct entry_set s = {0};
	abc(&s);
	int64_t now = now_unix();
	entry_set_install(&s.slots[1], fake_svid("b", "spiffe://example.org/b", 1));
	Lanyard__Node__V1__SignX509Request req = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	/* Only the due entries (a and c, not b), and no more than max. */
	struct entry_set_batch *b = entry_set_batch_new(&s, KEY_EC_P256, 1, now, now + 5, &req);
	assert_non_null(b);
	assert_int_equal(req.n_items, 1);
	assert_string_equal(req.items[0]->entry_id, "a");
	entry_set_batch_free(b);
	b = entry_set_batch_new(&s, KEY_EC_P256, 10, now, now + 5, &req);
	assert_int_equal(req.n_items, 2);
	assert_string_equal(req.items[0]->entry_id, "a");
	assert_string_equal(req.items[1]->entry_id, "c");
	assert_true(req.items[0]->csr.len > 0);
	entry_set_batch_sent(b);
	assert_null(req.items[0]->csr.data);

	/* An error for a, no result at all for c: neither gets an SVID, both are retried later. */
	Lanyard__Node__V1__X509SignResult ra = LANYARD__NODE__V1__X509_SIGN_RESULT__INIT;
	ra.entry_id = "a";
	ra.error = "entry a is not authorized for this agent";
	Lanyard__Node__V1__X509SignResult *rs[] = {&ra};
	Lanyard__Node__V1__SignX509Response sr = LANYARD__NODE__V1__SIGN_X509_RESPONSE__INIT;
	sr.results = rs;
	sr.n_results = 1;
	const struct entry_set_signing how = {.rotation_fraction = 0.5};
	struct entry_set_minted m;
	entry_set_batch_accept(&s, b, &sr, &how, &m);
	entry_set_batch_free(b);
	assert_int_equal(m.minted, 0);
	assert_int_equal(m.rotated, 0);
	assert_null(s.slots[0].svid);
	assert_int_equal(s.slots[0].retry_at, now + 5);
	assert_int_equal(s.slots[2].retry_at, now + 5);
	/* Now nothing is due. */
	assert_null(entry_set_batch_new(&s, KEY_EC_P256, 10, now, now + 5, &req));
	/* After a failed call the whole batch waits. */
	s.slots[0].retry_at = s.slots[2].retry_at = 0;
	b = entry_set_batch_new(&s, KEY_EC_P256, 10, now, now + 7, &req);
	entry_set_batch_retry(&s, b);
	entry_set_batch_free(b);
	assert_int_equal(s.slots[0].retry_at, now + 7);
	assert_int_equal(s.slots[1].retry_at, 0);
	assert_int_equal(s.slots[2].retry_at, now + 7);
	entry_set_free(&s);
}

/* A CA (same name as every Lanyard authority) and a leaf it signed for sid into v->chain. */
static void make_ca(lkey **key, uint8_t **der, size_t *len)
{
	int64_t now = now_unix();
	assert_int_equal(lkey_generate(KEY_EC_P256, key), 0);
	struct x509_ca_params p = {.spiffe_id = "spiffe://example.org", .common_name = "Lanyard CA",
				   .not_before = now - 10, .not_after = now + 3600};
	assert_int_equal(x509_make_ca(*key, NULL, NULL, 0, &p, der, len), 0);
}

static void sign_into(struct svid *v, const lkey *ca_key, const uint8_t *ca, size_t ca_len)
{
	lkey *k;
	uint8_t *spki;
	size_t spki_len;
	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
	struct x509_leaf_params p = {.spiffe_id = v->spiffe_id, .not_before = now_unix() - 10,
				     .not_after = now_unix() + 1800, .spki = spki,
				     .spki_len = spki_len};
	assert_int_equal(x509_sign_leaf(ca_key, ca, ca_len, &p, &v->chain, &v->chain_len), 0);
	free(spki);
	lkey_free(k);
}

/* Only the SVIDs a tainted authority signed are re-issued early, within the window; the count
 * tells the caller when the set is clear of it. */
static void taint_reissues_its_svids(void **state)
{
	struct entry_set s = {0};
	abc(&s);
	lkey *k_old, *k_new;
	uint8_t *old, *new;
	size_t old_len, new_len;
	make_ca(&k_old, &old, &old_len);
	make_ca(&k_new, &new, &new_len);
	const char *ids[] = {"a", "b", "c"};
	for (size_t i = 0; i < 3; i++) {
		struct entry_slot *w = find(&s, ids[i]);
		w->svid = fake_svid(ids[i], w->e->spiffe_id, 1);
		if (i < 2)
			sign_into(w->svid, k_old, old, old_len);
		else
			sign_into(w->svid, k_new, new, new_len);
	}
	int64_t now = now_unix();
	const uint8_t *certs[] = {old};
	size_t lens[] = {old_len};
	assert_int_equal(entry_set_taint(&s, certs, lens, 1, now, 10), 2);
	assert_int_equal(entry_set_tainted_left(&s), 2);
	for (size_t i = 0; i < 2; i++) {
		struct entry_slot *w = find(&s, ids[i]);
		assert_true(w->taint_at >= now && w->taint_at < now + 10);
		assert_true(entry_set_needs_signing(w, now + 10));
	}
	assert_int_equal(find(&s, "c")->taint_at, 0);
	assert_false(entry_set_needs_signing(find(&s, "c"), now + 10));
	int64_t due, expiry;
	entry_set_plan(&s, now, true, &due, &expiry);
	assert_true(due < now + 10);
	/* Re-issued by the new authority: the set is clear. */
	for (size_t i = 0; i < 2; i++) {
		struct entry_slot *w = find(&s, ids[i]);
		struct svid *v = fake_svid(ids[i], w->e->spiffe_id, 1);
		sign_into(v, k_new, new, new_len);
		entry_set_install(w, v);
		assert_int_equal(w->taint_at, 0);
	}
	assert_int_equal(entry_set_tainted_left(&s), 0);
	assert_int_equal(entry_set_taint(&s, certs, lens, 1, now, 10), 0);
	entry_set_free(&s);
	free(old);
	free(new);
	lkey_free(k_old);
	lkey_free(k_new);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(snapshot_then_deltas),
		cmocka_unit_test(restart_forgets_partial_snapshot),
		cmocka_unit_test(foreign_and_invalid_entries_ignored),
		cmocka_unit_test(empty_snapshot),
		cmocka_unit_test(plan_and_lists),
		cmocka_unit_test(adopt_matches_svids),
		cmocka_unit_test(renewal_times),
		cmocka_unit_test(signing_plan),
		cmocka_unit_test(batches),
		cmocka_unit_test(taint_reissues_its_svids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
