/* Unit tests for common/keys.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "util.h"
#include "x509.h"

static const enum key_type all_types[] = { KEY_EC_P256, KEY_EC_P384, KEY_RSA_2048 };

static void test_type_names(void **state)
{
	enum key_type t;
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		assert_int_equal(key_type_parse(key_type_name(all_types[i]), &t), 0);
		assert_int_equal(t, all_types[i]);
	}
	assert_int_equal(key_type_parse("ec-p521", &t), -1);
	assert_int_equal(key_type_parse("", &t), -1);
	assert_int_equal(key_type_parse(NULL, &t), -1);
	assert_int_equal(key_type_parse("EC-P256", &t), -1);
}

static void test_generate_and_algs(void **state)
{
	static const char *algs[] = { "ES256", "ES384", "RS256" };
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		lkey *k = NULL;
		assert_int_equal(lkey_generate(all_types[i], &k), 0);
		assert_non_null(k);
		assert_int_equal(lkey_type(k), all_types[i]);
		assert_string_equal(lkey_jws_alg(k), algs[i]);
		uint8_t *spki;
		size_t spki_len;
		enum key_type t;
		int bits;
		assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
		assert_int_equal(spki_key_type(spki, spki_len, &t, &bits), 0);
		assert_int_equal(t, all_types[i]);
		assert_int_equal(bits, i == 0 ? 256 : i == 1 ? 384 : 2048);
		assert_true(lkey_matches_spki(k, spki, spki_len));
		free(spki);
		lkey_free(k);
	}
	lkey_free(NULL);
}

/* Export, re-import (DER and PEM), and the public key must be the same. */
static void test_roundtrip(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		lkey *k, *k2, *k3, *other;
		uint8_t *der, *der2, *spki;
		size_t len, len2, spki_len;
		char *pem;

		assert_int_equal(lkey_generate(all_types[i], &k), 0);
		assert_int_equal(lkey_generate(all_types[i], &other), 0);
		assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
		assert_int_equal(lkey_to_pkcs8_der(k, &der, &len), 0);
		assert_int_equal(lkey_from_der(der, len, &k2), 0);
		assert_int_equal(lkey_type(k2), all_types[i]);
		assert_true(lkey_matches_spki(k2, spki, spki_len));
		assert_false(lkey_matches_spki(other, spki, spki_len));
		/* The export of the import is byte-identical. */
		assert_int_equal(lkey_to_pkcs8_der(k2, &der2, &len2), 0);
		assert_int_equal(len, len2);
		assert_memory_equal(der, der2, len);

		assert_int_equal(lkey_to_pem(k, &pem), 0);
		assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----\n"));
		assert_non_null(strstr(pem, "-----END PRIVATE KEY-----\n"));
		assert_int_equal(lkey_from_pem(pem, strlen(pem), &k3), 0);
		assert_true(lkey_matches_spki(k3, spki, spki_len));

		/* A signature by the re-imported key verifies with the original public key. */
		uint8_t *sig;
		size_t siglen;
		assert_int_equal(lkey_sign_jws(k3, (const uint8_t *)"x", 1, &sig, &siglen), 0);
		assert_int_equal(jws_verify_spki(lkey_jws_alg(k), spki, spki_len,
						 (const uint8_t *)"x", 1, sig, siglen), 0);
		free(sig);

		secure_zero(pem, strlen(pem));
		free(pem);
		secure_zero(der, len);
		free(der);
		free(der2);
		free(spki);
		lkey_free(k);
		lkey_free(k2);
		lkey_free(k3);
		lkey_free(other);
	}
}

static int run(const char *cmd)
{
	int rc = system(cmd);
	return rc;
}

