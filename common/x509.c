/* x509.c: CSRs, CA and X509-SVID certificates written with wolfSSL's certificate generator;
 * parsing and chain verification done here with a small strict DER reader, so that what we
 * check does not depend on wolfSSL's internal DecodedCert layout or its clock. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spiffeid.h"
#include "util.h"
#include "x509.h"

/* Largest certificate or CSR we write; ours are well under 4 KB. */
#define CERT_MAX 16384
/* Largest certificate we read, and the most certificates in one chain or bundle. */
#define CERT_READ_MAX 65536
#define CHAIN_MAX 64

/* ---- time ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* A full DER UTCTime (before 2050) or GeneralizedTime TLV for t, into out; returns its size. */
static int der_time_encode(int64_t t, uint8_t *out, size_t outlen)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char s[32];

	if (t < 0 || !gmtime_r(&tt, &tm) || tm.tm_year + 1900 > 9999)
		return -1;
	int year = tm.tm_year + 1900;
	int n;
	if (year >= 1950 && year < 2050)
		n = snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1,
			     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	else
		n = snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
			     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n + 2 > outlen)
		return -1;
	out[0] = (year >= 1950 && year < 2050) ? 0x17 : 0x18;
	out[1] = (uint8_t)n;
	memcpy(out + 2, s, (size_t)n);
	return n + 2;
}

static int digits(const uint8_t *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit(p[i]))
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* RFC 5280 times: UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, nothing else. */
static int der_time_decode(uint8_t tag, const uint8_t *v, size_t len, int64_t *out)
{
	int year, i = 0;
	if (tag == 0x17 && len == 13) {
		year = digits(v, 2);
		if (year < 0)
			return -1;
		year += year < 50 ? 2000 : 1900;
		i = 2;
	} else if (tag == 0x18 && len == 15) {
		year = digits(v, 4);
		i = 4;
	} else {
		return -1;
	}
	int mon = digits(v + i, 2), day = digits(v + i + 2, 2), hh = digits(v + i + 4, 2);
	int mm = digits(v + i + 6, 2), ss = digits(v + i + 8, 2);
	if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh < 0 || hh > 23 || mm < 0 ||
	    mm > 59 || ss < 0 || ss > 60 || v[len - 1] != 'Z')
		return -1;
	*out = days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + hh * 3600 + mm * 60 +
	       ss;
	return 0;
}

/* ---- DER writing (only what GeneralNames needs) ---- */

static size_t der_put_len(uint8_t *out, size_t len)
{
	if (len < 0x80) {
		out[0] = (uint8_t)len;
		return 1;
	}
	if (len < 0x100) {
		out[0] = 0x81;
		out[1] = (uint8_t)len;
		return 2;
	}
	out[0] = 0x82;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	return 3;
}

/* GeneralNames { [6] uri, [2] dns... } into out; -1 when it does not fit. */
static int encode_sans(const char *uri, const char *const *dns, size_t n_dns, uint8_t *out,
		       size_t outlen)
{
	size_t body = 0;
	size_t lens[1 + 64];
	const char *names[1 + 64];
	uint8_t tags[1 + 64];
	size_t n = 0;

	if (n_dns > 64)
		return -1;
	if (uri) {
		names[n] = uri;
		tags[n++] = 0x86;
	}
	for (size_t i = 0; i < n_dns; i++) {
		if (!dns[i] || !dns[i][0])
			return -1;
		names[n] = dns[i];
		tags[n++] = 0x82;
	}
	for (size_t i = 0; i < n; i++) {
		lens[i] = strlen(names[i]);
		if (lens[i] > 0xffff)
			return -1;
		/* IA5String, and nothing a certificate viewer could misread: printable ASCII. */
		for (size_t c = 0; c < lens[i]; c++)
			if (names[i][c] <= 0x20 || names[i][c] >= 0x7f)
				return -1;
		body += 4 + lens[i];
	}
	if (body > 0xffff || body + 4 > outlen)
		return -1;
	size_t pos = 0;
	out[pos++] = 0x30;
	/* Compute the exact body length (the +4 above was an upper bound per name). */
	body = 0;
	for (size_t i = 0; i < n; i++)
		body += 1 + (lens[i] < 0x80 ? 1 : lens[i] < 0x100 ? 2 : 3) + lens[i];
	pos += der_put_len(out + pos, body);
	for (size_t i = 0; i < n; i++) {
		out[pos++] = tags[i];
		pos += der_put_len(out + pos, lens[i]);
		memcpy(out + pos, names[i], lens[i]);
		pos += lens[i];
	}
	return (int)pos;
}

/* ---- public keys for wolfSSL's certificate generator ---- */

struct pubkey {
	int type; /* ECC_TYPE or RSA_TYPE */
	union {
		ecc_key ecc;
		RsaKey rsa;
	} u;
};

static int pubkey_load(struct pubkey *pk, const uint8_t *spki, size_t len)
{
	enum key_type t;
	word32 idx = 0;

	if (spki_key_type(spki, len, &t, NULL) < 0)
		return -1;
	if (t == KEY_RSA_2048) {
		pk->type = RSA_TYPE;
		if (wc_InitRsaKey(&pk->u.rsa, NULL) != 0)
			return -1;
		if (wc_RsaPublicKeyDecode(spki, &idx, &pk->u.rsa, (word32)len) != 0) {
			wc_FreeRsaKey(&pk->u.rsa);
			return -1;
		}
	} else {
		pk->type = ECC_TYPE;
		if (wc_ecc_init(&pk->u.ecc) != 0)
			return -1;
		if (wc_EccPublicKeyDecode(spki, &idx, &pk->u.ecc, (word32)len) != 0) {
			wc_ecc_free(&pk->u.ecc);
			return -1;
		}
	}
	return 0;
}

