/* Unit tests for server/fed_relationship.c (the store is tested in test_datastore.c, on both
 * backends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fed_relationship.h"

static int parse(const char *text, struct fed_relationship **out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	assert_non_null(j);
	int r = fed_relationship_from_json(j, out, err, errlen);
	json_decref(j);
	return r;
}

static void test_valid(void **state)
{
	(void)state;
	struct fed_relationship *r = NULL;
	char err[256];
	assert_int_equal(parse("{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":"
			       "\"https://127.0.0.1:8443/\",\"endpoint_spiffe_id\":"
			       "\"spiffe://two.test/lanyard/server\"}", &r, err, sizeof(err)), 0);
	assert_int_equal(r->profile, FED_PROFILE_HTTPS_SPIFFE);
	/* The document survives a round trip. */
	json_t *j = fed_relationship_to_json(r);
	struct fed_relationship *back = NULL;
	assert_int_equal(fed_relationship_from_json(j, &back, err, sizeof(err)), 0);
	assert_string_equal(back->endpoint_spiffe_id, "spiffe://two.test/lanyard/server");
	json_decref(j);
	fed_relationship_free(back);
	fed_relationship_free(r);
	assert_int_equal(parse("{\"trust_domain\":\"web.test\",\"bundle_endpoint_url\":"
			       "\"https://example.com/bundle\",\"bundle_endpoint_profile\":"
			       "\"https_web\"}", &r, err, sizeof(err)), 0);
	assert_int_equal(r->profile, FED_PROFILE_HTTPS_WEB);
	fed_relationship_free(r);
}

static void test_invalid(void **state)
{
	(void)state;
	static const struct {
		const char *doc, *why;
	} bad[] = {
		{ "{\"bundle_endpoint_url\":\"https://x/\"}", "trust_domain" },
		{ "{\"trust_domain\":\"Two.test\",\"bundle_endpoint_url\":\"https://x/\"}",
		  "trust_domain" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"http://x/\","
		  "\"endpoint_spiffe_id\":\"spiffe://two.test/s\"}", "https://" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://u@x/\","
		  "\"endpoint_spiffe_id\":\"spiffe://two.test/s\"}", "userinfo" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/#f\","
		  "\"endpoint_spiffe_id\":\"spiffe://two.test/s\"}", "invalid character" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\"}",
		  "endpoint_spiffe_id is required" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\","
		  "\"endpoint_spiffe_id\":\"spiffe://one.test/s\"}", "not in trust domain" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\","
		  "\"endpoint_spiffe_id\":\"spiffe://two.test/s\",\"trust_bundle\":\"junk\"}",
		  "no PEM CERTIFICATE" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\","
		  "\"bundle_endpoint_profile\":\"https_web\",\"endpoint_spiffe_id\":"
		  "\"spiffe://two.test/s\"}", "only for https_spiffe" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\","
		  "\"bundle_endpoint_profile\":\"ftp\"}", "https_spiffe or https_web" },
		{ "{\"trust_domain\":\"two.test\",\"bundle_endpoint_url\":\"https://x/\","
		  "\"extra\":1}", "unknown member" },
		{ "{\"trust_domain\":7,\"bundle_endpoint_url\":\"https://x/\"}", "string" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fed_relationship *r = NULL;
		char err[256] = "";
		assert_int_equal(parse(bad[i].doc, &r, err, sizeof(err)), -1);
		assert_null(r);
		if (!strstr(err, bad[i].why))
			fail_msg("case %zu: error \"%s\" does not say \"%s\"", i, err, bad[i].why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
