/* fuzz_jwt: JWT-SVID validation and the JSON key documents (common/jwt.h, common/bundle.h). The
 * agent validates tokens for any workload (ValidateJWTSVID) and reads JWK Sets and SPIFFE bundles
 * from the server and from files.
 *
 * The first input byte chooses what to do with the rest ('0'..'3' in the seed files):
 *   0  a compact token: jwt_peek_sub, then jwt_validate against a fixed key set
 *   1  a JWK Set: jwks_from_json; an accepted set must survive jwks_to_json and back
 *   2  a SPIFFE bundle: bundle_from_spiffe_json; accepted X.509 authorities must split into
 *      whole certificates, and the bundle must survive bundle_to_spiffe_json and back
 *   3  "<header JSON>\n<claims JSON>": the harness signs them with the key of the fixed set, so
 *      the claim checks after the signature are reached (a fuzzer cannot forge a signature) */
#include <stdint.h>
#include <string.h>

#include "bundle.h"
#include "fuzz.h"
#include "jwt.h"
#include "keys.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

#define NOW 1800000000 /* fixed, so runs repeat; the seeds' exp is after it */
#define AUDIENCE "spiffe://example.org/audience"

/* The fixed key set: one generated EC P-256 key under kid "k1", made once per process. */
static lkey *sign_key;
static struct jwks *keyset;

static void init_keys(void)
{
	uint8_t *spki;
	size_t len;

	if (keyset)
		return;
	if (lkey_generate(KEY_EC_P256, &sign_key) < 0 || lkey_public_der(sign_key, &spki, &len) < 0)
		abort();
	keyset = jwks_new();
	if (!keyset || jwks_add(keyset, "k1", spki, len) < 0)
		abort();
	free(spki);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	init_keys();
	return 0;
}

static void check_token(const char *tok)
{
	char sub[2049], err[256] = "";
	struct jwt_claims cl;

	if (jwt_peek_sub(tok, sub, sizeof(sub)) == 0)
		FUZZ_CHECK(strlen(sub) < sizeof(sub));
	if (jwt_validate(tok, keyset, AUDIENCE, NOW, &cl, err, sizeof(err)) == 0) {
		char why[128];
		FUZZ_CHECK(cl.exp > NOW);
		FUZZ_CHECK(cl.all != NULL && json_is_object(cl.all));
		FUZZ_CHECK(spiffeid_parse(cl.sub, NULL, NULL, why, sizeof(why)) == 0);
		/* The unverified peek must agree with the verified claims. */
		FUZZ_CHECK(jwt_peek_sub(tok, sub, sizeof(sub)) == 0 && strcmp(sub, cl.sub) == 0);
		jwt_claims_free(&cl);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(cl.all == NULL);
	}
	/* Without claims out and audience, the checks that do not need them still run. */
	(void)jwt_validate(tok, keyset, NULL, NOW, NULL, NULL, 0);
}

static void check_jwks(const char *json, size_t len)
{
	struct jwks *s = NULL, *again = NULL;
	char err[256] = "";

	if (jwks_from_json(json, len, &s, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(s == NULL);
		return;
	}
	FUZZ_CHECK(s != NULL);
	for (size_t i = 0; i < jwks_count(s); i++) {
		const uint8_t *spki;
		size_t spki_len, found_len;
		const char *kid = jwks_get(s, i, &spki, &spki_len);
		FUZZ_CHECK(kid && kid[0]);
		FUZZ_CHECK(jwks_find(s, kid, &found_len) == spki && found_len == spki_len);
	}
	char *out = jwks_to_json(s);
	FUZZ_CHECK(out != NULL);
	FUZZ_CHECK(jwks_from_json(out, strlen(out), &again, err, sizeof(err)) == 0);
	FUZZ_CHECK(jwks_count(again) == jwks_count(s));
	free(out);
	jwks_free(again);
	jwks_free(s);
}

static void check_bundle(const char *json, size_t len)
{
	uint8_t *x509 = NULL;
	size_t x509_len = 0;
	struct jwks *jwt = NULL;
	int64_t seq = 0, hint = 0;
	char err[256] = "";

	if (bundle_from_spiffe_json(json, len, &x509, &x509_len, &jwt, &seq, &hint, err,
				    sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(x509 == NULL && jwt == NULL);
		return;
	}
	FUZZ_CHECK(jwt != NULL);
	/* Callers split the authorities with x509_split_der: each accepted x5c certificate must
	 * come out as one whole certificate again. */
	const uint8_t **certs;
	size_t *lens, n;
	FUZZ_CHECK(x509_split_der(x509, x509_len, &certs, &lens, &n) == 0);
	for (size_t i = 0; i < n; i++) {
		struct x509_info xi;
		FUZZ_CHECK(x509_parse(certs[i], lens[i], &xi, err, sizeof(err)) == 0);
		x509_info_free(&xi);
	}
	free(certs);
	free(lens);

	char *out = bundle_to_spiffe_json(x509, x509_len, jwt, seq, hint);
	if (out) {
		uint8_t *x2 = NULL;
		size_t x2_len = 0;
		struct jwks *j2 = NULL;
		int64_t seq2, hint2;
		FUZZ_CHECK(bundle_from_spiffe_json(out, strlen(out), &x2, &x2_len, &j2, &seq2, &hint2,
						   err, sizeof(err)) == 0);
		FUZZ_CHECK(x2_len == x509_len && (x509_len == 0 || memcmp(x2, x509, x509_len) == 0));
		FUZZ_CHECK(jwks_count(j2) == jwks_count(jwt));
		/* bundle_to_spiffe_json omits a negative sequence or hint (it means "absent"), so
		 * the parser may only return a negative value as -1, for a member that is absent. */
		FUZZ_CHECK(seq2 == seq);
		FUZZ_CHECK(hint2 == hint);
		free(x2);
		jwks_free(j2);
		free(out);
	}
	free(x509);
	jwks_free(jwt);
}

static void sign_and_check(const uint8_t *p, size_t n)
{
	struct fuzz_input in = { p, n };
	size_t hl, cl;
	const uint8_t *h = fuzz_take_until(&in, '\n', &hl);
	const uint8_t *c = in.p;
	cl = in.n;

	char *hb = base64url_encode(h, hl);
	char *cb = base64url_encode(c, cl);
	FUZZ_CHECK(hb && cb);
	size_t ilen = strlen(hb) + 1 + strlen(cb);
	char *input = malloc(ilen + 1);
	FUZZ_CHECK(input != NULL);
	snprintf(input, ilen + 1, "%s.%s", hb, cb);
	uint8_t *sig;
	size_t siglen;
	FUZZ_CHECK(lkey_sign_jws(sign_key, (const uint8_t *)input, ilen, &sig, &siglen) == 0);
	char *sb = base64url_encode(sig, siglen);
	FUZZ_CHECK(sb != NULL);
	char *tok = malloc(ilen + 1 + strlen(sb) + 1);
	FUZZ_CHECK(tok != NULL);
	sprintf(tok, "%s.%s", input, sb);
	check_token(tok);
	free(tok);
	free(sb);
	free(sig);
	free(input);
	free(cb);
	free(hb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	init_keys();
	int mode = data[0] % 4;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	switch (mode) {
	case 0: {
		char *tok = fuzz_cstr(p, n);
		check_token(tok);
		free(tok);
		break;
	}
	case 1:
		check_jwks((const char *)p, n);
		break;
	case 2:
		check_bundle((const char *)p, n);
		break;
	case 3:
		sign_and_check(p, n);
		break;
	}
	return 0;
}