static void pubkey_free(struct pubkey *pk)
{
	if (pk->type == RSA_TYPE)
		wc_FreeRsaKey(&pk->u.rsa);
	else if (pk->type == ECC_TYPE)
		wc_ecc_free(&pk->u.ecc);
	pk->type = 0;
}

static int make_cert(Cert *cert, struct pubkey *pk, uint8_t *buf, size_t bufsz)
{
	if (pk->type == RSA_TYPE)
		return wc_MakeCert_ex(cert, buf, (word32)bufsz, RSA_TYPE, &pk->u.rsa,
				      crypto_thread_rng());
	return wc_MakeCert_ex(cert, buf, (word32)bufsz, ECC_TYPE, &pk->u.ecc, crypto_thread_rng());
}

static int set_skid(Cert *cert, struct pubkey *pk)
{
	if (pk->type == RSA_TYPE)
		return wc_SetSubjectKeyIdFromPublicKey_ex(cert, RSA_TYPE, &pk->u.rsa);
	return wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, &pk->u.ecc);
}

static int set_akid_from_key(Cert *cert, struct pubkey *pk)
{
	if (pk->type == RSA_TYPE)
		return wc_SetAuthKeyIdFromPublicKey_ex(cert, RSA_TYPE, &pk->u.rsa);
	return wc_SetAuthKeyIdFromPublicKey_ex(cert, ECC_TYPE, &pk->u.ecc);
}

static int set_validity(Cert *cert, int64_t nb, int64_t na)
{
	int n;
	if (na <= nb)
		return -1;
	n = der_time_encode(nb, cert->beforeDate, sizeof(cert->beforeDate));
	if (n < 0)
		return -1;
	cert->beforeDateSz = n;
	n = der_time_encode(na, cert->afterDate, sizeof(cert->afterDate));
	if (n < 0)
		return -1;
	cert->afterDateSz = n;
	return 0;
}

static int set_serial(Cert *cert)
{
	if (random_bytes(cert->serial, 16) < 0)
		return -1;
	/* Positive, and exactly 16 bytes in DER: a leading zero byte would be dropped. */
	cert->serial[0] &= 0x7f;
	if (cert->serial[0] == 0)
		cert->serial[0] = 0x01;
	cert->serialSz = 16;
	return 0;
}

static size_t put_header(uint8_t *out, uint8_t tag, size_t len)
{
	out[0] = tag;
	return 1 + der_put_len(out + 1, len);
}

static const uint8_t BC_EXT_OID[] = { 0x06, 0x03, 0x55, 0x1d, 0x13 };

/* wolfSSL 5.5.4 always writes basicConstraints non-critical, but RFC 5280 4.2.1.9 requires it
 * critical on CA certificates (and SPIFFE issuers mark it so on leaves too). This rewrites the
 * TBSCertificate that wc_MakeCert_ex left in buf, adding critical=TRUE to that extension, before
 * it is signed. Returns the new body length, or -1. */
static int mark_bc_critical(uint8_t *buf, size_t body_len, size_t cap)
{
	const uint8_t *tbs, *v, *exts, *ext;
	size_t tbsl, vl, extsl, extl, pos = 0, p = 0;
	uint8_t tag, *exts_out = NULL, *out = NULL;
	size_t eo = 0, o = 0, ext_start = 0;
	int ret = -1;

	if (der_expect(buf, body_len, &pos, 0x30, &tbs, &tbsl) < 0 || pos != body_len)
		return -1;
	/* The extensions are the last element of the TBS: [3] { SEQUENCE OF Extension }. */
	for (;;) {
		ext_start = p;
		if (der_next(tbs, tbsl, &p, &tag, &v, &vl) < 0)
			return -1;
		if (p == tbsl)
			break;
	}
	if (tag != 0xa3)
		return -1;
	size_t q = 0;
	if (der_expect(v, vl, &q, 0x30, &exts, &extsl) < 0 || q != vl)
		return -1;
	exts_out = malloc(extsl + 16);
	out = malloc(body_len + 32);
	if (!exts_out || !out)
		goto out;
	q = 0;
	while (q < extsl) {
		size_t start = q;
		if (der_expect(exts, extsl, &q, 0x30, &ext, &extl) < 0)
			goto out;
		if (extl > sizeof(BC_EXT_OID) + 2 &&
		    memcmp(ext, BC_EXT_OID, sizeof(BC_EXT_OID)) == 0 &&
		    ext[sizeof(BC_EXT_OID)] == 0x04) {
			size_t rest = extl - sizeof(BC_EXT_OID);
			eo += put_header(exts_out + eo, 0x30, extl + 3);
			memcpy(exts_out + eo, BC_EXT_OID, sizeof(BC_EXT_OID));
			eo += sizeof(BC_EXT_OID);
			exts_out[eo++] = 0x01;
			exts_out[eo++] = 0x01;
			exts_out[eo++] = 0xff;
			memcpy(exts_out + eo, ext + sizeof(BC_EXT_OID), rest);
			eo += rest;
		} else {
			memcpy(exts_out + eo, exts + start, q - start);
			eo += q - start;
		}
	}
	size_t seq_len = 1 + (eo < 0x80 ? 1 : eo < 0x100 ? 2 : 3) + eo;
	size_t a3_len = 1 + (seq_len < 0x80 ? 1 : seq_len < 0x100 ? 2 : 3) + seq_len;
	size_t new_tbsl = ext_start + a3_len;
	o = put_header(out, 0x30, new_tbsl);
	memcpy(out + o, tbs, ext_start);
	o += ext_start;
	o += put_header(out + o, 0xa3, seq_len);
	o += put_header(out + o, 0x30, eo);
	memcpy(out + o, exts_out, eo);
	o += eo;
	if (o > cap)
		goto out;
	memcpy(buf, out, o);
	ret = (int)o;
out:
	free(exts_out);
	free(out);
	return ret;
}

