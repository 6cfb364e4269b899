/* admin_federation.c: the admin API's bundle, federation relationship and federated bundle
 * routes (see admin_routes.h for the threading contract). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin_routes.h"
#include "bundle.h"
#include "fed_bundle.h"
#include "fed_relationship.h"
#include "spiffeid.h"
#include "log.h"
#include "util.h"

/* ---- federation relationships ---- */

/* The relationship document with this server's fetch state of it ("state"), when known. */
static json_t *fed_rel_json(struct call *c, const struct fed_relationship *rel)
{
	json_t *j = fed_relationship_to_json(rel);
	const struct admin_hooks *h = &c->api->hooks;
	json_t *st = h->fed_state ? h->fed_state(h->ud, rel->trust_domain) : NULL;
	if (j && st)
		json_object_set_new(j, "state", st);
	else
		json_decref(st);
	return j;
}

void h_fed_list(struct call *c, struct reply *r)
{
	struct fed_relationship **v = NULL;
	size_t n = 0;
	if (ds_fed_rel_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list federation relationships");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, fed_rel_json(c, v[i]));
	fed_relationship_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "federations", a) : NULL);
}

/* Validates and stores o as a relationship (create or update) and replies with it. */
static void fed_store(struct call *c, struct reply *r, json_t *o, bool create)
{
	struct fed_relationship *rel = NULL;
	char err[512];
	if (fed_relationship_from_json(o, &rel, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		return;
	}
	if (strcmp(rel->trust_domain, c->api->trust_domain) == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "trust_domain %s is this server's own",
			    rel->trust_domain);
		goto out;
	}
	int ret = ds_fed_rel_put(c->api->ds, rel, create, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -EEXIST ? "trust domain %s has a federation "
			    "relationship already" : ret == -ENOENT ? "no federation relationship with "
			    "%s" : "cannot store the federation relationship with %s",
			    rel->trust_domain);
		goto out;
	}
	log_info("admin: federation relationship with %s %s (%s, %s)", rel->trust_domain,
		 create ? "created" : "updated", rel->bundle_endpoint_url,
		 fed_profile_name(rel->profile));
	reply_json(r, create ? MHD_HTTP_CREATED : MHD_HTTP_OK, fed_rel_json(c, rel));
	if (c->api->hooks.fed_refresh)
		c->api->hooks.fed_refresh(c->api->hooks.ud, rel->trust_domain);
out:
	fed_relationship_free(rel);
}

void h_fed_create(struct call *c, struct reply *r)
{
	json_t *o = parse_body(c, r, false);
	if (o)
		fed_store(c, r, o, true);
	json_decref(o);
}

/* Members of the body replace those stored; a null member removes an optional one. */
void h_fed_update(struct call *c, struct reply *r)
{
	struct fed_relationship *rel = NULL;
	json_t *o = parse_body(c, r, false), *cur = NULL;
	if (!o)
		return;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		goto out;
	}
	cur = fed_relationship_to_json(rel);
	if (!cur || json_object_update(cur, o) != 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		goto out;
	}
	const char *td = json_string_value(json_object_get(cur, "trust_domain"));
	if (!td || strcmp(td, c->id) != 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "the trust domain of a relationship cannot change");
		goto out;
	}
	fed_store(c, r, cur, false);
out:
	json_decref(cur);
	json_decref(o);
	fed_relationship_free(rel);
}

void h_fed_show(struct call *c, struct reply *r)
{
	struct fed_relationship *rel = NULL;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	reply_json(r, MHD_HTTP_OK, fed_rel_json(c, rel));
	fed_relationship_free(rel);
}

void h_fed_delete(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	int ret = ds_fed_rel_delete(c->api->ds, c->id);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	log_info("admin: federation relationship with %s deleted", c->id);
	if (h->fed_deleted)
		h->fed_deleted(h->ud, c->id);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "deleted", c->id));
	notify_changed(c);
}

/* POST /v1/federations/{td}: fetch its bundle now. */
void h_fed_refresh(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	struct fed_relationship *rel = NULL;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	fed_relationship_free(rel);
	if (h->fed_refresh)
		h->fed_refresh(h->ud, c->id);
	reply_json(r, MHD_HTTP_ACCEPTED, json_pack("{s:s}", "refreshing", c->id));
}

/* ---- bundle, health ---- */

void h_bundle(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	const char *format = query(c, "format");
	bool pem = !format || !*format || strcmp(format, "pem") == 0;
	char *out = NULL;
	if (!pem && strcmp(format, "spiffe") != 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown format \"%.32s\" (pem or spiffe)", format);
		return;
	}
	int (*fn)(void *, char **) = pem ? h->bundle_pem : h->bundle_spiffe_json;
	if (!fn) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the bundle is not available");
		return;
	}
	if (fn(h->ud, &out) < 0 || !out) {
		free(out);
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot build the bundle");
		return;
	}
	r->status = MHD_HTTP_OK;
	r->text = out;
	r->content_type = pem ? "text/plain" : "application/json";
}

