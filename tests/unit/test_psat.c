/* Unit tests for server/psat.c (k8s_psat node attestation), server/k8s_api.c and
 * server/k8s_bundle.c against a fake Kubernetes API server on loopback (k8s_fake.h) that serves
 * recorded-shape TokenReview, Pod, Node, Status and ConfigMap objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "k8s_bundle.h"
#include "k8s_fake.h"
#include "log.h"
#include "psat.h"

#define TD "example.org"
#define NODE1_UID "4f6c2a1e-8b3d-4e5f-9a0b-1c2d3e4f5a6b"
#define AGENT_POD_UID "1b9e4c7d-2a3f-4e8b-9c1d-5f6a7b8c9d0e"
#define SERVER_TOKEN "server-sa-token.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig"

/* ---- the fake API server ---- */

struct api {
	int review_status;   /* answer TokenReview with this status (401, 403) instead */
	int delay_ms;
	const char *pod_sa;  /* replace the pod's serviceAccountName */
	char *bundle;        /* ConfigMap lanyard/lanyard-bundle data["bundle.crt"]; NULL = none */
	bool no_configmap;
	char *patched;       /* last merge patch body */
};

static char *fixture_with(const char *name, const char *token)
{
	char *text = fake_fixture(name), *out;
	json_t *j;

	assert_non_null(text);
	j = json_loads(text, 0, NULL);
	free(text);
	assert_non_null(j);
	if (token)
		json_object_set_new(json_object_get(j, "spec"), "token", json_string(token));
	out = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	return out;
}

/* The scenario of a test token is its "jti" claim: tokenreview-<jti>.json answers it. */
static char *scenario_of(const char *token)
{
	const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	uint8_t *payload = NULL;
	size_t len;
	json_t *claims;
	char *jti = NULL;

	if (!d2 || base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &payload, &len) < 0)
		return NULL;
	claims = json_loadb((char *)payload, len, 0, NULL);
	if (json_string_value(json_object_get(claims, "jti")))
		jti = strdup(json_string_value(json_object_get(claims, "jti")));
	json_decref(claims);
	free(payload);
	return jti;
}

static void api_handler(struct fake_k8s *f, const struct fake_req *req, struct fake_resp *resp)
{
	struct api *a = f->ud;

	resp->delay_ms = a->delay_ms;
	if (strcmp(req->auth, "Bearer " SERVER_TOKEN) != 0) {
		resp->status = 401;
		resp->body = fake_fixture("api-status-401.json");
		return;
	}
	if (strcmp(req->method, "POST") == 0 &&
	    strcmp(req->url, "/apis/authentication.k8s.io/v1/tokenreviews") == 0) {
		json_t *body = json_loads(req->body, 0, NULL);
		const char *tok = json_string_value(
			json_object_get(json_object_get(body, "spec"), "token"));
		char name[128], *jti = tok ? scenario_of(tok) : NULL;

		if (a->review_status == 403) {
			resp->status = 403;
			resp->body = fake_fixture("api-status-403-tokenreviews.json");
		} else {
			snprintf(name, sizeof(name), "tokenreview-%s.json",
				 jti ? jti : "unauthenticated");
			resp->status = 201;
			resp->body = fixture_with(name, tok);
		}
		free(jti);
		json_decref(body);
		return;
	}
	if (strcmp(req->method, "GET") == 0 &&
	    strcmp(req->url, "/api/v1/namespaces/lanyard/pods/lanyard-agent-7xk2p") == 0) {
		if (a->pod_sa) {
			char *text = fake_fixture("api-pod-lanyard-agent.json");
			json_t *pod = json_loads(text, 0, NULL);

			free(text);
			json_object_set_new(json_object_get(pod, "spec"), "serviceAccountName",
					    json_string(a->pod_sa));
			resp->body = json_dumps(pod, 0);
			json_decref(pod);
		} else {
			resp->body = fake_fixture("api-pod-lanyard-agent.json");
		}
		return;
	}
	if (strcmp(req->method, "GET") == 0 && strcmp(req->url, "/api/v1/nodes/node-1") == 0) {
		resp->body = fake_fixture("api-node-node-1.json");
		return;
	}
	if (strcmp(req->method, "GET") == 0 && strcmp(req->url, "/api/v1/nodes/node-2") == 0) {
		resp->body = fake_fixture("api-node-node-2.json");
		return;
	}
	if (strcmp(req->url, "/api/v1/namespaces/lanyard/configmaps/lanyard-bundle") == 0 &&
	    !a->no_configmap) {
		if (strcmp(req->method, "PATCH") == 0) {
			json_t *patch = json_loads(req->body, 0, NULL);
			const char *v = json_string_value(
				json_object_get(json_object_get(patch, "data"), "bundle.crt"));

			free(a->patched);
			a->patched = strdup(req->body);
			free(a->bundle);
			a->bundle = v ? strdup(v) : NULL;
			json_decref(patch);
		}
		json_t *cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "kind", "ConfigMap", "apiVersion",
				       "v1", "metadata", "name", "lanyard-bundle", "namespace",
				       "lanyard", "uid", "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5");
		if (a->bundle)
			json_object_set_new(cm, "data", json_pack("{s:s}", "bundle.crt", a->bundle));
		resp->body = json_dumps(cm, 0);
		json_decref(cm);
		return;
	}
	resp->status = 404;
	resp->body = fake_fixture("api-status-404-pod.json");
}