/* A DER built in a CERT_MAX work buffer, cut to its size: callers keep certificates and CSRs
 * (an agent holds hundreds of CSRs while a batch is being signed), and a few hundred bytes
 * should not pin 16 KB each. */
static uint8_t *fit(uint8_t *buf, size_t len)
{
	uint8_t *p = realloc(buf, len ? len : 1);
	return p ? p : buf;
}

/* Makes the body with the subject key, signs it with signer; *der is a fresh buffer. */
static int finish_cert(Cert *cert, struct pubkey *subject, const lkey *signer, uint8_t **der,
		       size_t *len)
{
	uint8_t *buf = malloc(CERT_MAX);
	int body, n;

	if (!buf)
		return -1;
	cert->sigType = lkey_cert_sig_type(signer);
	body = make_cert(cert, subject, buf, CERT_MAX);
	if (body <= 0)
		goto fail;
	body = mark_bc_critical(buf, (size_t)body, CERT_MAX);
	if (body <= 0)
		goto fail;
	n = lkey_sign_cert(signer, buf, (size_t)body, CERT_MAX);
	if (n <= 0)
		goto fail;
	*der = fit(buf, (size_t)n);
	*len = (size_t)n;
	return 0;
fail:
	free(buf);
	return -1;
}

int x509_csr_create(const lkey *key, uint8_t **der, size_t *len)
{
	Cert *cert = calloc(1, sizeof(*cert));
	uint8_t *spki = NULL, *buf = NULL;
	size_t spki_len;
	struct pubkey pk = { 0 };
	int ret = -1, body, n;

	*der = NULL;
	*len = 0;
	if (!cert || wc_InitCert(cert) != 0)
		goto out;
	if (lkey_public_der(key, &spki, &spki_len) < 0 || pubkey_load(&pk, spki, spki_len) < 0)
		goto out;
	snprintf(cert->subject.commonName, sizeof(cert->subject.commonName), "lanyard");
	/* wc_InitCert sets version 2 (v3) for certificates; PKCS#10 only has version 0. */
	cert->version = 0;
	cert->sigType = lkey_cert_sig_type(key);
	buf = malloc(CERT_MAX);
	if (!buf)
		goto out;
	if (pk.type == RSA_TYPE)
		body = wc_MakeCertReq_ex(cert, buf, CERT_MAX, RSA_TYPE, &pk.u.rsa);
	else
		body = wc_MakeCertReq_ex(cert, buf, CERT_MAX, ECC_TYPE, &pk.u.ecc);
	if (body <= 0)
		goto out;
	n = lkey_sign_cert(key, buf, (size_t)body, CERT_MAX);
	if (n <= 0)
		goto out;
	*der = fit(buf, (size_t)n);
	*len = (size_t)n;
	buf = NULL;
	ret = 0;
out:
	pubkey_free(&pk);
	free(spki);
	free(buf);
	free(cert);
	return ret;
}

/* ---- reading ---- */

static const struct {
	uint8_t oid[9];
	size_t len;
	const char *alg; /* JWS name of the same signature scheme */
} sig_algs[] = {
	{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 }, 8, "ES256" },
	{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03 }, 8, "ES384" },
	{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04 }, 8, "ES512" },
	{ { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b }, 9, "RS256" },
	{ { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c }, 9, "RS384" },
	{ { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d }, 9, "RS512" },
};

/* An AlgorithmIdentifier value to a JWS algorithm name, or NULL. */
static const char *sig_alg_name(const uint8_t *alg, size_t alglen)
{
	const uint8_t *oid;
	size_t oidl, p = 0;
	if (der_expect(alg, alglen, &p, 0x06, &oid, &oidl) < 0)
		return NULL;
	/* Parameters: none for ECDSA (RFC 5758), NULL or none for RSA (RFC 4055). */
	bool null_params = alglen - p == 2 && alg[p] == 0x05 && alg[p + 1] == 0;
	if (p != alglen && !null_params)
		return NULL;
	for (size_t i = 0; i < ARRAY_LEN(sig_algs); i++)
		if (oidl == sig_algs[i].len && memcmp(oid, sig_algs[i].oid, oidl) == 0) {
			if (null_params && sig_algs[i].alg[0] == 'E')
				return NULL;
			return sig_algs[i].alg;
		}
	return NULL;
}

/* Certificate / CertificationRequest: SEQUENCE { body, AlgorithmIdentifier, BIT STRING }. */
struct signed_obj {
	const uint8_t *tbs; /* the whole body TLV, what was signed */
	size_t tbs_len;
	const uint8_t *body; /* its contents */
	size_t body_len;
	const uint8_t *alg;
	size_t alg_len;
	const char *alg_name; /* NULL when unsupported */
	const uint8_t *sig;
	size_t sig_len;
};

static int parse_signed(const uint8_t *der, size_t len, struct signed_obj *o)
{
	const uint8_t *seq, *bits;
	size_t seql, bitsl, pos = 0, p = 0, start;

	memset(o, 0, sizeof(*o));
	if (der_expect(der, len, &pos, 0x30, &seq, &seql) < 0 || pos != len)
		return -1;
	start = p;
	if (der_expect(seq, seql, &p, 0x30, &o->body, &o->body_len) < 0)
		return -1;
	o->tbs = seq + start;
	o->tbs_len = p - start;
	if (der_expect(seq, seql, &p, 0x30, &o->alg, &o->alg_len) < 0)
		return -1;
	if (der_expect(seq, seql, &p, 0x03, &bits, &bitsl) < 0 || p != seql)
		return -1;
	if (bitsl < 2 || bits[0] != 0)
		return -1;
	o->sig = bits + 1;
	o->sig_len = bitsl - 1;
	o->alg_name = sig_alg_name(o->alg, o->alg_len);
	return 0;
}

