/* psat.c: k8s_psat node attestation with the TokenReview API (see psat.h). */
#include "psat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_http.h"
#include "log.h"
#include "spiffeid.h"
#include "util.h"

#define SA_PREFIX "system:serviceaccount:"
#define EXTRA_POD_NAME "authentication.kubernetes.io/pod-name"
#define EXTRA_POD_UID "authentication.kubernetes.io/pod-uid"
#define EXTRA_NODE_NAME "authentication.kubernetes.io/node-name"
#define EXTRA_NODE_UID "authentication.kubernetes.io/node-uid"

struct psat {
	char *cluster, *audience;
	char **allowed;
	size_t n_allowed;
	struct k8s_api *api;
};

/* A SPIFFE ID path segment: [A-Za-z0-9._-], not "." or "..". */
static bool segment_ok(const char *s)
{
	if (!s || !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Kubernetes names in an allow-list entry: DNS labels and subdomains. */
static bool k8s_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

void psat_free(struct psat *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_allowed; i++)
		free(p->allowed[i]);
	free(p->allowed);
	free(p->cluster);
	free(p->audience);
	k8s_api_free(p->api);
	free(p);
}

struct psat *psat_new(const struct psat_options *o, char *err, size_t errlen)
{
	struct psat *p;

	if (!segment_ok(o->cluster)) {
		snprintf(err, errlen,
			 "k8s_psat cluster name \"%s\" must be non-empty and use only letters, "
			 "digits, '.', '_' and '-'",
			 o->cluster ? o->cluster : "");
		return NULL;
	}
	if (o->n_allowed == 0) {
		snprintf(err, errlen,
			 "k8s_psat needs at least one allowed service account (\"namespace:name\")");
		return NULL;
	}
	for (size_t i = 0; i < o->n_allowed; i++) {
		const char *e = o->allowed_sas[i], *c = strchr(e, ':');

		if (!c || !k8s_name_ok(e, (size_t)(c - e)) || !k8s_name_ok(c + 1, strlen(c + 1))) {
			snprintf(err, errlen,
				 "k8s_psat allowed service account \"%s\" is not \"namespace:name\"",
				 e);
			return NULL;
		}
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto nomem;
	p->cluster = strdup(o->cluster);
	p->audience = strdup(o->audience && o->audience[0] ? o->audience : PSAT_DEFAULT_AUDIENCE);
	p->allowed = calloc(o->n_allowed, sizeof(*p->allowed));
	if (!p->cluster || !p->audience || !p->allowed)
		goto nomem;
	for (size_t i = 0; i < o->n_allowed; i++) {
		if (!(p->allowed[i] = strdup(o->allowed_sas[i])))
			goto nomem;
		p->n_allowed++;
	}
	p->api = k8s_api_new(&o->api, err, errlen);
	if (!p->api) {
		psat_free(p);
		return NULL;
	}
	return p;
nomem:
	snprintf(err, errlen, "out of memory");
	psat_free(p);
	return NULL;
}

const char *psat_cluster(const struct psat *p)
{
	return p->cluster;
}

void psat_result_free(struct psat_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_selectors; i++)
		free(r->selectors[i]);
	free(r->selectors);
	free(r->agent_id);
	free(r->ns);
	free(r->sa);
	free(r->pod_name);
	free(r->pod_uid);
	free(r->node_name);
	free(r->node_uid);
	memset(r, 0, sizeof(*r));
}

static bool aud_has(json_t *aud, const char *want)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return true;
	return false;
}

/* "a", "b" from a string or an array of strings, for messages. */
static void aud_list(json_t *aud, char *buf, size_t len)
{
	size_t i, pos = 0;
	json_t *v;

	buf[0] = '\0';
	if (json_is_string(aud)) {
		snprintf(buf, len, "\"%.64s\"", json_string_value(aud));
		return;
	}
	json_array_foreach(aud, i, v) {
		int n;

		if (!json_is_string(v) || pos >= len)
			continue;
		n = snprintf(buf + pos, len - pos, "%s\"%.64s\"", pos ? ", " : "",
			     json_string_value(v));
		if (n < 0)
			break;
		pos += (size_t)n;
	}
}

/* Checks the shape of the token and, without verifying it (the TokenReview does that), its
 * audience, so the common mistake of a token minted for the wrong audience gets a clear message
 * rather than the API server's generic one. */
