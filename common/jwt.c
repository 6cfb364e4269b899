/* jwt.c: JWT-SVID signing and validation (JWT-SVID.md, RFC 7515/7519) and JWK Sets (RFC 7517). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "rng.h"
#include "spiffeid.h"
#include "util.h"

/* Far above any JWT-SVID we issue, small enough to bound work on hostile input. */
#define TOKEN_MAX 65536
#define SPKI_MAX 2048
#define KID_MAX 256

struct jwks_entry {
	char *kid;
	uint8_t *spki;
	size_t spki_len;
};

struct jwks {
	struct jwks_entry *v;
	size_t n, cap;
};

/* ---- JWK Sets ---- */

struct jwks *jwks_new(void)
{
	return calloc(1, sizeof(struct jwks));
}

void jwks_free(struct jwks *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].kid);
		free(s->v[i].spki);
	}
	free(s->v);
	free(s);
}

size_t jwks_count(const struct jwks *s)
{
	return s ? s->n : 0;
}

const uint8_t *jwks_find(const struct jwks *s, const char *kid, size_t *spki_len)
{
	for (size_t i = 0; s && kid && i < s->n; i++) {
		if (strcmp(s->v[i].kid, kid) == 0) {
			if (spki_len)
				*spki_len = s->v[i].spki_len;
			return s->v[i].spki;
		}
	}
	return NULL;
}

const char *jwks_get(const struct jwks *s, size_t i, const uint8_t **spki, size_t *spki_len)
{
	if (!s || i >= s->n)
		return NULL;
	if (spki)
		*spki = s->v[i].spki;
	if (spki_len)
		*spki_len = s->v[i].spki_len;
	return s->v[i].kid;
}

int jwks_add(struct jwks *s, const char *kid, const uint8_t *spki, size_t spki_len)
{
	enum key_type t;

	if (!s || !kid || !kid[0] || strlen(kid) > KID_MAX || jwks_find(s, kid, NULL) ||
	    spki_key_type(spki, spki_len, &t, NULL) < 0)
		return -1;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4;
		struct jwks_entry *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	struct jwks_entry *e = &s->v[s->n];
	e->kid = strdup(kid);
	e->spki = malloc(spki_len);
	if (!e->kid || !e->spki) {
		free(e->kid);
		free(e->spki);
		return -1;
	}
	memcpy(e->spki, spki, spki_len);
	e->spki_len = spki_len;
	s->n++;
	return 0;
}

static int set_b64url(json_t *o, const char *name, const uint8_t *v, size_t len)
{
	char *s = base64url_encode(v, len);
	if (!s)
		return -1;
	int rc = json_object_set_new(o, name, json_string(s));
	free(s);
	return rc;
}

