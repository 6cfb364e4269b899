/* Unit tests for server/signer_msg.c (the codec refuses every malformed message) and
 * server/signer.c (a live signer answers malformed and oversized requests with an error and
 * keeps serving). signer.c is included to reach a channel's descriptor, as an attacker holding
 * one would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../server/signer.c"
#include "x509.h"

static void test_req_roundtrip(void **state)
{
	(void)state;
	struct signer_req r = { .op = SIGNER_OP_SIGN, .handle = 7, .data_len = 32 };
	memset(r.data, 0xab, 32);
	uint8_t buf[SIGNER_REQ_MAX];
	size_t n = signer_req_encode(&r, buf, sizeof(buf));
	assert_int_equal(n, SIGNER_REQ_HEADER + 32);
	struct signer_req d;
	assert_int_equal(signer_req_decode(buf, n, &d), 0);
	assert_int_equal(d.op, SIGNER_OP_SIGN);
	assert_int_equal(d.handle, 7);
	assert_int_equal(d.data_len, 32);
	assert_memory_equal(d.data, r.data, 32);

	struct signer_req g = { .op = SIGNER_OP_LOAD, .kind = SIGNER_KIND_UPSTREAM };
	assert_int_equal(signer_req_encode(&g, buf, sizeof(buf)), SIGNER_REQ_HEADER);
}

static void raw_req(uint8_t *buf, uint8_t op, uint8_t kind, uint16_t len, const char *data)
{
	buf[0] = op;
	buf[1] = kind;
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	memset(buf + 4, 0, 4);
	memcpy(buf + SIGNER_REQ_HEADER, data, strlen(data));
}

static void test_req_refused(void **state)
{
	(void)state;
	uint8_t buf[4096] = { 0 };
	struct signer_req d;
	/* sizes: too short, too long, data_len not matching the bytes */
	assert_int_equal(signer_req_decode(buf, 3, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_SIGN, 0, 32, "");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 32, &d), 0);
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 31, &d), -EINVAL);
	assert_int_equal(signer_req_decode(buf, sizeof(buf), &d), -EINVAL);
	raw_req(buf, SIGNER_OP_SIGN, 0, 4000, "");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 4000, &d), -EINVAL);
	/* digest lengths other than 32/48/64 */
	raw_req(buf, SIGNER_OP_SIGN, 0, 31, "");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 31, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_SIGN, 0, 0, "");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER, &d), -EINVAL);
	/* unknown op and kind */
	raw_req(buf, 99, 0, 3, "abc");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 3, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_LOAD, 3, 3, "abc");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 3, &d), -EINVAL);
	/* ids that would leave the key directory, or none */
	raw_req(buf, SIGNER_OP_LOAD, SIGNER_KIND_X509, 9, "../../etc");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 9, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_GENERATE, SIGNER_KIND_JWT, 4, "a/b.");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 4, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_DESTROY, 0, 0, "");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER, &d), -EINVAL);
	/* the upstream key is loaded by configuration only, never made or named */
	raw_req(buf, SIGNER_OP_GENERATE, SIGNER_KIND_UPSTREAM, 3, "abc");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 3, &d), -EINVAL);
	raw_req(buf, SIGNER_OP_LOAD, SIGNER_KIND_UPSTREAM, 3, "abc");
	assert_int_equal(signer_req_decode(buf, SIGNER_REQ_HEADER + 3, &d), -EINVAL);
	/* the encoder refuses what the decoder would */
	struct signer_req bad = { .op = SIGNER_OP_SIGN, .data_len = 200 };
	assert_int_equal(signer_req_encode(&bad, buf, sizeof(buf)), 0);
}

