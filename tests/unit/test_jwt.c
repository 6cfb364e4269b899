/* Unit tests for common/jwt.c and common/bundle.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "jwt.h"
#include "keys.h"
#include "util.h"
#include "x509.h"

#define NOW 1800000000

static const enum key_type all_types[] = { KEY_EC_P256, KEY_EC_P384, KEY_RSA_2048 };

struct fixture {
	lkey *key[3];
	struct jwks *set;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->set = jwks_new();
	for (size_t i = 0; i < 3; i++) {
		uint8_t *spki;
		size_t len;
		char kid[16];
		if (lkey_generate(all_types[i], &f->key[i]) < 0 ||
		    lkey_public_der(f->key[i], &spki, &len) < 0)
			return -1;
		snprintf(kid, sizeof(kid), "kid-%zu", i);
		if (jwks_add(f->set, kid, spki, len) < 0)
			return -1;
		free(spki);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < 3; i++)
		lkey_free(f->key[i]);
	jwks_free(f->set);
	free(f);
	return 0;
}

/* A token with any header and claims, correctly signed by key: each rejection below is then
 * caused by what it tests, not by a bad signature. */
static char *forge(const lkey *key, const char *header, const char *claims)
{
	char *h = base64url_encode((const uint8_t *)header, strlen(header));
	char *c = base64url_encode((const uint8_t *)claims, strlen(claims));
	char *input, *tok;
	uint8_t *sig;
	size_t siglen;
	assert_true(asprintf(&input, "%s.%s", h, c) > 0);
	assert_int_equal(lkey_sign_jws(key, (const uint8_t *)input, strlen(input), &sig, &siglen), 0);
	char *s = base64url_encode(sig, siglen);
	assert_true(asprintf(&tok, "%s.%s", input, s) > 0);
	free(h);
	free(c);
	free(input);
	free(sig);
	free(s);
	return tok;
}

static void expect_reject(const char *tok, const struct jwks *set, const char *aud, const char *why)
{
	char err[256] = "";
	struct jwt_claims c;
	assert_int_equal(jwt_validate(tok, set, aud, NOW, &c, err, sizeof(err)), -1);
	assert_null(c.all);
	if (!strstr(err, why))
		fail_msg("expected '%s', got '%s'", why, err);
}

