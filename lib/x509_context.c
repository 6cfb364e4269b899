/* x509_context.c: immutable snapshots of one FetchX509SVID message (SVIDs and bundles), their
 * validation, and their getters. A context is built once on the watcher thread and then only
 * read; its SVIDs share its reference count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"
#include "refcount.h"
#include "util.h"
#include "x509.h"

#include "workload.pb-c.h"

static void context_free(struct lanyard_x509_context *ctx)
{
	for (size_t i = 0; i < ctx->n_svids; i++) {
		struct lanyard_x509_svid *s = &ctx->svids[i];

		free(s->spiffe_id);
		free(s->hint);
		free(s->chain);
		free(s->certs);
		free(s->cert_lens);
		if (s->key)
			secure_zero(s->key, s->key_len);
		free(s->key);
	}
	free(ctx->svids);
	for (size_t i = 0; i < ctx->n_bundles; i++)
		free(ctx->bundles[i].der);
	free(ctx->bundles);
	free(ctx);
}

LANYARD_API lanyard_x509_context *lanyard_x509_context_ref(lanyard_x509_context *ctx)
{
	if (ctx)
		ref_get(&ctx->refs);
	return ctx;
}

LANYARD_API void lanyard_x509_context_unref(lanyard_x509_context *ctx)
{
	if (ctx && ref_put(&ctx->refs))
		context_free(ctx);
}

const struct ly_bundle *ly_context_bundle(const struct lanyard_x509_context *ctx, const char *td)
{
	for (size_t i = 0; i < ctx->n_bundles; i++)
		if (strcmp(ctx->bundles[i].td, td) == 0)
			return &ctx->bundles[i];
	return NULL;
}

/* Adds (a copy of) a bundle unless td already has one: an SVID's own bundle comes first and
 * wins over a federated entry for the same trust domain. */
static int add_bundle(struct lanyard_x509_context *ctx, size_t cap, const char *td,
		      const uint8_t *der, size_t len, char *err, size_t errlen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	struct ly_bundle *b;

	if (ly_context_bundle(ctx, td))
		return 0;
	if (x509_split_der(der, len, &certs, &lens, &n) < 0 || n == 0) {
		free(certs);
		free(lens);
		return ly_err(err, errlen, LANYARD_EINVAL, "the bundle of %s is %s", td,
			      n == 0 ? "empty" : "not DER certificates");
	}
	free(certs);
	free(lens);
	if (ctx->n_bundles >= cap)
		return ly_err(err, errlen, LANYARD_EINVAL, "too many bundles");
	b = &ctx->bundles[ctx->n_bundles];
	b->der = malloc(len);
	if (!b->der)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	memcpy(b->der, der, len);
	b->len = len;
	snprintf(b->td, sizeof(b->td), "%s", td);
	ctx->n_bundles++;
	return 0;
}

/* Checks one SVID of the message and fills s. */
static int svid_fill(struct lanyard_x509_svid *s, const X509SVID *p, char *err, size_t errlen)
{
	struct x509_info leaf = {0};
	char e[256];
	lkey *key = NULL;
	int ret;

	if (spiffeid_validate_leaf(p->spiffe_id, e, sizeof(e)) < 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "SVID with an invalid SPIFFE ID: %s", e);
	spiffeid_parse(p->spiffe_id, s->td, NULL, NULL, 0);
	s->spiffe_id = strdup(p->spiffe_id);
	s->hint = strdup(p->hint ? p->hint : "");
	s->chain = malloc(p->x509_svid.len ? p->x509_svid.len : 1);
	s->key = malloc(p->x509_svid_key.len ? p->x509_svid_key.len : 1);
	if (!s->spiffe_id || !s->hint || !s->chain || !s->key)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	if (p->x509_svid.len)
		memcpy(s->chain, p->x509_svid.data, p->x509_svid.len);
	s->chain_len = p->x509_svid.len;
	if (p->x509_svid_key.len)
		memcpy(s->key, p->x509_svid_key.data, p->x509_svid_key.len);
	s->key_len = p->x509_svid_key.len;
	if (x509_split_der(s->chain, s->chain_len, &s->certs, &s->cert_lens, &s->n_certs) < 0 ||
	    s->n_certs == 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "SVID %s: no certificate chain",
			      s->spiffe_id);
	if (x509_parse(s->certs[0], s->cert_lens[0], &leaf, e, sizeof(e)) < 0) {
		ret = ly_err(err, errlen, LANYARD_EINVAL, "SVID %s: bad leaf certificate: %s",
			     s->spiffe_id, e);
		goto out;
	}
	if (leaf.n_uri_sans != 1 || strcmp(leaf.spiffe_id, s->spiffe_id) != 0) {
		ret = ly_err(err, errlen, LANYARD_EINVAL,
			     "SVID %s: the leaf must hold exactly this ID as its one URI SAN",
			     s->spiffe_id);
		goto out;
	}
	if (leaf.is_ca) {
		ret = ly_err(err, errlen, LANYARD_EINVAL, "SVID %s: the leaf is a CA", s->spiffe_id);
		goto out;
	}
	if (lkey_from_der(s->key, s->key_len, &key) < 0 ||
	    !lkey_matches_cert(key, s->certs[0], s->cert_lens[0])) {
		ret = ly_err(err, errlen, LANYARD_EINVAL,
			     "SVID %s: the private key is malformed or does not match the leaf",
			     s->spiffe_id);
		goto out;
	}
	snprintf(s->serial, sizeof(s->serial), "%s", leaf.serial);
	s->not_before = leaf.not_before;
	s->not_after = leaf.not_after;
	ret = 0;
out:
	lkey_free(key);
	x509_info_free(&leaf);
	return ret;
}

