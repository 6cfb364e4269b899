/* keys.c: private keys on wolfSSL: generation, PKCS#8/SEC1/PKCS#1 import, PKCS#8 export, JWS
 * signatures and their verification against a SubjectPublicKeyInfo. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "der_pem.h"
#include "keys.h"
#include "rng.h"
#include "util.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 4096
/* Large enough for any DER this module writes (RSA-4096 PKCS#8 is about 2.4 KB). */
#define DER_MAX 8192

/* A key held by another process (lkey_remote_new): only its public half is here. */
struct remote {
	lkey_remote_sign_fn sign;
	lkey_remote_sign_batch_fn batch; /* NULL: one sign call per digest */
	void *ctx;
	uint32_t handle;
	uint8_t *spki;
	size_t spki_len;
};

struct lkey {
	enum key_type type;
	struct remote *remote; /* NULL for a key in this process */
	/* wolfSSL keys keep per-operation state inside the key (RsaKey.state, blinding buffers), so
	 * two threads signing with one key at once would corrupt it: every operation that passes
	 * the wolfSSL key holds this lock. */
	pthread_mutex_t lock;
	union {
		ecc_key ecc;
		RsaKey rsa;
	} u;
};

void keys_release_thread_ecc_cache(void)
{
#ifdef FP_ECC
	wc_ecc_fp_free();
#endif
}

/* ---- key types ---- */

static const struct {
	enum key_type type;
	const char *name;
	const char *alg;
	int curve;	 /* wolfSSL ECC curve id, or 0 for RSA */
	int curve_size;	 /* bytes */
} key_types[] = {
	{ KEY_EC_P256, "ec-p256", "ES256", ECC_SECP256R1, 32 },
	{ KEY_EC_P384, "ec-p384", "ES384", ECC_SECP384R1, 48 },
	{ KEY_RSA_2048, "rsa-2048", "RS256", 0, 0 },
};

int key_type_parse(const char *s, enum key_type *out)
{
	for (size_t i = 0; s && i < ARRAY_LEN(key_types); i++) {
		if (strcmp(s, key_types[i].name) == 0) {
			*out = key_types[i].type;
			return 0;
		}
	}
	return -1;
}