static void test_rep_refused(void **state)
{
	(void)state;
	struct signer_rep r = { .status = -ENOENT, .handle = 1, .data_len = 5 };
	memcpy(r.data, "nokey", 5);
	uint8_t buf[SIGNER_REP_MAX + 16];
	size_t n = signer_rep_encode(&r, buf, sizeof(buf));
	assert_int_equal(n, SIGNER_REP_HEADER + 5);
	struct signer_rep d;
	assert_int_equal(signer_rep_decode(buf, n, &d), 0);
	assert_int_equal(d.status, -ENOENT);
	assert_int_equal(signer_rep_decode(buf, n - 1, &d), -EINVAL);
	assert_int_equal(signer_rep_decode(buf, 4, &d), -EINVAL);
	assert_int_equal(signer_rep_decode(buf, sizeof(buf), &d), -EINVAL);
	buf[0] = 0; /* status 0x0000fffe: positive, not an errno */
	assert_int_equal(signer_rep_decode(buf, n, &d), -EINVAL);
	r.status = 5;
	assert_int_equal(signer_rep_encode(&r, buf, sizeof(buf)), 0);
}

/* Sends raw bytes on a channel; returns the reply's status. */
static int32_t raw_call(struct signer *s, const void *msg, size_t len)
{
	uint8_t buf[SIGNER_REP_MAX];
	struct signer_rep rep;
	assert_int_equal(send(s->ch[0].fd, msg, len, 0), (ssize_t)len);
	ssize_t n = recv(s->ch[0].fd, buf, sizeof(buf), 0);
	assert_true(n > 0);
	assert_int_equal(signer_rep_decode(buf, (size_t)n, &rep), 0);
	return rep.status;
}

static void sign_and_verify(lkey *k)
{
	static const uint8_t msg[] = "header.payload";
	uint8_t *sig = NULL, *spki = NULL;
	size_t siglen, spki_len;
	assert_int_equal(lkey_sign_jws(k, msg, sizeof(msg) - 1, &sig, &siglen), 0);
	assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
	assert_int_equal(jws_verify_spki(lkey_jws_alg(k), spki, spki_len, msg, sizeof(msg) - 1, sig,
					 siglen), 0);
	free(sig);
	free(spki);
}