/* ---- tokens ---- */

/* A projected-token-shaped JWT (unsigned: the fake API server is the judge) for scenario jti. */
static char *make_token(const char *jti, const char *aud, int64_t iat)
{
	json_t *h = json_pack("{s:s,s:s}", "alg", "RS256", "kid", "7T5Hn2mA1k0");
	json_t *c = json_pack(
		"{s:[s],s:I,s:I,s:s,s:s,s:I,s:{s:s,s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s}},s:s}",
		"aud", aud, "exp", (json_int_t)(iat + 7200), "iat", (json_int_t)iat, "iss",
		"https://kubernetes.default.svc.cluster.local", "jti", jti, "nbf", (json_int_t)iat,
		"kubernetes.io", "namespace", "lanyard", "node", "name", "node-1", "uid", NODE1_UID,
		"pod", "name", "lanyard-agent-7xk2p", "uid", AGENT_POD_UID, "serviceaccount", "name",
		"lanyard-agent", "uid", "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "sub",
		"system:serviceaccount:lanyard:lanyard-agent");
	char *hs = json_dumps(h, JSON_COMPACT), *cs = json_dumps(c, JSON_COMPACT);
	char *h64 = base64url_encode((uint8_t *)hs, strlen(hs));
	char *c64 = base64url_encode((uint8_t *)cs, strlen(cs));
	char *tok;

	assert_true(asprintf(&tok, "%s.%s.c2lnbmF0dXJlLW5vdC1jaGVja2VkLWJ5LXRoZS1mYWtl", h64, c64) >
		    0);
	free(hs);
	free(cs);
	free(h64);
	free(c64);
	json_decref(h);
	json_decref(c);
	return tok;
}

/* ---- fixture ---- */

struct env {
	struct api api;
	struct fake_k8s *fake;
	char *dir;
	char token_path[4200];
	struct psat *psat;
};

static char *allowed[] = {"lanyard:lanyard-agent", "kube-system:other"};

static struct psat *new_psat(struct env *e, const char *url, int64_t timeout_ms)
{
	struct psat_options o = {
		.cluster = "prod-eu",
		.allowed_sas = allowed,
		.n_allowed = ARRAY_LEN(allowed),
		.api = {.url = url, .token_path = e->token_path, .ca_path = "",
			.timeout_ms = timeout_ms},
	};
	char err[256];
	struct psat *p = psat_new(&o, err, sizeof(err));

