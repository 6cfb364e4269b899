/* fake_agent.c: see fake_agent.h. The test thread sets answers under a mutex and wakes the loop
 * with a uv_async; everything gRPC happens on the loop thread. */
#include "fake_agent.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "grpc_server.h"
#include "jwt.h"
#include "util.h"
#include "x509.h"

#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"
#include "keys.h"

#define MAX_STREAMS 64

struct fake_agent {
	uv_loop_t loop;
	uv_async_t wake;
	pthread_t thread;
	struct grpc_server *srv;

	pthread_mutex_t lock;
	/* Under lock (set by the test, read by the loop): */
	uint8_t *x509;
	size_t x509_len;
	int fail_status; /* 0 = serve x509 */
	char fail_msg[128];
	bool dirty;      /* something changed: push to the open streams */
	bool stopping;
	const lkey *jwt_key;
	char jwt_id[256];
	char jwt_td[64];

	/* Loop thread only: */
	struct grpc_call *streams[MAX_STREAMS];
	atomic_int n_streams;
	atomic_int x509_calls;
	atomic_int jwt_bundle_calls;
	bool done;
};

static struct fake_agent *fa_of(struct grpc_call *call)
{
	return grpc_server_ud(grpc_conn_server(grpc_call_conn(call)));
}

static bool header_ok(struct grpc_call *call)
{
	const char *h = grpc_call_header(call, "workload.spiffe.io");

	if (h && strcmp(h, "true") == 0)
		return true;
	grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "missing security header");
	return false;
}

static void m_x509(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fake_agent *fa = fa_of(call);
	int n;

	atomic_fetch_add(&fa->x509_calls, 1);
	if (!header_ok(call))
		return;
	pthread_mutex_lock(&fa->lock);
	if (fa->fail_status) {
		grpc_call_finish(call, fa->fail_status, fa->fail_msg);
		pthread_mutex_unlock(&fa->lock);
		return;
	}
	if (fa->x509)
		grpc_call_send(call, fa->x509, fa->x509_len);
	pthread_mutex_unlock(&fa->lock);
	n = atomic_load(&fa->n_streams);
	if (n >= MAX_STREAMS) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many streams");
		return;
	}
	grpc_call_ref(call);
	grpc_call_set_data(call, fa);
	fa->streams[n] = call;
	atomic_store(&fa->n_streams, n + 1);
}

static void m_jwt_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fake_agent *fa = fa_of(call);
	JWTSVIDRequest *req;
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID svid = JWTSVID__INIT, *svids[1] = {&svid};
	char *token = NULL;

	if (!header_ok(call))
		return;
	req = jwtsvidrequest__unpack(NULL, len, msg);
	if (!req || req->n_audience == 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "audience required");
		goto out;
	}
	pthread_mutex_lock(&fa->lock);
	if (fa->jwt_key)
		jwt_sign(fa->jwt_key, "k1", fa->jwt_id, (const char *const *)req->audience,
			 req->n_audience, now_unix(), now_unix() + 300, &token);
	svid.spiffe_id = fa->jwt_id;
	pthread_mutex_unlock(&fa->lock);
	if (!token) {
		grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED, "no identity");
		goto out;
	}
	svid.svid = token;
	resp.n_svids = 1;
	resp.svids = svids;
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
out:
	free(token);
	if (req)
		jwtsvidrequest__free_unpacked(req, NULL);
}

/* The JWK Set of the fake's key. Under lock. The caller frees. */
static char *jwks_json(struct fake_agent *fa)
{
	struct jwks *s = jwks_new();
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	char *json = NULL;

	if (s && fa->jwt_key && lkey_public_der(fa->jwt_key, &spki, &spki_len) == 0 &&
	    jwks_add(s, "k1", spki, spki_len) == 0)
		json = jwks_to_json(s);
	free(spki);
	jwks_free(s);
	return json;
}