const char *key_type_name(enum key_type t)
{
	for (size_t i = 0; i < ARRAY_LEN(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].name;
	return "unknown";
}

static int curve_to_type(int curve, enum key_type *out)
{
	for (size_t i = 0; i < ARRAY_LEN(key_types); i++) {
		if (key_types[i].curve && key_types[i].curve == curve) {
			*out = key_types[i].type;
			return 0;
		}
	}
	return -1;
}

static int type_curve(enum key_type t)
{
	for (size_t i = 0; i < ARRAY_LEN(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].curve;
	return 0;
}

static int type_curve_size(enum key_type t)
{
	for (size_t i = 0; i < ARRAY_LEN(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].curve_size;
	return 0;
}

static bool is_ec(enum key_type t)
{
	return t == KEY_EC_P256 || t == KEY_EC_P384;
}

static lkey *lkey_alloc(enum key_type type)
{
	lkey *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->type = type;
	if (pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k);
		return NULL;
	}
	int rc = is_ec(type) ? wc_ecc_init(&k->u.ecc) : wc_InitRsaKey(&k->u.rsa, NULL);
	if (rc != 0) {
		pthread_mutex_destroy(&k->lock);
		free(k);
		return NULL;
	}
	return k;
}

void lkey_free(lkey *k)
{
	if (!k)
		return;
	if (k->remote) {
		free(k->remote->spki);
		free(k->remote);
	} else if (is_ec(k->type))
		wc_ecc_free(&k->u.ecc);
	else
		wc_FreeRsaKey(&k->u.rsa);
	pthread_mutex_destroy(&k->lock);
	secure_zero(k, sizeof(*k));
	free(k);
}

static void lock(const lkey *k)
{
	pthread_mutex_lock(&((lkey *)k)->lock);
}

static void unlock(const lkey *k)
{
	pthread_mutex_unlock(&((lkey *)k)->lock);
}

int lkey_generate(enum key_type type, lkey **out)
{
	WC_RNG *rng = rng_thread();
	lkey *k;
	int rc;

	*out = NULL;
	if (!rng || (type != KEY_EC_P256 && type != KEY_EC_P384 && type != KEY_RSA_2048))
		return -1;
	k = lkey_alloc(type);
	if (!k)
		return -1;
	if (is_ec(type))
		rc = wc_ecc_make_key_ex(rng, type_curve_size(type), &k->u.ecc, type_curve(type));
	else
		rc = wc_MakeRsaKey(&k->u.rsa, 2048, WC_RSA_EXPONENT, rng);
	if (rc != 0) {
		lkey_free(k);
		return -1;
	}
	*out = k;
	return 0;
}

/* ---- import ---- */

static const uint8_t OID_EC_PUBLIC_KEY[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const uint8_t OID_RSA_ENCRYPTION[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };

static bool oid_eq(const uint8_t *v, size_t vl, const uint8_t *oid, size_t ol)
{
	return vl == ol && memcmp(v, oid, ol) == 0;
}

/* A named curve OID to one of our key types. */
static int curve_oid_type(const uint8_t *oid, size_t len, enum key_type *out)
{
	int id = wc_ecc_get_curve_id_from_oid(oid, (word32)len);
	if (id < 0)
		return -1;
	return curve_to_type(id, out);
}

/* SEC1 ECPrivateKey; curve_known tells whether *type already holds the curve (from PKCS#8). */
/* The full check of a private key that came with its public point, on P-256/P-384 (prime order,
 * cofactor 1): the scalar is in [1, n-1] (wc_ecc_make_pub_ex refuses others) and scalar x G is
 * the stored point. wc_ecc_check_key would also multiply the point by the order and, in Debian's
 * FP_ECC build, cache an 800 KB table for it: 0.73 ms per key, which made an agent restart with
 * 10,000 persisted SVIDs take seconds. */
static bool ecc_pub_is_scalars(lkey *k, WC_RNG *rng)
{
	ecc_point *derived = wc_ecc_new_point();
	bool ok = derived && wc_ecc_make_pub_ex(&k->u.ecc, derived, rng) == 0 &&
		  wc_ecc_cmp_point(derived, &k->u.ecc.pubkey) == MP_EQ;
	if (derived)
		wc_ecc_del_point(derived);
	return ok;
}

static int load_sec1(const uint8_t *der, size_t len, bool curve_known, enum key_type type,
		     lkey **out)
{
	const uint8_t *seq, *ver, *priv, *v, *pub = NULL;
	size_t seql, verl, privl, vl, publ = 0, pos = 0, p = 0;
	uint8_t tag;
	lkey *k = NULL;

	if (der_expect(der, len, &pos, 0x30, &seq, &seql) < 0 || pos != len)
		return -1;
	if (der_expect(seq, seql, &p, 0x02, &ver, &verl) < 0 || verl != 1 || ver[0] != 1)
		return -1;
	if (der_expect(seq, seql, &p, 0x04, &priv, &privl) < 0)
		return -1;
	while (p < seql) {
		if (der_next(seq, seql, &p, &tag, &v, &vl) < 0)
			return -1;
		if (tag == 0xa0) {
			const uint8_t *oid;
			size_t oidl, q = 0;
			enum key_type t;
			if (der_expect(v, vl, &q, 0x06, &oid, &oidl) < 0 || q != vl ||
			    curve_oid_type(oid, oidl, &t) < 0)
				return -1;
			if (curve_known && t != type)
				return -1;
			type = t;
			curve_known = true;
		} else if (tag == 0xa1) {
			size_t q = 0;
			if (der_expect(v, vl, &q, 0x03, &pub, &publ) < 0 || q != vl || publ < 2 ||
			    pub[0] != 0)
				return -1;
			pub++;
			publ--;
		}
	}
	if (!curve_known || privl == 0 || privl > (size_t)type_curve_size(type))
		return -1;
	WC_RNG *rng = rng_thread(); /* also registers the ECC cache cleanup, see rng_destroy */
	k = lkey_alloc(type);
	if (!k)
		return -1;
	if (wc_ecc_import_private_key_ex(priv, (word32)privl, pub, (word32)publ, &k->u.ecc,
					 type_curve(type)) != 0)
		goto fail;
	/* Without the public point, derive it; with it, make sure it belongs to the scalar. */
	if (!pub ? wc_ecc_make_pub_ex(&k->u.ecc, NULL, rng) != 0 : !ecc_pub_is_scalars(k, rng))
		goto fail;
	*out = k;
	return 0;
fail:
	lkey_free(k);
	return -1;
}

static int load_pkcs1(const uint8_t *der, size_t len, lkey **out)
{
	word32 idx = 0;
	lkey *k = lkey_alloc(KEY_RSA_2048);
	if (!k)
		return -1;
	if (wc_RsaPrivateKeyDecode(der, &idx, &k->u.rsa, (word32)len) != 0 || idx != len)
		goto fail;
	int bits = wc_RsaEncryptSize(&k->u.rsa) * 8;
	if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
		goto fail;
	*out = k;
	return 0;
fail:
	lkey_free(k);
	return -1;
}

int lkey_from_der(const uint8_t *der, size_t len, lkey **out)
{
	const uint8_t *seq, *ver, *v, *alg, *oid, *inner;
	size_t seql, verl, vl, algl, oidl, innerl, pos = 0, p = 0, q = 0;
	uint8_t tag;

	*out = NULL;
	if (!der || der_expect(der, len, &pos, 0x30, &seq, &seql) < 0 || pos != len)
		return -1;
	if (der_expect(seq, seql, &p, 0x02, &ver, &verl) < 0 || verl != 1)
		return -1;
	if (der_next(seq, seql, &p, &tag, &v, &vl) < 0)
		return -1;
	if (tag == 0x04 && ver[0] == 1)
		return load_sec1(der, len, false, KEY_EC_P256, out);
	if (tag == 0x02 && ver[0] == 0)
		return load_pkcs1(der, len, out);
	if (tag != 0x30 || ver[0] > 1)
		return -1;

	/* PKCS#8 PrivateKeyInfo: version, AlgorithmIdentifier, OCTET STRING privateKey, ... */
	alg = v;
	algl = vl;
	if (der_expect(alg, algl, &q, 0x06, &oid, &oidl) < 0)
		return -1;
	if (der_expect(seq, seql, &p, 0x04, &inner, &innerl) < 0)
		return -1;
	if (oid_eq(oid, oidl, OID_EC_PUBLIC_KEY, sizeof(OID_EC_PUBLIC_KEY))) {
		const uint8_t *curve;
		size_t curvel;
		enum key_type t;
		if (der_expect(alg, algl, &q, 0x06, &curve, &curvel) < 0 || q != algl ||
		    curve_oid_type(curve, curvel, &t) < 0)
			return -1;
		return load_sec1(inner, innerl, true, t, out);
	}
	if (oid_eq(oid, oidl, OID_RSA_ENCRYPTION, sizeof(OID_RSA_ENCRYPTION)))
		return load_pkcs1(inner, innerl, out);
	return -1;
}

int lkey_from_pem(const char *pem, size_t len, lkey **out)
{
	static const char *const labels[] = { "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY" };
	uint8_t *der;
	size_t derlen;

	*out = NULL;
	/* The first private key block, whichever of the labels it has. */
	if (pem_decode_first(pem, len, labels, ARRAY_LEN(labels), &der, &derlen) < 0)
		return -1;
	int ret = lkey_from_der(der, derlen, out);
	secure_zero(der, derlen);
	free(der);
	return ret;
}

/* ---- export ---- */

int lkey_to_pkcs8_der(const lkey *k, uint8_t **der, size_t *len)
{
	uint8_t *trad = NULL, *buf = NULL;
	word32 tradlen = 0, outlen = DER_MAX;
	int rc, ret = -1;

	*der = NULL;
	*len = 0;
	if (k->remote)
		return -1;
	trad = malloc(DER_MAX);
	buf = malloc(DER_MAX);
	if (!trad || !buf)
		goto out;
	lock(k);
	if (is_ec(k->type)) {
		lkey *m = (lkey *)k;
		rc = wc_EccKeyToPKCS8(&m->u.ecc, buf, &outlen);
	} else {
		lkey *m = (lkey *)k;
		rc = wc_RsaKeyToDer(&m->u.rsa, trad, DER_MAX);
		if (rc > 0) {
			tradlen = (word32)rc;
			rc = wc_CreatePKCS8Key(buf, &outlen, trad, tradlen, RSAk, NULL, 0);
		}
	}
	unlock(k);
	if (rc <= 0)
		goto out;
	/* An exact-size copy: callers keep this for the SVID's lifetime, and the DER_MAX work
	 * buffer would cost kilobytes per SVID. */
	*der = malloc((size_t)rc);
	if (!*der)
		goto out;
	memcpy(*der, buf, (size_t)rc);
	*len = (size_t)rc;
	ret = 0;
out:
	if (trad) {
		secure_zero(trad, DER_MAX);
		free(trad);
	}
	if (buf) {
		secure_zero(buf, DER_MAX);
		free(buf);
	}
	return ret;
}

int lkey_to_pem(const lkey *k, char **pem)
{
	uint8_t *der;
	size_t len;

	*pem = NULL;
	if (lkey_to_pkcs8_der(k, &der, &len) < 0)
		return -1;
	*pem = pem_encode("PRIVATE KEY", der, len);
	secure_zero(der, len);
	free(der);
	return *pem ? 0 : -1;
}

int lkey_public_der(const lkey *k, uint8_t **der, size_t *len)
{
	uint8_t *buf = malloc(DER_MAX);
	int rc;

	*der = NULL;
	*len = 0;
	if (!buf)
		return -1;
	if (k->remote) {
		free(buf);
		*der = malloc(k->remote->spki_len);
		if (!*der)
			return -1;
		memcpy(*der, k->remote->spki, k->remote->spki_len);
		*len = k->remote->spki_len;
		return 0;
	}
	lock(k);
	lkey *m = (lkey *)k;
	if (is_ec(k->type))
		rc = wc_EccPublicKeyToDer(&m->u.ecc, buf, DER_MAX, 1);
	else
		rc = wc_RsaKeyToPublicDer(&m->u.rsa, buf, DER_MAX);
	unlock(k);
	if (rc <= 0) {
		free(buf);
		return -1;
	}
	/* Cut to size: callers may hold many of these (one per key of a signing batch). */
	uint8_t *fit = realloc(buf, (size_t)rc);
	*der = fit ? fit : buf;
	*len = (size_t)rc;
	return 0;
}

enum key_type lkey_type(const lkey *k)
{
	return k->type;
}

const char *lkey_jws_alg(const lkey *k)
{
	for (size_t i = 0; i < ARRAY_LEN(key_types); i++)
		if (key_types[i].type == k->type)
			return key_types[i].alg;
	return "none";
}

int lkey_cert_sig_type(const lkey *k)
{
	switch (k->type) {
	case KEY_EC_P256:
		return CTC_SHA256wECDSA;
	case KEY_EC_P384:
		return CTC_SHA384wECDSA;
	default:
		return CTC_SHA256wRSA;
	}
}

lkey *lkey_remote_new(enum key_type type, const uint8_t *spki, size_t spki_len,
		     lkey_remote_sign_fn sign, void *ctx, uint32_t handle)
{
	enum key_type t;
	if (spki_key_type(spki, spki_len, &t, NULL) < 0 || t != type)
		return NULL;
	lkey *k = calloc(1, sizeof(*k));
	struct remote *r = calloc(1, sizeof(*r));
	uint8_t *copy = malloc(spki_len);
	if (!k || !r || !copy || pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k);
		free(r);
		free(copy);
		return NULL;
	}
	memcpy(copy, spki, spki_len);
	*r = (struct remote){ .sign = sign, .ctx = ctx, .handle = handle, .spki = copy,
			      .spki_len = spki_len };
	k->type = type;
	k->remote = r;
	return k;
}

void lkey_remote_set_batch(lkey *k, lkey_remote_sign_batch_fn batch)
{
	if (k && k->remote)
		k->remote->batch = batch;
}

/* The DigestInfo OID for a digest of this length (RSA PKCS#1 v1.5). */
static int digest_oid(size_t len)
{
	switch (len) {
	case WC_SHA256_DIGEST_SIZE:
		return SHA256h;
	case WC_SHA384_DIGEST_SIZE:
		return SHA384h;
	case WC_SHA512_DIGEST_SIZE:
		return SHA512h;
	default:
		return -1;
	}
}

int lkey_sign_digest(const lkey *k, const uint8_t *digest, size_t dlen, uint8_t *sig,
		     size_t *siglen)
{
	WC_RNG *rng = rng_thread();
	lkey *m = (lkey *)k;
	int oid = digest_oid(dlen);
	int rc;

	if (oid < 0 || *siglen < LKEY_SIG_MAX)
		return -1;
	if (k->remote)
		return k->remote->sign(k->remote->ctx, k->remote->handle, digest, dlen, sig, siglen);
	if (!rng)
		return -1;
	if (is_ec(k->type)) {
		word32 n = (word32)*siglen;
		lock(k);
		rc = wc_ecc_sign_hash(digest, (word32)dlen, sig, &n, rng, &m->u.ecc);
		unlock(k);
		*siglen = n;
		return rc == 0 ? 0 : -1;
	}
	uint8_t enc[MAX_ENCODED_SIG_SZ];
	word32 enclen = wc_EncodeSignature(enc, digest, (word32)dlen, oid);
	if (enclen == 0)
		return -1;
	lock(k);
	rc = wc_RsaSSL_Sign(enc, enclen, sig, (word32)*siglen, &m->u.rsa, rng);
	unlock(k);
	if (rc <= 0)
		return -1;
	*siglen = (size_t)rc;
	return 0;
}

/* AlgorithmIdentifier DER of each certificate signature (RFC 5758, RFC 4055: RSA with NULL
 * parameters, ECDSA without). */
static const uint8_t ALG_ECDSA_SHA256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
					    0x3d, 0x04, 0x03, 0x02 };
static const uint8_t ALG_ECDSA_SHA384[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
					    0x3d, 0x04, 0x03, 0x03 };
static const uint8_t ALG_RSA_SHA256[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
					  0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00 };

static size_t der_len_size(size_t len)
{
	return len < 0x80 ? 1 : len < 0x100 ? 2 : len < 0x10000 ? 3 : 4;
}

static size_t der_put_header(uint8_t *out, uint8_t tag, size_t len)
{
	size_t n = der_len_size(len);
	out[0] = tag;
	if (n == 1) {
		out[1] = (uint8_t)len;
		return 2;
	}
	out[1] = (uint8_t)(0x80 | (n - 1));
	for (size_t i = 0; i < n - 1; i++)
		out[2 + i] = (uint8_t)(len >> (8 * (n - 2 - i)));
	return 1 + n;
}

int lkey_sign_digests(const lkey *k, size_t n, const uint8_t *const *digests, size_t dlen,
		      uint8_t (*sigs)[LKEY_SIG_MAX], size_t *siglens)
{
	if (digest_oid(dlen) < 0)
		return -1;
	if (k->remote && k->remote->batch && n > 1)
		return k->remote->batch(k->remote->ctx, k->remote->handle, n, digests, dlen, sigs,
					siglens);
	for (size_t i = 0; i < n; i++) {
		siglens[i] = LKEY_SIG_MAX;
		if (lkey_sign_digest(k, digests[i], dlen, sigs[i], &siglens[i]) < 0)
			return -1;
	}
	return 0;
}

int lkey_cert_digest(const lkey *k, const uint8_t *body, size_t body_len, uint8_t *digest,
		     size_t *dlen)
{
	enum wc_HashType h = k->type == KEY_EC_P384 ? WC_HASH_TYPE_SHA384 : WC_HASH_TYPE_SHA256;
	int n = wc_HashGetDigestSize(h);
	if (n <= 0 || n > LKEY_DIGEST_MAX || body_len > 0xffffff ||
	    wc_Hash(h, body, (word32)body_len, digest, (word32)n) != 0)
		return -1;
	*dlen = (size_t)n;
	return 0;
}

int lkey_cert_wrap(const lkey *k, uint8_t *buf, size_t body_len, size_t buf_size,
		   const uint8_t *sig, size_t siglen)
{
	const uint8_t *alg = k->type == KEY_EC_P256 ? ALG_ECDSA_SHA256 :
			     k->type == KEY_EC_P384 ? ALG_ECDSA_SHA384 : ALG_RSA_SHA256;
	size_t alg_len = k->type == KEY_EC_P256 ? sizeof(ALG_ECDSA_SHA256) :
			 k->type == KEY_EC_P384 ? sizeof(ALG_ECDSA_SHA384) : sizeof(ALG_RSA_SHA256);
	size_t bits_len = 1 + siglen;
	size_t content = body_len + alg_len + 1 + der_len_size(bits_len) + bits_len;
	size_t hdr = 1 + der_len_size(content);
	if (body_len > 0xffffff || hdr + content > buf_size)
		return -1;
	memmove(buf + hdr, buf, body_len);
	der_put_header(buf, 0x30, content);
	size_t off = hdr + body_len;
	memcpy(buf + off, alg, alg_len);
	off += alg_len;
	off += der_put_header(buf + off, 0x03, bits_len);
	buf[off++] = 0x00; /* no unused bits */
	memcpy(buf + off, sig, siglen);
	return (int)(off + siglen);
}

/* Certificate (and CertificationRequest) ::= SEQUENCE { body, AlgorithmIdentifier, BIT STRING }:
 * the body is hashed and signed through lkey_sign_digest, so a key in another process signs
 * certificates the same way as one in memory. */
int lkey_sign_cert(const lkey *k, uint8_t *buf, size_t body_len, size_t buf_size)
{
	uint8_t digest[LKEY_DIGEST_MAX], sig[LKEY_SIG_MAX];
	size_t dlen, siglen = sizeof(sig);
	if (lkey_cert_digest(k, buf, body_len, digest, &dlen) < 0 ||
	    lkey_sign_digest(k, digest, dlen, sig, &siglen) < 0)
		return -1;
	return lkey_cert_wrap(k, buf, body_len, buf_size, sig, siglen);
}

/* ---- JWS ---- */

struct alg_desc {
	const char *name;
	enum { SIG_EC, SIG_RSA, SIG_PSS } kind;
	enum wc_HashType hash;
	int curve; /* required ECC curve for ES*, 0 otherwise */
	int mgf;
};

static const struct alg_desc algs[] = {
	{ "ES256", SIG_EC, WC_HASH_TYPE_SHA256, ECC_SECP256R1, 0 },
	{ "ES384", SIG_EC, WC_HASH_TYPE_SHA384, ECC_SECP384R1, 0 },
	{ "ES512", SIG_EC, WC_HASH_TYPE_SHA512, ECC_SECP521R1, 0 },
	{ "RS256", SIG_RSA, WC_HASH_TYPE_SHA256, 0, 0 },
	{ "RS384", SIG_RSA, WC_HASH_TYPE_SHA384, 0, 0 },
	{ "RS512", SIG_RSA, WC_HASH_TYPE_SHA512, 0, 0 },
	{ "PS256", SIG_PSS, WC_HASH_TYPE_SHA256, 0, WC_MGF1SHA256 },
	{ "PS384", SIG_PSS, WC_HASH_TYPE_SHA384, 0, WC_MGF1SHA384 },
	{ "PS512", SIG_PSS, WC_HASH_TYPE_SHA512, 0, WC_MGF1SHA512 },
};

static const struct alg_desc *alg_find(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_LEN(algs); i++)
		if (strcmp(name, algs[i].name) == 0)
			return &algs[i];
	return NULL;
}

