/* The authorization index's packed entries and interned strings: references counted exactly,
 * lookups right after removals (the table closes gaps by shifting), packed copies equal to the
 * original, and entries sharing strings outliving one another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry_pool.h"
#include "util.h"

static void intern_counts_references(void **state)
{
	(void)state;
	struct entry_pool *p = entry_pool_new();
	char buf[64];
	snprintf(buf, sizeof(buf), "unix:uid:%d", 1000);
	const char *a = entry_pool_intern(p, buf);
	const char *b = entry_pool_intern(p, "unix:uid:1000");
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, buf);
	assert_string_equal(a, "unix:uid:1000");
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 2);
	assert_int_equal(entry_pool_strings(p), 1);
	assert_null(entry_pool_intern(p, NULL));

	entry_pool_release(p, a);
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 1);
	assert_string_equal(b, "unix:uid:1000"); /* still held */
	entry_pool_release(p, b);
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 0);
	assert_int_equal(entry_pool_strings(p), 0);
	entry_pool_release(p, NULL);

	const char *c = entry_pool_intern(p, "unix:uid:1000");
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 1);
	entry_pool_release(p, c);
	entry_pool_free(p);
}

#define MANY 5000

/* Strings released in an order unrelated to their slots: every one still held is found (with its
 * count) after each removal, and the table shrinks back as it empties. */
static void lookups_after_removals(void **state)
{
	(void)state;
	struct entry_pool *p = entry_pool_new();
	static const char *held[MANY];
	char buf[64];
	for (int i = 0; i < MANY; i++) {
		snprintf(buf, sizeof(buf), "spiffe://example.org/agent/%d", i);
		held[i] = entry_pool_intern(p, buf);
		if (i % 3 == 0)
			entry_pool_intern(p, buf); /* a second reference */
	}
	assert_int_equal(entry_pool_strings(p), MANY);
	size_t big = entry_pool_slots(p);
	assert_true(big >= MANY * 4 / 3);
	/* A stride coprime with MANY visits every index once. */
	for (int k = 0, i = 0; k < MANY; k++, i = (i + 7919) % MANY) {
		snprintf(buf, sizeof(buf), "spiffe://example.org/agent/%d", i);
		unsigned refs = entry_pool_refs(p, buf);
		assert_int_equal(refs, i % 3 == 0 ? 2 : 1);
		for (unsigned r = 0; r < refs; r++)
			entry_pool_release(p, held[i]);
		assert_int_equal(entry_pool_refs(p, buf), 0);
		if (k % 97 == 0) {
			/* Everything not yet released is still there. */
			for (int m = (i + 7919) % MANY, left = MANY - k - 1; left > 0;
			     left--, m = (m + 7919) % MANY) {
				snprintf(buf, sizeof(buf), "spiffe://example.org/agent/%d", m);
				assert_int_not_equal(entry_pool_refs(p, buf), 0);
			}
		}
	}
	assert_int_equal(entry_pool_strings(p), 0);
	assert_true(entry_pool_slots(p) < big);
	entry_pool_free(p);
}

/* A view of the packed copy has every member the node API reads, equal to the original's (not
 * created_at: the index never serves it). */
