/* jwt_source.c: JWT-SVIDs through the agent (FetchJWTSVID, ValidateJWTSVID), and local
 * validation against the JWT bundles (FetchJWTBundles), cached per trust domain. One
 * connection, opened on first use and reopened after a transport failure; calls are serialized
 * by a mutex because a workload_client serves one thread at a time. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "grpc.h"
#include "internal.h"
#include "jwt.h"
#include "util.h"
#include "workload_client.h"

#define CALL_TIMEOUT_MS 10000
#define BUNDLE_MAX_AGE_US (30 * 1000000LL)
#define BUNDLE_MIN_REFRESH_US (1 * 1000000LL)

struct jwt_bundle {
	char td[TRUST_DOMAIN_MAX + 1];
	struct jwks *keys;
};

struct lanyard_jwt_source {
	char path[4096];
	pthread_mutex_t lock;
	/* Under lock: */
	struct workload_client *wc;
	struct jwt_bundle *bundles;
	size_t n_bundles;
	int64_t bundles_at; /* now_mono_us of the last fetch, 0 = never */
};

LANYARD_API int lanyard_jwt_source_new(const char *socket, lanyard_jwt_source **out, char *err,
				       size_t errlen)
{
	struct lanyard_jwt_source *js;
	char e[512];

	if (!out)
		return ly_err(err, errlen, LANYARD_EINVAL, "no output pointer");
	*out = NULL;
	js = calloc(1, sizeof(*js));
	if (!js)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	if (workload_resolve_socket(socket, js->path, sizeof(js->path), e, sizeof(e)) < 0) {
		free(js);
		return ly_err(err, errlen, LANYARD_EINVAL, "%s", e);
	}
	pthread_mutex_init(&js->lock, NULL);
	*out = js;
	return LANYARD_OK;
}

static void bundles_clear(struct lanyard_jwt_source *js)
{
	for (size_t i = 0; i < js->n_bundles; i++)
		jwks_free(js->bundles[i].keys);
	free(js->bundles);
	js->bundles = NULL;
	js->n_bundles = 0;
}

LANYARD_API void lanyard_jwt_source_free(lanyard_jwt_source *js)
{
	if (!js)
		return;
	workload_client_close(js->wc);
	bundles_clear(js);
	pthread_mutex_destroy(&js->lock);
	free(js);
}

/* The connection, opened when needed. Under lock. */
static int ensure_client(struct lanyard_jwt_source *js, bool *fresh, char *err, size_t errlen)
{
	char e[512];

	*fresh = false;
	if (js->wc)
		return 0;
	if (workload_client_connect(js->path, CALL_TIMEOUT_MS, &js->wc, e, sizeof(e)) < 0)
		return ly_err(err, errlen, LANYARD_EIO, "%s", e);
	workload_client_set_timeout(js->wc, CALL_TIMEOUT_MS);
	*fresh = true;
	return 0;
}

/* Turns a workload_client result into a LANYARD code; a transport failure drops the
 * connection so that the next call reconnects. Under lock. */
static int call_result(struct lanyard_jwt_source *js, int r, int status, const char *e,
		       char *err, size_t errlen)
{
	if (r == 0)
		return LANYARD_OK;
	if (r == WORKLOAD_ESTATUS)
		return ly_err(err, errlen, ly_code_from_grpc(status), "agent: %s: %s",
			      grpc_status_name(status), e);
	workload_client_close(js->wc);
	js->wc = NULL;
	return ly_err(err, errlen, LANYARD_EIO, "%s", e);
}