int ly_context_from_response(const X509SVIDResponse *r, const char *want_id, uint64_t generation,
			     struct lanyard_x509_context **out, char *err, size_t errlen)
{
	struct lanyard_x509_context *ctx;
	size_t cap;
	int ret;

	*out = NULL;
	if (r->n_svids == 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "the agent sent no SVID");
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	ctx->refs = 1;
	ctx->generation = generation;
	cap = r->n_svids + r->n_federated_bundles;
	ctx->svids = calloc(r->n_svids, sizeof(*ctx->svids));
	ctx->bundles = calloc(cap, sizeof(*ctx->bundles));
	if (!ctx->svids || !ctx->bundles) {
		ret = ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < r->n_svids; i++) {
		struct lanyard_x509_svid *s = &ctx->svids[i];

		ctx->n_svids++;
		s->owner = ctx;
		ret = svid_fill(s, r->svids[i], err, errlen);
		if (ret < 0)
			goto fail;
		ret = add_bundle(ctx, cap, s->td, r->svids[i]->bundle.data, r->svids[i]->bundle.len,
				 err, errlen);
		if (ret < 0)
			goto fail;
	}
	for (size_t i = 0; i < r->n_federated_bundles; i++) {
		const X509SVIDResponse__FederatedBundlesEntry *e = r->federated_bundles[i];
		char td[TRUST_DOMAIN_MAX + 1];

		if (ly_trust_domain(e->key, td) < 0) {
			ret = ly_err(err, errlen, LANYARD_EINVAL, "federated bundle with a bad key");
			goto fail;
		}
		ret = add_bundle(ctx, cap, td, e->value.data, e->value.len, err, errlen);
		if (ret < 0)
			goto fail;
	}
	/* Bundles are final now: the SVIDs can point into them. */
	for (size_t i = 0; i < ctx->n_svids; i++) {
		struct lanyard_x509_svid *s = &ctx->svids[i];
		const struct ly_bundle *b = ly_context_bundle(ctx, s->td);

		s->bundle = b->der;
		s->bundle_len = b->len;
		if (!ctx->def && (!want_id || strcmp(want_id, s->spiffe_id) == 0))
			ctx->def = s;
	}
	*out = ctx;
	return 0;
fail:
	context_free(ctx);
	return ret;
}

LANYARD_API uint64_t lanyard_x509_context_generation(const lanyard_x509_context *ctx)
{
	return ctx ? ctx->generation : 0;
}

LANYARD_API size_t lanyard_x509_context_svid_count(const lanyard_x509_context *ctx)
{
	return ctx ? ctx->n_svids : 0;
}

LANYARD_API const lanyard_x509_svid *lanyard_x509_context_svid(const lanyard_x509_context *ctx,
							      size_t i)
{
	return ctx && i < ctx->n_svids ? &ctx->svids[i] : NULL;
}

LANYARD_API const lanyard_x509_svid *
lanyard_x509_context_default_svid(const lanyard_x509_context *ctx)
{
	return ctx ? ctx->def : NULL;
}

LANYARD_API size_t lanyard_x509_context_bundle_count(const lanyard_x509_context *ctx)
{
	return ctx ? ctx->n_bundles : 0;
}

LANYARD_API const char *lanyard_x509_context_bundle_td(const lanyard_x509_context *ctx, size_t i)
{
	return ctx && i < ctx->n_bundles ? ctx->bundles[i].td : NULL;
}