static void test_sign_validate(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < 3; i++) {
		char kid[16], err[256];
		char *tok;
		struct jwt_claims c;
		const char *aud1[] = { "db" };
		const char *aud2[] = { "db", "cache" };
		snprintf(kid, sizeof(kid), "kid-%zu", i);

		assert_int_equal(jwt_sign(f->key[i], kid, "spiffe://example.org/web", aud1, 1, NOW - 10,
					  NOW + 300, &tok),
				 0);
		assert_int_equal(jwt_validate(tok, f->set, "db", NOW, &c, err, sizeof(err)), 0);
		assert_string_equal(c.sub, "spiffe://example.org/web");
		assert_int_equal(c.exp, NOW + 300);
		assert_int_equal(c.iat, NOW - 10);
		/* One audience is a string, as JWT-SVID.md recommends. */
		assert_true(json_is_string(json_object_get(c.all, "aud")));
		jwt_claims_free(&c);
		jwt_claims_free(&c);
		char sub[64];
		assert_int_equal(jwt_peek_sub(tok, sub, sizeof(sub)), 0);
		assert_string_equal(sub, "spiffe://example.org/web");
		assert_int_equal(jwt_peek_sub(tok, sub, 5), -1);

		/* The header is exactly alg, kid, typ. */
		uint8_t *h;
		size_t hl;
		assert_int_equal(base64url_decode(tok, (size_t)(strchr(tok, '.') - tok), &h, &hl), 0);
		char want[96];
		snprintf(want, sizeof(want), "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
			 lkey_jws_alg(f->key[i]), kid);
		assert_int_equal(hl, strlen(want));
		assert_memory_equal(h, want, hl);
		free(h);

		expect_reject(tok, f->set, "other", "audience");
		expect_reject(tok, f->set, NULL, "audience");
		/* Expired: exp == now is already too late. */
		assert_int_equal(jwt_validate(tok, f->set, "db", NOW + 299, NULL, err, sizeof(err)), 0);
		assert_int_equal(jwt_validate(tok, f->set, "db", NOW + 300, NULL, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "expired"));
		free(tok);

		assert_int_equal(jwt_sign(f->key[i], kid, "spiffe://example.org/web", aud2, 2, NOW,
					  NOW + 60, &tok),
				 0);
		assert_int_equal(jwt_validate(tok, f->set, "cache", NOW, &c, err, sizeof(err)), 0);
		assert_true(json_is_array(json_object_get(c.all, "aud")));
		jwt_claims_free(&c);
		expect_reject(tok, f->set, "web", "audience");

		/* Unknown kid: valid token, but the set does not have its key. */
		struct jwks *empty = jwks_new();
		expect_reject(tok, empty, "cache", "unknown");
		jwks_free(empty);
		/* Signed by key i but claiming the kid of key (i+1)%3. */
		char other_kid[16];
		snprintf(other_kid, sizeof(other_kid), "kid-%zu", (i + 1) % 3);
		char *wrong;
		assert_int_equal(jwt_sign(f->key[i], other_kid, "spiffe://example.org/web", aud1, 1,
					  NOW, NOW + 60, &wrong),
				 0);
		expect_reject(wrong, f->set, "db", "");
		free(wrong);

		/* Tampered payload: swap in the claims of another, differently signed token. */
		char *t2;
		assert_int_equal(jwt_sign(f->key[i], kid, "spiffe://example.org/admin", aud1, 1, NOW,
					  NOW + 60, &t2),
				 0);
		char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
		char *e1 = strchr(t2, '.'), *e2 = strchr(e1 + 1, '.');
		char *mixed;
		assert_true(asprintf(&mixed, "%.*s.%.*s%s", (int)(d1 - tok), tok, (int)(e2 - e1 - 1),
				     e1 + 1, d2) > 0);
		expect_reject(mixed, f->set, "db", "signature");
		free(mixed);
		/* Flipped signature character and truncated signature. */
		char *bad = strdup(tok);
		size_t bl = strlen(bad);
		bad[bl - 5] = bad[bl - 5] == 'A' ? 'B' : 'A';
		expect_reject(bad, f->set, "cache", "signature");
		bad[bl - 4] = 0;
		expect_reject(bad, f->set, "cache", "signature");
		free(bad);
		free(t2);
		free(tok);
	}
}