	if (!p)
		fail_msg("psat_new: %s", err);
	assert_string_equal(psat_cluster(p), "prod-eu");
	return p;
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->dir = fake_tmpdir();
	if (!e->dir)
		return -1;
	snprintf(e->token_path, sizeof(e->token_path), "%s/token", e->dir);
	fake_write(e->dir, "token", SERVER_TOKEN "\n");
	if (fake_make_cert(e->dir, "api") < 0)
		return -1;
	e->fake = fake_start(api_handler, &e->api, e->dir, "api");
	if (!e->fake)
		return -1;
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	psat_free(e->psat);
	fake_stop(e->fake);
	free(e->api.patched);
	free(e->api.bundle);
	fake_rmdir(e->dir);
	free(e);
	return 0;
}

/* A psat against the https fake, trusting its certificate. */
static struct psat *psat_for(struct env *e)
{
	struct psat_options o = {
		.cluster = "prod-eu",
		.allowed_sas = allowed,
		.n_allowed = ARRAY_LEN(allowed),
		.api = {.url = e->fake->url, .token_path = e->token_path, .timeout_ms = 2000},
	};
	char err[256], ca[4300];

	snprintf(ca, sizeof(ca), "%s/api.crt", e->dir);
	o.api.ca_path = ca;
	e->psat = psat_new(&o, err, sizeof(err));
	if (!e->psat)
		fail_msg("psat_new: %s", err);
	return e->psat;
}

static int run(struct psat *p, const char *jti, const char *aud, struct psat_result *r,
	       char *err, size_t errlen)
{
	char *tok = make_token(jti, aud, now_unix());
	int ret = psat_attest(p, TD, tok, strlen(tok), r, err, errlen);

	free(tok);
	return ret;
}

static void expect_denied(struct env *e, const char *jti, const char *aud, const char *part1,
			  const char *part2, int code)
{
	struct psat_result r;
	char err[512] = "";
	int ret = run(e->psat, jti, aud, &r, err, sizeof(err));

	if (ret != code)
		fail_msg("%s: expected %d, got %d (%s)", jti, code, ret, err);
	assert_null(r.agent_id);
	if (!strstr(err, part1) || (part2 && !strstr(err, part2)))
		fail_msg("%s: error \"%s\" lacks \"%s\"/\"%s\"", jti, err, part1,
			 part2 ? part2 : "");
}

/* ---- tests ---- */