static void packed_entry_equals_original(void **state)
{
	(void)state;
	struct entry_pool *p = entry_pool_new();
	char *sels[] = {"unix:gid:5", "unix:uid:1000"};
	char *dns[] = {"a.example.org", "*.b.example.org"};
	char *fed[] = {"one.test", "two.test"};
	struct entry e = {.id = "0b6f6e34-3c2e-4c55-9d8c-2b0e1f3a4d5e",
			  .spiffe_id = "spiffe://example.org/web",
			  .parent_id = "spiffe://example.org/lanyard/agent/join_token/abc",
			  .selectors = sels, .n_selectors = 2, .x509_svid_ttl = 600,
			  .jwt_svid_ttl = 300, .dns_names = dns, .n_dns_names = 2, .hint = "web",
			  .admin = true, .downstream = true, .managed = true, .expires_at = 99,
			  .revision = 7, .created_at = 5, .federates_with = fed,
			  .n_federates_with = 2};
	struct pentry *pe = entry_pool_add(p, &e);
	assert_non_null(pe);
	struct entry view;
	const struct entry *d = entry_pool_view(pe, &view);
	assert_ptr_equal(d, &view);
	assert_string_equal(d->id, e.id);
	assert_string_equal(d->spiffe_id, e.spiffe_id);
	assert_ptr_not_equal(d->spiffe_id, e.spiffe_id);
	assert_string_equal(entry_pool_spiffe_id(pe), e.spiffe_id);
	assert_string_equal(d->parent_id, e.parent_id);
	assert_int_equal(d->n_selectors, 2);
	assert_string_equal(d->selectors[0], "unix:gid:5");
	assert_string_equal(d->selectors[1], "unix:uid:1000");
	assert_int_equal(d->n_dns_names, 2);
	assert_string_equal(d->dns_names[0], "a.example.org");
	assert_string_equal(d->dns_names[1], "*.b.example.org");
	assert_string_equal(d->hint, "web");
	assert_int_equal(d->n_federates_with, 2);
	assert_string_equal(d->federates_with[0], "one.test");
	assert_string_equal(d->federates_with[1], "two.test");
	assert_int_equal(d->x509_svid_ttl, 600);
	assert_int_equal(d->jwt_svid_ttl, 300);
	assert_true(d->admin && d->downstream && d->managed);
	assert_int_equal(d->expires_at, 99);
	assert_int_equal(d->revision, 7);
	assert_int_equal(d->created_at, 0);
	/* parent, 2 selectors, 2 trust domains */
	assert_int_equal(entry_pool_strings(p), 5);
	entry_pool_put(p, pe);
	assert_int_equal(entry_pool_strings(p), 0);

	/* No lists, no hint, no flags. */
	struct entry bare = {.id = "00000000-0000-4000-8000-000000000001",
			     .spiffe_id = "spiffe://example.org/x",
			     .parent_id = "spiffe://example.org/p"};
	pe = entry_pool_add(p, &bare);
	d = entry_pool_view(pe, &view);
	assert_null(d->selectors);
	assert_null(d->dns_names);
	assert_null(d->federates_with);
	assert_null(d->hint);
	assert_false(d->admin || d->downstream || d->managed);
	assert_string_equal(d->spiffe_id, "spiffe://example.org/x");
	assert_string_equal(d->id, bare.id);
	entry_pool_put(p, pe);
	entry_pool_put(p, NULL);

	/* An id that does not pack: no copy, nothing interned. */
	bare.id[0] = 'X';
	assert_null(entry_pool_add(p, &bare));
	assert_int_equal(entry_pool_strings(p), 0);
	entry_pool_free(p);
}

/* An agent's entries share its parent ID and their common selectors; an entry changed (its new
 * version added, the old one put back) keeps sharing what did not change, and the others keep
 * theirs when it goes. */
static void changed_entry_shares_strings(void **state)
{
	(void)state;
	struct entry_pool *p = entry_pool_new();
	const char *parent = "spiffe://example.org/lanyard/agent/join_token/abc";
	char *s1[] = {"unix:uid:1000"};
	char *s2[] = {"unix:gid:5", "unix:uid:1000"};
	struct entry a = {.id = "00000000-0000-4000-8000-00000000000a",
			  .spiffe_id = "spiffe://example.org/a", .parent_id = (char *)parent,
			  .selectors = s1, .n_selectors = 1};
	struct entry b = {.id = "00000000-0000-4000-8000-00000000000b",
			  .spiffe_id = "spiffe://example.org/b", .parent_id = (char *)parent,
			  .selectors = s1, .n_selectors = 1};
	struct pentry *pa = entry_pool_add(p, &a), *pb = entry_pool_add(p, &b);
	struct entry va, vb;
	entry_pool_view(pa, &va);
	entry_pool_view(pb, &vb);
	assert_ptr_equal(va.parent_id, vb.parent_id);
	assert_ptr_equal(va.selectors[0], vb.selectors[0]);
	assert_int_equal(entry_pool_refs(p, parent), 2);
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 2);

	/* b changes: a second selector. */
	struct entry b2 = b;
	b2.selectors = s2;
	b2.n_selectors = 2;
	b2.revision = 2;
	struct pentry *pb2 = entry_pool_add(p, &b2);
	entry_pool_put(p, pb);
	struct entry vb2;
	entry_pool_view(pb2, &vb2);
	assert_ptr_equal(vb2.parent_id, va.parent_id);
	assert_ptr_equal(vb2.selectors[1], va.selectors[0]);
	assert_int_equal(vb2.revision, 2);
	assert_int_equal(entry_pool_refs(p, parent), 2);
	assert_int_equal(entry_pool_refs(p, "unix:uid:1000"), 2);
	assert_int_equal(entry_pool_refs(p, "unix:gid:5"), 1);

	/* a goes: b2's strings stay. */
	entry_pool_put(p, pa);
	assert_int_equal(entry_pool_refs(p, parent), 1);
	entry_pool_view(pb2, &vb2);
	assert_string_equal(vb2.parent_id, parent);
	assert_string_equal(vb2.selectors[0], "unix:gid:5");
	assert_string_equal(vb2.selectors[1], "unix:uid:1000");
	entry_pool_put(p, pb2);
	assert_int_equal(entry_pool_strings(p), 0);
	entry_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(intern_counts_references),
		cmocka_unit_test(lookups_after_removals),
		cmocka_unit_test(packed_entry_equals_original),
		cmocka_unit_test(changed_entry_shares_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
