/* OIDC discovery (server/oidc.c): issuer URL rules, the documents over real loopback HTTP, the
 * issuer's path as a second prefix, the key set following the CA's rotation (a prepared key is
 * published, a token's kid is in it, the JWK is the authority's public key), and JWT-SVIDs
 * carrying "iss". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ca.h"
#include "datastore.h"
#include "jwt.h"
#include "log.h"
#include "oidc.h"
#include "util.h"

#define TTL 6000LL
#define ISSUER "http://127.0.0.1:1/lanyard"

struct fx {
	char dir[64];
	struct datastore *ds;
	struct ca *ca;
	struct oidc *oidc;
	int64_t t0;
};

static int setup(void **state)
{
	log_setup(LOG_LEVEL_WARN, false);
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/lanyard-oidc-XXXXXX");
	if (!f || !mkdtemp(f->dir))
		return -1;
	char path[128], err[256];
	snprintf(path, sizeof(path), "%s/ds.sqlite3", f->dir);
	if (datastore_open_sqlite(path, &f->ds, err, sizeof(err)) < 0)
		return -1;
	f->t0 = now_unix();
	struct ca_options co = { .trust_domain = "example.org", .data_dir = f->dir,
				 .key_type = KEY_EC_P256, .ca_ttl = TTL, .jwt_issuer = ISSUER };
	if (ca_open(&co, f->ds, f->t0, &f->ca, err, sizeof(err)) < 0)
		return -1;
	struct oidc_options oo = { .address = "127.0.0.1", .port = -1, .issuer = ISSUER,
				   .ca = f->ca, .max_age_s = 60 };
	if (oidc_start(&oo, &f->oidc, err, sizeof(err)) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	oidc_stop(f->oidc);
	ca_close(f->ca);
	datastore_close(f->ds);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	int r = system(cmd);
	free(f);
	return r;
}

struct body {
	char buf[16384];
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct body *b = ud;
	size_t k = size * n;
	if (b->len + k >= sizeof(b->buf))
		return 0;
	memcpy(b->buf + b->len, p, k);
	b->len += k;
	b->buf[b->len] = '\0';
	return k;
}

/* method path [request body] -> status; the JSON answer into *out when out is not NULL. */
static long request_with(const struct fx *f, const char *method, const char *path,
			 const char *req_body, json_t **out)
{
	char url[256];
	struct body b = { .len = 0 };
	long code = -1;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", oidc_port(f->oidc), path);
	CURL *c = curl_easy_init();
	assert_non_null(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (req_body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req_body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (out) {
		*out = json_loads(b.buf, 0, NULL);
		assert_non_null(*out);
	}
	return code;
}

static long request(const struct fx *f, const char *method, const char *path, json_t **out)
{
	return request_with(f, method, path, NULL, out);
}

static void issuer_rules(void **state)
{
	(void)state;
	char why[256];
	static const char *const good[] = { "https://oidc.example.org",
					    "https://oidc.example.org/lanyard",
					    "http://127.0.0.1:8090" };
	static const char *const bad[] = { "oidc.example.org", "ftp://x", "https://",
					   "https:///path", "https://x/?a=b", "https://x#f",
					   "https://x/", "https://x y" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(oidc_issuer_check(good[i], why, sizeof(why)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(oidc_issuer_check(bad[i], why, sizeof(why)), -1);
		assert_true(why[0] != '\0');
	}
}

static void discovery_document(void **state)
{
	struct fx *f = *state;
	const char *paths[] = { "/.well-known/openid-configuration",
				"/lanyard/.well-known/openid-configuration" };
	for (int i = 0; i < 2; i++) {
		json_t *d;
		assert_int_equal(request(f, "GET", paths[i], &d), 200);
		assert_string_equal(json_string_value(json_object_get(d, "issuer")), ISSUER);
		assert_string_equal(json_string_value(json_object_get(d, "jwks_uri")),
				    ISSUER "/keys");
		json_t *rt = json_object_get(d, "response_types_supported");
		assert_string_equal(json_string_value(json_array_get(rt, 0)), "id_token");
		json_t *st = json_object_get(d, "subject_types_supported");
		assert_string_equal(json_string_value(json_array_get(st, 0)), "public");
		json_t *algs = json_object_get(d, "id_token_signing_alg_values_supported");
		assert_int_equal(json_array_size(algs), 1);
		assert_string_equal(json_string_value(json_array_get(algs, 0)), "ES256");
		json_decref(d);
	}
	assert_int_equal(request(f, "GET", "/lanyard/other", NULL), 404);
	assert_int_equal(request(f, "GET", "/lanyardx/keys", NULL), 404);
	assert_int_equal(request(f, "GET", "/keys/", NULL), 404);
	assert_int_equal(request(f, "POST", "/keys", NULL), 405);
	assert_int_equal(request(f, "PUT", "/lanyard/keys", NULL), 405);
	/* A GET with a body is refused at once (not left waiting for its body to be read). */
	assert_int_equal(request_with(f, "GET", "/keys", "xxxxxxxx", NULL), 400);
	struct oidc_stats s;
	oidc_stats(f->oidc, &s);
	assert_int_equal(s.answers[OIDC_DISCOVERY][0], 2);
	assert_int_equal(s.answers[OIDC_OTHER][2], 3);
	assert_int_equal(s.answers[OIDC_KEYS][3], 2);
	assert_int_equal(s.answers[OIDC_KEYS][1], 1);
	assert_int_equal(s.tls, 0);
}

/* The kids of the served key set, checking each JWK. */
static size_t served_kids(struct fx *f, char kids[4][80])
{
	json_t *set;
	assert_int_equal(request(f, "GET", "/keys", &set), 200);
	json_t *keys = json_object_get(set, "keys");
	size_t i, n = json_array_size(keys);
	assert_true(n >= 1 && n <= 4);
	json_t *k;
	json_array_foreach(keys, i, k) {
		assert_string_equal(json_string_value(json_object_get(k, "use")), "sig");
		assert_string_equal(json_string_value(json_object_get(k, "alg")), "ES256");
		assert_string_equal(json_string_value(json_object_get(k, "kty")), "EC");
		assert_null(json_object_get(k, "d"));
		snprintf(kids[i], 80, "%s", json_string_value(json_object_get(k, "kid")));
	}
	json_decref(set);
	return n;
}

static void keys_follow_rotation(void **state)
{
	struct fx *f = *state;
	char kids[4][80], err[256];
	assert_int_equal(served_kids(f, kids), 1);
	/* A token's kid is in the set, and the token carries the issuer. */
	const char *aud[] = { "sts.amazonaws.com" };
	char *tok = NULL;
	int64_t exp;
	assert_int_equal(ca_sign_jwt(f->ca, "spiffe://example.org/web", aud, 1, 300, f->t0, &tok,
				     &exp, err, sizeof(err)), 0);
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(f->ca, &b), 0);
	struct jwt_claims cl;
	assert_int_equal(jwt_validate(tok, b.jwt, "sts.amazonaws.com", f->t0, &cl, err,
				      sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(cl.all, "iss")), ISSUER);
	jwt_claims_free(&cl);
	ca_bundle_free(&b);
	free(tok);

	/* Half-way through the authority's life the next one is prepared: its key is served
	 * before it signs. */
	assert_true(ca_rotate(f->ca, f->t0 + TTL / 2 + 1, err, sizeof(err)) > 0);
	assert_int_equal(served_kids(f, kids), 2);
	struct oidc_stats s;
	oidc_stats(f->oidc, &s);
	assert_int_equal(s.keys, 2);
	assert_int_equal(ca_sign_jwt(f->ca, "spiffe://example.org/web", aud, 1, 300,
				     f->t0 + TTL / 2 + 1, &tok, &exp, err, sizeof(err)), 0);
	free(tok);
}

static void bad_options(void **state)
{
	struct fx *f = *state;
	struct oidc *o = NULL;
	char err[256];
	struct oidc_options oo = { .address = "127.0.0.1", .port = oidc_port(f->oidc),
				   .issuer = ISSUER, .ca = f->ca };
	assert_int_equal(oidc_start(&oo, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot listen"));
	oo.port = -1;
	oo.issuer = "https://x/";
	assert_int_equal(oidc_start(&oo, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "oidc_issuer"));
	oo.issuer = ISSUER;
	oo.cert_file = "/nonexistent/cert.pem";
	assert_int_equal(oidc_start(&oo, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "go together"));
	oo.key_file = "/nonexistent/key.pem";
	assert_int_equal(oidc_start(&oo, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/cert.pem: cannot read"));
	assert_null(o);
	oidc_stop(NULL);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(issuer_rules),
		cmocka_unit_test_setup_teardown(discovery_document, setup, teardown),
		cmocka_unit_test_setup_teardown(keys_follow_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_options, setup, teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