static void attest_ok_and_again(void **state)
{
	static const char *const want[] = {
		"k8s_psat:cluster:prod-eu",
		"k8s_psat:agent_ns:lanyard",
		"k8s_psat:agent_sa:lanyard-agent",
		"k8s_psat:agent_pod_name:lanyard-agent-7xk2p",
		"k8s_psat:agent_pod_uid:" AGENT_POD_UID,
		"k8s_psat:agent_node_name:node-1",
		"k8s_psat:agent_node_uid:" NODE1_UID,
	};
	struct env *e = *state;
	struct psat_result r;
	char err[512], *tok;
	json_t *review;

	psat_for(e);
	tok = make_token("authenticated", "lanyard-server", now_unix());
	if (psat_attest(e->psat, TD, tok, strlen(tok), &r, err, sizeof(err)) < 0)
		fail_msg("psat_attest: %s", err);
	assert_string_equal(r.agent_id,
			    "spiffe://example.org/lanyard/agent/k8s_psat/prod-eu/" NODE1_UID);
	assert_int_equal(r.n_selectors, ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_string_equal(r.selectors[i], want[i]);
	assert_string_equal(r.ns, "lanyard");
	assert_string_equal(r.sa, "lanyard-agent");
	assert_string_equal(r.pod_name, "lanyard-agent-7xk2p");
	assert_string_equal(r.node_name, "node-1");
	assert_string_equal(r.node_uid, NODE1_UID);
	psat_result_free(&r);
	psat_result_free(&r); /* safe twice */

	/* TokenReview, pod, node; the server's own token as the bearer. */
	assert_int_equal(fake_requests(e->fake), 3);
	assert_string_equal(e->fake->last_auth, "Bearer " SERVER_TOKEN);

	/* Re-attestation with a fresh token of the same node: the same agent ID. Check the
	 * TokenReview request this time. */
	free(tok);
	tok = make_token("authenticated", "lanyard-server", now_unix() + 3600);
	assert_int_equal(psat_attest(e->psat, TD, tok, strlen(tok), &r, err, sizeof(err)), 0);
	assert_string_equal(r.agent_id,
			    "spiffe://example.org/lanyard/agent/k8s_psat/prod-eu/" NODE1_UID);
	psat_result_free(&r);
	{
		/* A token the API server rejects ends the attestation after the review, so the
		 * fake's last recorded body is the TokenReview request. */
		unsigned before = fake_requests(e->fake);
		char *t2 = make_token("unauthenticated", "lanyard-server", now_unix());

		assert_int_equal(psat_attest(e->psat, TD, t2, strlen(t2), &r, err, sizeof(err)),
				 PSAT_DENIED);
		assert_int_equal(fake_requests(e->fake), before + 1);
		review = json_loads(e->fake->last_body, 0, NULL);
		assert_non_null(review);
		assert_string_equal(json_string_value(json_object_get(review, "apiVersion")),
				    "authentication.k8s.io/v1");
		assert_string_equal(json_string_value(json_object_get(review, "kind")),
				    "TokenReview");
		json_t *spec = json_object_get(review, "spec");
		assert_string_equal(json_string_value(json_object_get(spec, "token")), t2);
		assert_int_equal(json_array_size(json_object_get(spec, "audiences")), 1);
		assert_string_equal(
			json_string_value(json_array_get(json_object_get(spec, "audiences"), 0)),
			"lanyard-server");
		json_decref(review);
		free(t2);
	}
	free(tok);
}

static void wrong_audience(void **state)
{
	struct env *e = *state;

	psat_for(e);
	/* Caught before asking the API server. */
	expect_denied(e, "authenticated", "https://kubernetes.default.svc.cluster.local",
		      "wrong audience", "\"lanyard-server\"", PSAT_DENIED);
	assert_int_equal(fake_requests(e->fake), 0);
	/* The token claims the audience, the API server disagrees. */
	expect_denied(e, "wrong-audience", "lanyard-server", "did not authenticate",
		      "token audiences", PSAT_DENIED);
	assert_int_equal(fake_requests(e->fake), 1);
}

static void rejected_tokens(void **state)
{
	struct env *e = *state;

	psat_for(e);
	expect_denied(e, "unauthenticated", "lanyard-server", "did not authenticate",
		      "service account token has expired", PSAT_DENIED);
	expect_denied(e, "other-sa", "lanyard-server", "service account prod:default is not allowed",
		      "prod-eu", PSAT_DENIED);
	/* Refused before any pod lookup. */
	assert_int_equal(fake_requests(e->fake), 2);
	expect_denied(e, "unknown-pod", "lanyard-server", "pod lanyard/lanyard-agent-gone1",
		      "not found", PSAT_DENIED);
	expect_denied(e, "replaced-pod", "lanyard-server", "the pod was replaced", AGENT_POD_UID,
		      PSAT_DENIED);
	expect_denied(e, "other-node", "lanyard-server",
		      "issued for a pod on node node-2, but pod lanyard/lanyard-agent-7xk2p runs "
		      "on node node-1",
		      NULL, PSAT_DENIED);
	e->api.pod_sa = "default";
	expect_denied(e, "authenticated", "lanyard-server", "runs as service account default",
		      NULL, PSAT_DENIED);
}

static void malformed_tokens(void **state)
{
	static const char *const bad[] = {"", "abc", "a.b", "a.b.c", "a.b.c.d", "eyJ9.e30.x",
					  "has space.e30.x"};
	struct env *e = *state;
	struct psat_result r;
	char err[512], *big;

	psat_for(e);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(psat_attest(e->psat, TD, bad[i], strlen(bad[i]), &r, err,
					     sizeof(err)),
				 PSAT_DENIED);
		assert_true(strstr(err, "not a JWT") || strstr(err, "missing") ||
			    strstr(err, "wrong audience"));
	}
	/* "e30" is {}: a JWT without aud. */
	assert_int_equal(psat_attest(e->psat, TD, "eyJ9.e30.x", 10, &r, err, sizeof(err)),
			 PSAT_DENIED);
	big = malloc(PSAT_TOKEN_MAX + 2);
	memset(big, 'a', PSAT_TOKEN_MAX + 1);
	big[PSAT_TOKEN_MAX + 1] = '\0';
	assert_int_equal(psat_attest(e->psat, TD, big, PSAT_TOKEN_MAX + 1, &r, err, sizeof(err)),
			 PSAT_DENIED);
	assert_non_null(strstr(err, "longer than"));
	free(big);
	assert_int_equal(fake_requests(e->fake), 0);
}

