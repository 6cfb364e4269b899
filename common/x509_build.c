/* x509_build.c: the writing half of x509.h: CSRs, CA certificates and X509-SVID leaves, made
 * with wolfSSL's certificate generator and then corrected where wolfSSL 5.5.4 cannot say what
 * RFC 5280 and the X509-SVID specification require (exact validity, URI SAN, critical
 * basicConstraints).
 *
 * Contract: stateless; safe from any thread (the per-thread RNG is rng.h's, the signing key's
 * lock is keys.c's). Inputs are our own (configuration, CSR keys already checked by
 * x509_csr_parse): bad ones fail with -1, they never abort. Issuers are checked with x509.c's
 * parser (x509_ca_matches_key); nothing here parses a peer's certificate. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

/* Largest certificate or CSR we write; ours are well under 4 KB. */
#define CERT_MAX 16384

/* ---- time ---- */

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
				      rng_thread());
	return wc_MakeCert_ex(cert, buf, (word32)bufsz, ECC_TYPE, &pk->u.ecc, rng_thread());
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

/* Makes the body with the subject key, to be signed by signer, in a fresh CERT_MAX buffer *buf.
 * Returns the body's length, or -1 (nothing allocated). */
static int cert_body(Cert *cert, struct pubkey *subject, const lkey *signer, uint8_t **buf)
{
	int body;
	*buf = malloc(CERT_MAX);
	if (!*buf)
		return -1;
	cert->sigType = lkey_cert_sig_type(signer);
	body = make_cert(cert, subject, *buf, CERT_MAX);
	if (body > 0)
		body = mark_bc_critical(*buf, (size_t)body, CERT_MAX);
	if (body <= 0) {
		free(*buf);
		*buf = NULL;
		return -1;
	}
	return body;
}

/* Signs the body in buf (cert_body) with signer; *der is buf, cut to size. buf is freed on
 * failure. */
static int sign_body(uint8_t *buf, int body, const lkey *signer, uint8_t **der, size_t *len)
{
	int n = lkey_sign_cert(signer, buf, (size_t)body, CERT_MAX);
	if (n <= 0) {
		free(buf);
		return -1;
	}
	*der = fit(buf, (size_t)n);
	*len = (size_t)n;
	return 0;
}

/* Makes the body with the subject key, signs it with signer; *der is a fresh buffer. */
static int finish_cert(Cert *cert, struct pubkey *subject, const lkey *signer, uint8_t **der,
		       size_t *len)
{
	uint8_t *buf;
	int body = cert_body(cert, subject, signer, &buf);
	return body < 0 ? -1 : sign_body(buf, body, signer, der, len);
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


/* ---- certificates ---- */

struct x509_issuer {
	const lkey *key;
	/* wc_InitCert'ed with the issuer name and the AKID of the CA certificate set: the fields
	 * every leaf of this CA shares, each a parse of the CA certificate by wolfSSL. No heap
	 * pointers (wolfSSL frees its decoded copy after each call), so it is copied per leaf. */
	Cert tmpl;
};

struct x509_issuer *x509_issuer_new(const lkey *ca_key, const uint8_t *ca_der, size_t ca_len)
{
	if (!x509_ca_matches_key(ca_der, ca_len, ca_key))
		return NULL;
	struct x509_issuer *iss = calloc(1, sizeof(*iss));
	if (!iss || wc_InitCert(&iss->tmpl) != 0 ||
	    wc_SetIssuerRaw(&iss->tmpl, ca_der, (int)ca_len) != 0 ||
	    wc_SetAuthKeyIdFromCert(&iss->tmpl, ca_der, (int)ca_len) != 0) {
		free(iss);
		return NULL;
	}
	iss->key = ca_key;
	return iss;
}

void x509_issuer_free(struct x509_issuer *iss)
{
	free(iss);
}

int x509_leaf_tbs(const struct x509_issuer *iss, const struct x509_leaf_params *p, uint8_t **buf,
		  size_t *body_len)
{
	Cert *cert = malloc(sizeof(*cert));
	struct pubkey pk = { 0 };
	int ret = -1, n;

	*buf = NULL;
	*body_len = 0;
	if (!cert || !p->spiffe_id || !p->spki)
		goto out;
	memcpy(cert, &iss->tmpl, sizeof(*cert));
	if (spiffeid_parse(p->spiffe_id, NULL, NULL, NULL, 0) < 0)
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
	if (set_skid(cert, &pk) != 0)
		goto out;
	n = cert_body(cert, &pk, iss->key, buf);
	if (n > 0) {
		*body_len = (size_t)n;
		ret = 0;
	}
out:
	pubkey_free(&pk);
	free(cert);
	return ret;
}

int x509_leaf_finish(const struct x509_issuer *iss, uint8_t *buf, size_t body_len,
		     const uint8_t *sig, size_t siglen, uint8_t **der, size_t *len)
{
	int n = lkey_cert_wrap(iss->key, buf, body_len, CERT_MAX, sig, siglen);
	*der = NULL;
	*len = 0;
	if (n <= 0) {
		free(buf);
		return -1;
	}
	*der = fit(buf, (size_t)n);
	*len = (size_t)n;
	return 0;
}

int x509_sign_leaf(const lkey *ca_key, const uint8_t *ca_der, size_t ca_len,
		   const struct x509_leaf_params *p, uint8_t **der, size_t *len)
{
	struct x509_issuer *iss = x509_issuer_new(ca_key, ca_der, ca_len);
	uint8_t *buf;
	size_t body;
	int ret = -1;
	*der = NULL;
	*len = 0;
	if (iss && x509_leaf_tbs(iss, p, &buf, &body) == 0)
		ret = sign_body(buf, (int)body, ca_key, der, len);
	x509_issuer_free(iss);
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
		if (!x509_ca_matches_key(issuer_der, issuer_len, issuer_key))
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