/* Keys written by OpenSSL in every accepted form load, and ours load in OpenSSL. */
static void test_openssl_interop(void **state)
{
	char dir[] = "/tmp/lanyard-keys-XXXXXX";
	char cmd[1024], path[512];
	static const struct {
		const char *gen;
		enum key_type type;
	} cases[] = {
		{ "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", KEY_EC_P256 },
		{ "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384", KEY_EC_P384 },
		{ "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048", KEY_RSA_2048 },
	};
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		/* PKCS#8 PEM, then traditional (SEC1/PKCS#1) PEM and DER. */
		/* openssl ec writes SEC1 by default; openssl rsa needs -traditional for PKCS#1. */
		const char *trad = cases[i].type == KEY_RSA_2048 ? "rsa -traditional" : "ec";
		snprintf(cmd, sizeof(cmd), "%s -out %s/k8.pem 2>/dev/null", cases[i].gen, dir);
		assert_int_equal(run(cmd), 0);
		snprintf(cmd, sizeof(cmd),
			 "openssl %s -in %s/k8.pem -out %s/trad.pem 2>/dev/null &&"
			 " openssl %s -in %s/k8.pem -outform DER -out %s/trad.der"
			 " 2>/dev/null && openssl pkey -in %s/k8.pem -pubout -outform DER"
			 " -out %s/pub.der",
			 trad, dir, dir, trad, dir, dir, dir, dir);
		assert_int_equal(run(cmd), 0);
		uint8_t *pub, *data;
		size_t pub_len, data_len;
		snprintf(path, sizeof(path), "%s/pub.der", dir);
		assert_int_equal(file_read_all(path, 1 << 20, &pub, &pub_len), 0);
		static const char *files[] = { "k8.pem", "trad.pem", "trad.der" };
		for (size_t f = 0; f < ARRAY_LEN(files); f++) {
			lkey *k = NULL;
			snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
			assert_int_equal(file_read_all(path, 1 << 20, &data, &data_len), 0);
			if (f < 2)
				assert_int_equal(lkey_from_pem((char *)data, data_len, &k), 0);
			else
				assert_int_equal(lkey_from_der(data, data_len, &k), 0);
			assert_int_equal(lkey_type(k), cases[i].type);
			assert_true(lkey_matches_spki(k, pub, pub_len));
			free(data);
			lkey_free(k);
		}
		free(pub);

		/* Our PKCS#8 PEM is readable by OpenSSL, which derives the same public key. */
		lkey *mine;
		char *pem;
		uint8_t *spki;
		size_t spki_len;
		assert_int_equal(lkey_generate(cases[i].type, &mine), 0);
		assert_int_equal(lkey_to_pem(mine, &pem), 0);
		assert_int_equal(lkey_public_der(mine, &spki, &spki_len), 0);
		snprintf(path, sizeof(path), "%s/mine.pem", dir);
		assert_int_equal(file_write_atomic(path, pem, strlen(pem), 0600), 0);
		snprintf(cmd, sizeof(cmd),
			 "openssl pkey -in %s/mine.pem -check -noout >/dev/null 2>&1 &&"
			 " openssl pkey -in %s/mine.pem -pubout -outform DER -out %s/mypub.der",
			 dir, dir, dir);
		assert_int_equal(run(cmd), 0);
		snprintf(path, sizeof(path), "%s/mypub.der", dir);
		assert_int_equal(file_read_all(path, 1 << 20, &data, &data_len), 0);
		assert_int_equal(data_len, spki_len);
		assert_memory_equal(data, spki, spki_len);
		free(data);
		free(spki);
		free(pem);
		lkey_free(mine);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(run(cmd), 0);
}

static void test_garbage_rejected(void **state)
{
	lkey *k = (lkey *)1;
	uint8_t junk[300];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	assert_int_equal(lkey_from_der(junk, sizeof(junk), &k), -1);
	assert_null(k);
	assert_int_equal(lkey_from_der(junk, 0, &k), -1);
	assert_int_equal(lkey_from_pem("hello", 5, &k), -1);
	const char *bad = "-----BEGIN PRIVATE KEY-----\nAAAA!!\n-----END PRIVATE KEY-----\n";
	assert_int_equal(lkey_from_pem(bad, strlen(bad), &k), -1);
	const char *unterminated = "-----BEGIN PRIVATE KEY-----\nMIIB\n";
	assert_int_equal(lkey_from_pem(unterminated, strlen(unterminated), &k), -1);

	/* Every truncation and every single-byte change of a valid key is handled without a
	 * crash, and truncations are all rejected. */
	lkey *g;
	uint8_t *der;
	size_t len;
	assert_int_equal(lkey_generate(KEY_EC_P256, &g), 0);
	assert_int_equal(lkey_to_pkcs8_der(g, &der, &len), 0);
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(lkey_from_der(der, cut, &k), -1);
	}
	for (size_t i = 0; i < len; i++) {
		der[i] ^= 0x41;
		if (lkey_from_der(der, len, &k) == 0)
			lkey_free(k);
		der[i] ^= 0x41;
	}
	/* A public key is not a private key. */
	uint8_t *spki;
	size_t spki_len;
	assert_int_equal(lkey_public_der(g, &spki, &spki_len), 0);
	assert_int_equal(lkey_from_der(spki, spki_len, &k), -1);
	enum key_type t;
	assert_int_equal(spki_key_type(der, len, &t, NULL), -1);
	assert_int_equal(spki_key_type(junk, sizeof(junk), &t, NULL), -1);
	free(spki);
	free(der);
	lkey_free(g);
}