static void api_refuses_server(void **state)
{
	struct env *e = *state;

	psat_for(e);
	/* The server's own token is not accepted. */
	fake_write(e->dir, "token", "some-other-token\n");
	expect_denied(e, "authenticated", "lanyard-server",
		      "refused lanyard-server's own credentials", "HTTP 401", PSAT_UNAVAILABLE);
	/* Accepted, but without the RBAC rule. */
	fake_write(e->dir, "token", SERVER_TOKEN);
	e->api.review_status = 403;
	expect_denied(e, "authenticated", "lanyard-server", "HTTP 403",
		      "create on tokenreviews.authentication.k8s.io", PSAT_UNAVAILABLE);
	/* No token file at all. */
	unlink(e->token_path);
	expect_denied(e, "authenticated", "lanyard-server", "cannot reach the Kubernetes API",
		      e->token_path, PSAT_UNAVAILABLE);
}

static void api_timeout_and_unreachable(void **state)
{
	struct env *e = *state;
	char url[64];
	int64_t t0;

	/* Plain http so the handshake does not hit the delay. */
	fake_stop(e->fake);
	e->fake = fake_start(api_handler, &e->api, NULL, NULL);
	e->api.delay_ms = 1500;
	e->psat = new_psat(e, e->fake->url, 300);
	t0 = now_mono_us();
	expect_denied(e, "authenticated", "lanyard-server", "cannot reach the Kubernetes API",
		      "imed out", PSAT_UNAVAILABLE);
	assert_true(now_mono_us() - t0 < 1200 * 1000);
	psat_free(e->psat);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)fake_closed_port());
	e->psat = new_psat(e, url, 1000);
	expect_denied(e, "authenticated", "lanyard-server", "cannot reach the Kubernetes API", url,
		      PSAT_UNAVAILABLE);
}

static void api_tls(void **state)
{
	struct env *e = *state;
	struct psat_options o = {.cluster = "c", .allowed_sas = allowed, .n_allowed = 1};
	char err[512], other[4300];
	struct psat_result r;

	assert_int_equal(fake_make_cert(e->dir, "other"), 0);
	snprintf(other, sizeof(other), "%s/other.crt", e->dir);
	o.api.url = e->fake->url;
	o.api.token_path = e->token_path;
	o.api.ca_path = other;
	e->psat = psat_new(&o, err, sizeof(err));
	assert_non_null(e->psat);
	expect_denied(e, "authenticated", "lanyard-server", "cannot reach", "certificate",
		      PSAT_UNAVAILABLE);
	psat_free(e->psat);
	o.api.insecure_skip_verify = true;
	e->psat = psat_new(&o, err, sizeof(err));
	assert_int_equal(run(e->psat, "authenticated", "lanyard-server", &r, err, sizeof(err)), 0);
	assert_string_equal(r.agent_id, "spiffe://example.org/lanyard/agent/k8s_psat/c/" NODE1_UID);
	psat_result_free(&r);
}