static int precheck(const struct psat *p, const char *token, size_t len, char *err, size_t errlen)
{
	const char *d1, *d2;
	uint8_t *payload = NULL;
	size_t plen;
	json_t *claims = NULL, *aud;
	char auds[256];
	int ret = PSAT_DENIED;

	if (len == 0 || len > PSAT_TOKEN_MAX) {
		snprintf(err, errlen, "service account token missing or longer than %d bytes",
			 PSAT_TOKEN_MAX);
		return PSAT_DENIED;
	}
	for (size_t i = 0; i < len; i++) {
		if (token[i] <= ' ' || token[i] > '~') {
			snprintf(err, errlen, "service account token is not a JWT");
			return PSAT_DENIED;
		}
	}
	d1 = memchr(token, '.', len);
	d2 = d1 ? memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1)) ||
	    base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &payload, &plen) < 0 ||
	    !(claims = json_loadb((const char *)payload, plen, 0, NULL)) || !json_is_object(claims)) {
		snprintf(err, errlen, "service account token is not a JWT");
		goto out;
	}
	aud = json_object_get(claims, "aud");
	if (!aud_has(aud, p->audience)) {
		aud_list(aud, auds, sizeof(auds));
		snprintf(err, errlen,
			 "wrong audience: the service account token is for [%s], lanyard-server "
			 "expects \"%s\" (set the projected token's audience)",
			 auds, p->audience);
		goto out;
	}
	ret = 0;
out:
	json_decref(claims);
	free(payload);
	return ret;
}

/* The first string of status.user.extra[key], or NULL. */
static const char *extra(json_t *user, const char *key)
{
	return json_string_value(json_array_get(json_object_get(json_object_get(user, "extra"), key),
						0));
}

static int token_review(struct psat *p, const char *token, size_t len, json_t **status_out,
			char *err, size_t errlen)
{
	json_t *req = NULL, *resp = NULL, *tok = NULL;
	char why[256];
	long status;
	int r, ret = PSAT_INTERNAL;

	*status_out = NULL;
	tok = json_stringn(token, len);
	req = json_pack("{s:s, s:s, s:{s:O, s:[s]}}", "apiVersion", "authentication.k8s.io/v1",
			"kind", "TokenReview", "spec", "token", tok, "audiences", p->audience);
	if (!req) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r = k8s_api_call(p->api, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", req, NULL,
			 &status, &resp, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "cannot reach the Kubernetes API server for TokenReview: %s",
			 why);
		ret = r == K8S_API_UNREACHABLE ? PSAT_UNAVAILABLE : PSAT_INTERNAL;
		goto out;
	}
	if (status == 401 || status == 403) {
		snprintf(err, errlen,
			 "the Kubernetes API server refused lanyard-server's own credentials for "
			 "TokenReview (HTTP %ld: %.160s); its service account needs create on "
			 "tokenreviews.authentication.k8s.io",
			 status, k8s_api_status_message(resp));
		ret = PSAT_UNAVAILABLE;
		goto out;
	}
	if ((status != 200 && status != 201) || !json_is_object(json_object_get(resp, "status"))) {
		snprintf(err, errlen, "TokenReview failed: HTTP %ld %.160s", status,
			 k8s_api_status_message(resp));
		ret = PSAT_UNAVAILABLE;
		goto out;
	}
	*status_out = json_incref(json_object_get(resp, "status"));
	ret = 0;
out:
	/* The request held the caller's token: wipe jansson's copy before it is freed. */
	if (tok)
		secure_zero((char *)json_string_value(tok), json_string_length(tok));
	json_decref(tok);
	json_decref(req);
	json_decref(resp);
	return ret;
}

/* GET of one object; 404 is PSAT_DENIED with what. */
static int get_object(struct psat *p, const char *path, const char *what, const char *verb_hint,
		      json_t **out, char *err, size_t errlen)
{
	char why[256];
	long status;
	json_t *resp = NULL;
	int r;

	*out = NULL;
	r = k8s_api_call(p->api, "GET", path, NULL, NULL, &status, &resp, why, sizeof(why));
	if (r < 0) {
		snprintf(err, errlen, "cannot reach the Kubernetes API server to read %s: %s", what,
			 why);
		return r == K8S_API_UNREACHABLE ? PSAT_UNAVAILABLE : PSAT_INTERNAL;
	}
	if (status == 404) {
		snprintf(err, errlen, "%s not found", what);
		json_decref(resp);
		return PSAT_DENIED;
	}
	if (status == 401 || status == 403) {
		snprintf(err, errlen,
			 "the Kubernetes API server refused to let lanyard-server read %s (HTTP "
			 "%ld: %.160s); its service account needs %s",
			 what, status, k8s_api_status_message(resp), verb_hint);
		json_decref(resp);
		return PSAT_UNAVAILABLE;
	}
	if (status != 200 || !json_is_object(resp)) {
		snprintf(err, errlen, "reading %s failed: HTTP %ld %.160s", what, status,
			 k8s_api_status_message(resp));
		json_decref(resp);
		return PSAT_UNAVAILABLE;
	}
	*out = resp;
	return 0;
}

