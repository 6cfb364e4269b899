#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "spiffeid.h"

static void valid_ids(void **state)
{
	static const char *const ok[] = {
		"spiffe://example.org",
		"spiffe://example.org/workload",
		"spiffe://example.org/ns/default/sa/web",
		"spiffe://a-b_c.d0/Path.With-Mixed_Case",
		"spiffe://example.org/...x/a..",
	};
	char td[TRUST_DOMAIN_MAX + 1];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char err[256] = "";
		assert_int_equal(spiffeid_parse(ok[i], td, NULL, err, sizeof(err)), 0);
	}
	assert_int_equal(spiffeid_parse("spiffe://example.org/a/b", td, NULL, NULL, 0), 0);
	assert_string_equal(td, "example.org");
}

static void invalid_ids(void **state)
{
	static const struct { const char *id; const char *reason; } bad[] = {
		{"", "empty"},
		{"http://example.org/a", "spiffe://"},
		{"SPIFFE://example.org/a", "lower case"},
		{"spiffe://", "missing"},
		{"spiffe:///path", "missing"},
		{"spiffe://Example.org/a", "lower case"},
		{"spiffe://example.org:8080/a", "port"},
		{"spiffe://user@example.org/a", "user info"},
		{"spiffe://exa mple.org/a", "contains"},
		{"spiffe://example.org/", "end with"},
		{"spiffe://example.org/a/", "end with"},
		{"spiffe://example.org//a", "empty segment"},
		{"spiffe://example.org/./a", "'.'"},
		{"spiffe://example.org/a/..", "'..'"},
		{"spiffe://example.org/a?b=c", "query"},
		{"spiffe://example.org/a#frag", "fragment"},
		{"spiffe://example.org/a%20b", "percent"},
		{"spiffe://example.org/a b", "contains"},
		{"spiffe://example.org/caf\xc3\xa9", "contains"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		assert_int_equal(spiffeid_parse(bad[i].id, NULL, NULL, err, sizeof(err)), -1);
		if (!strstr(err, bad[i].reason))
			fail_msg("'%s': reason '%s' lacks '%s'", bad[i].id, err, bad[i].reason);
	}
}

static void length_limits(void **state)
{
	char id[SPIFFEID_MAX + 64];
	strcpy(id, "spiffe://example.org/");
	size_t n = strlen(id);
	memset(id + n, 'a', SPIFFEID_MAX - n);
	id[SPIFFEID_MAX] = 0;
	assert_int_equal(spiffeid_parse(id, NULL, NULL, NULL, 0), 0);
	id[SPIFFEID_MAX] = 'a';
	id[SPIFFEID_MAX + 1] = 0;
	assert_int_equal(spiffeid_parse(id, NULL, NULL, NULL, 0), -1);

	char td[300];
	strcpy(td, "spiffe://");
	memset(td + 9, 'a', 256);
	td[9 + 256] = 0;
	char err[128];
	assert_int_equal(spiffeid_parse(td, NULL, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "255"));
}

static void reserved_namespace(void **state)
{
	(void)state;
	assert_true(spiffeid_reserved("spiffe://example.org/lanyard", "example.org"));
	assert_true(spiffeid_reserved("spiffe://example.org/lanyard/server", "example.org"));
	assert_true(spiffeid_reserved("spiffe://example.org/lanyard/agent/join_token/ab",
				      "example.org"));
	assert_false(spiffeid_reserved("spiffe://example.org/lanyardx/server", "example.org"));
	assert_false(spiffeid_reserved("spiffe://example.org/Lanyard/server", "example.org"));
	assert_false(spiffeid_reserved("spiffe://example.org/app/lanyard/server", "example.org"));
	assert_false(spiffeid_reserved("spiffe://other.org/lanyard/server", "example.org"));
	assert_false(spiffeid_reserved("spiffe://example.org/lanyard/", "example.org"));
	assert_false(spiffeid_reserved("not an id", "example.org"));
}

static void leaf_and_membership(void **state)
{
	char err[256];
	assert_int_equal(spiffeid_validate_leaf("spiffe://example.org/w", err, sizeof(err)), 0);
	assert_int_equal(spiffeid_validate_leaf("spiffe://example.org", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "path"));
	assert_true(spiffeid_member_of("spiffe://example.org/w", "example.org"));
	assert_false(spiffeid_member_of("spiffe://example.com/w", "example.org"));
	assert_false(spiffeid_member_of("spiffe://example.org.evil/w", "example.org"));
	assert_int_equal(trust_domain_validate("example.org", err, sizeof(err)), 0);
	assert_int_equal(trust_domain_validate("spiffe://example.org", err, sizeof(err)), -1);
	assert_int_equal(trust_domain_validate("Example.org", err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_ids),
		cmocka_unit_test(invalid_ids),
		cmocka_unit_test(length_limits),
		cmocka_unit_test(leaf_and_membership),
		cmocka_unit_test(reserved_namespace),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