static void m_jwt_bundles(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fake_agent *fa = fa_of(call);
	JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;
	JWTBundlesResponse__BundlesEntry e = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;
	JWTBundlesResponse__BundlesEntry *ep[1] = {&e};
	char key[80];
	char *json;

	atomic_fetch_add(&fa->jwt_bundle_calls, 1);
	if (!header_ok(call))
		return;
	pthread_mutex_lock(&fa->lock);
	json = jwks_json(fa);
	snprintf(key, sizeof(key), "spiffe://%s", fa->jwt_td);
	pthread_mutex_unlock(&fa->lock);
	if (!json) {
		grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED, "no bundle");
		return;
	}
	e.key = key;
	e.value.data = (uint8_t *)json;
	e.value.len = strlen(json);
	resp.n_bundles = 1;
	resp.bundles = ep;
	grpc_call_send_pb(call, &resp.base);
	/* A stream: the first message is all the tests read; end it cleanly. */
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	free(json);
}

static void m_validate(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fake_agent *fa = fa_of(call);
	ValidateJWTSVIDRequest *req;
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
	Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry f = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	Google__Protobuf__Struct__FieldsEntry *fp[1] = {&f};
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	struct jwks *keys = NULL;
	struct jwt_claims c = {0};
	char err[256], *json = NULL;

	if (!header_ok(call))
		return;
	req = validate_jwtsvidrequest__unpack(NULL, len, msg);
	pthread_mutex_lock(&fa->lock);
	json = jwks_json(fa);
	pthread_mutex_unlock(&fa->lock);
	if (!req || !json || jwks_from_json(json, strlen(json), &keys, err, sizeof(err)) < 0 ||
	    jwt_validate(req->svid, keys, req->audience, now_unix(), &c, err, sizeof(err)) < 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, req ? err : "bad request");
		goto out;
	}
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v.string_value = c.sub;
	f.key = "sub";
	f.value = &v;
	st.n_fields = 1;
	st.fields = fp;
	resp.spiffe_id = c.sub;
	resp.claims = &st;
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
out:
	jwt_claims_free(&c);
	jwks_free(keys);
	free(json);
	if (req)
		validate_jwtsvidrequest__free_unpacked(req, NULL);
}

static const struct grpc_method methods[] = {
	{.path = "/SpiffeWorkloadAPI/FetchX509SVID", .server_streaming = true, .on_request = m_x509},
	{.path = "/SpiffeWorkloadAPI/FetchJWTSVID", .on_request = m_jwt_svid},
	{.path = "/SpiffeWorkloadAPI/FetchJWTBundles", .server_streaming = true,
	 .on_request = m_jwt_bundles},
	{.path = "/SpiffeWorkloadAPI/ValidateJWTSVID", .on_request = m_validate},
};

static void on_call_closed(struct grpc_call *call)
{
	struct fake_agent *fa = grpc_call_data(call);
	int n;

	if (!fa)
		return;
	n = atomic_load(&fa->n_streams);
	for (int i = 0; i < n; i++) {
		if (fa->streams[i] != call)
			continue;
		fa->streams[i] = fa->streams[n - 1];
		atomic_store(&fa->n_streams, n - 1);
		grpc_call_unref(call);
		break;
	}
}

static void server_done(void *arg)
{
	struct fake_agent *fa = arg;

	fa->done = true;
}

static void on_wake(uv_async_t *a)
{
	struct fake_agent *fa = a->data;
	struct grpc_call *calls[MAX_STREAMS];
	int n;

	pthread_mutex_lock(&fa->lock);
	n = atomic_load(&fa->n_streams);
	memcpy(calls, fa->streams, sizeof(calls[0]) * (size_t)n);
	/* A copy: finishing a call may run on_call_closed, which edits the list. */
	for (int i = 0; i < n; i++)
		grpc_call_ref(calls[i]);
	for (int i = 0; i < n && fa->dirty; i++) {
		if (grpc_call_is_closed(calls[i]))
			continue;
		if (fa->stopping)
			grpc_call_finish(calls[i], GRPC_STATUS_UNAVAILABLE, "agent stopping");
		else if (fa->fail_status)
			grpc_call_finish(calls[i], fa->fail_status, fa->fail_msg);
		else if (fa->x509)
			grpc_call_send(calls[i], fa->x509, fa->x509_len);
	}
	fa->dirty = false;
	if (fa->stopping) {
		grpc_server_shutdown(fa->srv, 100, server_done, fa);
		uv_close((uv_handle_t *)&fa->wake, NULL);
	}
	pthread_mutex_unlock(&fa->lock);
	for (int i = 0; i < n; i++)
		grpc_call_unref(calls[i]);
}