static int add_sel(struct psat_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int add_sel(struct psat_result *r, const char *fmt, ...)
{
	char **v = realloc(r->selectors, (r->n_selectors + 1) * sizeof(*v));
	va_list ap;
	int n;

	if (!v)
		return -1;
	r->selectors = v;
	va_start(ap, fmt);
	n = vasprintf(&v[r->n_selectors], fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	r->n_selectors++;
	return 0;
}

static bool path_append(char *buf, size_t len, size_t *pos, const char *lit)
{
	size_t n = strlen(lit);

	if (*pos + n >= len)
		return false;
	memcpy(buf + *pos, lit, n + 1);
	*pos += n;
	return true;
}

int psat_attest(struct psat *p, const char *trust_domain, const char *token, size_t token_len,
		struct psat_result *out, char *err, size_t errlen)
{
	json_t *st = NULL, *pod = NULL, *node = NULL, *user;
	const char *username, *pod_name, *pod_uid, *tok_node, *tok_node_uid, *node_name, *node_uid;
	const char *ns_end, *sa_json, *actual_uid;
	char ns[254], sa[254], what[600], path[1024], sa_entry[512];
	size_t pos;
	bool allowed = false;
	int r, ret = PSAT_DENIED;

	memset(out, 0, sizeof(*out));
	r = precheck(p, token, token_len, err, errlen);
	if (r < 0)
		return r;
	r = token_review(p, token, token_len, &st, err, errlen);
	if (r < 0)
		return r;

	if (!json_is_true(json_object_get(st, "authenticated"))) {
		const char *e = json_string_value(json_object_get(st, "error"));

		snprintf(err, errlen, "TokenReview did not authenticate the token: %.300s",
			 e && *e ? e : "no reason given");
		goto out;
	}
	if (!aud_has(json_object_get(st, "audiences"), p->audience)) {
		snprintf(err, errlen,
			 "wrong audience: TokenReview did not confirm the audience \"%s\" for the "
			 "token",
			 p->audience);
		goto out;
	}
	user = json_object_get(st, "user");
	username = json_string_value(json_object_get(user, "username"));
	if (!username || strncmp(username, SA_PREFIX, strlen(SA_PREFIX)) != 0 ||
	    !(ns_end = strchr(username + strlen(SA_PREFIX), ':')) ||
	    (size_t)(ns_end - username - strlen(SA_PREFIX)) >= sizeof(ns) ||
	    strlen(ns_end + 1) >= sizeof(sa) || ns_end == username + strlen(SA_PREFIX) ||
	    !ns_end[1]) {
		snprintf(err, errlen, "the token is not a service account token (user \"%.128s\")",
			 username ? username : "");
		goto out;
	}
	snprintf(ns, sizeof(ns), "%.*s", (int)(ns_end - username - strlen(SA_PREFIX)),
		 username + strlen(SA_PREFIX));
	snprintf(sa, sizeof(sa), "%s", ns_end + 1);
	snprintf(sa_entry, sizeof(sa_entry), "%s:%s", ns, sa);
	for (size_t i = 0; i < p->n_allowed; i++)
		if (strcmp(p->allowed[i], sa_entry) == 0)
			allowed = true;
	if (!allowed) {
		snprintf(err, errlen,
			 "service account %s is not allowed to attest agents in cluster %s (not in "
			 "the allowed service accounts)",
			 sa_entry, p->cluster);
		goto out;
	}
	pod_name = extra(user, EXTRA_POD_NAME);
	pod_uid = extra(user, EXTRA_POD_UID);
	if (!pod_name || !*pod_name || !pod_uid || !*pod_uid) {
		snprintf(err, errlen,
			 "the token of %s is not bound to a pod: use a projected service account "
			 "token",
			 sa_entry);
		goto out;
	}

	/* The pod: it must still be the one the token was issued for, in its service account. */
	pos = 0;
	snprintf(what, sizeof(what), "pod %s/%.253s", ns, pod_name);
	if (!path_append(path, sizeof(path), &pos, "/api/v1/namespaces/") ||
	    !k8s_http_path_escape(path, sizeof(path), &pos, ns) ||
	    !path_append(path, sizeof(path), &pos, "/pods/") ||
	    !k8s_http_path_escape(path, sizeof(path), &pos, pod_name)) {
		snprintf(err, errlen, "%s: name too long", what);
		goto out;
	}
	r = get_object(p, path, what, "get on pods", &pod, err, errlen);
	if (r < 0) {
		ret = r;
		goto out;
	}
	actual_uid = json_string_value(json_object_get(json_object_get(pod, "metadata"), "uid"));
	if (!actual_uid || strcmp(actual_uid, pod_uid) != 0) {
		snprintf(err, errlen,
			 "%s has UID %s but the token was issued for UID %.64s (the pod was "
			 "replaced)",
			 what, actual_uid ? actual_uid : "(none)", pod_uid);
		goto out;
	}
	sa_json = json_string_value(json_object_get(json_object_get(pod, "spec"),
						    "serviceAccountName"));
	if (!sa_json || strcmp(sa_json, sa) != 0) {
		snprintf(err, errlen, "%s runs as service account %.253s, not %s", what,
			 sa_json ? sa_json : "(none)", sa);
		goto out;
	}
	node_name = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
	if (!node_name || !*node_name) {
		snprintf(err, errlen, "%s is not scheduled on a node", what);
		goto out;
	}
	/* Tokens of Kubernetes 1.30+ also name the node their pod was bound to. */
	tok_node = extra(user, EXTRA_NODE_NAME);
	if (tok_node && *tok_node && strcmp(tok_node, node_name) != 0) {
		snprintf(err, errlen,
			 "the token was issued for a pod on node %.253s, but %s runs on node %.253s",
			 tok_node, what, node_name);
		goto out;
	}

	pos = 0;
	snprintf(what, sizeof(what), "node %.253s", node_name);
	if (!path_append(path, sizeof(path), &pos, "/api/v1/nodes/") ||
	    !k8s_http_path_escape(path, sizeof(path), &pos, node_name)) {
		snprintf(err, errlen, "%s: name too long", what);
		goto out;
	}
	r = get_object(p, path, what, "get on nodes", &node, err, errlen);
	if (r < 0) {
		ret = r;
		goto out;
	}
	node_uid = json_string_value(json_object_get(json_object_get(node, "metadata"), "uid"));
	if (!node_uid || !segment_ok(node_uid)) {
		snprintf(err, errlen, "%s has no usable UID", what);
		ret = PSAT_UNAVAILABLE;
		goto out;
	}
	tok_node_uid = extra(user, EXTRA_NODE_UID);
	if (tok_node_uid && *tok_node_uid && strcmp(tok_node_uid, node_uid) != 0) {
		snprintf(err, errlen,
			 "the token was issued for a pod on node UID %.64s, but node %.253s now has "
			 "UID %s (the node was replaced)",
			 tok_node_uid, node_name, node_uid);
		goto out;
	}

	ret = PSAT_INTERNAL;
	if (asprintf(&out->agent_id, "spiffe://%s/lanyard/agent/k8s_psat/%s/%s", trust_domain,
		     p->cluster, node_uid) < 0) {
		out->agent_id = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	{
		char why[128];

		if (spiffeid_validate_leaf(out->agent_id, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "agent ID %.300s is not valid: %s", out->agent_id, why);
			goto out;
		}
	}
	if (!(out->ns = strdup(ns)) || !(out->sa = strdup(sa)) ||
	    !(out->pod_name = strdup(pod_name)) || !(out->pod_uid = strdup(pod_uid)) ||
	    !(out->node_name = strdup(node_name)) || !(out->node_uid = strdup(node_uid)) ||
	    add_sel(out, "k8s_psat:cluster:%s", p->cluster) < 0 ||
	    add_sel(out, "k8s_psat:agent_ns:%s", ns) < 0 ||
	    add_sel(out, "k8s_psat:agent_sa:%s", sa) < 0 ||
	    add_sel(out, "k8s_psat:agent_pod_name:%s", pod_name) < 0 ||
	    add_sel(out, "k8s_psat:agent_pod_uid:%s", pod_uid) < 0 ||
	    add_sel(out, "k8s_psat:agent_node_name:%s", node_name) < 0 ||
	    add_sel(out, "k8s_psat:agent_node_uid:%s", node_uid) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		psat_result_free(out);
	json_decref(st);
	json_decref(pod);
	json_decref(node);
	return ret;
}
