/* fed_bundle.c: foreign trust domains' bundles: copies, JSON forms, validation and parsing of
 * operator documents (PEM or SPIFFE bundle JSON). */
#include "fed_bundle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "der_pem.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

void fed_bundle_free(struct fed_bundle *b)
{
	if (!b)
		return;
	free(b->trust_domain);
	free(b->x509);
	jwks_free(b->jwt);
	free(b);
}

void fed_bundle_array_free(struct fed_bundle **b, size_t n)
{
	if (!b)
		return;
	for (size_t i = 0; i < n; i++)
		fed_bundle_free(b[i]);
	free(b);
}

static struct jwks *jwks_copy(const struct jwks *s)
{
	if (!s)
		return NULL;
	struct jwks *c = jwks_new();
	for (size_t i = 0; c && i < jwks_count(s); i++) {
		const uint8_t *spki;
		size_t len;
		const char *kid = jwks_get(s, i, &spki, &len);
		jwks_add(c, kid, spki, len); /* was accepted once: cannot fail but for memory */
	}
	return c;
}

struct fed_bundle *fed_bundle_dup(const struct fed_bundle *b)
{
	if (!b)
		return NULL;
	struct fed_bundle *c = xcalloc(1, sizeof(*c));
	*c = *b;
	c->trust_domain = b->trust_domain ? xstrdup(b->trust_domain) : NULL;
	c->x509 = NULL;
	if (b->x509_len) {
		c->x509 = xmalloc(b->x509_len);
		memcpy(c->x509, b->x509, b->x509_len);
	}
	c->jwt = jwks_copy(b->jwt);
	return c;
}

const char *fed_bundle_source_name(enum fed_bundle_source s)
{
	switch (s) {
	case FED_SOURCE_MANUAL:
		return "manual";
	case FED_SOURCE_ENDPOINT:
		return "endpoint";
	}
	return "unknown";
}

int fed_bundle_source_parse(const char *s, enum fed_bundle_source *out)
{
	if (s && strcmp(s, "manual") == 0)
		*out = FED_SOURCE_MANUAL;
	else if (s && strcmp(s, "endpoint") == 0)
		*out = FED_SOURCE_ENDPOINT;
	else
		return -EINVAL;
	return 0;
}

size_t fed_bundle_x509_count(const struct fed_bundle *b)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	if (!b->x509_len || x509_split_der(b->x509, b->x509_len, &certs, &lens, &n) < 0)
		n = 0;
	free(certs);
	free(lens);
	return n;
}

json_t *fed_bundle_summary_json(const struct fed_bundle *b)
{
	return json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I}", "trust_domain",
			 b->trust_domain ? b->trust_domain : "", "sequence", (json_int_t)b->sequence,
			 "refreshed_at", (json_int_t)b->refreshed_at, "source",
			 fed_bundle_source_name(b->source), "refresh_hint",
			 (json_int_t)b->refresh_hint, "x509_authorities",
			 (json_int_t)fed_bundle_x509_count(b), "jwt_authorities",
			 (json_int_t)jwks_count(b->jwt));
}

char *fed_bundle_to_spiffe_json(const struct fed_bundle *b)
{
	return bundle_to_spiffe_json(b->x509, b->x509_len, b->jwt, b->sequence,
				     b->refresh_hint > 0 ? b->refresh_hint : -1);
}

static int validate_x509(const struct fed_bundle *b, char *err, size_t errlen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	int ret = -EINVAL;
	if (b->x509_len && x509_split_der(b->x509, b->x509_len, &certs, &lens, &n) < 0) {
		errorf(err, errlen, "the X.509 authorities are not DER certificates");
		goto out;
	}
	if (n > FED_BUNDLE_MAX_AUTHORITIES) {
		errorf(err, errlen, "%zu X.509 authorities (at most %d)", n,
		       FED_BUNDLE_MAX_AUTHORITIES);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct x509_info info;
		char why[160];
		if (x509_parse(certs[i], lens[i], &info, why, sizeof(why)) < 0) {
			errorf(err, errlen, "X.509 authority %zu: %s", i + 1, why);
			goto out;
		}
		bool ca = info.is_ca;
		/* The key must be one a SPIFFE bundle document can carry (and a verifier use). */
		json_t *jwk = jwk_from_spki(info.spki, info.spki_len, NULL, "x509-svid");
		x509_info_free(&info);
		if (!ca) {
			json_decref(jwk);
			errorf(err, errlen, "X.509 authority %zu is not a CA certificate", i + 1);
			goto out;
		}
		if (!jwk) {
			errorf(err, errlen, "X.509 authority %zu has an unusable public key", i + 1);
			goto out;
		}
		json_decref(jwk);
	}
	ret = 0;
out:
	free(certs);
	free(lens);
	return ret;
}