json_t *jwk_from_spki(const uint8_t *spki, size_t spki_len, const char *kid, const char *use)
{
	enum key_type t;
	word32 idx = 0;
	json_t *o = NULL;
	int ok = -1;

	if (spki_key_type(spki, spki_len, &t, NULL) < 0)
		return NULL;
	o = json_object();
	if (!o)
		return NULL;
	if (t == KEY_RSA_2048) {
		RsaKey rsa;
		uint8_t n[512], e[8];
		word32 nl = sizeof(n), el = sizeof(e);
		if (wc_InitRsaKey(&rsa, NULL) != 0)
			goto out;
		if (wc_RsaPublicKeyDecode(spki, &idx, &rsa, (word32)spki_len) == 0 &&
		    wc_RsaFlattenPublicKey(&rsa, e, &el, n, &nl) == 0) {
			/* RFC 7518 6.3.1: unsigned big-endian, no leading zero bytes. */
			uint8_t *np = n, *ep = e;
			while (nl > 1 && *np == 0) {
				np++;
				nl--;
			}
			while (el > 1 && *ep == 0) {
				ep++;
				el--;
			}
			ok = json_object_set_new(o, "kty", json_string("RSA")) |
			     set_b64url(o, "n", np, nl) | set_b64url(o, "e", ep, el);
		}
		wc_FreeRsaKey(&rsa);
	} else {
		ecc_key ecc;
		uint8_t x[MAX_ECC_BYTES], y[MAX_ECC_BYTES], px[MAX_ECC_BYTES], py[MAX_ECC_BYTES];
		word32 xl = sizeof(x), yl = sizeof(y);
		if (wc_ecc_init(&ecc) != 0)
			goto out;
		if (wc_EccPublicKeyDecode(spki, &idx, &ecc, (word32)spki_len) == 0 &&
		    wc_ecc_export_public_raw(&ecc, x, &xl, y, &yl) == 0) {
			/* RFC 7518 6.2.1.2: coordinates are exactly the curve size. */
			size_t cs = t == KEY_EC_P256 ? 32 : 48;
			if (xl <= cs && yl <= cs) {
				memset(px, 0, cs);
				memset(py, 0, cs);
				memcpy(px + cs - xl, x, xl);
				memcpy(py + cs - yl, y, yl);
				ok = json_object_set_new(o, "kty", json_string("EC")) |
				     json_object_set_new(o, "crv", json_string(t == KEY_EC_P256 ? "P-256" : "P-384")) |
				     set_b64url(o, "x", px, cs) | set_b64url(o, "y", py, cs);
			}
		}
		wc_ecc_free(&ecc);
	}
	if (ok == 0 && kid)
		ok = json_object_set_new(o, "kid", json_string(kid));
	if (ok == 0 && use)
		ok = json_object_set_new(o, "use", json_string(use));
out:
	if (ok != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *jwks_to_json(const struct jwks *s)
{
	json_t *root = json_object(), *keys = json_array();
	char *out = NULL;

	if (!root || !keys || json_object_set(root, "keys", keys) != 0)
		goto out;
	for (size_t i = 0; s && i < s->n; i++) {
		json_t *k = jwk_from_spki(s->v[i].spki, s->v[i].spki_len, s->v[i].kid, "jwt-svid");
		if (!k || json_array_append_new(keys, k) != 0)
			goto out;
	}
	out = json_dumps(root, JSON_COMPACT);
out:
	json_decref(keys);
	json_decref(root);
	return out;
}

static int get_b64url(const json_t *o, const char *name, uint8_t **v, size_t *len)
{
	const json_t *j = json_object_get(o, name);
	if (!json_is_string(j) || json_string_length(j) == 0 || json_string_length(j) > 2048)
		return -1;
	return base64url_decode(json_string_value(j), json_string_length(j), v, len);
}

/* A JWK object's public key as SPKI DER (into buf). Returns the length, or -1. */
static int jwk_to_spki(const json_t *k, uint8_t *buf, size_t bufsz, char *err, size_t errlen)
{
	const char *kty = json_string_value(json_object_get(k, "kty"));
	uint8_t *a = NULL, *b = NULL;
	size_t al = 0, bl = 0;
	int n = -1;

	if (kty && strcmp(kty, "EC") == 0) {
		const char *crv = json_string_value(json_object_get(k, "crv"));
		int curve;
		size_t cs;
		ecc_key ecc;
		if (crv && strcmp(crv, "P-256") == 0) {
			curve = ECC_SECP256R1;
			cs = 32;
		} else if (crv && strcmp(crv, "P-384") == 0) {
			curve = ECC_SECP384R1;
			cs = 48;
		} else {
			errorf(err, errlen, "unsupported EC curve %s", crv ? crv : "(none)");
			return -1;
		}
		if (get_b64url(k, "x", &a, &al) < 0 || get_b64url(k, "y", &b, &bl) < 0 ||
		    al != cs || bl != cs) {
			errorf(err, errlen, "EC key has bad x/y");
			goto out;
		}
		(void)rng_thread(); /* registers the thread's ECC cache cleanup */
		if (wc_ecc_init(&ecc) != 0)
			goto out;
		/* On the curve and not at infinity is the full check on P-256/P-384 (cofactor
		 * 1); wc_ecc_check_key would add a scalar multiplication and, with FP_ECC, an
		 * 800 KB table per key (see spki_key_type). */
		if (wc_ecc_import_unsigned(&ecc, a, b, NULL, curve) == 0 &&
		    wc_ecc_point_is_on_curve(&ecc.pubkey, ecc.idx) == 0 &&
		    !wc_ecc_point_is_at_infinity(&ecc.pubkey))
			n = wc_EccPublicKeyToDer(&ecc, buf, (word32)bufsz, 1);
		wc_ecc_free(&ecc);
		if (n <= 0) {
			errorf(err, errlen, "EC key is not a valid point");
			n = -1;
		}
	} else if (kty && strcmp(kty, "RSA") == 0) {
		RsaKey rsa;
		if (get_b64url(k, "n", &a, &al) < 0 || get_b64url(k, "e", &b, &bl) < 0 ||
		    al < 256 || al > 512 || bl > 8) {
			errorf(err, errlen, "RSA key has bad n/e (at least 2048 bits)");
			goto out;
		}
		if (wc_InitRsaKey(&rsa, NULL) != 0)
			goto out;
		if (wc_RsaPublicKeyDecodeRaw(a, (word32)al, b, (word32)bl, &rsa) == 0)
			n = wc_RsaKeyToPublicDer(&rsa, buf, (word32)bufsz);
		wc_FreeRsaKey(&rsa);
		if (n <= 0) {
			errorf(err, errlen, "RSA key is invalid");
			n = -1;
		}
	} else {
		errorf(err, errlen, "unsupported key type %s", kty ? kty : "(none)");
	}
out:
	free(a);
	free(b);
	return n;
}

int jwks_from_jansson(const json_t *root, struct jwks **out, char *err, size_t errlen)
{
	const json_t *keys = json_object_get(root, "keys");
	struct jwks *s;
	uint8_t spki[SPKI_MAX];
	char why[128];
	size_t i;
	json_t *k;

	*out = NULL;
	if (!json_is_array(keys)) {
		errorf(err, errlen, "JWK Set has no \"keys\" array");
		return -1;
	}
	s = jwks_new();
	if (!s) {
		errorf(err, errlen, "out of memory");
		return -1;
	}
	json_array_foreach(keys, i, k) {
		if (!json_is_object(k)) {
			errorf(err, errlen, "key %zu is not an object", i);
			goto fail;
		}
		const json_t *usej = json_object_get(k, "use");
		const char *use = json_string_value(usej);
		const char *kid = json_string_value(json_object_get(k, "kid"));
		if (usej && !use) {
			errorf(err, errlen, "key %zu has a non-string use", i);
			goto fail;
		}
		/* A SPIFFE bundle also holds X.509 authorities; keys without a use are taken only
		 * when they have a kid, as a plain JWK Set would. */
		if (use && strcmp(use, "jwt-svid") != 0)
			continue;
		if (!use && !kid)
			continue;
		if (!kid || !kid[0]) {
			errorf(err, errlen, "JWT key %zu has no kid", i);
			goto fail;
		}
		int n = jwk_to_spki(k, spki, sizeof(spki), why, sizeof(why));
		if (n < 0) {
			/* Unknown key types are skipped, as RFC 7517 5 allows; broken keys of a
			 * known type are errors. */
			if (strncmp(why, "unsupported", 11) == 0)
				continue;
			errorf(err, errlen, "key %s: %s", kid, why);
			goto fail;
		}
		if (jwks_add(s, kid, spki, (size_t)n) < 0) {
			errorf(err, errlen, "key %s: duplicate kid or unusable key", kid);
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	jwks_free(s);
	return -1;
}

int jwks_from_json(const char *json, size_t len, struct jwks **out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root;
	int rc;

	*out = NULL;
	if (!json) {
		errorf(err, errlen, "no JSON");
		return -1;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		errorf(err, errlen, "bad JSON: %s", je.text);
		return -1;
	}
	rc = jwks_from_jansson(root, out, err, errlen);
	json_decref(root);
	return rc;
}

/* ---- tokens ---- */

static char *b64url_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (!s)
		return NULL;
	char *b = base64url_encode((const uint8_t *)s, strlen(s));
	free(s);
	return b;
}

int jwt_sign(const lkey *key, const char *kid, const char *sub, const char *const *aud, size_t naud,
	     int64_t iat, int64_t exp, char **out)
{
	return jwt_sign_iss(key, kid, NULL, sub, aud, naud, iat, exp, out);
}

int jwt_sign_iss(const lkey *key, const char *kid, const char *iss, const char *sub,
		 const char *const *aud, size_t naud, int64_t iat, int64_t exp, char **out)
{
	json_t *hdr = NULL, *claims = NULL, *audj = NULL;
	char *h = NULL, *c = NULL, *input = NULL, *s = NULL;
	uint8_t *sig = NULL;
	size_t siglen;
	int ret = -1;

	*out = NULL;
	if (!kid || !kid[0] || !sub || naud == 0 || !aud)
		return -1;
	hdr = json_pack("{s:s, s:s, s:s}", "alg", lkey_jws_alg(key), "kid", kid, "typ", "JWT");
	if (naud == 1) {
		audj = json_string(aud[0]);
	} else {
		audj = json_array();
		for (size_t i = 0; audj && i < naud; i++)
			if (!aud[i] || json_array_append_new(audj, json_string(aud[i])) != 0)
				goto out;
	}
	if (!audj)
		goto out;
	claims = json_pack("{s:s, s:O, s:I, s:I}", "sub", sub, "aud", audj, "exp", (json_int_t)exp,
			   "iat", (json_int_t)iat);
	if (!hdr || !claims || (iss && json_object_set_new(claims, "iss", json_string(iss)) != 0))
		goto out;
	h = b64url_json(hdr);
	c = b64url_json(claims);
	if (!h || !c || asprintf(&input, "%s.%s", h, c) < 0) {
		input = NULL;
		goto out;
	}
	if (lkey_sign_jws(key, (const uint8_t *)input, strlen(input), &sig, &siglen) < 0)
		goto out;
	s = base64url_encode(sig, siglen);
	if (!s || asprintf(out, "%s.%s", input, s) < 0) {
		*out = NULL;
		goto out;
	}
	ret = 0;
out:
	json_decref(hdr);
	json_decref(claims);
	json_decref(audj);
	free(h);
	free(c);
	free(input);
	free(s);
	free(sig);
	return ret;
}

/* Splits a compact JWS into its three base64url parts; -1 unless exactly three, all non-empty. */
static int split_token(const char *token, const char **p1, size_t *l1, const char **p2, size_t *l2,
		       const char **p3, size_t *l3)
{
	const char *d1 = strchr(token, '.');
	if (!d1)
		return -1;
	const char *d2 = strchr(d1 + 1, '.');
	if (!d2 || strchr(d2 + 1, '.'))
		return -1;
	*p1 = token;
	*l1 = (size_t)(d1 - token);
	*p2 = d1 + 1;
	*l2 = (size_t)(d2 - d1 - 1);
	*p3 = d2 + 1;
	*l3 = strlen(d2 + 1);
	return *l1 && *l2 && *l3 ? 0 : -1;
}

static json_t *decode_part(const char *p, size_t len)
{
	uint8_t *raw;
	size_t rawlen;
	json_t *j;

	if (base64url_decode(p, len, &raw, &rawlen) < 0)
		return NULL;
	j = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool get_time(const json_t *o, const char *name, int64_t *out)
{
	const json_t *j = json_object_get(o, name);
	if (json_is_integer(j)) {
		*out = (int64_t)json_integer_value(j);
		return true;
	}
	if (json_is_real(j)) {
		double d = json_real_value(j);
		if (d > -9e15 && d < 9e15) {
			*out = (int64_t)d;
			return true;
		}
	}
	return false;
}

int jwt_validate(const char *token, const struct jwks *keys, const char *audience, int64_t now,
		 struct jwt_claims *out, char *err, size_t errlen)
{
	const char *p1, *p2, *p3;
	size_t l1, l2, l3, spki_len;
	json_t *hdr = NULL, *claims = NULL;
	uint8_t *sig = NULL;
	size_t siglen;
	int64_t exp, iat = 0, nbf;
	int ret = -1;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!token || strnlen(token, TOKEN_MAX + 1) > TOKEN_MAX ||
	    split_token(token, &p1, &l1, &p2, &l2, &p3, &l3) < 0) {
		errorf(err, errlen, "token is not a compact JWS");
		goto out;
	}
	hdr = decode_part(p1, l1);
	if (!hdr) {
		errorf(err, errlen, "token header is not a JSON object");
		goto out;
	}
	const char *alg = json_string_value(json_object_get(hdr, "alg"));
	if (!alg) {
		errorf(err, errlen, "token header has no alg");
		goto out;
	}
	if (!jws_alg_supported(alg)) {
		errorf(err, errlen, "token algorithm %.16s is not allowed", alg);
		goto out;
	}
	const json_t *typj = json_object_get(hdr, "typ");
	if (typj) {
		const char *typ = json_string_value(typj);
		if (!typ || (strcmp(typ, "JWT") != 0 && strcmp(typ, "JOSE") != 0)) {
			errorf(err, errlen, "token typ is not JWT or JOSE");
			goto out;
		}
	}
	if (json_object_get(hdr, "crit")) {
		errorf(err, errlen, "token has critical header parameters");
		goto out;
	}
	const char *kid = json_string_value(json_object_get(hdr, "kid"));
	if (!kid || !kid[0]) {
		errorf(err, errlen, "token header has no kid");
		goto out;
	}
	const uint8_t *spki = jwks_find(keys, kid, &spki_len);
	if (!spki) {
		errorf(err, errlen, "token key %.64s is unknown", kid);
		goto out;
	}
	if (base64url_decode(p3, l3, &sig, &siglen) < 0) {
		errorf(err, errlen, "token signature is not base64url");
		goto out;
	}
	if (jws_verify_spki(alg, spki, spki_len, (const uint8_t *)token, l1 + 1 + l2, sig,
			    siglen) != 0) {
		errorf(err, errlen, "token signature is invalid");
		goto out;
	}
	claims = decode_part(p2, l2);
	if (!claims) {
		errorf(err, errlen, "token claims are not a JSON object");
		goto out;
	}
	if (!get_time(claims, "exp", &exp)) {
		errorf(err, errlen, "token has no exp");
		goto out;
	}
	if (exp <= now) {
		errorf(err, errlen, "token has expired");
		goto out;
	}
	if (json_object_get(claims, "nbf") && (!get_time(claims, "nbf", &nbf) || nbf > now)) {
		errorf(err, errlen, "token is not valid yet (nbf)");
		goto out;
	}
	if (json_object_get(claims, "iat") && !get_time(claims, "iat", &iat)) {
		errorf(err, errlen, "token iat is not a number");
		goto out;
	}
	const json_t *aud = json_object_get(claims, "aud");
	bool aud_ok = false;
	if (json_is_string(aud)) {
		aud_ok = audience && strcmp(json_string_value(aud), audience) == 0;
	} else if (json_is_array(aud)) {
		size_t i;
		json_t *a;
		json_array_foreach(aud, i, a) {
			if (json_is_string(a) && audience && strcmp(json_string_value(a), audience) == 0)
				aud_ok = true;
		}
	}
	if (!aud_ok) {
		errorf(err, errlen, "token audience does not include %.128s",
			audience ? audience : "(none)");
		goto out;
	}
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	char why[128];
	if (!sub || spiffeid_parse(sub, NULL, NULL, why, sizeof(why)) < 0) {
		errorf(err, errlen, "token sub is not a SPIFFE ID");
		goto out;
	}
	if (out) {
		snprintf(out->sub, sizeof(out->sub), "%s", sub);
		out->exp = exp;
		out->iat = iat;
		out->all = json_incref(claims);
	}
	ret = 0;
out:
	json_decref(hdr);
	json_decref(claims);
	free(sig);
	return ret;
}

void jwt_claims_free(struct jwt_claims *c)
{
	if (!c)
		return;
	json_decref(c->all);
	c->all = NULL;
}

int jwt_peek_sub(const char *token, char *sub, size_t sublen)
{
	const char *p1, *p2, *p3;
	size_t l1, l2, l3;
	json_t *claims;
	int ret = -1;

	if (!token || sublen == 0 || strnlen(token, TOKEN_MAX + 1) > TOKEN_MAX ||
	    split_token(token, &p1, &l1, &p2, &l2, &p3, &l3) < 0)
		return -1;
	claims = decode_part(p2, l2);
	const char *s = json_string_value(json_object_get(claims, "sub"));
	if (s && strlen(s) < sublen) {
		memcpy(sub, s, strlen(s) + 1);
		ret = 0;
	}
	json_decref(claims);
	return ret;
}
