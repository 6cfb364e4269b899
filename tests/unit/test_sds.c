/* Unit tests of sds.c's resource-name resolution (sds_resolve): what each name gives, what a
 * caller is refused, what waits for an SVID being minted. The protocol itself is tested over a
 * real socket by tests/integration/test_sds.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sds.h"
#include "svid_cache.h"
#include "util.h"

#define TD "example.org"
#define ID_A "spiffe://example.org/a"
#define ID_B "spiffe://example.org/b"
#define ID_C "spiffe://example.org/c"
#define ID_D "spiffe://example.org/d"

static const struct sds_names names_cfg = {"default", "ROOTCA", "ALL"};
static const char *const mine[] = {"unix:uid:1000"};
static const char *const theirs[] = {"unix:uid:2000"};

static void add_entry(struct snapshot *s, const char *id, const char *spiffe_id,
		      const char *const *sel)
{
	struct entry e = {.spiffe_id = (char *)spiffe_id,
				.parent_id = "spiffe://example.org/agent", .hint = "",
				.selectors = (char **)sel, .n_selectors = 1, .revision = 1};
	snprintf(e.id, sizeof(e.id), "%s", id);

	s->entries = xrealloc(s->entries, (s->n_entries + 1) * sizeof(*s->entries));
	s->entries[s->n_entries++] = cache_entry_dup(&e);
}

static void add_svid(struct snapshot *s, const char *entry_id, const char *spiffe_id)
{
	struct svid *v = xcalloc(1, sizeof(*v));

	v->refs = 1;
	v->entry_id = xstrdup(entry_id);
	v->spiffe_id = xstrdup(spiffe_id);
	v->chain = xcalloc(1, 1);
	v->key = xcalloc(1, 1);
	s->svids = xrealloc(s->svids, (s->n_svids + 1) * sizeof(*s->svids));
	s->svids[s->n_svids++] = v;
}

/* e-1 A, e-2 B (with SVIDs), e-3 C of another workload (with SVID), e-4 D (SVID being minted),
 * e-5 A again (being minted). The caller matches e-1, e-2, e-4, e-5. */
static int setup(void **state)
{
	struct snapshot *s = snapshot_new();

	free(s->trust_domain);
	s->trust_domain = xstrdup(TD);
	add_entry(s, "e-1", ID_A, mine);
	add_entry(s, "e-2", ID_B, mine);
	add_entry(s, "e-3", ID_C, theirs);
	add_entry(s, "e-4", ID_D, mine);
	add_entry(s, "e-5", ID_A, mine);
	add_svid(s, "e-1", ID_A);
	add_svid(s, "e-2", ID_B);
	add_svid(s, "e-3", ID_C);
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	snapshot_release(*state);
	return 0;
}

static const size_t matched[] = {0, 1, 3, 4};

static int resolve(const struct snapshot *s, const char *const *names, size_t n,
		   struct sds_resource *out, char *err, size_t errlen)
{
	return sds_resolve(&names_cfg, TD, s, matched, ARRAY_LEN(matched), (char *const *)names, n,
			   out, err, errlen);
}

static void spiffe_id_gives_its_svid(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *names[] = {ID_B, ID_A, ID_B};
	char err[256];

	assert_int_equal(resolve(*state, names, 3, out, err, sizeof(err)), 2);
	assert_int_equal(out[0].kind, SDS_TLS_CERTIFICATE);
	assert_string_equal(out[0].name, ID_B);
	assert_string_equal(out[0].svid->entry_id, "e-2");
	assert_string_equal(out[1].name, ID_A);
	assert_string_equal(out[1].svid->entry_id, "e-1");
}

static void default_is_the_first_svid(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *names[] = {"default"};
	char err[256];

	assert_int_equal(resolve(*state, names, 1, out, err, sizeof(err)), 1);
	assert_int_equal(out[0].kind, SDS_TLS_CERTIFICATE);
	assert_string_equal(out[0].name, "default");
	assert_string_equal(out[0].svid->spiffe_id, ID_A);
}

static void bundles_by_name(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *names[] = {"ROOTCA", "spiffe://example.org", "ALL", "SPIFFE://Example.org"};
	char err[256];

	assert_int_equal(resolve(*state, names, 4, out, err, sizeof(err)), 4);
	assert_int_equal(out[0].kind, SDS_BUNDLE);
	assert_string_equal(out[0].name, "ROOTCA");
	assert_int_equal(out[1].kind, SDS_BUNDLE);
	assert_string_equal(out[1].name, "spiffe://example.org");
	assert_int_equal(out[2].kind, SDS_ALL_BUNDLES);
	assert_string_equal(out[2].name, "ALL");
	/* Answered under the name asked for, so Envoy finds it. */
	assert_int_equal(out[3].kind, SDS_BUNDLE);
	assert_string_equal(out[3].name, "SPIFFE://Example.org");
}