static void options(void **state)
{
	static char *bad_entries[][1] = {{"nocolon"}, {"ns:"}, {":sa"}, {"NS:sa"}, {"ns:s a"}};
	struct psat_options o = {.cluster = "prod", .allowed_sas = allowed, .n_allowed = 1,
				 .api = {.url = "https://127.0.0.1:6443"}};
	struct k8s_api_options ao = {0};
	struct k8s_api *api;
	struct psat *p;
	char err[256];

	p = psat_new(&o, err, sizeof(err));
	assert_non_null(p);
	psat_free(p);
	psat_free(NULL);

	o.cluster = "a/b";
	assert_null(psat_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "cluster name"));
	o.cluster = "..";
	assert_null(psat_new(&o, err, sizeof(err)));
	o.cluster = NULL;
	assert_null(psat_new(&o, err, sizeof(err)));
	o.cluster = "prod";
	o.n_allowed = 0;
	assert_null(psat_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "at least one"));
	o.n_allowed = 1;
	for (size_t i = 0; i < ARRAY_LEN(bad_entries); i++) {
		o.allowed_sas = bad_entries[i];
		assert_null(psat_new(&o, err, sizeof(err)));
		assert_non_null(strstr(err, "namespace:name"));
	}
	o.allowed_sas = allowed;
	o.api.url = "127.0.0.1:6443";
	assert_null(psat_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "https://"));

	/* In-cluster discovery from the environment. */
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	assert_null(k8s_api_new(&ao, err, sizeof(err)));
	assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	api = k8s_api_new(&ao, err, sizeof(err));
	assert_non_null(api);
	assert_string_equal(k8s_api_url(api), "https://10.96.0.1:443");
	k8s_api_free(api);
	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	api = k8s_api_new(&ao, err, sizeof(err));
	assert_string_equal(k8s_api_url(api), "https://[fd00:10:96::1]:443");
	k8s_api_free(api);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	ao.url = "https://api.example:6443///";
	api = k8s_api_new(&ao, err, sizeof(err));
	assert_string_equal(k8s_api_url(api), "https://api.example:6443");
	k8s_api_free(api);
	k8s_api_free(NULL);
}

static void bundle_configmap(void **state)
{
	struct env *e = *state;
	struct k8s_api_options ao = {.url = e->fake->url, .token_path = e->token_path,
				     .insecure_skip_verify = true, .timeout_ms = 2000};
	struct k8s_api *api = k8s_api_new(&ao, NULL, 0);
	const char *pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
	char err[512], ns[64], name[254];
	bool changed;
	json_t *patch;

	assert_non_null(api);
	assert_int_equal(k8s_bundle_publish(api, "lanyard", "lanyard-bundle", NULL, pem, &changed,
					    err, sizeof(err)),
			 0);
	assert_true(changed);
	assert_string_equal(e->api.bundle, pem);
	patch = json_loads(e->api.patched, 0, NULL);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(patch, "data"), "bundle.crt")),
		pem);
	assert_int_equal(json_object_size(patch), 1);
	json_decref(patch);
	assert_int_equal(fake_requests(e->fake), 2);

	/* Unchanged: one GET, no PATCH. */
	assert_int_equal(k8s_bundle_publish(api, "lanyard", "lanyard-bundle", "bundle.crt", pem,
					    &changed, err, sizeof(err)),
			 0);
	assert_false(changed);
	assert_int_equal(fake_requests(e->fake), 3);

	e->api.no_configmap = true;
	assert_int_equal(k8s_bundle_publish(api, "lanyard", "lanyard-bundle", NULL, pem, &changed,
					    err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "does not exist"));
	k8s_api_free(api);

	assert_int_equal(k8s_bundle_parse_ref("lanyard/lanyard-bundle", ns, sizeof(ns), name,
					      sizeof(name), err, sizeof(err)),
			 0);
	assert_string_equal(ns, "lanyard");
	assert_string_equal(name, "lanyard-bundle");
	assert_int_equal(k8s_bundle_parse_ref("lanyard", ns, sizeof(ns), name, sizeof(name), err,
					      sizeof(err)),
			 -1);
	assert_int_equal(k8s_bundle_parse_ref("a/b/c", ns, sizeof(ns), name, sizeof(name), err,
					      sizeof(err)),
			 -1);
	assert_int_equal(k8s_bundle_parse_ref(NULL, ns, sizeof(ns), name, sizeof(name), err,
					      sizeof(err)),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(attest_ok_and_again, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(wrong_audience, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(rejected_tokens, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(malformed_tokens, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(api_refuses_server, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(api_timeout_and_unreachable, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(api_tls, env_setup, env_teardown),
		cmocka_unit_test(options),
		cmocka_unit_test_setup_teardown(bundle_configmap, env_setup, env_teardown),
	};

	log_setup(LOG_LEVEL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