static void test_bad_headers(void **state)
{
	struct fixture *f = *state;
	const char *claims = "{\"sub\":\"spiffe://example.org/w\",\"aud\":\"db\",\"exp\":1900000000}";
	char *tok;

	tok = forge(f->key[0], "{\"alg\":\"ES256\",\"kid\":\"kid-0\",\"typ\":\"JWT\"}", claims);
	assert_int_equal(jwt_validate(tok, f->set, "db", NOW, NULL, NULL, 0), 0);
	free(tok);
	tok = forge(f->key[0], "{\"alg\":\"ES256\",\"kid\":\"kid-0\",\"typ\":\"JOSE\"}", claims);
	assert_int_equal(jwt_validate(tok, f->set, "db", NOW, NULL, NULL, 0), 0);
	free(tok);
	tok = forge(f->key[0], "{\"alg\":\"ES256\",\"kid\":\"kid-0\"}", claims);
	assert_int_equal(jwt_validate(tok, f->set, "db", NOW, NULL, NULL, 0), 0);
	free(tok);

	static const struct {
		const char *header;
		const char *why;
	} cases[] = {
		{ "{\"alg\":\"none\",\"kid\":\"kid-0\",\"typ\":\"JWT\"}", "not allowed" },
		{ "{\"alg\":\"HS256\",\"kid\":\"kid-0\",\"typ\":\"JWT\"}", "not allowed" },
		{ "{\"alg\":\"ES256\",\"kid\":\"kid-0\",\"typ\":\"XYZ\"}", "typ" },
		{ "{\"alg\":\"ES256\",\"kid\":\"kid-0\",\"typ\":7}", "typ" },
		{ "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", "kid" },
		{ "{\"alg\":\"ES256\",\"kid\":\"\",\"typ\":\"JWT\"}", "kid" },
		{ "{\"kid\":\"kid-0\",\"typ\":\"JWT\"}", "alg" },
		{ "{\"alg\":\"ES256\",\"kid\":\"kid-0\",\"crit\":[\"x\"]}", "critical" },
		{ "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"kid-0\"}", "header" },
		{ "[1]", "header" },
		/* ES256 signature but the header claims ES384 or RS256 for that key. */
		{ "{\"alg\":\"ES384\",\"kid\":\"kid-0\"}", "signature" },
		{ "{\"alg\":\"RS256\",\"kid\":\"kid-0\"}", "signature" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		tok = forge(f->key[0], cases[i].header, claims);
		expect_reject(tok, f->set, "db", cases[i].why);
		free(tok);
	}

	/* alg none with an empty signature. */
	char *h = base64url_encode((const uint8_t *)"{\"alg\":\"none\",\"kid\":\"kid-0\"}", 29);
	char *c = base64url_encode((const uint8_t *)claims, strlen(claims));
	assert_true(asprintf(&tok, "%s.%s.", h, c) > 0);
	expect_reject(tok, f->set, "db", "compact");
	free(tok);
	free(h);
	free(c);

	static const char *malformed[] = { "", "a", "a.b", "a.b.c.d", "..", "a..c", "!!!.b.c" };
	for (size_t i = 0; i < ARRAY_LEN(malformed); i++) {
		char err[128] = "";
		assert_int_equal(jwt_validate(malformed[i], f->set, "db", NOW, NULL, err, sizeof(err)), -1);
		assert_true(err[0] != 0);
		char sub[64];
		assert_int_equal(jwt_peek_sub(malformed[i], sub, sizeof(sub)), -1);
	}
	char err[64];
	assert_int_equal(jwt_validate(NULL, f->set, "db", NOW, NULL, err, sizeof(err)), -1);
}

static void test_bad_claims(void **state)
{
	struct fixture *f = *state;
	const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"kid-2\",\"typ\":\"JWT\"}";
	static const struct {
		const char *claims;
		const char *why;
	} cases[] = {
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":\"db\"}", "exp" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":\"db\",\"exp\":\"soon\"}", "exp" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":\"db\",\"exp\":1700000000}", "expired" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"exp\":1900000000}", "audience" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":[],\"exp\":1900000000}", "audience" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":[1],\"exp\":1900000000}", "audience" },
		{ "{\"aud\":\"db\",\"exp\":1900000000}", "sub" },
		{ "{\"sub\":\"https://example.org/w\",\"aud\":\"db\",\"exp\":1900000000}", "sub" },
		{ "{\"sub\":\"spiffe://example.org/w\",\"aud\":\"db\",\"exp\":1900000000,\"nbf\":1850000000}",
		  "nbf" },
		{ "not json", "claims" },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *tok = forge(f->key[2], hdr, cases[i].claims);
		expect_reject(tok, f->set, "db", cases[i].why);
		free(tok);
	}
	char *tok = forge(f->key[2], hdr,
			  "{\"sub\":\"spiffe://example.org/w\",\"aud\":[\"x\",\"db\"],\"exp\":1900000000.5,"
			  "\"nbf\":1700000000,\"extra\":{\"a\":1}}");
	struct jwt_claims c;
	assert_int_equal(jwt_validate(tok, f->set, "db", NOW, &c, NULL, 0), 0);
	assert_int_equal(c.exp, 1900000000);
	assert_int_equal(c.iat, 0);
	assert_non_null(json_object_get(c.all, "extra"));
	jwt_claims_free(&c);
	free(tok);
}