/* A private key whose public point is not its scalar times G (another key's point, a point off
 * the curve) or whose scalar is out of range is refused: a persisted key that does not match
 * would otherwise be used with a certificate it cannot sign for. */
static void test_mismatched_public_point(void **state)
{
	lkey *a, *b, *k = NULL;
	uint8_t *der, *spki_a, *spki_b;
	size_t len, la, lb;
	assert_int_equal(lkey_generate(KEY_EC_P256, &a), 0);
	assert_int_equal(lkey_generate(KEY_EC_P256, &b), 0);
	assert_int_equal(lkey_to_pkcs8_der(a, &der, &len), 0);
	assert_int_equal(lkey_public_der(a, &spki_a, &la), 0);
	assert_int_equal(lkey_public_der(b, &spki_b, &lb), 0);
	/* The uncompressed point 04||x||y ends both the SPKI and the PKCS#8 key. */
	assert_true(len > 65 && la > 65 && lb == la);
	assert_memory_equal(der + len - 65, spki_a + la - 65, 65);
	assert_int_equal(lkey_from_der(der, len, &k), 0);
	lkey_free(k);

	memcpy(der + len - 65, spki_b + lb - 65, 65); /* b's point with a's scalar */
	k = NULL;
	assert_int_equal(lkey_from_der(der, len, &k), -1);
	assert_null(k);
	der[len - 1] ^= 0x01; /* off the curve */
	assert_int_equal(lkey_from_der(der, len, &k), -1);
	memcpy(der + len - 65, spki_a + la - 65, 65);

	/* The scalar: 32 bytes after "04 20" in the inner ECPrivateKey. */
	uint8_t *scalar = NULL;
	for (size_t i = 0; i + 34 < len && !scalar; i++)
		if (der[i] == 0x04 && der[i + 1] == 0x20 && der[i + 2] != 0x04)
			scalar = der + i + 2;
	assert_non_null(scalar);
	memset(scalar, 0, 32); /* zero */
	assert_int_equal(lkey_from_der(der, len, &k), -1);
	memset(scalar, 0xff, 32); /* above the group order */
	assert_int_equal(lkey_from_der(der, len, &k), -1);
	free(der);
	free(spki_a);
	free(spki_b);
	lkey_free(a);
	lkey_free(b);
}

static void test_sign_verify(void **state)
{
	const uint8_t msg[] = "header.payload";
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		lkey *k, *other;
		uint8_t *sig, *spki, *ospki;
		size_t siglen, spki_len, ospki_len;
		const char *alg;

		assert_int_equal(lkey_generate(all_types[i], &k), 0);
		assert_int_equal(lkey_generate(all_types[i], &other), 0);
		alg = lkey_jws_alg(k);
		assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
		assert_int_equal(lkey_public_der(other, &ospki, &ospki_len), 0);
		assert_int_equal(lkey_sign_jws(k, msg, sizeof(msg) - 1, &sig, &siglen), 0);
		assert_int_equal(siglen, i == 0 ? 64 : i == 1 ? 96 : 256);
		assert_int_equal(jws_verify_spki(alg, spki, spki_len, msg, sizeof(msg) - 1, sig,
						 siglen), 0);
		/* Tampered data, tampered signature, wrong key, wrong alg, truncated sig. */
		assert_int_not_equal(jws_verify_spki(alg, spki, spki_len, msg, sizeof(msg) - 2,
						     sig, siglen), 0);
		sig[siglen / 2] ^= 1;
		assert_int_not_equal(jws_verify_spki(alg, spki, spki_len, msg, sizeof(msg) - 1,
						     sig, siglen), 0);
		sig[siglen / 2] ^= 1;
		assert_int_not_equal(jws_verify_spki(alg, ospki, ospki_len, msg, sizeof(msg) - 1,
						     sig, siglen), 0);
		assert_int_not_equal(jws_verify_spki(i == 2 ? "PS256" : "RS256", spki, spki_len,
						     msg, sizeof(msg) - 1, sig, siglen), 0);
		assert_int_not_equal(jws_verify_spki(i == 0 ? "ES384" : "ES256", spki, spki_len,
						     msg, sizeof(msg) - 1, sig, siglen), 0);
		assert_int_not_equal(jws_verify_spki("none", spki, spki_len, msg, sizeof(msg) - 1,
						     sig, siglen), 0);
		assert_int_not_equal(jws_verify_spki("HS256", spki, spki_len, msg, sizeof(msg) - 1,
						     sig, siglen), 0);
		assert_int_not_equal(jws_verify_spki(alg, spki, spki_len, msg, sizeof(msg) - 1,
						     sig, siglen - 1), 0);
		free(sig);
		free(spki);
		free(ospki);
		lkey_free(k);
		lkey_free(other);
	}
}