static void configured_names(void **state)
{
	static const struct sds_names custom = {"my-svid", "my-roots", "everything"};
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *names[] = {"my-svid", "my-roots", "everything"};
	const char *old[] = {"default"};
	char err[256];

	assert_int_equal(sds_resolve(&custom, TD, *state, matched, ARRAY_LEN(matched),
				     (char *const *)names, 3, out, err, sizeof(err)),
			 3);
	assert_int_equal(out[0].kind, SDS_TLS_CERTIFICATE);
	assert_int_equal(out[1].kind, SDS_BUNDLE);
	assert_int_equal(out[2].kind, SDS_ALL_BUNDLES);
	assert_int_equal(sds_resolve(&custom, TD, *state, matched, ARRAY_LEN(matched),
				     (char *const *)old, 1, out, err, sizeof(err)),
			 SDS_DENIED);
}

static void no_names_is_everything_of_the_caller(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *empty[] = {""};
	char err[256];
	int n;

	for (size_t k = 0; k < 2; k++) {
		n = resolve(*state, empty, k, out, err, sizeof(err));
		assert_int_equal(n, 3);
		assert_int_equal(out[0].kind, SDS_BUNDLE);
		assert_null(out[0].name); /* the trust domain ID */
		assert_string_equal(out[1].svid->spiffe_id, ID_A);
		assert_string_equal(out[2].svid->spiffe_id, ID_B);
		for (int i = 1; i < n; i++)
			assert_string_not_equal(out[i].svid->spiffe_id, ID_C);
	}
}

static void others_are_denied(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *c[] = {ID_C};
	const char *a_and_c[] = {ID_A, ID_C};
	const char *c_and_d[] = {ID_C, ID_D};
	const char *foreign[] = {"spiffe://other.org"};
	const char *typo[] = {"rootca"};
	char err[256];

	assert_int_equal(resolve(*state, c, 1, out, err, sizeof(err)), SDS_DENIED);
	assert_non_null(strstr(err, ID_C));
	assert_int_equal(resolve(*state, a_and_c, 2, out, err, sizeof(err)), SDS_DENIED);
	assert_non_null(strstr(err, ID_C));
	assert_null(strstr(err, ID_A "\""));
	/* A refusal wins over waiting. */
	assert_int_equal(resolve(*state, c_and_d, 2, out, err, sizeof(err)), SDS_DENIED);
	assert_int_equal(resolve(*state, foreign, 1, out, err, sizeof(err)), SDS_DENIED);
	assert_int_equal(resolve(*state, typo, 1, out, err, sizeof(err)), SDS_DENIED);
}

/* Refused names are logged: no control characters, bounded, whatever the caller sent. */
static void refused_names_are_safe_to_log(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	char forged[600], small[24];
	const char *names[] = {forged, "x\r\ny"};
	char err[1200];

	memset(forged, 'a', sizeof(forged) - 1);
	forged[sizeof(forged) - 1] = '\0';
	forged[3] = '\n';
	assert_int_equal(resolve(*state, names, 2, out, err, sizeof(err)), SDS_DENIED);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\r'));
	assert_non_null(strstr(err, "\"aaa?aaa"));
	assert_non_null(strstr(err, "\"x??y\""));
	assert_true(strlen(err) < 500);
	assert_int_equal(resolve(*state, names, 2, out, small, sizeof(small)), SDS_DENIED);
	assert_true(strlen(small) < sizeof(small));
}

static void being_minted_waits(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *d[] = {ID_D};
	const char *dflt[] = {"default"};
	static const size_t only_d[] = {3};
	char err[256];

	assert_int_equal(resolve(*state, d, 1, out, err, sizeof(err)), SDS_PENDING);
	assert_int_equal(sds_resolve(&names_cfg, TD, *state, only_d, 1, (char *const *)dflt, 1, out,
				     err, sizeof(err)),
			 SDS_PENDING);
	assert_int_equal(sds_resolve(&names_cfg, TD, *state, only_d, 1, NULL, 0, out, err,
				     sizeof(err)),
			 SDS_PENDING);
}

static void too_many_names(void **state)
{
	struct sds_resource out[SDS_MAX_NAMES + 1];
	const char *names[SDS_MAX_NAMES + 1];
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		names[i] = ID_A;
	assert_int_equal(resolve(*state, names, SDS_MAX_NAMES, out, err, sizeof(err)), 1);
	assert_int_equal(resolve(*state, names, SDS_MAX_NAMES + 1, out, err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(spiffe_id_gives_its_svid, setup, teardown),
		cmocka_unit_test_setup_teardown(default_is_the_first_svid, setup, teardown),
		cmocka_unit_test_setup_teardown(bundles_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(configured_names, setup, teardown),
		cmocka_unit_test_setup_teardown(no_names_is_everything_of_the_caller, setup, teardown),
		cmocka_unit_test_setup_teardown(others_are_denied, setup, teardown),
		cmocka_unit_test_setup_teardown(refused_names_are_safe_to_log, setup, teardown),
		cmocka_unit_test_setup_teardown(being_minted_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(too_many_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