int fed_bundle_validate(const struct fed_bundle *b, char *err, size_t errlen)
{
	char why[160];
	if (!b || !b->trust_domain || trust_domain_validate(b->trust_domain, why, sizeof(why)) < 0)
		return errorf(err, errlen, "bad trust domain \"%s\": %s",
			      b && b->trust_domain ? b->trust_domain : "", why), -EINVAL;
	if (b->source != FED_SOURCE_MANUAL && b->source != FED_SOURCE_ENDPOINT)
		return errorf(err, errlen, "bundle of %s: unknown source", b->trust_domain), -EINVAL;
	if (b->sequence < 0)
		return errorf(err, errlen, "bundle of %s: negative sequence", b->trust_domain),
		       -EINVAL;
	if (jwks_count(b->jwt) > FED_BUNDLE_MAX_AUTHORITIES)
		return errorf(err, errlen, "bundle of %s: %zu JWT authorities (at most %d)",
			      b->trust_domain, jwks_count(b->jwt), FED_BUNDLE_MAX_AUTHORITIES),
		       -EINVAL;
	if (validate_x509(b, why, sizeof(why)) < 0)
		return errorf(err, errlen, "bundle of %s: %s", b->trust_domain, why), -EINVAL;
	if (b->x509_len == 0 && jwks_count(b->jwt) == 0)
		return errorf(err, errlen, "bundle of %s has no authority", b->trust_domain),
		       -EINVAL;
	return 0;
}

/* The first non-blank byte tells a JSON document from PEM. */
static bool looks_like_json(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')
			continue;
		return data[i] == '{';
	}
	return false;
}

static int parse_document(struct fed_bundle *b, const char *data, size_t len, bool *has_seq,
			  char *err, size_t errlen)
{
	char why[256];
	if (looks_like_json(data, len)) {
		int64_t seq = -1, hint = -1;
		if (bundle_from_spiffe_json(data, len, &b->x509, &b->x509_len, &b->jwt, &seq, &hint,
					    why, sizeof(why)) < 0)
			return errorf(err, errlen, "not a SPIFFE bundle document: %s", why), -EINVAL;
		b->sequence = seq < 0 ? 0 : seq;
		*has_seq = seq >= 0;
		b->refresh_hint = hint < 0 ? 0 : hint;
		if (jwks_count(b->jwt) == 0) {
			jwks_free(b->jwt);
			b->jwt = NULL;
		}
		return 0;
	}
	if (memchr(data, '\0', len))
		return errorf(err, errlen, "neither PEM nor a SPIFFE bundle document"), -EINVAL;
	if (pem_decode_concat(data, len, "CERTIFICATE", &b->x509, &b->x509_len) < 0)
		return errorf(err, errlen, "malformed PEM CERTIFICATE block"), -EINVAL;
	if (b->x509_len == 0)
		return errorf(err, errlen, "no PEM CERTIFICATE block and not a SPIFFE bundle "
				      "document"), -EINVAL;
	return 0;
}

int fed_bundle_parse(const char *trust_domain, const char *data, size_t len,
		     struct fed_bundle **out, bool *has_sequence, char *err, size_t errlen)
{
	struct fed_bundle *b = NULL;
	int ret = -EINVAL;
	bool has_seq = false;
	*out = NULL;
	if (!data || len == 0) {
		errorf(err, errlen, "empty bundle document");
		goto out;
	}
	if (len > FED_BUNDLE_MAX_BYTES) {
		errorf(err, errlen, "bundle document of %zu bytes (at most %d)", len,
		       FED_BUNDLE_MAX_BYTES);
		goto out;
	}
	b = xcalloc(1, sizeof(*b));
	b->trust_domain = xstrdup(trust_domain ? trust_domain : "");
	b->source = FED_SOURCE_MANUAL;
	if (parse_document(b, data, len, &has_seq, err, errlen) < 0 ||
	    fed_bundle_validate(b, err, errlen) < 0)
		goto out;
	if (has_sequence)
		*has_sequence = has_seq;
	*out = b;
	b = NULL;
	ret = 0;
out:
	fed_bundle_free(b);
	return ret;
}