LANYARD_API int lanyard_x509_context_bundle(const lanyard_x509_context *ctx,
					    const char *trust_domain, const uint8_t **der,
					    size_t *len)
{
	char td[TRUST_DOMAIN_MAX + 1];
	const struct ly_bundle *b;

	if (!ctx || !der || !len || ly_trust_domain(trust_domain, td) < 0)
		return LANYARD_EINVAL;
	b = ly_context_bundle(ctx, td);
	if (!b)
		return LANYARD_ENOTFOUND;
	*der = b->der;
	*len = b->len;
	return LANYARD_OK;
}

static char *certs_pem(const uint8_t *der, size_t len)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0, total = 1;
	char **parts = NULL, *out = NULL;

	if (x509_split_der(der, len, &certs, &lens, &n) < 0 || n == 0)
		goto out;
	parts = calloc(n, sizeof(*parts));
	if (!parts)
		goto out;
	for (size_t i = 0; i < n; i++) {
		parts[i] = pem_encode("CERTIFICATE", certs[i], lens[i]);
		if (!parts[i])
			goto out;
		total += strlen(parts[i]);
	}
	out = malloc(total);
	if (!out)
		goto out;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		strcat(out, parts[i]);
out:
	for (size_t i = 0; parts && i < n; i++)
		free(parts[i]);
	free(parts);
	free(certs);
	free(lens);
	return out;
}

LANYARD_API char *lanyard_x509_context_bundle_pem(const lanyard_x509_context *ctx,
						  const char *trust_domain)
{
	const uint8_t *der;
	size_t len;

	if (lanyard_x509_context_bundle(ctx, trust_domain, &der, &len) < 0)
		return NULL;
	return certs_pem(der, len);
}

/* ---- SVIDs ---- */

LANYARD_API lanyard_x509_svid *lanyard_x509_svid_ref(const lanyard_x509_svid *svid)
{
	if (!svid)
		return NULL;
	lanyard_x509_context_ref(svid->owner);
	/* The SVID is immutable; the non-const handle only carries the reference. */
	return (lanyard_x509_svid *)svid;
}

LANYARD_API void lanyard_x509_svid_unref(const lanyard_x509_svid *svid)
{
	if (svid)
		lanyard_x509_context_unref(svid->owner);
}

LANYARD_API const char *lanyard_x509_svid_spiffe_id(const lanyard_x509_svid *svid)
{
	return svid ? svid->spiffe_id : NULL;
}

LANYARD_API const char *lanyard_x509_svid_trust_domain(const lanyard_x509_svid *svid)
{
	return svid ? svid->td : NULL;
}

LANYARD_API const char *lanyard_x509_svid_hint(const lanyard_x509_svid *svid)
{
	return svid ? svid->hint : NULL;
}

LANYARD_API const char *lanyard_x509_svid_serial(const lanyard_x509_svid *svid)
{
	return svid ? svid->serial : NULL;
}

LANYARD_API int64_t lanyard_x509_svid_not_before(const lanyard_x509_svid *svid)
{
	return svid ? svid->not_before : 0;
}

LANYARD_API int64_t lanyard_x509_svid_not_after(const lanyard_x509_svid *svid)
{
	return svid ? svid->not_after : 0;
}

LANYARD_API const uint8_t *lanyard_x509_svid_chain_der(const lanyard_x509_svid *svid, size_t *len)
{
	if (!svid || !len)
		return NULL;
	*len = svid->chain_len;
	return svid->chain;
}

LANYARD_API size_t lanyard_x509_svid_cert_count(const lanyard_x509_svid *svid)
{
	return svid ? svid->n_certs : 0;
}

LANYARD_API const uint8_t *lanyard_x509_svid_cert_der(const lanyard_x509_svid *svid, size_t i,
						      size_t *len)
{
	if (!svid || !len || i >= svid->n_certs)
		return NULL;
	*len = svid->cert_lens[i];
	return svid->certs[i];
}

LANYARD_API char *lanyard_x509_svid_chain_pem(const lanyard_x509_svid *svid)
{
	return svid ? certs_pem(svid->chain, svid->chain_len) : NULL;
}

LANYARD_API const uint8_t *lanyard_x509_svid_key_der(const lanyard_x509_svid *svid, size_t *len)
{
	if (!svid || !len)
		return NULL;
	*len = svid->key_len;
	return svid->key;
}

LANYARD_API char *lanyard_x509_svid_key_pem(const lanyard_x509_svid *svid)
{
	return svid ? pem_encode("PRIVATE KEY", svid->key, svid->key_len) : NULL;
}

LANYARD_API const uint8_t *lanyard_x509_svid_bundle_der(const lanyard_x509_svid *svid,
							size_t *len)
{
	if (!svid || !len)
		return NULL;
	*len = svid->bundle_len;
	return svid->bundle;
}