static void *loop_main(void *arg)
{
	struct fake_agent *fa = arg;

	uv_run(&fa->loop, UV_RUN_DEFAULT);
	keys_release_thread_ecc_cache();
	return NULL;
}

int fake_agent_start(const char *path, struct fake_agent **out)
{
	struct fake_agent *fa = calloc(1, sizeof(*fa));
	struct grpc_server_config cfg = {
		.methods = methods,
		.n_methods = ARRAY_LEN(methods),
		.on_call_closed = on_call_closed,
	};
	char err[256];

	if (!fa)
		return -1;
	cfg.ud = fa;
	pthread_mutex_init(&fa->lock, NULL);
	uv_loop_init(&fa->loop);
	if (grpc_server_listen_unix(&fa->loop, path, &cfg, &fa->srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "fake agent: %s\n", err);
		uv_loop_close(&fa->loop);
		free(fa);
		return -1;
	}
	uv_async_init(&fa->loop, &fa->wake, on_wake);
	fa->wake.data = fa;
	if (pthread_create(&fa->thread, NULL, loop_main, fa) != 0)
		return -1;
	*out = fa;
	return 0;
}

void fake_agent_stop(struct fake_agent *fa)
{
	if (!fa)
		return;
	pthread_mutex_lock(&fa->lock);
	fa->stopping = true;
	fa->dirty = true;
	pthread_mutex_unlock(&fa->lock);
	uv_async_send(&fa->wake);
	pthread_join(fa->thread, NULL);
	if (uv_loop_close(&fa->loop) != 0)
		fprintf(stderr, "fake agent: loop still has handles\n");
	free(fa->x509);
	pthread_mutex_destroy(&fa->lock);
	free(fa);
}

void fake_agent_set_x509(struct fake_agent *fa, const uint8_t *msg, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	memcpy(copy, msg, len);
	pthread_mutex_lock(&fa->lock);
	free(fa->x509);
	fa->x509 = copy;
	fa->x509_len = len;
	fa->fail_status = 0;
	fa->dirty = true;
	pthread_mutex_unlock(&fa->lock);
	uv_async_send(&fa->wake);
}

void fake_agent_fail_x509(struct fake_agent *fa, int status, const char *message)
{
	pthread_mutex_lock(&fa->lock);
	fa->fail_status = status;
	snprintf(fa->fail_msg, sizeof(fa->fail_msg), "%s", message);
	fa->dirty = true;
	pthread_mutex_unlock(&fa->lock);
	uv_async_send(&fa->wake);
}

int fake_agent_x509_streams(struct fake_agent *fa)
{
	return atomic_load(&fa->n_streams);
}

int fake_agent_x509_calls(struct fake_agent *fa)
{
	return atomic_load(&fa->x509_calls);
}

void fake_agent_set_jwt(struct fake_agent *fa, const lkey *key, const char *spiffe_id,
			const char *td)
{
	pthread_mutex_lock(&fa->lock);
	fa->jwt_key = key;
	snprintf(fa->jwt_id, sizeof(fa->jwt_id), "%s", spiffe_id);
	snprintf(fa->jwt_td, sizeof(fa->jwt_td), "%s", td);
	pthread_mutex_unlock(&fa->lock);
}

int fake_agent_jwt_bundle_calls(struct fake_agent *fa)
{
	return atomic_load(&fa->jwt_bundle_calls);
}

/* ---- PKI ---- */