/* ---- federated bundles ---- */

/* The trust domain a federated bundle call names ("td" or "spiffe://td"), validated and not our
 * own; NULL with r set otherwise. Points into s. */
static const char *foreign_td(struct admin_api *api, const char *s, struct reply *r)
{
	char why[256];
	if (!s || !*s) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "trust_domain is required");
		return NULL;
	}
	const char *td = strncmp(s, "spiffe://", 9) == 0 ? s + 9 : s;
	if (trust_domain_validate(td, why, sizeof(why)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid trust domain \"%.256s\": %s", s, why);
		return NULL;
	}
	if (strcmp(td, api->trust_domain) == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s is this server's own trust domain: its bundle "
			    "is managed by the CA, not set by hand", td);
		return NULL;
	}
	return td;
}

void h_fed_bundle_list(struct call *c, struct reply *r)
{
	struct fed_bundle **v = NULL;
	size_t n = 0;
	if (ds_fed_bundle_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list federated bundles");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, fed_bundle_summary_json(v[i]));
	fed_bundle_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "bundles", a) : NULL);
}

/* The summary, the SPIFFE bundle document ("spiffe_bundle") and the PEM of the X.509
 * authorities ("pem"). */
void h_fed_bundle_show(struct call *c, struct reply *r)
{
	const char *td = foreign_td(c->api, query(c, "trust_domain"), r);
	struct fed_bundle *b = NULL;
	if (!td)
		return;
	int ret = ds_fed_bundle_get(c->api->ds, td, &b);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no federated bundle for %s" :
			    "cannot read the federated bundle of %s", td);
		return;
	}
	json_t *j = fed_bundle_summary_json(b);
	char *doc = fed_bundle_to_spiffe_json(b);
	char *pem = b->x509_len ? bundle_to_pem(b->x509, b->x509_len) : xstrdup("");
	json_t *docj = doc ? json_loads(doc, 0, NULL) : NULL;
	if (j && docj && pem && json_object_set_new(j, "spiffe_bundle", docj) == 0 &&
	    json_object_set_new(j, "pem", json_string(pem)) == 0) {
		reply_json(r, MHD_HTTP_OK, j);
	} else {
		json_decref(j);
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot encode the bundle of %s", td);
	}
	free(doc);
	free(pem);
	fed_bundle_free(b);
}

/* {"trust_domain", "bundle": PEM or SPIFFE bundle document text}. Without a sequence in the
 * document, the stored one plus one: workloads see a new version. */
void h_fed_bundle_set(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "trust_domain", "bundle", NULL };
	struct fed_bundle *b = NULL, *old = NULL;
	const char *td, *doc;
	char err[512];
	bool has_seq = false;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(td = body_string(o, "trust_domain", r)) ||
	    !(td = foreign_td(c->api, td, r)) || !(doc = body_string(o, "bundle", r)))
		goto out;
	if (fed_bundle_parse(td, doc, strlen(doc), &b, &has_seq, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "bundle for %s: %s", td, err);
		goto out;
	}
	if (!has_seq && ds_fed_bundle_get(c->api->ds, td, &old) == 0)
		b->sequence = old->sequence + 1;
	int ret = ds_fed_bundle_put(c->api->ds, b, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: federated bundle of %s set (sequence %lld, %zu X.509 and %zu JWT "
		 "authorities)", td, (long long)b->sequence, fed_bundle_x509_count(b),
		 jwks_count(b->jwt));
	struct fed_bundle *stored = NULL;
	if (ds_fed_bundle_get(c->api->ds, td, &stored) == 0)
		reply_json(r, MHD_HTTP_OK, fed_bundle_summary_json(stored));
	else
		reply_json(r, MHD_HTTP_OK, fed_bundle_summary_json(b));
	fed_bundle_free(stored);
	notify_changed(c);
out:
	fed_bundle_free(b);
	fed_bundle_free(old);
	json_decref(o);
}

void h_fed_bundle_delete(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "trust_domain", NULL };
	const char *td;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(td = body_string(o, "trust_domain", r)) ||
	    !(td = foreign_td(c->api, td, r)))
		goto out;
	int ret = ds_fed_bundle_delete(c->api->ds, td);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no federated bundle for %s" :
			    "cannot delete the federated bundle of %s", td);
		goto out;
	}
	log_info("admin: federated bundle of %s deleted", td);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "deleted", td));
	notify_changed(c);
out:
	json_decref(o);
}