static void test_live_signer(void **state)
{
	(void)state;
	char dir[] = "/tmp/lanyard-signer-XXXXXX", path[128], err[256];
	assert_non_null(mkdtemp(dir));
	struct signer_options o = { .key_dir = dir, .key_type = KEY_EC_P256, .channels = 2 };
	struct signer *s = NULL;
	assert_int_equal(signer_start(&o, &s, err, sizeof(err)), 0);

	lkey *k = NULL, *again = NULL;
	assert_int_equal(signer_generate(s, SIGNER_KIND_X509, "abc123", &k, err, sizeof(err)), 0);
	uint8_t *der = NULL;
	size_t der_len;
	assert_int_equal(lkey_to_pkcs8_der(k, &der, &der_len), -1); /* no private half here */
	sign_and_verify(k);
	snprintf(path, sizeof(path), "%s/abc123.key", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* A certificate signed through the signer verifies against its own key. */
	struct x509_ca_params p = { .common_name = "t", .not_before = now_unix() - 10,
				    .not_after = now_unix() + 3600 };
	uint8_t *cert = NULL;
	size_t cert_len;
	assert_int_equal(x509_make_ca(k, NULL, NULL, 0, &p, &cert, &cert_len), 0);
	assert_true(lkey_matches_cert(k, cert, cert_len));
	assert_int_equal(x509_verify(cert, cert_len, cert, cert_len, now_unix(), err, sizeof(err)), 0);
	free(cert);

	/* Garbage, oversized, truncated, unknown handle, a path in the id: error replies. */
	uint8_t big[4096];
	memset(big, 0x41, sizeof(big));
	assert_int_equal(raw_call(s, "xyz", 3), -EINVAL);
	assert_int_equal(raw_call(s, big, sizeof(big)), -EINVAL);
	uint8_t m[SIGNER_REQ_MAX];
	raw_req(m, SIGNER_OP_SIGN, 0, 32, "");
	assert_int_equal(raw_call(s, m, SIGNER_REQ_HEADER + 20), -EINVAL);
	m[7] = 99; /* handle 99 */
	assert_int_equal(raw_call(s, m, SIGNER_REQ_HEADER + 32), -ENOENT);
	raw_req(m, SIGNER_OP_LOAD, SIGNER_KIND_X509, 11, "../../x/abc");
	assert_int_equal(raw_call(s, m, SIGNER_REQ_HEADER + 11), -EINVAL);
	assert_int_equal(signer_generate(s, SIGNER_KIND_X509, "abc123", &again, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "exists"));
	/* ... and the signer still serves. */
	sign_and_verify(k);
	assert_int_equal(signer_load(s, SIGNER_KIND_X509, "abc123", &again, err, sizeof(err)), 0);
	sign_and_verify(again);
	lkey_free(again);
	assert_int_equal(signer_load(s, SIGNER_KIND_UPSTREAM, NULL, &again, err, sizeof(err)), -1);

	/* Destroyed: the file is gone and the key no longer signs. */
	assert_int_equal(signer_destroy(s, "abc123"), 0);
	assert_int_equal(stat(path, &st), -1);
	uint8_t *sig = NULL;
	size_t siglen;
	assert_int_equal(lkey_sign_jws(k, (const uint8_t *)"x", 1, &sig, &siglen), -1);
	lkey_free(k);
	signer_stop(s);
	rmdir(dir);
}

static void test_batch_codec(void **state)
{
	(void)state;
	uint8_t d[SIGNER_BATCH_MAX + 1][32], buf[SIGNER_REP_MAX];
	const uint8_t *dp[SIGNER_BATCH_MAX + 1], *got[SIGNER_BATCH_MAX];
	size_t lens[SIGNER_BATCH_MAX], n = 0;
	for (size_t i = 0; i <= SIGNER_BATCH_MAX; i++) {
		memset(d[i], (int)i, sizeof(d[i]));
		dp[i] = d[i];
	}
	struct signer_req r = { .handle = 3 }, back;
	assert_int_equal(signer_batch_req_set(&r, dp, 32, SIGNER_BATCH_MAX), 0);
	size_t len = signer_req_encode(&r, buf, sizeof(buf));
	assert_int_equal(len, SIGNER_REQ_HEADER + 1 + SIGNER_BATCH_MAX * 33);
	assert_int_equal(signer_req_decode(buf, len, &back), 0);
	assert_int_equal(signer_batch_req_get(&back, got, lens, &n), 0);
	assert_int_equal(n, SIGNER_BATCH_MAX);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(lens[i], 32);
		assert_memory_equal(got[i], d[i], 32);
	}
	/* count 0 or over the max, a bad digest length, a truncated or padded list */
	assert_int_equal(signer_batch_req_set(&r, dp, 32, 0), -EINVAL);
	assert_int_equal(signer_batch_req_set(&r, dp, 32, SIGNER_BATCH_MAX + 1), -EINVAL);
	assert_int_equal(signer_batch_req_set(&r, dp, 33, 2), -EINVAL);
	assert_int_equal(signer_batch_req_set(&r, dp, 32, 2), 0);
	len = signer_req_encode(&r, buf, sizeof(buf));
	assert_int_equal(signer_req_decode(buf, len, &back), 0);
	buf[SIGNER_REQ_HEADER] = 3; /* claims 3 digests, carries 2 */
	assert_int_equal(signer_req_decode(buf, len, &back), -EINVAL);
	buf[SIGNER_REQ_HEADER] = 0;
	assert_int_equal(signer_req_decode(buf, len, &back), -EINVAL);
	buf[SIGNER_REQ_HEADER] = 2;
	buf[SIGNER_REQ_HEADER + 1] = 31; /* first digest 31 bytes */
	assert_int_equal(signer_req_decode(buf, len, &back), -EINVAL);
	buf[SIGNER_REQ_HEADER + 1] = 64; /* longer than what follows */
	assert_int_equal(signer_req_decode(buf, len, &back), -EINVAL);
	buf[SIGNER_REQ_HEADER + 1] = 32;
	buf[3] = (uint8_t)(buf[3] + 1); /* one stray byte after the list */
	assert_int_equal(signer_req_decode(buf, len + 1, &back), -EINVAL);

	/* replies: exactly the expected number of well-formed signatures */
	struct signer_rep rep = { 0 }, rb;
	const uint8_t *sigs[SIGNER_BATCH_MAX];
	size_t sl[SIGNER_BATCH_MAX];
	uint8_t sig[SIGNER_SIG_MAX];
	memset(sig, 0x5a, sizeof(sig));
	for (size_t i = 0; i < SIGNER_BATCH_MAX; i++)
		assert_int_equal(signer_batch_rep_add(&rep, sig, SIGNER_SIG_MAX - i), 0);
	assert_int_equal(signer_batch_rep_add(&rep, sig, 10), -EINVAL); /* full */
	len = signer_rep_encode(&rep, buf, sizeof(buf));
	assert_int_not_equal(len, 0);
	assert_int_equal(signer_rep_decode(buf, len, &rb), 0);
	assert_int_equal(signer_batch_rep_get(&rb, SIGNER_BATCH_MAX, sigs, sl), 0);
	assert_int_equal(sl[5], SIGNER_SIG_MAX - 5);
	assert_memory_equal(sigs[5], sig, sl[5]);
	assert_int_equal(signer_batch_rep_get(&rb, SIGNER_BATCH_MAX - 1, sigs, sl), -EINVAL);
	rb.data_len--; /* the last signature cut short */
	assert_int_equal(signer_batch_rep_get(&rb, SIGNER_BATCH_MAX, sigs, sl), -EINVAL);
	struct signer_rep empty = { 0 };
	assert_int_equal(signer_batch_rep_add(&empty, sig, 0), -EINVAL);
	assert_int_equal(signer_batch_rep_get(&empty, 1, sigs, sl), -EINVAL);
}