static void test_jwks_json(void **state)
{
	struct fixture *f = *state;
	char err[256];
	char *js = jwks_to_json(f->set);
	assert_non_null(js);
	json_t *root = json_loads(js, 0, NULL);
	json_t *keys = json_object_get(root, "keys");
	assert_int_equal(json_array_size(keys), 3);
	json_t *k0 = json_array_get(keys, 0), *k2 = json_array_get(keys, 2);
	assert_string_equal(json_string_value(json_object_get(k0, "kty")), "EC");
	assert_string_equal(json_string_value(json_object_get(k0, "crv")), "P-256");
	assert_int_equal(json_string_length(json_object_get(k0, "x")), 43); /* 32 bytes */
	assert_string_equal(json_string_value(json_object_get(k0, "use")), "jwt-svid");
	assert_string_equal(json_string_value(json_object_get(k0, "kid")), "kid-0");
	assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 1), "crv")), "P-384");
	assert_string_equal(json_string_value(json_object_get(k2, "kty")), "RSA");
	assert_string_equal(json_string_value(json_object_get(k2, "e")), "AQAB");
	assert_int_equal(json_string_length(json_object_get(k2, "n")), 342); /* 256 bytes */
	json_decref(root);

	struct jwks *back;
	assert_int_equal(jwks_from_json(js, strlen(js), &back, err, sizeof(err)), 0);
	assert_int_equal(jwks_count(back), 3);
	for (size_t i = 0; i < 3; i++) {
		const uint8_t *a, *b;
		size_t al, bl;
		const char *kid = jwks_get(f->set, i, &a, &al);
		b = jwks_find(back, kid, &bl);
		assert_non_null(b);
		assert_int_equal(al, bl);
		assert_memory_equal(a, b, al);
	}
	/* A token signed by a key verifies with the set read back from JSON. */
	const char *aud[] = { "db" };
	char *tok;
	assert_int_equal(jwt_sign(f->key[1], "kid-1", "spiffe://example.org/w", aud, 1, NOW, NOW + 9,
				  &tok),
			 0);
	assert_int_equal(jwt_validate(tok, back, "db", NOW, NULL, err, sizeof(err)), 0);
	free(tok);
	jwks_free(back);
	free(js);

	/* Duplicates and bad keys are errors; unknown key types and X.509 keys are skipped. */
	static const struct {
		const char *json;
		int rc;
		size_t n;
	} cases[] = {
		{ "{\"keys\":[]}", 0, 0 },
		{ "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\",\"kid\":\"a\"}]}", 0, 0 },
		{ "{\"keys\":[{\"kty\":\"EC\",\"use\":\"x509-svid\",\"crv\":\"P-256\"}]}", 0, 0 },
		{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\",\"kid\":\"a\"}]}", -1, 0 },
		{ "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AAAA\",\"y\":\"AAAA\",\"kid\":\"a\",\"use\":\"jwt-svid\"}]}", 0, 0 },
		{ "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"a\"}]}", -1, 0 },
		{ "{\"keys\":[{\"kty\":\"EC\",\"use\":\"jwt-svid\"}]}", -1, 0 },
		{ "{\"keys\":{}}", -1, 0 },
		{ "{\"keys\":[1]}", -1, 0 },
		{ "[]", -1, 0 },
		{ "{", -1, 0 },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct jwks *s = NULL;
		err[0] = 0;
		assert_int_equal(jwks_from_json(cases[i].json, strlen(cases[i].json), &s, err,
						sizeof(err)),
				 cases[i].rc);
		if (cases[i].rc == 0)
			assert_int_equal(jwks_count(s), cases[i].n);
		else
			assert_true(err[0] != 0);
		jwks_free(s);
	}
	/* An EC point not on the curve is refused. */
	json_t *bad = json_pack("{s:[{s:s,s:s,s:s,s:s,s:s}]}", "keys", "kty", "EC", "crv", "P-256",
				"kid", "k", "x", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
				"y", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	struct jwks *s;
	assert_int_equal(jwks_from_jansson(bad, &s, err, sizeof(err)), -1);
	json_decref(bad);
	/* Duplicate kid. */
	uint8_t *spki;
	size_t len;
	assert_int_equal(lkey_public_der(f->key[0], &spki, &len), 0);
	assert_int_equal(jwks_add(f->set, "kid-0", spki, len), -1);
	assert_int_equal(jwks_add(f->set, "", spki, len), -1);
	assert_int_equal(jwks_add(f->set, "x", spki, len - 1), -1);
	free(spki);
	assert_int_equal(jwks_count(f->set), 3);
}