bool jws_alg_supported(const char *alg)
{
	return alg_find(alg) != NULL;
}

static int hash_data(enum wc_HashType h, const uint8_t *data, size_t len, uint8_t *out,
		     word32 *outlen)
{
	int sz = wc_HashGetDigestSize(h);
	if (sz <= 0 || wc_Hash(h, data, (word32)len, out, (word32)sz) != 0)
		return -1;
	*outlen = (word32)sz;
	return 0;
}

int lkey_sign_jws(const lkey *k, const uint8_t *data, size_t len, uint8_t **sig, size_t *siglen)
{
	const struct alg_desc *a = alg_find(lkey_jws_alg(k));
	uint8_t hash[WC_MAX_DIGEST_SIZE], der[LKEY_SIG_MAX];
	size_t derlen = sizeof(der);
	word32 hlen;
	uint8_t *out = NULL;

	*sig = NULL;
	*siglen = 0;
	if (!a || hash_data(a->hash, data, len, hash, &hlen) < 0 ||
	    lkey_sign_digest(k, hash, hlen, der, &derlen) < 0)
		return -1;
	if (a->kind == SIG_EC) {
		int cs = type_curve_size(k->type);
		byte r[MAX_ECC_BYTES], s[MAX_ECC_BYTES];
		word32 rlen = sizeof(r), slen = sizeof(s);
		if (wc_ecc_sig_to_rs(der, (word32)derlen, r, &rlen, s, &slen) != 0 ||
		    rlen > (word32)cs || slen > (word32)cs)
			return -1;
		out = calloc(1, (size_t)cs * 2);
		if (!out)
			return -1;
		memcpy(out + cs - rlen, r, rlen);
		memcpy(out + 2 * cs - slen, s, slen);
		*sig = out;
		*siglen = (size_t)cs * 2;
		return 0;
	}
	out = malloc(derlen);
	if (!out)
		return -1;
	memcpy(out, der, derlen);
	*sig = out;
	*siglen = derlen;
	return 0;
}