/* Through a live signer: a batch signed in one message verifies digest by digest. */
static void test_live_batch(void **state)
{
	(void)state;
	char dir[] = "/tmp/lanyard-signer-XXXXXX", err[256];
	assert_non_null(mkdtemp(dir));
	struct signer_options o = { .key_dir = dir, .key_type = KEY_EC_P256, .channels = 1 };
	struct signer *s = NULL;
	assert_int_equal(signer_start(&o, &s, err, sizeof(err)), 0);
	lkey *k = NULL;
	assert_int_equal(signer_generate(s, SIGNER_KIND_X509, "b1", &k, err, sizeof(err)), 0);
	enum { N = SIGNER_BATCH_MAX + 3 };
	uint8_t msg[N][8], d[N][LKEY_DIGEST_MAX], sigs[N][LKEY_SIG_MAX], *spki = NULL;
	const uint8_t *dp[N];
	size_t sl[N], dlen = 0, spki_len;
	for (size_t i = 0; i < N; i++) {
		memset(msg[i], (int)(i + 1), sizeof(msg[i]));
		assert_int_equal(lkey_cert_digest(k, msg[i], sizeof(msg[i]), d[i], &dlen), 0);
		dp[i] = d[i];
	}
	assert_int_equal(dlen, 32);
	assert_int_equal(lkey_sign_digests(k, N, dp, dlen, sigs, sl), 0);
	assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(spki_verify("ES256", SPKI_VERIFY_DER_ECDSA, spki, spki_len, msg[i],
					     sizeof(msg[i]), sigs[i], sl[i]), 0);
	/* each signature is of its own digest */
	assert_int_not_equal(spki_verify("ES256", SPKI_VERIFY_DER_ECDSA, spki, spki_len, msg[1],
					 sizeof(msg[1]), sigs[0], sl[0]), 0);
	/* An unknown handle fails the batch; the signer keeps serving. */
	struct signer_req req = { .handle = 99 };
	struct signer_rep rep;
	assert_int_equal(signer_batch_req_set(&req, dp, 32, 2), 0);
	assert_int_equal(signer_call(s, &req, &rep), 0);
	assert_int_equal(rep.status, -ENOENT);
	sign_and_verify(k);
	free(spki);
	assert_int_equal(signer_destroy(s, "b1"), 0);
	lkey_free(k);
	signer_stop(s);
	rmdir(dir);
}

int main(void)
{
	log_setup(LOG_LEVEL_WARN, false);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_roundtrip),
		cmocka_unit_test(test_req_refused),
		cmocka_unit_test(test_rep_refused),
		cmocka_unit_test(test_live_signer),
		cmocka_unit_test(test_batch_codec),
		cmocka_unit_test(test_live_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