LANYARD_API int lanyard_jwt_source_fetch(lanyard_jwt_source *js, const char *const *audiences,
					 size_t n, const char *spiffe_id, char **token,
					 char **spiffe_id_out, char *err, size_t errlen)
{
	struct workload_jwt_svids svids = {0};
	char e[512] = "";
	int ret, status = 0;
	bool fresh;

	if (token)
		*token = NULL;
	if (spiffe_id_out)
		*spiffe_id_out = NULL;
	if (!js || !audiences || n == 0 || !token)
		return ly_err(err, errlen, LANYARD_EINVAL, "a source, audiences and a token "
							   "pointer are needed");
	for (size_t i = 0; i < n; i++)
		if (!audiences[i] || !audiences[i][0])
			return ly_err(err, errlen, LANYARD_EINVAL, "empty audience");
	pthread_mutex_lock(&js->lock);
	/* A kept connection may have died with a restarted agent: one retry on a new one. */
	for (int attempt = 0; attempt < 2; attempt++) {
		ret = ensure_client(js, &fresh, err, errlen);
		if (ret < 0)
			goto out;
		ret = workload_fetch_jwt(js->wc, audiences, n, spiffe_id, &svids, &status, e,
					 sizeof(e));
		ret = call_result(js, ret, status, e, err, errlen);
		if (ret != LANYARD_EIO || fresh)
			break;
	}
	if (ret < 0)
		goto out;
	if (svids.n == 0) {
		ret = ly_err(err, errlen, LANYARD_ENOTFOUND, "the agent returned no JWT-SVID");
		goto out;
	}
	*token = strdup(svids.v[0].token);
	if (spiffe_id_out)
		*spiffe_id_out = strdup(svids.v[0].spiffe_id);
	if (!*token || (spiffe_id_out && !*spiffe_id_out)) {
		free(*token);
		*token = NULL;
		if (spiffe_id_out) {
			free(*spiffe_id_out);
			*spiffe_id_out = NULL;
		}
		ret = ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	}
out:
	pthread_mutex_unlock(&js->lock);
	workload_jwt_svids_free(&svids);
	return ret;
}

/* Hands the results to the caller (either pointer may be NULL); takes ownership of id and
 * claims. */
static int give_results(char *id, char *claims, char **spiffe_id, char **claims_json, char *err,
			size_t errlen)
{
	if (!id || !claims) {
		free(id);
		free(claims);
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	}
	if (spiffe_id)
		*spiffe_id = id;
	else
		free(id);
	if (claims_json)
		*claims_json = claims;
	else
		free(claims);
	return LANYARD_OK;
}

LANYARD_API int lanyard_jwt_source_validate(lanyard_jwt_source *js, const char *token,
					    const char *audience, char **spiffe_id,
					    char **claims_json, char *err, size_t errlen)
{
	char *id = NULL, *claims = NULL;
	char e[512] = "";
	int ret, status = 0;
	bool fresh;

	if (spiffe_id)
		*spiffe_id = NULL;
	if (claims_json)
		*claims_json = NULL;
	if (!js || !token || !audience || !audience[0])
		return ly_err(err, errlen, LANYARD_EINVAL, "a token and an audience are needed");
	pthread_mutex_lock(&js->lock);
	for (int attempt = 0; attempt < 2; attempt++) {
		ret = ensure_client(js, &fresh, err, errlen);
		if (ret < 0)
			goto out;
		ret = workload_validate_jwt(js->wc, audience, token, &id, &claims, &status, e,
					    sizeof(e));
		ret = call_result(js, ret, status, e, err, errlen);
		if (ret != LANYARD_EIO || fresh)
			break;
	}
	/* The agent answers InvalidArgument for a token that does not validate. */
	if (ret == LANYARD_EAGENT && status == GRPC_STATUS_INVALID_ARGUMENT)
		ret = LANYARD_EREJECTED;
	if (ret == LANYARD_OK) {
		ret = give_results(id, claims, spiffe_id, claims_json, err, errlen);
		id = claims = NULL;
	}
out:
	pthread_mutex_unlock(&js->lock);
	free(id);
	free(claims);
	return ret;
}

/* Replaces the cached JWT bundles with the agent's. Under lock. */
static int refresh_bundles(struct lanyard_jwt_source *js, char *err, size_t errlen)
{
	struct workload_bundles b = {0};
	struct jwt_bundle *v = NULL;
	size_t n = 0;
	char e[512] = "";
	int ret, status = 0;
	bool fresh;

	for (int attempt = 0; attempt < 2; attempt++) {
		ret = ensure_client(js, &fresh, err, errlen);
		if (ret < 0)
			return ret;
		ret = workload_fetch_jwt_bundles(js->wc, &b, &status, e, sizeof(e));
		ret = call_result(js, ret, status, e, err, errlen);
		if (ret != LANYARD_EIO || fresh)
			break;
	}
	if (ret < 0)
		return ret;
	v = calloc(b.n + 1, sizeof(*v));
	if (!v) {
		ret = ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		struct jwt_bundle *jb = &v[n];

		if (ly_trust_domain(b.v[i].trust_domain_id, jb->td) < 0 ||
		    jwks_from_json((const char *)b.v[i].data, b.v[i].len, &jb->keys, e,
				   sizeof(e)) < 0) {
			ret = ly_err(err, errlen, LANYARD_EINVAL, "bad JWT bundle for %s: %s",
				     b.v[i].trust_domain_id, e);
			goto out;
		}
		n++;
	}
	bundles_clear(js);
	js->bundles = v;
	js->n_bundles = n;
	js->bundles_at = now_mono_us();
	v = NULL;
	n = 0;
	ret = LANYARD_OK;
out:
	for (size_t i = 0; v && i < n; i++)
		jwks_free(v[i].keys);
	free(v);
	workload_bundles_free(&b);
	return ret;
}

