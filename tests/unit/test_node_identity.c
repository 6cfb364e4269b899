/* Unit tests for agent/node_identity.c: the agent's reading of its projected service account
 * token for k8s_psat node attestation (attestation and renewal themselves run against a real
 * server in the integration tests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8s_fake.h"
#include "node_identity.h"
#include "util.h"

static void psat_token_read(void **state)
{
	static const char *const bad[] = {
		"", "\n", "abc", "a.b", "a..c", ".b.c", "a.b.", "a.b.c.d", "a.b c.d", "a.b.c\nmore",
		"a.b+/.c",
	};
	char *dir = fake_tmpdir(), path[4200], err[256], *tok;
	size_t len;

	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/token", dir);
	fake_write(dir, "token", "eyJhbGciOiJSUzI1NiIsImtpZCI6IksxIn0.eyJhdWQiOlsibGFueWFyZC1zZXJ2ZXIiXX0"
				 ".c2lnbmF0dXJl\n");
	assert_int_equal(k8s_psat_token_read(path, &tok, &len, err, sizeof(err)), 0);
	assert_int_equal(len, strlen(tok));
	assert_string_equal(tok + len - 13, ".c2lnbmF0dXJl");
	secure_zero(tok, len);
	free(tok);

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		fake_write(dir, "token", bad[i]);
		tok = (char *)1;
		if (k8s_psat_token_read(path, &tok, &len, err, sizeof(err)) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_null(tok);
		assert_non_null(strstr(err, "does not hold a service account token"));
	}
	/* A NUL inside. */
	FILE *f = fopen(path, "w");
	fwrite("a.b\0.c", 1, 6, f);
	fclose(f);
	assert_int_equal(k8s_psat_token_read(path, &tok, &len, err, sizeof(err)), -1);

	unlink(path);
	assert_int_equal(k8s_psat_token_read(path, &tok, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot read the service account token"));
	assert_non_null(strstr(err, path));
	fake_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(psat_token_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