/* Signatures made by OpenSSL (RS256 via PKCS#1 v1.5, PS256 with salt = hash length, ES256
 * converted from DER) verify: our verifier is not only compatible with our signer. */
static void test_verify_openssl_signatures(void **state)
{
	char dir[] = "/tmp/lanyard-sig-XXXXXX";
	char cmd[2048], path[512];
	uint8_t *pub, *sig;
	size_t pub_len, sig_len;

	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && printf 'abc.def' > msg && "
		 "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null && "
		 "openssl pkey -in rsa.pem -pubout -outform DER -out rsa.der && "
		 "openssl dgst -sha256 -sign rsa.pem -out rs256.sig msg && "
		 "openssl dgst -sha256 -sign rsa.pem -sigopt rsa_padding_mode:pss "
		 "-sigopt rsa_pss_saltlen:32 -out ps256.sig msg",
		 dir);
	assert_int_equal(run(cmd), 0);
	snprintf(path, sizeof(path), "%s/rsa.der", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &pub, &pub_len), 0);
	const uint8_t *msg = (const uint8_t *)"abc.def";
	snprintf(path, sizeof(path), "%s/rs256.sig", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &sig, &sig_len), 0);
	assert_int_equal(jws_verify_spki("RS256", pub, pub_len, msg, 7, sig, sig_len), 0);
	assert_int_not_equal(jws_verify_spki("RS384", pub, pub_len, msg, 7, sig, sig_len), 0);
	free(sig);
	snprintf(path, sizeof(path), "%s/ps256.sig", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &sig, &sig_len), 0);
	assert_int_equal(jws_verify_spki("PS256", pub, pub_len, msg, 7, sig, sig_len), 0);
	assert_int_not_equal(jws_verify_spki("RS256", pub, pub_len, msg, 7, sig, sig_len), 0);
	free(sig);
	free(pub);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(run(cmd), 0);
}

struct thread_arg {
	lkey *k;
	const uint8_t *spki;
	size_t spki_len;
	int failures;
};

static void *sign_loop(void *p)
{
	struct thread_arg *a = p;
	for (int i = 0; i < 40; i++) {
		uint8_t msg[8], *sig;
		size_t siglen;
		memcpy(msg, &i, sizeof(i));
		memcpy(msg + 4, &a, 4);
		if (lkey_sign_jws(a->k, msg, sizeof(msg), &sig, &siglen) != 0) {
			a->failures++;
			continue;
		}
		if (jws_verify_spki(lkey_jws_alg(a->k), a->spki, a->spki_len, msg, sizeof(msg), sig,
				    siglen) != 0)
			a->failures++;
		free(sig);
	}
	return NULL;
}

/* One key shared by several signing threads: every signature stays valid. */
static void test_threads(void **state)
{
	for (size_t t = 0; t < ARRAY_LEN(all_types); t++) {
		lkey *k;
		uint8_t *spki;
		size_t spki_len;
		pthread_t th[4];
		struct thread_arg args[4];
		assert_int_equal(lkey_generate(all_types[t], &k), 0);
		assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
		for (int i = 0; i < 4; i++) {
			args[i] = (struct thread_arg){ k, spki, spki_len, 0 };
			assert_int_equal(pthread_create(&th[i], NULL, sign_loop, &args[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			assert_int_equal(args[i].failures, 0);
		}
		free(spki);
		lkey_free(k);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_generate_and_algs),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_openssl_interop),
		cmocka_unit_test(test_garbage_rejected),
		cmocka_unit_test(test_mismatched_public_point),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_verify_openssl_signatures),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