static const struct jwks *find_keys(const struct lanyard_jwt_source *js, const char *td)
{
	for (size_t i = 0; i < js->n_bundles; i++)
		if (strcmp(js->bundles[i].td, td) == 0)
			return js->bundles[i].keys;
	return NULL;
}

/* Validates token against keys; on success gives the subject and claims. */
static int validate_with(const char *token, const struct jwks *keys, const char *audience,
			 char **spiffe_id, char **claims_json, char *err, size_t errlen)
{
	struct jwt_claims c;
	char e[512];
	int ret;

	if (jwt_validate(token, keys, audience, now_unix(), &c, e, sizeof(e)) < 0)
		return ly_err(err, errlen, LANYARD_EREJECTED, "%s", e);
	ret = give_results(strdup(c.sub), json_dumps(c.all, JSON_COMPACT | JSON_SORT_KEYS),
			   spiffe_id, claims_json, err, errlen);
	jwt_claims_free(&c);
	return ret;
}

LANYARD_API int lanyard_jwt_source_validate_local(lanyard_jwt_source *js, const char *token,
						  const char *audience, char **spiffe_id,
						  char **claims_json, char *err, size_t errlen)
{
	char sub[SPIFFEID_MAX + 1], td[TRUST_DOMAIN_MAX + 1];
	const struct jwks *keys;
	int64_t age;
	int ret;

	if (spiffe_id)
		*spiffe_id = NULL;
	if (claims_json)
		*claims_json = NULL;
	if (!js || !token || !audience || !audience[0])
		return ly_err(err, errlen, LANYARD_EINVAL, "a token and an audience are needed");
	/* The subject picks the trust domain's keys; it is trusted only after validation. */
	if (jwt_peek_sub(token, sub, sizeof(sub)) < 0 ||
	    spiffeid_parse(sub, td, NULL, NULL, 0) < 0)
		return ly_err(err, errlen, LANYARD_EREJECTED, "token has no valid SPIFFE ID in sub");
	pthread_mutex_lock(&js->lock);
	age = js->bundles_at ? now_mono_us() - js->bundles_at : BUNDLE_MAX_AGE_US;
	if (age >= BUNDLE_MAX_AGE_US && (ret = refresh_bundles(js, err, errlen)) < 0)
		goto out;
	keys = find_keys(js, td);
	ret = keys ? validate_with(token, keys, audience, spiffe_id, claims_json, err, errlen)
		   : ly_err(err, errlen, LANYARD_EREJECTED, "no JWT bundle for trust domain %s",
			    td);
	/* A key the cache does not know yet (a JWT key rotated in): refresh once, at most
	 * every second, and try again. */
	if (ret == LANYARD_EREJECTED && now_mono_us() - js->bundles_at >= BUNDLE_MIN_REFRESH_US &&
	    refresh_bundles(js, NULL, 0) == LANYARD_OK) {
		keys = find_keys(js, td);
		ret = keys ? validate_with(token, keys, audience, spiffe_id, claims_json, err,
					   errlen)
			   : ly_err(err, errlen, LANYARD_EREJECTED,
				    "no JWT bundle for trust domain %s", td);
	}
out:
	pthread_mutex_unlock(&js->lock);
	return ret;
}

LANYARD_API int lanyard_jwt_validate(const char *token, const char *audience, const char *jwks_json,
				     size_t jwks_len, char **spiffe_id, char **claims_json,
				     char *err, size_t errlen)
{
	struct jwks *keys = NULL;
	char e[512];
	int ret;

	if (spiffe_id)
		*spiffe_id = NULL;
	if (claims_json)
		*claims_json = NULL;
	if (!token || !audience || !audience[0] || !jwks_json)
		return ly_err(err, errlen, LANYARD_EINVAL,
			      "a token, an audience and a JWK Set are needed");
	if (jwks_from_json(jwks_json, jwks_len, &keys, e, sizeof(e)) < 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "bad JWK Set: %s", e);
	ret = validate_with(token, keys, audience, spiffe_id, claims_json, err, errlen);
	jwks_free(keys);
	return ret;
}