/* ---- public keys ---- */

int spki_key_type(const uint8_t *spki, size_t spki_len, enum key_type *type, int *bits)
{
	ecc_key ecc;
	RsaKey rsa;
	word32 idx = 0;
	int ret = -1;

	if (!spki || spki_len == 0 || spki_len > DER_MAX)
		return -1;
	/* Registers this thread's cleanup of wolfSSL's ECC cache (see rng_destroy). */
	(void)rng_thread();
	if (wc_ecc_init(&ecc) == 0) {
		if (wc_EccPublicKeyDecode(spki, &idx, &ecc, (word32)spki_len) == 0 &&
		    idx == spki_len && ecc.dp && curve_to_type(ecc.dp->id, type) == 0 &&
		    /* On the curve and not the point at infinity is a full public key check
		     * on P-256/P-384 (cofactor 1). wc_ecc_check_key would also do a scalar
		     * multiplication and, in Debian's FP_ECC build, cache an 800 KB table per
		     * key: it made every CSR check ten times slower than the signature. */
		    wc_ecc_point_is_on_curve(&ecc.pubkey, ecc.idx) == 0 &&
		    !wc_ecc_point_is_at_infinity(&ecc.pubkey)) {
			if (bits)
				*bits = ecc.dp->size * 8;
			ret = 0;
		}
		wc_ecc_free(&ecc);
	}
	if (ret == 0)
		return 0;
	idx = 0;
	if (wc_InitRsaKey(&rsa, NULL) == 0) {
		/* wc_RsaPublicKeyDecode also accepts a bare PKCS#1 RSAPublicKey; insist on SPKI. */
		if (spki_len > 4 && spki[0] == 0x30 &&
		    wc_RsaPublicKeyDecode(spki, &idx, &rsa, (word32)spki_len) == 0 &&
		    idx == spki_len) {
			int b = wc_RsaEncryptSize(&rsa) * 8;
			if (b >= RSA_MIN_BITS && b <= RSA_MAX_BITS) {
				*type = KEY_RSA_2048;
				if (bits)
					*bits = b;
				ret = 0;
			}
		}
		wc_FreeRsaKey(&rsa);
	}
	return ret;
}

