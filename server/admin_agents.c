/* admin_agents.c: the admin API's agent, server, CA authority and hand-minted SVID routes
 * (see admin_routes.h for the threading contract). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin_routes.h"
#include "bundle.h"
#include "ca.h"
#include "entry.h"
#include "spiffeid.h"
#include "taint_ack.h"
#include "x509.h"
#include "log.h"
#include "util.h"

/* ---- agents ---- */

void h_agent_list(struct call *c, struct reply *r)
{
	struct agent_record **v = NULL;
	size_t n = 0;
	if (ds_agent_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list agents");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, agent_record_to_json(v[i]));
	agent_record_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "agents", a) : NULL);
}

void h_agent_count(struct call *c, struct reply *r)
{
	reply_count(c, r, ds_agent_count, "agents");
}

void h_server_list(struct call *c, struct reply *r)
{
	struct server_record **v = NULL;
	size_t n = 0;
	if (ds_server_list(c->api->ds, DS_SERVER_LIVE_S, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot list the servers");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, server_record_to_json(v[i]));
	server_record_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "servers", a) : NULL);
}

void h_agent_show(struct call *c, struct reply *r)
{
	const char *id = query(c, "spiffe_id");
	struct agent_record *a = NULL;
	if (!id || !*id) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "query parameter spiffe_id is required");
		return;
	}
	int ret = ds_agent_get(c->api->ds, id, &a);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no agent %.256s" :
			    "cannot read agent %.256s", id);
		return;
	}
	reply_json(r, MHD_HTTP_OK, agent_record_to_json(a));
	agent_record_free(a);
}

/* evict and ban: {"spiffe_id": ...} in, {"<verb>": id} out. */
static void agent_action(struct call *c, struct reply *r, bool ban)
{
	static const char *const keys[] = { "spiffe_id", NULL };
	const char *id;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)))
		goto out;
	int ret = ban ? ds_agent_set_banned(c->api->ds, id, true) : ds_agent_delete(c->api->ds, id);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no agent %.256s" :
			    "cannot update agent %.256s", id);
		goto out;
	}
	log_info("admin: agent %s %s", id, ban ? "banned" : "evicted");
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", ban ? "banned" : "evicted", id));
	notify_changed(c);
out:
	json_decref(o);
}

void h_agent_evict(struct call *c, struct reply *r)
{
	agent_action(c, r, false);
}

void h_agent_ban(struct call *c, struct reply *r)
{
	agent_action(c, r, true);
}

/* ---- CA authorities (ca.h; the revocation rule is taint_ack.h's) ---- */

static unsigned int ca_status(int ret)
{
	switch (ret) {
	case -ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case -EBUSY:
	case -EEXIST:
	case -EXDEV:
	case -ESTALE:
		return MHD_HTTP_CONFLICT;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

static bool have_ca(struct call *c, struct reply *r)
{
	if (!c->api->hooks.ca)
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the CA is not available");
	return c->api->hooks.ca != NULL;
}

void h_authority_list(struct call *c, struct reply *r)
{
	if (have_ca(c, r))
		reply_json(r, MHD_HTTP_OK, ca_authorities_json(c->api->hooks.ca));
}

void h_authority_prepare(struct call *c, struct reply *r)
{
	static const char *const keys[] = { NULL };
	char err[512], id[65];
	json_t *o = parse_body(c, r, true);
	if (!o || !only_keys(o, keys, r) || !have_ca(c, r))
		goto out;
	int ret = ca_prepare(c->api->hooks.ca, now_unix(), id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: authority %s prepared", id);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "prepared", id));
	notify_changed(c);
out:
	json_decref(o);
}

/* Refuses a revocation while an agent may still hold or serve an SVID of the authority. */
static bool nothing_depends(struct call *c, struct reply *r, const char *id)
{
	char err[512], **pending = NULL;
	size_t n = 0;
	int ret = ca_tainted_check(c->api->hooks.ca, id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		return false;
	}
	if (taint_ack_pending(c->api->ds, id, &pending, &n) < 0) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot read the agents");
		return false;
	}
	if (n)
		reply_error(r, MHD_HTTP_CONFLICT, "authority %s is still needed: %zu agent%s %s not "
			    "re-issued every SVID it signed (e.g. %.256s); wait for them, or evict "
			    "agents that are gone (\"agent evict\")", id, n, n == 1 ? "" : "s",
			    n == 1 ? "has" : "have", pending[0]);
	for (size_t i = 0; i < n; i++)
		free(pending[i]);
	free(pending);
	return n == 0;
}

/* activate, taint, revoke: {"id": ...} in, {"<verb>": id} out. */
static void authority_action(struct call *c, struct reply *r, const char *verb,
			     int (*fn)(struct ca *, const char *, char *, size_t))
{
	static const char *const keys[] = { "id", NULL };
	const char *id;
	char err[512];
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "id", r)) || !have_ca(c, r))
		goto out;
	if (fn == ca_revoke && !nothing_depends(c, r, id))
		goto out;
	int ret = fn(c->api->hooks.ca, id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		if (ret == -ESTALE)
			notify_changed(c); /* a raced activation: another authority is active */
		goto out;
	}
	log_info("admin: authority %s %s", id, verb);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", verb, id));
	notify_changed(c);