static int verify_signed(const struct signed_obj *o, const uint8_t *spki, size_t spki_len)
{
	if (!o->alg_name)
		return -1;
	return spki_verify(o->alg_name, SPKI_VERIFY_DER_ECDSA, spki, spki_len, o->tbs, o->tbs_len,
			   o->sig, o->sig_len);
}

int x509_csr_parse(const uint8_t *der, size_t len, struct csr_info *out, char *err, size_t errlen)
{
	struct signed_obj o;
	const uint8_t *ver, *v;
	size_t verl, vl, p = 0, start;
	uint8_t tag;
	enum key_type t;
	int bits = 0;

	memset(out, 0, sizeof(*out));
	if (!der || len > CERT_READ_MAX || parse_signed(der, len, &o) < 0) {
		errorf(err, errlen, "CSR is not a DER PKCS#10 request");
		return -1;
	}
	/* CertificationRequestInfo: version 0, subject Name, SubjectPublicKeyInfo, [0] attrs */
	if (der_expect(o.body, o.body_len, &p, 0x02, &ver, &verl) < 0 || verl != 1 || ver[0] != 0 ||
	    der_expect(o.body, o.body_len, &p, 0x30, NULL, NULL) < 0) {
		errorf(err, errlen, "CSR has a bad version or subject");
		return -1;
	}
	start = p;
	if (der_expect(o.body, o.body_len, &p, 0x30, NULL, NULL) < 0) {
		errorf(err, errlen, "CSR has no public key");
		return -1;
	}
	const uint8_t *spki = o.body + start;
	size_t spki_len = p - start;
	while (p < o.body_len)
		if (der_next(o.body, o.body_len, &p, &tag, &v, &vl) < 0 || tag != 0xa0) {
			errorf(err, errlen, "CSR has trailing garbage");
			return -1;
		}
	if (spki_key_type(spki, spki_len, &t, &bits) < 0) {
		errorf(err, errlen, "CSR key is not EC P-256, EC P-384 or RSA >= 2048 bits");
		return -1;
	}
	if (!o.alg_name) {
		errorf(err, errlen, "CSR signature algorithm is not supported");
		return -1;
	}
	if (verify_signed(&o, spki, spki_len) < 0) {
		errorf(err, errlen, "CSR self-signature is invalid");
		return -1;
	}
	out->spki = malloc(spki_len);
	if (!out->spki) {
		errorf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(out->spki, spki, spki_len);
	out->spki_len = spki_len;
	out->type = t;
	return 0;
}

void csr_info_free(struct csr_info *c)
{
	if (!c)
		return;
	free(c->spki);
	c->spki = NULL;
	c->spki_len = 0;
}

/* Everything x509_parse and x509_verify need from a certificate. Pointers go into the DER. */
struct cert {
	struct signed_obj so;
	const uint8_t *serial;
	size_t serial_len;
	const uint8_t *issuer, *subject; /* Name contents */
	size_t issuer_len, subject_len;
	int64_t not_before, not_after;
	const uint8_t *spki; /* whole TLV */
	size_t spki_len;
	bool is_ca;
	int path_len; /* -1: no limit */
	bool has_key_usage;
	uint16_t key_usage; /* first two bytes of the BIT STRING, big-endian */
	bool unknown_critical;
	int n_uris;
	const uint8_t *uri; /* first URI SAN */
	size_t uri_len;
	const uint8_t *ski;
	size_t ski_len;
};

#define KU_DIGITAL_SIGNATURE 0x8000
#define KU_KEY_CERT_SIGN 0x0400

static const uint8_t OID_BASIC_CONSTRAINTS[] = { 0x55, 0x1d, 0x13 };
static const uint8_t OID_KEY_USAGE[] = { 0x55, 0x1d, 0x0f };
static const uint8_t OID_SAN[] = { 0x55, 0x1d, 0x11 };
static const uint8_t OID_SKI[] = { 0x55, 0x1d, 0x0e };
static const uint8_t OID_AKI[] = { 0x55, 0x1d, 0x23 };
static const uint8_t OID_EKU[] = { 0x55, 0x1d, 0x25 };

#define OID_IS(v, l, o) ((l) == sizeof(o) && memcmp((v), (o), sizeof(o)) == 0)

static int parse_ext(struct cert *c, const uint8_t *oid, size_t oidl, bool critical,
		     const uint8_t *v, size_t vl)
{
	const uint8_t *in, *x;
	size_t inl, xl, p = 0, q = 0;
	uint8_t tag;

	if (OID_IS(oid, oidl, OID_BASIC_CONSTRAINTS)) {
		if (der_expect(v, vl, &p, 0x30, &in, &inl) < 0 || p != vl)
			return -1;
		if (der_expect(in, inl, &q, 0x01, &x, &xl) == 0) {
			if (xl != 1)
				return -1;
			c->is_ca = x[0] != 0;
		}
		if (der_expect(in, inl, &q, 0x02, &x, &xl) == 0) {
			if (xl < 1 || xl > 2 || (x[0] & 0x80))
				return -1;
			c->path_len = xl == 1 ? x[0] : (x[0] << 8 | x[1]);
		}
		return q == inl ? 0 : -1;
	}
	if (OID_IS(oid, oidl, OID_KEY_USAGE)) {
		if (der_expect(v, vl, &p, 0x03, &x, &xl) < 0 || p != vl || xl < 2 || xl > 3 ||
		    x[0] > 7)
			return -1;
		c->has_key_usage = true;
		c->key_usage = (uint16_t)(x[1] << 8 | (xl == 3 ? x[2] : 0));
		return 0;
	}
	if (OID_IS(oid, oidl, OID_SAN)) {
		if (der_expect(v, vl, &p, 0x30, &in, &inl) < 0 || p != vl)
			return -1;
		while (q < inl) {
			if (der_next(in, inl, &q, &tag, &x, &xl) < 0)
				return -1;
			if (tag == 0x86) {
				if (c->n_uris++ == 0) {
					c->uri = x;
					c->uri_len = xl;
				}
			}
		}
		return 0;
	}
	if (OID_IS(oid, oidl, OID_SKI)) {
		if (der_expect(v, vl, &p, 0x04, &x, &xl) < 0 || p != vl)
			return -1;
		c->ski = x;
		c->ski_len = xl;
		return 0;
	}
	if (OID_IS(oid, oidl, OID_AKI) || OID_IS(oid, oidl, OID_EKU))
		return 0;
	if (critical)
		c->unknown_critical = true;
	return 0;
}

static int parse_extensions(struct cert *c, const uint8_t *v, size_t vl)
{
	const uint8_t *seq, *ext, *oid, *b, *val;
	size_t seql, extl, oidl, bl, vall, p = 0, q;

	if (der_expect(v, vl, &p, 0x30, &seq, &seql) < 0 || p != vl)
		return -1;
	p = 0;
	while (p < seql) {
		bool critical = false;
		if (der_expect(seq, seql, &p, 0x30, &ext, &extl) < 0)
			return -1;
		q = 0;
		if (der_expect(ext, extl, &q, 0x06, &oid, &oidl) < 0)
			return -1;
		if (der_expect(ext, extl, &q, 0x01, &b, &bl) == 0) {
			if (bl != 1)
				return -1;
			critical = b[0] != 0;
		}
		if (der_expect(ext, extl, &q, 0x04, &val, &vall) < 0 || q != extl)
			return -1;
		if (parse_ext(c, oid, oidl, critical, val, vall) < 0)
			return -1;
	}
	return 0;
}

static int parse_cert(const uint8_t *der, size_t len, struct cert *c, char *err, size_t errlen)
{
	const uint8_t *b, *v, *val, *alg, *t;
	size_t bl, p = 0, vl, vall, algl, tl, q = 0, start;
	uint8_t tag;

	memset(c, 0, sizeof(*c));
	c->path_len = -1;
	if (!der || len == 0 || len > CERT_READ_MAX || parse_signed(der, len, &c->so) < 0) {
		errorf(err, errlen, "not a DER certificate");
		return -1;
	}
	b = c->so.body;
	bl = c->so.body_len;
	if (der_next(b, bl, &p, &tag, &v, &vl) < 0)
		goto bad;
	if (tag == 0xa0) {
		/* version: v3 (2) is the only one with extensions; accept v1..v3. */
		const uint8_t *ver;
		size_t verl, r = 0;
		if (der_expect(v, vl, &r, 0x02, &ver, &verl) < 0 || verl != 1 || ver[0] > 2)
			goto bad;
		if (der_next(b, bl, &p, &tag, &v, &vl) < 0)
			goto bad;
	}
	if (tag != 0x02 || vl == 0 || vl > 20 + 1)
		goto bad;
	c->serial = v;
	c->serial_len = vl;
	if (der_expect(b, bl, &p, 0x30, &alg, &algl) < 0)
		goto bad;
	if (algl != c->so.alg_len || memcmp(alg, c->so.alg, algl) != 0) {
		errorf(err, errlen, "certificate signature algorithms disagree");
		return -1;
	}
	if (der_expect(b, bl, &p, 0x30, &c->issuer, &c->issuer_len) < 0)
		goto bad;
	if (der_expect(b, bl, &p, 0x30, &val, &vall) < 0)
		goto bad;
	if (der_next(val, vall, &q, &tag, &t, &tl) < 0 ||
	    der_time_decode(tag, t, tl, &c->not_before) < 0 ||
	    der_next(val, vall, &q, &tag, &t, &tl) < 0 ||
	    der_time_decode(tag, t, tl, &c->not_after) < 0 || q != vall) {
		errorf(err, errlen, "certificate has a malformed validity");
		return -1;
	}
	if (der_expect(b, bl, &p, 0x30, &c->subject, &c->subject_len) < 0)
		goto bad;
	start = p;
	if (der_expect(b, bl, &p, 0x30, NULL, NULL) < 0)
		goto bad;
	c->spki = b + start;
	c->spki_len = p - start;
	while (p < bl) {
		if (der_next(b, bl, &p, &tag, &v, &vl) < 0)
			goto bad;
		if (tag == 0xa3 && parse_extensions(c, v, vl) < 0) {
			errorf(err, errlen, "certificate has malformed extensions");
			return -1;
		}
	}
	return 0;
bad:
	errorf(err, errlen, "malformed certificate");
	return -1;
}

static const struct {
	uint8_t oid[3];
	const char *name;
} name_attrs[] = {
	{ { 0x55, 0x04, 0x03 }, "CN" }, { { 0x55, 0x04, 0x0a }, "O" },
	{ { 0x55, 0x04, 0x0b }, "OU" }, { { 0x55, 0x04, 0x06 }, "C" },
	{ { 0x55, 0x04, 0x07 }, "L" },	{ { 0x55, 0x04, 0x08 }, "ST" },
	{ { 0x55, 0x04, 0x05 }, "serialNumber" },
};

/* "CN=x, O=y" from Name contents; unknown attributes and non-printable bytes shown as '?'. */
static void format_name(const uint8_t *name, size_t len, char *out, size_t outlen)
{
	const uint8_t *set, *atv, *oid, *val;
	size_t setl, atvl, oidl, vall, p = 0, used = 0;
	uint8_t tag;

	out[0] = 0;
	while (p < len) {
		size_t q = 0;
		if (der_expect(name, len, &p, 0x31, &set, &setl) < 0)
			return;
		while (q < setl) {
			size_t r = 0;
			const char *attr = "?";
			if (der_expect(set, setl, &q, 0x30, &atv, &atvl) < 0 ||
			    der_expect(atv, atvl, &r, 0x06, &oid, &oidl) < 0 ||
			    der_next(atv, atvl, &r, &tag, &val, &vall) < 0)
				return;
			for (size_t i = 0; i < ARRAY_LEN(name_attrs); i++)
				if (oidl == 3 && memcmp(oid, name_attrs[i].oid, 3) == 0)
					attr = name_attrs[i].name;
			int n = snprintf(out + used, outlen - used, "%s%s=", used ? ", " : "", attr);
			if (n < 0 || (size_t)n >= outlen - used)
				return;
			used += (size_t)n;
			for (size_t i = 0; i < vall && used + 1 < outlen; i++)
				out[used++] = (val[i] >= 0x20 && val[i] < 0x7f) ? (char)val[i] : '?';
			out[used] = 0;
		}
	}
}

int x509_parse(const uint8_t *der, size_t len, struct x509_info *out, char *err, size_t errlen)
{
	struct cert c;
	uint8_t hash[WC_SHA256_DIGEST_SIZE];

	memset(out, 0, sizeof(*out));
	if (parse_cert(der, len, &c, err, errlen) < 0)
		return -1;
	if (c.uri_len >= sizeof(out->spiffe_id) || (c.uri && memchr(c.uri, 0, c.uri_len))) {
		errorf(err, errlen, "certificate URI SAN is too long or has a NUL");
		return -1;
	}
	if (c.uri)
		memcpy(out->spiffe_id, c.uri, c.uri_len);
	out->spiffe_id[c.uri_len] = 0;
	out->n_uri_sans = c.n_uris;
	/* Serial as hex of its DER content bytes, without a sign-padding leading zero. */
	const uint8_t *s = c.serial;
	size_t sl = c.serial_len;
	if (sl > 1 && s[0] == 0) {
		s++;
		sl--;
	}
	if (sl * 2 + 1 > sizeof(out->serial)) {
		errorf(err, errlen, "certificate serial is too long");
		return -1;
	}
	hex_encode(s, sl, out->serial);
	out->not_before = c.not_before;
	out->not_after = c.not_after;
	out->is_ca = c.is_ca;
	if (wc_Sha256Hash(der, (word32)len, hash) != 0) {
		errorf(err, errlen, "hash failed");
		return -1;
	}
	hex_encode(hash, sizeof(hash), out->sha256);
	format_name(c.subject, c.subject_len, out->subject, sizeof(out->subject));
	if (c.ski && c.ski_len <= sizeof(out->ski)) {
		memcpy(out->ski, c.ski, c.ski_len);
		out->ski_len = c.ski_len;
	}
	out->spki = malloc(c.spki_len);
	if (!out->spki) {
		errorf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(out->spki, c.spki, c.spki_len);
	out->spki_len = c.spki_len;
	return 0;
}

void x509_info_free(struct x509_info *i)
{
	if (!i)
		return;
	free(i->spki);
	i->spki = NULL;
	i->spki_len = 0;
}

bool lkey_matches_cert(const lkey *k, const uint8_t *cert_der, size_t cert_len)
{
	struct cert c;
	if (parse_cert(cert_der, cert_len, &c, NULL, 0) < 0)
		return false;
	return lkey_matches_spki(k, c.spki, c.spki_len);
}

/* ---- issuing ---- */

int x509_sign_leaf(const lkey *ca_key, const uint8_t *ca_der, size_t ca_len,
		   const struct x509_leaf_params *p, uint8_t **der, size_t *len)
{
	Cert *cert = calloc(1, sizeof(*cert));
	struct pubkey pk = { 0 };
	struct cert ca;
	int ret = -1, n;

	*der = NULL;
	*len = 0;
	if (!cert || !p->spiffe_id || !p->spki || wc_InitCert(cert) != 0)
		goto out;
	if (spiffeid_parse(p->spiffe_id, NULL, NULL, NULL, 0) < 0)
		goto out;
	if (parse_cert(ca_der, ca_len, &ca, NULL, 0) < 0 || !ca.is_ca ||
	    !lkey_matches_spki(ca_key, ca.spki, ca.spki_len))
		goto out;
	if (pubkey_load(&pk, p->spki, p->spki_len) < 0)
		goto out;
	if (set_serial(cert) < 0 || set_validity(cert, p->not_before, p->not_after) < 0)
		goto out;
	if (p->n_dns > 0 && strlen(p->dns_names[0]) < sizeof(cert->subject.commonName))
		snprintf(cert->subject.commonName, sizeof(cert->subject.commonName), "%s",
			 p->dns_names[0]);
	n = encode_sans(p->spiffe_id, p->dns_names, p->n_dns, cert->altNames,
			sizeof(cert->altNames));
	if (n < 0)
		goto out;
	cert->altNamesSz = n;
	/* RFC 5280 4.2.1.6: with an empty subject, the SAN extension must be critical. */
	cert->altNamesCrit = cert->subject.commonName[0] == 0;
	cert->isCA = 0;
	cert->basicConstSet = 1;
	cert->keyUsage = KEYUSE_DIGITAL_SIG |
			 (pk.type == RSA_TYPE ? KEYUSE_KEY_ENCIPHER : KEYUSE_KEY_AGREE);
	cert->extKeyUsage = EXTKEYUSE_SERVER_AUTH | EXTKEYUSE_CLIENT_AUTH;
	if (wc_SetIssuerRaw(cert, ca_der, (int)ca_len) != 0)
		goto out;
	if (set_skid(cert, &pk) != 0 || wc_SetAuthKeyIdFromCert(cert, ca_der, (int)ca_len) != 0)
		goto out;
	ret = finish_cert(cert, &pk, ca_key, der, len);
out:
	pubkey_free(&pk);
	free(cert);
	return ret;
}

int x509_make_ca(const lkey *subject_key, const lkey *issuer_key, const uint8_t *issuer_der,
		 size_t issuer_len, const struct x509_ca_params *p, uint8_t **der, size_t *len)
{
	Cert *cert = calloc(1, sizeof(*cert));
	uint8_t *spki = NULL;
	size_t spki_len;
	struct pubkey pk = { 0 };
	int ret = -1;

	*der = NULL;
	*len = 0;
	if (!cert || wc_InitCert(cert) != 0)
		goto out;
	if ((issuer_key == NULL) != (issuer_der == NULL))
		goto out;
	if (lkey_public_der(subject_key, &spki, &spki_len) < 0 ||
	    pubkey_load(&pk, spki, spki_len) < 0)
		goto out;
	if (set_serial(cert) < 0 || set_validity(cert, p->not_before, p->not_after) < 0)
		goto out;
	const char *cn = p->common_name && p->common_name[0] ? p->common_name : "Lanyard CA";
	if (strlen(cn) >= sizeof(cert->subject.commonName))
		goto out;
	snprintf(cert->subject.commonName, sizeof(cert->subject.commonName), "%s", cn);
	if (p->spiffe_id) {
		if (spiffeid_parse(p->spiffe_id, NULL, NULL, NULL, 0) < 0)
			goto out;
		int n = encode_sans(p->spiffe_id, NULL, 0, cert->altNames, sizeof(cert->altNames));
		if (n < 0)
			goto out;
		cert->altNamesSz = n;
	}
	cert->isCA = 1;
	cert->basicConstSet = 1;
	cert->keyUsage = KEYUSE_KEY_CERT_SIGN | KEYUSE_CRL_SIGN | KEYUSE_DIGITAL_SIG;
	if (set_skid(cert, &pk) != 0)
		goto out;
	if (issuer_key) {
		struct cert ic;
		if (parse_cert(issuer_der, issuer_len, &ic, NULL, 0) < 0 || !ic.is_ca ||
		    !lkey_matches_spki(issuer_key, ic.spki, ic.spki_len))
			goto out;
		if (wc_SetIssuerRaw(cert, issuer_der, (int)issuer_len) != 0 ||
		    wc_SetAuthKeyIdFromCert(cert, issuer_der, (int)issuer_len) != 0)
			goto out;
		cert->selfSigned = 0;
	} else {
		memcpy(&cert->issuer, &cert->subject, sizeof(cert->issuer));
		cert->selfSigned = 1;
		if (set_akid_from_key(cert, &pk) != 0)
			goto out;
	}
	ret = finish_cert(cert, &pk, issuer_key ? issuer_key : subject_key, der, len);
out:
	pubkey_free(&pk);
	free(spki);
	free(cert);
	return ret;
}

/* ---- chains ---- */

int x509_split_der(const uint8_t *buf, size_t len, const uint8_t ***certs, size_t **lens, size_t *n)
{
	size_t pos = 0, count = 0, cap = 0;
	const uint8_t **c = NULL;
	size_t *l = NULL;

	*certs = NULL;
	*lens = NULL;
	*n = 0;
	while (pos < len) {
		size_t start = pos;
		if (der_expect(buf, len, &pos, 0x30, NULL, NULL) < 0)
			goto fail;
		if (count == cap) {
			cap = cap ? cap * 2 : 4;
			const uint8_t **nc = realloc(c, cap * sizeof(*c));
			if (!nc)
				goto fail;
			c = nc;
			size_t *nl = realloc(l, cap * sizeof(*l));
			if (!nl)
				goto fail;
			l = nl;
		}
		c[count] = buf + start;
		l[count] = pos - start;
		count++;
	}
	*certs = c;
	*lens = l;
	*n = count;
	return 0;
fail:
	free(c);
	free(l);
	return -1;
}

static bool same_name(const struct cert *a_subject, const struct cert *b_issuer)
{
	return a_subject->subject_len == b_issuer->issuer_len &&
	       memcmp(a_subject->subject, b_issuer->issuer, b_issuer->issuer_len) == 0;
}

static int check_time(const struct cert *c, int64_t now, const char *what, char *err,
		      size_t errlen)
{
	if (now < c->not_before) {
		errorf(err, errlen, "%s is not valid yet", what);
		return -1;
	}
	if (now > c->not_after) {
		errorf(err, errlen, "%s has expired", what);
		return -1;
	}
	if (c->unknown_critical) {
		errorf(err, errlen, "%s has an unsupported critical extension", what);
		return -1;
	}
	return 0;
}

/* issuer may sign certificates, with depth = number of CA certificates below it in the path
 * other than the leaf. */
static int check_issuer(const struct cert *issuer, int depth, const char *what, char *err,
			size_t errlen)
{
	if (!issuer->is_ca) {
		errorf(err, errlen, "%s is not a CA", what);
		return -1;
	}
	if (issuer->has_key_usage && !(issuer->key_usage & KU_KEY_CERT_SIGN)) {
		errorf(err, errlen, "%s may not sign certificates (keyUsage)", what);
		return -1;
	}
	if (issuer->path_len >= 0 && depth > issuer->path_len) {
		errorf(err, errlen, "%s path length constraint exceeded", what);
		return -1;
	}
	return 0;
}

int x509_verify(const uint8_t *chain, size_t chain_len, const uint8_t *roots, size_t roots_len,
		int64_t now, char *err, size_t errlen)
{
	const uint8_t **cc = NULL, **rc = NULL;
	size_t *cl = NULL, *rl = NULL, nc = 0, nr = 0;
	struct cert *certs = NULL, *rts = NULL;
	char what[64];
	int ret = -1;

	if (x509_split_der(chain, chain_len, &cc, &cl, &nc) < 0 || nc == 0) {
		errorf(err, errlen, "chain is not concatenated DER certificates");
		goto out;
	}
	if (x509_split_der(roots, roots_len, &rc, &rl, &nr) < 0 || nr == 0) {
		errorf(err, errlen, "no trusted roots");
		goto out;
	}
	if (nc > CHAIN_MAX || nr > 4096) {
		errorf(err, errlen, "too many certificates");
		goto out;
	}
	certs = calloc(nc, sizeof(*certs));
	rts = calloc(nr, sizeof(*rts));
	if (!certs || !rts) {
		errorf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nc; i++) {
		if (i == 0)
			snprintf(what, sizeof(what), "leaf certificate");
		else
			snprintf(what, sizeof(what), "intermediate %zu", i);
		if (parse_cert(cc[i], cl[i], &certs[i], err, errlen) < 0 ||
		    check_time(&certs[i], now, what, err, errlen) < 0)
			goto out;
	}
	for (size_t i = 0; i < nr; i++)
		if (parse_cert(rc[i], rl[i], &rts[i], NULL, 0) < 0) {
			errorf(err, errlen, "trusted root %zu is malformed", i);
			goto out;
		}

	/* Each certificate must be signed by the next one; the last by a root. */
	for (size_t i = 0; i + 1 < nc; i++) {
		snprintf(what, sizeof(what), "intermediate %zu", i + 1);
		if (!same_name(&certs[i + 1], &certs[i])) {
			errorf(err, errlen, "%s is not the issuer of the certificate before it",
				what);
			goto out;
		}
		if (check_issuer(&certs[i + 1], (int)i, what, err, errlen) < 0)
			goto out;
		if (verify_signed(&certs[i].so, certs[i + 1].spki, certs[i + 1].spki_len) < 0) {
			errorf(err, errlen, "signature by %s is invalid", what);
			goto out;
		}
	}
	const struct cert *last = &certs[nc - 1];
	bool name_match = false;
	for (size_t j = 0; j < nr; j++) {
		if (!same_name(&rts[j], last))
			continue;
		name_match = true;
		if (verify_signed(&last->so, rts[j].spki, rts[j].spki_len) < 0)
			continue;
		if (check_time(&rts[j], now, "trusted root", err, errlen) < 0 ||
		    check_issuer(&rts[j], (int)nc - 1, "trusted root", err, errlen) < 0)
			goto out;
		ret = 0;
		goto out;
	}
	errorf(err, errlen,
		name_match ? "signature by the trusted root is invalid"
			   : "certificate is not signed by a trusted root");
out:
	free(certs);
	free(rts);
	free(cc);
	free(cl);
	free(rc);
	free(rl);
	return ret;
}

/* ---- PEM ---- */

char *pem_encode(const char *label, const uint8_t *der, size_t len)
{
	char *b64 = base64_encode(der, len);
	if (!b64)
		return NULL;
	size_t bl = strlen(b64);
	size_t cap = strlen(label) * 2 + 64 + bl + bl / 64 + 2;
	char *out = malloc(cap);
	if (!out) {
		secure_zero(b64, bl);
		free(b64);
		return NULL;
	}
	size_t pos = (size_t)snprintf(out, cap, "-----BEGIN %s-----\n", label);
	for (size_t i = 0; i < bl; i += 64) {
		size_t n = bl - i < 64 ? bl - i : 64;
		memcpy(out + pos, b64 + i, n);
		pos += n;
		out[pos++] = '\n';
	}
	snprintf(out + pos, cap - pos, "-----END %s-----\n", label);
	secure_zero(b64, bl);
	free(b64);
	return out;
}

int pem_decode_concat(const char *pem, size_t len, const char *label, uint8_t **der,
		      size_t *der_len)
{
	char begin[96], end[96];
	uint8_t *out = NULL;
	size_t out_len = 0;
	char *b64 = NULL;
	const char *p = pem, *lim = pem + len;

	*der = NULL;
	*der_len = 0;
	if (!pem || strlen(label) > 64)
		return -1;
	snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
	snprintf(end, sizeof(end), "-----END %s-----", label);
	size_t bl = strlen(begin), el = strlen(end);
	for (;;) {
		const char *b = memmem(p, (size_t)(lim - p), begin, bl);
		if (!b)
			break;
		const char *body = b + bl;
		const char *e = memmem(body, (size_t)(lim - body), end, el);
		if (!e)
			goto fail;
		b64 = malloc((size_t)(e - body) + 1);
		if (!b64)
			goto fail;
		size_t n = 0;
		for (const char *c = body; c < e; c++)
			if (!isspace((unsigned char)*c))
				b64[n++] = *c;
		b64[n] = 0;
		uint8_t *piece;
		size_t piece_len;
		if (n == 0 || base64_decode(b64, n, &piece, &piece_len) < 0)
			goto fail;
		free(b64);
		b64 = NULL;
		uint8_t *grown = realloc(out, out_len + piece_len + 1);
		if (!grown) {
			free(piece);
			goto fail;
		}
		out = grown;
		memcpy(out + out_len, piece, piece_len);
		out_len += piece_len;
		free(piece);
		p = e + el;
	}
	if (!out) {
		out = malloc(1);
		if (!out)
			return -1;
	}
	*der = out;
	*der_len = out_len;
	return 0;
fail:
	free(b64);
	if (out)
		secure_zero(out, out_len);
	free(out);
	return -1;
}
