/* x509.c: the reading half of x509.h: CSR and certificate parsing, chain splitting and chain
 * verification, done with der_pem.h's small strict DER reader so that what we check does not
 * depend on wolfSSL's internal DecodedCert layout or its clock (signatures are checked with
 * keys.h's spki_verify). x509_build.c writes certificates.
 *
 * Contract: stateless; safe from any thread. Every input may come from a peer (a CSR from an
 * agent, a chain from a server, a bundle from a file): malformed or oversized input is a -1 with a
 * reason in err, never a crash, and no result points into memory we do not own. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "der_pem.h"
#include "util.h"
#include "x509.h"

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

bool x509_ca_matches_key(const uint8_t *der, size_t len, const lkey *k)
{
	struct cert c;
	if (parse_cert(der, len, &c, NULL, 0) < 0 || !c.is_ca)
		return false;
	return lkey_matches_spki(k, c.spki, c.spki_len);
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