int test_ca_new(const char *td, struct test_ca *ca)
{
	char id[128];
	struct x509_ca_params p = {.spiffe_id = id, .common_name = "test CA"};

	memset(ca, 0, sizeof(*ca));
	snprintf(id, sizeof(id), "spiffe://%s", td);
	p.not_before = now_unix() - 60;
	p.not_after = now_unix() + 86400;
	if (lkey_generate(KEY_EC_P256, &ca->key) < 0 ||
	    x509_make_ca(ca->key, NULL, NULL, 0, &p, &ca->der, &ca->len) < 0) {
		test_ca_free(ca);
		return -1;
	}
	return 0;
}

void test_ca_free(struct test_ca *ca)
{
	lkey_free(ca->key);
	free(ca->der);
	memset(ca, 0, sizeof(*ca));
}

int test_svid_new(const struct test_ca *ca, const char *spiffe_id, int64_t ttl,
		  struct test_svid *out)
{
	struct x509_leaf_params p = {.spiffe_id = spiffe_id};
	lkey *k = NULL;
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	snprintf(out->spiffe_id, sizeof(out->spiffe_id), "%s", spiffe_id);
	p.not_before = now_unix() - 10;
	p.not_after = now_unix() + ttl;
	if (lkey_generate(KEY_EC_P256, &k) < 0 || lkey_public_der(k, &spki, &spki_len) < 0)
		goto out;
	p.spki = spki;
	p.spki_len = spki_len;
	if (x509_sign_leaf(ca->key, ca->der, ca->len, &p, &out->chain, &out->chain_len) < 0 ||
	    lkey_to_pkcs8_der(k, &out->key, &out->key_len) < 0)
		goto out;
	out->bundle = ca->der;
	out->bundle_len = ca->len;
	ret = 0;
out:
	free(spki);
	lkey_free(k);
	if (ret < 0)
		test_svid_free(out);
	return ret;
}

void test_svid_free(struct test_svid *s)
{
	free(s->chain);
	if (s->key)
		secure_zero(s->key, s->key_len);
	free(s->key);
	memset(s, 0, sizeof(*s));
}

uint8_t *test_x509_response(const struct test_svid *svids, size_t n, const char *const *fed_ids,
			    const uint8_t *const *fed_der, const size_t *fed_len, size_t n_fed,
			    size_t *len)
{
	X509SVIDResponse r = X509_SVIDRESPONSE__INIT;
	X509SVID *sv = calloc(n + 1, sizeof(*sv));
	X509SVID **svp = calloc(n + 1, sizeof(*svp));
	X509SVIDResponse__FederatedBundlesEntry *fe = calloc(n_fed + 1, sizeof(*fe));
	X509SVIDResponse__FederatedBundlesEntry **fep = calloc(n_fed + 1, sizeof(*fep));
	uint8_t *out = NULL;

	if (!sv || !svp || !fe || !fep)
		goto done;
	for (size_t i = 0; i < n; i++) {
		x509_svid__init(&sv[i]);
		sv[i].spiffe_id = (char *)svids[i].spiffe_id;
		sv[i].hint = (char *)svids[i].hint;
		sv[i].x509_svid.data = svids[i].chain;
		sv[i].x509_svid.len = svids[i].chain_len;
		sv[i].x509_svid_key.data = svids[i].key;
		sv[i].x509_svid_key.len = svids[i].key_len;
		sv[i].bundle.data = (uint8_t *)svids[i].bundle;
		sv[i].bundle.len = svids[i].bundle_len;
		svp[i] = &sv[i];
	}
	for (size_t i = 0; i < n_fed; i++) {
		x509_svidresponse__federated_bundles_entry__init(&fe[i]);
		fe[i].key = (char *)fed_ids[i];
		fe[i].value.data = (uint8_t *)fed_der[i];
		fe[i].value.len = fed_len[i];
		fep[i] = &fe[i];
	}
	r.n_svids = n;
	r.svids = svp;
	r.n_federated_bundles = n_fed;
	r.federated_bundles = fep;
	*len = x509_svidresponse__get_packed_size(&r);
	out = malloc(*len ? *len : 1);
	if (out)
		x509_svidresponse__pack(&r, out);
done:
	free(sv);
	free(svp);
	free(fe);
	free(fep);
	return out;
}