static void test_bundle(void **state)
{
	struct fixture *f = *state;
	struct x509_ca_params p = { "spiffe://example.org", "CA", NOW - 100, NOW + 100 };
	uint8_t *a, *b;
	size_t al, bl;
	char err[256];

	assert_int_equal(x509_make_ca(f->key[0], NULL, NULL, 0, &p, &a, &al), 0);
	assert_int_equal(x509_make_ca(f->key[2], NULL, NULL, 0, &p, &b, &bl), 0);
	uint8_t *both = malloc(al + bl);
	memcpy(both, a, al);
	memcpy(both + al, b, bl);

	char *js = bundle_to_spiffe_json(both, al + bl, f->set, 7, 300);
	assert_non_null(js);
	json_t *root = json_loads(js, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(root, "spiffe_sequence")), 7);
	assert_int_equal(json_integer_value(json_object_get(root, "spiffe_refresh_hint")), 300);
	json_t *keys = json_object_get(root, "keys");
	assert_int_equal(json_array_size(keys), 5);
	json_t *x0 = json_array_get(keys, 0);
	assert_string_equal(json_string_value(json_object_get(x0, "use")), "x509-svid");
	assert_null(json_object_get(x0, "kid"));
	assert_string_equal(json_string_value(json_object_get(x0, "kty")), "EC");
	assert_int_equal(json_array_size(json_object_get(x0, "x5c")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 1), "kty")), "RSA");
	assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 2), "use")), "jwt-svid");
	json_decref(root);

	uint8_t *x509;
	size_t x509_len;
	struct jwks *jw;
	int64_t seq, hint;
	assert_int_equal(bundle_from_spiffe_json(js, strlen(js), &x509, &x509_len, &jw, &seq, &hint,
						 err, sizeof(err)),
			 0);
	assert_int_equal(x509_len, al + bl);
	assert_memory_equal(x509, both, al + bl);
	assert_int_equal(jwks_count(jw), 3);
	assert_int_equal(seq, 7);
	assert_int_equal(hint, 300);
	free(x509);
	jwks_free(jw);
	free(js);

	/* No JWT keys, no sequence. */
	js = bundle_to_spiffe_json(a, al, NULL, -1, -1);
	assert_non_null(js);
	assert_null(strstr(js, "spiffe_sequence"));
	assert_int_equal(bundle_from_spiffe_json(js, strlen(js), NULL, NULL, NULL, &seq, NULL, err,
						 sizeof(err)),
			 0);
	assert_int_equal(seq, -1);
	free(js);
	const char *twox5c = "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"x5c\":[\"AA==\",\"AA==\"]}]}";
	assert_int_equal(bundle_from_spiffe_json(twox5c, strlen(twox5c), &x509, &x509_len, NULL,
						 NULL, NULL, err, sizeof(err)),
			 -1);
	const char *badcert = "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"x5c\":[\"AAAA\"]}]}";
	assert_int_equal(bundle_from_spiffe_json(badcert, strlen(badcert), &x509, &x509_len, NULL,
						 NULL, NULL, err, sizeof(err)),
			 -1);

	/* Documents a bundle endpoint could send to exhaust a fetcher, and malformed keys. */
	const char *notobj = "{\"keys\":[1]}";
	assert_int_equal(bundle_from_spiffe_json(notobj, strlen(notobj), &x509, &x509_len, NULL,
						 NULL, NULL, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "not an object"));
	const char *baduse = "{\"keys\":[{\"use\":7}]}";
	assert_int_equal(bundle_from_spiffe_json(baduse, strlen(baduse), &x509, &x509_len, NULL,
						 NULL, NULL, err, sizeof(err)),
			 -1);
	size_t big = BUNDLE_DOC_MAX + 1;
	char *huge = malloc(big);
	memset(huge, ' ', big);
	memcpy(huge, "{\"keys\":[]}", 11);
	assert_int_equal(bundle_from_spiffe_json(huge, big, &x509, &x509_len, NULL, NULL, NULL,
						 err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "more than the 1048576 allowed"));
	/* The same document within the limit parses: the size, not the content, was refused. */
	assert_int_equal(bundle_from_spiffe_json(huge, big - 1, &x509, &x509_len, NULL, NULL, NULL,
						 err, sizeof(err)),
			 0);
	free(x509);
	size_t pos = (size_t)snprintf(huge, big, "{\"keys\":[");
	for (int i = 0; i <= BUNDLE_KEYS_MAX; i++)
		pos += (size_t)snprintf(huge + pos, big - pos, "%s{\"use\":\"other\"}", i ? "," : "");
	pos += (size_t)snprintf(huge + pos, big - pos, "]}");
	assert_int_equal(bundle_from_spiffe_json(huge, pos, &x509, &x509_len, NULL, NULL, NULL, err,
						 sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "keys, more than"));
	free(huge);

	char *pem = bundle_to_pem(both, al + bl);
	uint8_t *der;
	size_t dl;
	assert_int_equal(pem_decode_concat(pem, strlen(pem), "CERTIFICATE", &der, &dl), 0);
	assert_int_equal(dl, al + bl);
	assert_memory_equal(der, both, dl);
	free(der);
	free(pem);
	free(both);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_validate), cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_bad_claims),    cmocka_unit_test(test_jwks_json),
		cmocka_unit_test(test_bundle),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