out:
	json_decref(o);
}

void h_authority_activate(struct call *c, struct reply *r)
{
	authority_action(c, r, "activated", ca_activate);
}

void h_authority_taint(struct call *c, struct reply *r)
{
	authority_action(c, r, "tainted", ca_taint);
}

void h_authority_revoke(struct call *c, struct reply *r)
{
	authority_action(c, r, "revoked", ca_revoke);
}

/* ---- SVIDs minted by hand ("x509 mint", "jwt mint") ---- */

/* The SPIFFE ID and DNS names of a minted SVID pass the checks of an entry's (as an entry whose
 * parent is the server itself) and the identity namespaces: an admin cannot mint the server's or
 * an agent's identity. The strings stay owned by the request. */
static bool mint_id_ok(struct admin_api *api, const char *id, const char **dns, size_t n_dns,
		       struct reply *r)
{
	char parent[300], err[512] = "";
	const char *sel = "mint:admin";
	snprintf(parent, sizeof(parent), "spiffe://%s", api->trust_domain);
	struct entry e = { .spiffe_id = (char *)id, .parent_id = parent, .selectors = (char **)&sel,
			   .n_selectors = 1, .dns_names = (char **)dns, .n_dns_names = n_dns };
	if (entry_validate(&e, api->trust_domain, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		return false;
	}
	return identity_assignable(api, "spiffe_id", id, r);
}

/* "ttl": optional, in [1, MINT_TTL_MAX]. */
static bool mint_ttl(json_t *o, int64_t dflt, int64_t *ttl, struct reply *r)
{
	json_t *v = json_object_get(o, "ttl");
	*ttl = dflt;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MINT_TTL_MAX) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"ttl\" must be an integer number of seconds "
			    "in [1, %d]", MINT_TTL_MAX);
		return false;
	}
	*ttl = json_integer_value(v);
	return true;
}

/* An optional array of at most max strings under key; *v points into o. */
static bool string_array(json_t *o, const char *key, size_t max, const char **v, size_t *n,
			 struct reply *r)
{
	json_t *a = json_object_get(o, key), *x;
	size_t i;
	*n = 0;
	if (!a)
		return true;
	if (!json_is_array(a) || json_array_size(a) > max) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\" must be an array of at most %zu strings",
			    key, max);
		return false;
	}
	json_array_foreach(a, i, x) {
		if (!json_is_string(x) || !*json_string_value(x) ||
		    strlen(json_string_value(x)) != json_string_length(x)) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\"[%zu] must be a non-empty string",
				    key, i);
			return false;
		}
		v[(*n)++] = json_string_value(x);
	}
	return true;
}