int spki_verify(const char *alg, unsigned flags, const uint8_t *spki, size_t spki_len,
		const uint8_t *data, size_t len, const uint8_t *sig, size_t siglen)
{
	const struct alg_desc *a = alg_find(alg);
	uint8_t hash[WC_MAX_DIGEST_SIZE];
	word32 hlen, idx = 0;
	int ret = -1;

	if (!a || !spki || !sig || siglen == 0 || siglen > 1024 || spki_len > DER_MAX ||
	    hash_data(a->hash, data, len, hash, &hlen) < 0)
		return -1;
	if (a->kind == SIG_EC) {
		ecc_key key;
		(void)rng_thread(); /* registers the ECC cache cleanup, see rng_destroy */
		uint8_t der[256];
		word32 derlen = sizeof(der);
		int res = 0;
		if (wc_ecc_init(&key) != 0)
			return -1;
		if (wc_EccPublicKeyDecode(spki, &idx, &key, (word32)spki_len) != 0 ||
		    idx != spki_len || !key.dp)
			goto ec_out;
		if (flags & SPKI_VERIFY_DER_ECDSA) {
			/* X.509: a DER signature, and any curve may go with any hash. */
			if (siglen > sizeof(der))
				goto ec_out;
			memcpy(der, sig, siglen);
			derlen = (word32)siglen;
		} else {
			size_t cs = (size_t)key.dp->size;
			if (key.dp->id != a->curve || siglen != 2 * cs)
				goto ec_out;
			if (wc_ecc_rs_raw_to_sig(sig, (word32)cs, sig + cs, (word32)cs, der,
						 &derlen) != 0)
				goto ec_out;
		}
		if (wc_ecc_verify_hash(der, derlen, hash, hlen, &res, &key) == 0 && res == 1)
			ret = 0;
ec_out:
		wc_ecc_free(&key);
		return ret;
	}

	RsaKey key;
	uint8_t *buf = NULL, *dec = NULL;
	if (wc_InitRsaKey(&key, NULL) != 0)
		return -1;
	if (spki_len < 4 || spki[0] != 0x30 ||
	    wc_RsaPublicKeyDecode(spki, &idx, &key, (word32)spki_len) != 0 || idx != spki_len)
		goto rsa_out;
	int modlen = wc_RsaEncryptSize(&key);
	if (modlen * 8 < RSA_MIN_BITS || modlen * 8 > RSA_MAX_BITS || siglen != (size_t)modlen)
		goto rsa_out;
	buf = malloc(siglen);
	if (!buf)
		goto rsa_out;
	memcpy(buf, sig, siglen);
	if (a->kind == SIG_RSA) {
		uint8_t enc[MAX_ENCODED_SIG_SZ];
		word32 enclen = wc_EncodeSignature(enc, hash, hlen, wc_HashGetOID(a->hash));
		int declen = wc_RsaSSL_VerifyInline(buf, (word32)siglen, &dec, &key);
		if (enclen > 0 && declen == (int)enclen && ct_equal(dec, enc, enclen))
			ret = 0;
	} else {
		uint8_t out[1024];
		int rc = wc_RsaPSS_VerifyCheck(buf, (word32)siglen, out, sizeof(out), hash, hlen,
					       a->hash, a->mgf, &key);
		if (rc >= 0)
			ret = 0;
	}
rsa_out:
	free(buf);
	wc_FreeRsaKey(&key);
	return ret;
}