/* {"spiffe_id", "csr": base64 DER PKCS#10, "ttl"?, "dns_names"?} -> {"spiffe_id",
 * "certificate": PEM chain, "bundle": PEM, "expires_at"}. The key stays with the caller. */
void h_mint_x509(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "spiffe_id", "csr", "ttl", "dns_names", NULL };
	const struct admin_hooks *h = &c->api->hooks;
	const char *id, *csr_b64, *dns[ENTRY_MAX_DNS_NAMES];
	size_t n_dns = 0, der_len = 0, chain_len = 0;
	uint8_t *der = NULL, *chain = NULL;
	char *cert = NULL, *bundle = NULL, err[256] = "";
	struct csr_info ci = { 0 };
	int64_t ttl, not_after = 0;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)) ||
	    !(csr_b64 = body_string(o, "csr", r)) ||
	    !string_array(o, "dns_names", ENTRY_MAX_DNS_NAMES, dns, &n_dns, r) ||
	    !mint_ttl(o, MINT_X509_TTL_DEFAULT, &ttl, r) || !mint_id_ok(c->api, id, dns, n_dns, r))
		goto out;
	if (base64_decode(csr_b64, strlen(csr_b64), &der, &der_len) < 0 ||
	    x509_csr_parse(der, der_len, &ci, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid \"csr\": %s",
			    *err ? err : "not base64");
		goto out;
	}
	if (!h->mint_x509 || !h->bundle_pem) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "minting is not available");
		goto out;
	}
	if (h->mint_x509(h->ud, id, dns, n_dns, ci.spki, ci.spki_len, ttl, &chain, &chain_len,
			 &not_after, err, sizeof(err)) < 0 ||
	    !(cert = bundle_to_pem(chain, chain_len)) || h->bundle_pem(h->ud, &bundle) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot mint: %s",
			    *err ? err : "out of memory");
		goto out;
	}
	char t[32];
	time_format_rfc3339(not_after, t, sizeof(t));
	log_info("admin: X509-SVID minted by hand for %s (expires at %s)", id, t);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s, s:s, s:s, s:I}", "spiffe_id", id,
					     "certificate", cert, "bundle", bundle ? bundle : "",
					     "expires_at", (json_int_t)not_after));
out:
	csr_info_free(&ci);
	free(der);
	free(chain);
	free(cert);
	free(bundle);
	json_decref(o);
}

/* {"spiffe_id", "audience": [...], "ttl"?} -> {"spiffe_id", "token", "expires_at"}. */
void h_mint_jwt(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "spiffe_id", "audience", "ttl", NULL };
	const struct admin_hooks *h = &c->api->hooks;
	const char *id, *aud[MINT_MAX_AUDIENCES];
	size_t n_aud = 0;
	char *token = NULL, err[256] = "";
	int64_t ttl, exp = 0;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)) ||
	    !string_array(o, "audience", MINT_MAX_AUDIENCES, aud, &n_aud, r) ||
	    !mint_ttl(o, MINT_JWT_TTL_DEFAULT, &ttl, r) || !mint_id_ok(c->api, id, NULL, 0, r))
		goto out;
	if (n_aud == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"audience\" needs at least one audience");
		goto out;
	}
	if (!h->mint_jwt) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "minting is not available");
		goto out;
	}
	if (h->mint_jwt(h->ud, id, aud, n_aud, ttl, &token, &exp, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot mint: %s", err);
		goto out;
	}
	char t[32];
	time_format_rfc3339(exp, t, sizeof(t));
	log_info("admin: JWT-SVID minted by hand for %s (audience %s%s, expires at %s)", id, aud[0],
		 n_aud > 1 ? ", ..." : "", t);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s, s:s, s:I}", "spiffe_id", id, "token", token,
					     "expires_at", (json_int_t)exp));
out:
	if (token)
		secure_zero(token, strlen(token));
	free(token);
	json_decref(o);
}