int jws_verify_spki(const char *alg, const uint8_t *spki, size_t spki_len, const uint8_t *data,
		    size_t len, const uint8_t *sig, size_t siglen)
{
	return spki_verify(alg, 0, spki, spki_len, data, len, sig, siglen);
}

bool lkey_matches_spki(const lkey *k, const uint8_t *spki, size_t spki_len)
{
	uint8_t *mine;
	size_t mine_len;
	bool eq;

	if (!k || !spki || lkey_public_der(k, &mine, &mine_len) < 0)
		return false;
	/* Both sides are canonical DER written by wolfSSL or any sane encoder, but re-encode the
	 * other side through wolfSSL so that equal keys compare equal bytes. */
	eq = mine_len == spki_len && memcmp(mine, spki, spki_len) == 0;
	if (!eq) {
		enum key_type t;
		if (spki_key_type(spki, spki_len, &t, NULL) == 0 && t == k->type) {
			uint8_t *other = malloc(DER_MAX);
			int n = -1;
			word32 idx = 0;
			if (other && is_ec(t)) {
				ecc_key e;
				if (wc_ecc_init(&e) == 0) {
					if (wc_EccPublicKeyDecode(spki, &idx, &e, (word32)spki_len) == 0)
						n = wc_EccPublicKeyToDer(&e, other, DER_MAX, 1);
					wc_ecc_free(&e);
				}
			} else if (other) {
				RsaKey r;
				if (wc_InitRsaKey(&r, NULL) == 0) {
					if (wc_RsaPublicKeyDecode(spki, &idx, &r, (word32)spki_len) == 0)
						n = wc_RsaKeyToPublicDer(&r, other, DER_MAX);
					wc_FreeRsaKey(&r);
				}
			}
			eq = n > 0 && (size_t)n == mine_len && memcmp(mine, other, mine_len) == 0;
			free(other);
		}
	}
	free(mine);
	return eq;
}
