/* Tests of agent/workload_api.c with common/workload_client.c: the Workload API runs on a libuv
 * loop in a second thread, on a socket in a temp directory, serving fabricated snapshots (real
 * certificates and JWT keys from the crypto module); the test thread is the workload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "grpc.h"
#include "api_cli.h"
#include "attestor.h"
#include "grpc_client.h"
#include "jwt.h"
#include "keys.h"
#include "svid_cache.h"
#include "util.h"
#include "workload_api.h"
#include "workload_client.h"
#include "x509.h"

#include "health.pb-c.h"
#include "workload.pb-c.h"

#define TD "example.org"
#define ID_A "spiffe://example.org/workload/a"
#define ID_B "spiffe://example.org/workload/b"
#define KID "kid-1"

struct fixture {
	uv_loop_t loop;
	uv_async_t job_async;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	void (*job)(struct fixture *f, void *arg);
	void *job_arg;
	bool job_done;

	struct svid_cache *cache;
	struct workload_api *api;
	char dir[64];
	char sock[128];
	int start_rc;
	char start_err[256];
	unsigned max_conns_per_uid;
	bool unix_only; /* the unix attestor alone, without path selectors: attestation inline */

	lkey *ca_key, *jwt_key;
	uint8_t *ca_der;
	size_t ca_len;
	char *jwks_json;
	char uid_sel[64];
	int jwt_calls;
};

static struct fixture *F;

/* ---- running things on the loop thread ---- */

static void on_job(uv_async_t *h)
{
	struct fixture *f = h->data;

	pthread_mutex_lock(&f->mu);
	if (f->job) {
		f->job(f, f->job_arg);
		f->job = NULL;
		f->job_done = true;
		pthread_cond_broadcast(&f->cv);
	}
	pthread_mutex_unlock(&f->mu);
}

static void on_loop(struct fixture *f, void (*job)(struct fixture *, void *), void *arg)
{
	pthread_mutex_lock(&f->mu);
	f->job = job;
	f->job_arg = arg;
	f->job_done = false;
	uv_async_send(&f->job_async);
	while (!f->job_done)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

static void *loop_main(void *arg)
{
	struct fixture *f = arg;

	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- fake JWT minting (stands for the node client) ---- */

static int fake_fetch_jwt(void *ud, const char *entry_id, char *const *audience, size_t n_audience,
			  node_jwt_cb cb, void *cb_ud)
{
	struct fixture *f = ud;
	const char *sub = strcmp(entry_id, "e-b") == 0 ? ID_B : ID_A;
	char *tok = NULL;
	int64_t now = now_unix();

	__atomic_add_fetch(&f->jwt_calls, 1, __ATOMIC_RELAXED);
	if (strcmp(entry_id, "e-fail") == 0) {
		cb(cb_ud, GRPC_STATUS_UNAVAILABLE, NULL, 0, "server unreachable");
		return 0;
	}
	assert_int_equal(jwt_sign(f->jwt_key, KID, sub, (const char *const *)audience, n_audience,
				  now, now + 300, &tok),
			 0);
	/* Answer at once, from inside the call: the API must cope with that. */
	cb(cb_ud, GRPC_STATUS_OK, tok, now + 300, NULL);
	free(tok);
	return 0;
}

/* A second attestor, to check that selectors of several attestors are merged. */
static int fake_attest(void *state, const struct caller *c, struct selector_list *out, char *err,
		       size_t errlen)
{
	return selector_list_addf(out, "fake:pid-known:%s", c->pid > 0 ? "yes" : "no");
}

static const struct attestor_ops fake_ops = {.name = "fake", .attest = fake_attest};

/* Starts an API into f->api, or into *arg when arg is not NULL. */
static void job_start(struct fixture *f, void *arg)
{
	struct attestor *fake = xcalloc(1, sizeof(*fake));
	struct attestor *extra[] = {fake};

	struct workload_api_opts o = {
		.socket_path = f->sock,
		.trust_domain = TD,
		.unix_path_selectors = true,
		.sha256_max_size = 64 << 20,
		.max_conns_per_uid = f->max_conns_per_uid,
		.fetch_jwt = fake_fetch_jwt,
		.fetch_jwt_ud = f,
		.attestors = extra,
		.n_attestors = 1,
	};

	fake->ops = &fake_ops;
	if (f->unix_only) {
		free(fake);
		o.attestors = NULL;
		o.n_attestors = 0;
		o.unix_path_selectors = false;
	}

	f->start_rc = workload_api_start_opts(&f->loop, &o, f->cache, NULL,
					      arg ? (struct workload_api **)arg : &f->api,
					      f->start_err, sizeof(f->start_err));
}

static void job_stop(struct fixture *f, void *arg)
{
	workload_api_stop(f->api);
	f->api = NULL;
}

static void job_stats(struct fixture *f, void *arg)
{
	workload_api_stats(f->api, arg);
}

static void job_shutdown(struct fixture *f, void *arg)
{
	if (f->api)
		workload_api_stop(f->api);
	f->api = NULL;
	svid_cache_free(f->cache);
	f->cache = NULL;
	uv_close((uv_handle_t *)&f->job_async, NULL);
}

/* ---- fabricated snapshots ---- */

struct leaf {
	uint8_t *der, *key;
	size_t der_len, key_len;
};

static void make_leaf(struct fixture *f, const char *id, struct leaf *out)
{
	struct x509_leaf_params p = {.spiffe_id = id};
	uint8_t *spki;
	size_t spki_len;
	lkey *k;

	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
	p.spki = spki;
	p.spki_len = spki_len;
	p.not_before = now_unix() - 10;
	p.not_after = now_unix() + 3600;
	assert_int_equal(x509_sign_leaf(f->ca_key, f->ca_der, f->ca_len, &p, &out->der, &out->der_len),
			 0);
	assert_int_equal(lkey_to_pkcs8_der(k, &out->key, &out->key_len), 0);
	free(spki);
	lkey_free(k);
}

static struct svid *mk_svid(struct fixture *f, const char *entry_id, const char *id,
			    const char *hint, struct leaf *keep)
{
	struct svid *v = xcalloc(1, sizeof(*v));
	struct x509_info info;
	struct leaf l;
	char err[128];

	make_leaf(f, id, &l);
	assert_int_equal(x509_parse(l.der, l.der_len, &info, err, sizeof(err)), 0);
	v->refs = 1;
	v->entry_id = xstrdup(entry_id);
	v->spiffe_id = xstrdup(id);
	v->hint = xstrdup(hint);
	v->chain = l.der;
	v->chain_len = l.der_len;
	v->key = l.key;
	v->key_len = l.key_len;
	snprintf(v->serial, sizeof(v->serial), "%s", info.serial);
	v->not_before = info.not_before;
	v->not_after = info.not_after;
	x509_info_free(&info);
	if (keep) {
		keep->der = xmalloc(l.der_len);
		memcpy(keep->der, l.der, l.der_len);
		keep->der_len = l.der_len;
		keep->key = xmalloc(l.key_len);
		memcpy(keep->key, l.key, l.key_len);
		keep->key_len = l.key_len;
	}
	return v;
}

static void leaf_free(struct leaf *l)
{
	free(l->der);
	free(l->key);
}

static void add_entry(struct snapshot *s, const char *id, const char *spiffe_id,
		      const char *const *sel, size_t n_sel)
{
	struct entry e = {.spiffe_id = (char *)spiffe_id,
				.parent_id = "spiffe://example.org/agent", .hint = "",
				.selectors = (char **)sel, .n_selectors = n_sel, .x509_svid_ttl = 3600,
				.jwt_svid_ttl = 300, .revision = 1};
	snprintf(e.id, sizeof(e.id), "%s", id);

	s->entries = xrealloc(s->entries, (s->n_entries + 1) * sizeof(*s->entries));
	s->entries[s->n_entries++] = cache_entry_dup(&e);
}

static void add_svid(struct snapshot *s, struct svid *v)
{
	s->svids = xrealloc(s->svids, (s->n_svids + 1) * sizeof(*s->svids));
	s->svids[s->n_svids++] = v;
}

/* A ready snapshot with no entries. */
static struct snapshot *base_snapshot(struct fixture *f)
{
	struct snapshot *s = snapshot_new();

	free(s->trust_domain);
	s->trust_domain = xstrdup(TD);
	s->bundle = xmalloc(f->ca_len);
	memcpy(s->bundle, f->ca_der, f->ca_len);
	s->bundle_len = f->ca_len;
	free(s->jwt_bundle);
	s->jwt_bundle = xstrdup(f->jwks_json);
	s->bundle_sequence = 1;
	s->synced = true;
	return s;
}

/* Entry e-a for this process's uid with an SVID; keep gets a copy of its certificate and key. */
static struct snapshot *entitled_snapshot(struct fixture *f, struct leaf *keep)
{
	struct snapshot *s = base_snapshot(f);
	const char *sel[] = {f->uid_sel};

	add_entry(s, "e-a", ID_A, sel, 1);
	add_svid(s, mk_svid(f, "e-a", ID_A, "internal", keep));
	return s;
}

/* Publishes and waits until the loop has run the subscribers (the publication is coalesced
 * into an async callback; a job queued behind it runs after). */
static void publish(struct fixture *f, struct snapshot *s)
{
	svid_cache_publish(f->cache, s);
	for (int i = 0; i < 3; i++) {
		struct workload_api_stats st;

		on_loop(f, job_stats, &st);
	}
}

/* ---- setup ---- */

static int setup_opts(void **state, unsigned max_conns_per_uid, bool unix_only)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct x509_ca_params cp = {.spiffe_id = "spiffe://" TD, .common_name = "Test CA"};
	struct jwks *keys = jwks_new();
	uint8_t *spki;
	size_t spki_len;

	strcpy(f->dir, "/tmp/lanyard-wlapi-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	/* A parent directory that does not exist yet: the API creates it. */
	snprintf(f->sock, sizeof(f->sock), "%s/agent/api.sock", f->dir);
	snprintf(f->uid_sel, sizeof(f->uid_sel), "unix:uid:%u", (unsigned)geteuid());
	f->max_conns_per_uid = max_conns_per_uid;
	f->unix_only = unix_only;

	assert_int_equal(lkey_generate(KEY_EC_P256, &f->ca_key), 0);
	cp.not_before = now_unix() - 60;
	cp.not_after = now_unix() + 86400;
	assert_int_equal(x509_make_ca(f->ca_key, NULL, NULL, 0, &cp, &f->ca_der, &f->ca_len), 0);
	assert_int_equal(lkey_generate(KEY_EC_P256, &f->jwt_key), 0);
	assert_int_equal(lkey_public_der(f->jwt_key, &spki, &spki_len), 0);
	assert_int_equal(jwks_add(keys, KID, spki, spki_len), 0);
	f->jwks_json = jwks_to_json(keys);
	assert_non_null(f->jwks_json);
	free(spki);
	jwks_free(keys);

	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_async_init(&f->loop, &f->job_async, on_job), 0);
	f->job_async.data = f;
	f->cache = svid_cache_new(&f->loop);
	assert_non_null(f->cache);
	assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
	on_loop(f, job_start, NULL);
	if (f->start_rc != 0)
		fail_msg("workload_api_start: %s", f->start_err);
	F = f;
	*state = f;
	return 0;
}

static int setup_limit(void **state, unsigned max_conns_per_uid)
{
	return setup_opts(state, max_conns_per_uid, false);
}

static int setup(void **state)
{
	return setup_limit(state, 16);
}

static int setup_many(void **state)
{
	return setup_limit(state, 64);
}

/* The same API with attestation on the loop (no attestor that may block). */
static int setup_inline(void **state)
{
	return setup_opts(state, 16, true);
}

static int setup_inline_many(void **state)
{
	return setup_opts(state, 64, true);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	on_loop(f, job_shutdown, NULL);
	pthread_join(f->thread, NULL);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	lkey_free(f->ca_key);
	lkey_free(f->jwt_key);
	free(f->ca_der);
	free(f->jwks_json);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct workload_client *connect_client(struct fixture *f)
{
	struct workload_client *c = NULL;
	char err[256];

	if (workload_client_connect(f->sock, 5000, &c, err, sizeof(err)) != 0)
		fail_msg("connect: %s", err);
	workload_client_set_timeout(c, 5000);
	return c;
}

/* ---- tests ---- */

static void socket_modes(void **state)
{
	struct fixture *f = *state;
	char dir[128];
	struct stat st;

	assert_int_equal(stat(f->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0777);
	snprintf(dir, sizeof(dir), "%s/agent", f->dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);
}

static void not_ready_then_ready(void **state)
{
	struct fixture *f = *state;
	struct workload_client *c = connect_client(f);
	struct workload_x509_context x;
	struct grpc_client *g;
	Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *hresp;
	uint8_t reqbuf[64], *resp;
	size_t reqlen, resplen;
	int status = -1;
	char err[256];

	/* Nothing published yet: not ready. */
	assert_int_equal(workload_fetch_x509(c, &x, &status, err, sizeof(err)), WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_UNAVAILABLE);

	/* Health needs no security header. */
	assert_int_equal(grpc_client_connect_unix(f->sock, 5000, &g, err, sizeof(err)), 0);
	reqlen = grpc__health__v1__health_check_request__pack(&hreq, reqbuf);
	assert_int_equal(grpc_client_unary(g, "/grpc.health.v1.Health/Check", NULL, 0, reqbuf, reqlen,
					   5000, &resp, &resplen, &status, err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	hresp = grpc__health__v1__health_check_response__unpack(NULL, resplen, resp);
	assert_non_null(hresp);
	assert_int_equal(hresp->status,
			 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	grpc__health__v1__health_check_response__free_unpacked(hresp, NULL);
	free(resp);

	publish(f, base_snapshot(f));
	assert_int_equal(grpc_client_unary(g, "/grpc.health.v1.Health/Check", NULL, 0, reqbuf, reqlen,
					   5000, &resp, &resplen, &status, err, sizeof(err)),
			 0);
	hresp = grpc__health__v1__health_check_response__unpack(NULL, resplen, resp);
	assert_non_null(hresp);
	assert_int_equal(hresp->status,
			 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	grpc__health__v1__health_check_response__free_unpacked(hresp, NULL);
	free(resp);

	/* An unknown service name. */
	hreq.service = "nope";
	reqlen = grpc__health__v1__health_check_request__pack(&hreq, reqbuf);
	assert_int_equal(grpc_client_unary(g, "/grpc.health.v1.Health/Check", NULL, 0, reqbuf, reqlen,
					   5000, &resp, &resplen, &status, err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_NOT_FOUND);
	free(resp);
	grpc_client_close(g);
	workload_client_close(c);
}

static void fetch_x509_entitled(void **state)
{
	struct fixture *f = *state;
	struct workload_client *c;
	struct workload_x509_context x;
	struct leaf keep;
	int status = -1;
	char err[256];

	publish(f, entitled_snapshot(f, &keep));
	c = connect_client(f);
	if (workload_fetch_x509(c, &x, &status, err, sizeof(err)) != 0)
		fail_msg("fetch: %s", err);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_int_equal(x.n_svids, 1);
	assert_string_equal(x.svids[0].spiffe_id, ID_A);
	assert_string_equal(x.svids[0].hint, "internal");
	assert_int_equal(x.svids[0].chain_len, keep.der_len);
	assert_memory_equal(x.svids[0].chain, keep.der, keep.der_len);
	assert_int_equal(x.svids[0].key_len, keep.key_len);
	assert_memory_equal(x.svids[0].key, keep.key, keep.key_len);
	assert_int_equal(x.svids[0].bundle_len, f->ca_len);
	assert_memory_equal(x.svids[0].bundle, f->ca_der, f->ca_len);
	/* The chain verifies against the bundle it came with. */
	assert_int_equal(x509_verify(x.svids[0].chain, x.svids[0].chain_len, x.svids[0].bundle,
				     x.svids[0].bundle_len, now_unix(), err, sizeof(err)),
			 0);
	assert_int_equal(x.n_federated, 0);
	workload_x509_context_free(&x);
	workload_x509_context_free(&x);
	leaf_free(&keep);
	workload_client_close(c);
}

static void extra_attestor(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = base_snapshot(f);
	const char *sel[] = {"fake:pid-known:yes", f->uid_sel};
	struct workload_client *c;
	struct workload_x509_context x;
	int status = -1;
	char err[256];

	add_entry(s, "e-b", ID_B, sel, 2);
	add_svid(s, mk_svid(f, "e-b", ID_B, "", NULL));
	publish(f, s);
	c = connect_client(f);
	if (workload_fetch_x509(c, &x, &status, err, sizeof(err)) != 0)
		fail_msg("fetch: %s", err);
	assert_int_equal(x.n_svids, 1);
	assert_string_equal(x.svids[0].spiffe_id, ID_B);
	workload_x509_context_free(&x);
	workload_client_close(c);
}

static void permission_denied(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = base_snapshot(f);
	const char *sel[] = {"unix:uid:4000000001", "unix:user:nobody-really"};
	const char *sel2[] = {"unix:gid:4000000002", f->uid_sel};
	struct workload_client *c;
	struct workload_x509_context x;
	struct workload_bundles b;
	struct workload_jwt_svids j;
	const char *aud[] = {"aud"};
	int status = -1;
	char err[256];

	/* Entries for other processes only (one shares our uid but also wants another gid). */
	add_entry(s, "e-other", ID_B, sel, 2);
	add_entry(s, "e-partial", ID_B, sel2, 2);
	publish(f, s);
	c = connect_client(f);
	assert_int_equal(workload_fetch_x509(c, &x, &status, err, sizeof(err)), WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_PERMISSION_DENIED);
	assert_non_null(strstr(err, "no identity issued"));
	assert_int_equal(workload_fetch_x509_bundles(c, &b, &status, err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_PERMISSION_DENIED);
	assert_int_equal(workload_fetch_jwt(c, aud, 1, NULL, &j, &status, err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_PERMISSION_DENIED);
	workload_client_close(c);
}

static void invalid_argument_without_header(void **state)
{
	struct fixture *f = *state;
	struct grpc_client *g;
	struct grpc_header wrong = {.name = "workload.spiffe.io", .value = "false"};
	uint8_t *resp = NULL;
	size_t resplen;
	int status = -1;
	char err[256];

	publish(f, entitled_snapshot(f, NULL));
	assert_int_equal(grpc_client_connect_unix(f->sock, 5000, &g, err, sizeof(err)), 0);
	assert_int_equal(grpc_client_unary(g, "/SpiffeWorkloadAPI/FetchJWTBundles", NULL, 0,
					   (const uint8_t *)"", 0, 5000, &resp, &resplen, &status,
					   err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(err, "security header missing from request");
	free(resp);
	resp = NULL;
	assert_int_equal(grpc_client_unary(g, "/SpiffeWorkloadAPI/FetchX509SVID", &wrong, 1,
					   (const uint8_t *)"", 0, 5000, &resp, &resplen, &status,
					   err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	free(resp);
	resp = NULL;
	/* Unknown methods, including the optional WIT ones. */
	assert_int_equal(grpc_client_unary(g, "/SpiffeWorkloadAPI/FetchWITSVID", NULL, 0,
					   (const uint8_t *)"", 0, 5000, &resp, &resplen, &status,
					   err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_UNIMPLEMENTED);
	free(resp);
	grpc_client_close(g);
}

static int x509_next(struct grpc_stream *s, int timeout_ms, X509SVIDResponse **out, int *status,
		     char *err, size_t errlen)
{
	uint8_t *msg = NULL;
	size_t len = 0;
	int r = grpc_stream_next(s, timeout_ms, &msg, &len, status, err, errlen);

	*out = NULL;
	if (r == 1) {
		*out = x509_svidresponse__unpack(NULL, len, msg);
		assert_non_null(*out);
		free(msg);
	}
	return r;
}

static void stream_updates_and_end(void **state)
{
	struct fixture *f = *state;
	struct grpc_header h = {.name = "workload.spiffe.io", .value = "true"};
	const char *sel[] = {f->uid_sel};
	struct grpc_client *g;
	struct grpc_stream *s;
	X509SVIDResponse *r = NULL;
	struct snapshot *snap, *cur;
	struct leaf first, second;
	struct workload_api_stats st;
	int status = -1;
	char err[256];

	publish(f, entitled_snapshot(f, &first));
	assert_int_equal(grpc_client_connect_unix(f->sock, 5000, &g, err, sizeof(err)), 0);
	assert_int_equal(grpc_client_stream_open(g, "/SpiffeWorkloadAPI/FetchX509SVID", &h, 1,
						 (const uint8_t *)"", 0, &s, err, sizeof(err)),
			 0);
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 1);
	assert_int_equal(r->n_svids, 1);
	assert_memory_equal(r->svids[0]->x509_svid.data, first.der, first.der_len);
	x509_svidresponse__free_unpacked(r, NULL);

	/* An identical state (new generation, same SVIDs): no message. */
	cur = svid_cache_acquire(f->cache);
	publish(f, snapshot_copy(cur));
	snapshot_release(cur);
	assert_int_equal(x509_next(s, 300, &r, &status, err, sizeof(err)), 0);

	/* Rotation: the new SVID arrives on the open stream. */
	publish(f, entitled_snapshot(f, &second));
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 1);
	assert_int_equal(r->n_svids, 1);
	assert_memory_equal(r->svids[0]->x509_svid.data, second.der, second.der_len);
	x509_svidresponse__free_unpacked(r, NULL);

	/* A second identity added: full state, both SVIDs. */
	snap = entitled_snapshot(f, NULL);
	add_entry(snap, "e-b", ID_B, sel, 1);
	add_svid(snap, mk_svid(f, "e-b", ID_B, "", NULL));
	publish(f, snap);
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 1);
	assert_int_equal(r->n_svids, 2);
	assert_string_equal(r->svids[0]->spiffe_id, ID_A);
	assert_string_equal(r->svids[1]->spiffe_id, ID_B);
	x509_svidresponse__free_unpacked(r, NULL);

	on_loop(f, job_stats, &st);
	assert_int_equal(st.streams, 1);
	assert_true(st.updates_sent >= 2);

	/* Every identity removed: the stream ends with PERMISSION_DENIED. */
	publish(f, base_snapshot(f));
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 2);
	assert_int_equal(status, GRPC_STATUS_PERMISSION_DENIED);
	grpc_stream_cancel(s);
	grpc_client_close(g);
	leaf_free(&first);
	leaf_free(&second);

	on_loop(f, job_stats, &st);
	assert_int_equal(st.streams, 0);
	assert_true(st.requests[WL_METHOD_FETCH_X509_SVID][GRPC_STATUS_PERMISSION_DENIED] >= 1);
}

/* Entitled before the SVID is minted: the stream waits for it. A bundle stream gets a message
 * when the bundle changes and none when only SVIDs change. */
static void stream_waits_for_svid(void **state)
{
	struct fixture *f = *state;
	struct grpc_header h = {.name = "workload.spiffe.io", .value = "true"};
	const char *sel[] = {f->uid_sel};
	struct grpc_client *g;
	struct grpc_stream *s, *bs;
	struct snapshot *snap;
	X509SVIDResponse *r = NULL;
	X509BundlesResponse *br;
	uint8_t *msg;
	size_t len;
	int status;
	char err[256];

	snap = base_snapshot(f);
	add_entry(snap, "e-a", ID_A, sel, 1);
	publish(f, snap);
	assert_int_equal(grpc_client_connect_unix(f->sock, 5000, &g, err, sizeof(err)), 0);
	assert_int_equal(grpc_client_stream_open(g, "/SpiffeWorkloadAPI/FetchX509SVID", &h, 1,
						 (const uint8_t *)"", 0, &s, err, sizeof(err)),
			 0);
	assert_int_equal(grpc_client_stream_open(g, "/SpiffeWorkloadAPI/FetchX509Bundles", &h, 1,
						 (const uint8_t *)"", 0, &bs, err, sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(bs, 5000, &msg, &len, &status, err, sizeof(err)), 1);
	free(msg);
	assert_int_equal(x509_next(s, 300, &r, &status, err, sizeof(err)), 0);

	publish(f, entitled_snapshot(f, NULL));
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 1);
	assert_int_equal(r->n_svids, 1);
	x509_svidresponse__free_unpacked(r, NULL);
	/* SVIDs changed, the bundle did not. */
	assert_int_equal(grpc_stream_next(bs, 300, &msg, &len, &status, err, sizeof(err)), 0);

	/* A new bundle (a second CA appended) reaches both streams. */
	snap = entitled_snapshot(f, NULL);
	snap->bundle = xrealloc(snap->bundle, 2 * f->ca_len);
	memcpy(snap->bundle + f->ca_len, f->ca_der, f->ca_len);
	snap->bundle_len = 2 * f->ca_len;
	publish(f, snap);
	assert_int_equal(grpc_stream_next(bs, 5000, &msg, &len, &status, err, sizeof(err)), 1);
	br = x509_bundles_response__unpack(NULL, len, msg);
	assert_non_null(br);
	assert_int_equal(br->n_bundles, 1);
	assert_int_equal(br->bundles[0]->value.len, 2 * f->ca_len);
	x509_bundles_response__free_unpacked(br, NULL);
	free(msg);
	assert_int_equal(x509_next(s, 5000, &r, &status, err, sizeof(err)), 1);
	assert_int_equal(r->svids[0]->bundle.len, 2 * f->ca_len);
	x509_svidresponse__free_unpacked(r, NULL);
	grpc_client_close(g);
}

static void bundles(void **state)
{
	struct fixture *f = *state;
	struct workload_client *c;
	struct workload_bundles b;
	int status = -1;
	char err[256];

	publish(f, entitled_snapshot(f, NULL));
	c = connect_client(f);
	if (workload_fetch_x509_bundles(c, &b, &status, err, sizeof(err)) != 0)
		fail_msg("x509 bundles: %s", err);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.v[0].trust_domain_id, "spiffe://" TD);
	assert_int_equal(b.v[0].len, f->ca_len);
	assert_memory_equal(b.v[0].data, f->ca_der, f->ca_len);
	workload_bundles_free(&b);

	if (workload_fetch_jwt_bundles(c, &b, &status, err, sizeof(err)) != 0)
		fail_msg("jwt bundles: %s", err);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.v[0].trust_domain_id, "spiffe://" TD);
	assert_string_equal((const char *)b.v[0].data, f->jwks_json);
	workload_bundles_free(&b);
	workload_client_close(c);
}

static void jwt_fetch_and_validate(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = entitled_snapshot(f, NULL);
	const char *sel[] = {f->uid_sel};
	struct workload_client *c;
	struct workload_jwt_svids j;
	const char *aud[] = {"svc-1", "svc-2"};
	char *sub = NULL, *claims = NULL;
	int status = -1;
	char err[256];

	/* Two entitled IDs (e-a without SVID is fine for JWTs), one fetch each. */
	add_entry(s, "e-b", ID_B, sel, 1);
	publish(f, s);
	c = connect_client(f);
	if (workload_fetch_jwt(c, aud, 2, NULL, &j, &status, err, sizeof(err)) != 0)
		fail_msg("fetch jwt: %s", err);
	assert_int_equal(j.n, 2);
	assert_string_equal(j.v[0].spiffe_id, ID_A);
	assert_string_equal(j.v[1].spiffe_id, ID_B);
	workload_jwt_svids_free(&j);

	/* Only the requested one. */
	assert_int_equal(workload_fetch_jwt(c, aud, 1, ID_B, &j, &status, err, sizeof(err)), 0);
	assert_int_equal(j.n, 1);
	assert_string_equal(j.v[0].spiffe_id, ID_B);

	/* The agent validates it. */
	if (workload_validate_jwt(c, "svc-1", j.v[0].token, &sub, &claims, &status, err,
				  sizeof(err)) != 0)
		fail_msg("validate: %s", err);
	assert_string_equal(sub, ID_B);
	json_t *cl = json_loads(claims, 0, NULL);
	assert_non_null(cl);
	assert_string_equal(json_string_value(json_object_get(cl, "sub")), ID_B);
	/* One audience asked for: a plain string (RFC 7519 allows both forms). */
	assert_string_equal(json_string_value(json_object_get(cl, "aud")), "svc-1");
	assert_true(json_is_integer(json_object_get(cl, "exp")));
	assert_true(json_integer_value(json_object_get(cl, "exp")) > now_unix());
	json_decref(cl);
	free(sub);
	free(claims);

	/* Wrong audience, garbage, empty fields. */
	assert_int_equal(workload_validate_jwt(c, "other", j.v[0].token, &sub, &claims, &status, err,
					       sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(workload_validate_jwt(c, "svc-1", "a.b.c", &sub, &claims, &status, err,
					       sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(workload_validate_jwt(c, "", j.v[0].token, &sub, &claims, &status, err,
					       sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(workload_validate_jwt(c, "svc-1", "", &sub, &claims, &status, err,
					       sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	workload_jwt_svids_free(&j);

	/* No audience; an ID we are not entitled to. */
	assert_int_equal(workload_fetch_jwt(c, aud, 0, NULL, &j, &status, err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(workload_fetch_jwt(c, aud, 1, "spiffe://example.org/not/mine", &j, &status,
					    err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_PERMISSION_DENIED);
	workload_client_close(c);
}

static int jwt_calls(struct fixture *f)
{
	return __atomic_load_n(&f->jwt_calls, __ATOMIC_RELAXED);
}

/* One token of ID_A for aud; its text in *tok (caller frees). */
static void fetch_one(struct workload_client *c, const char *const *aud, size_t n, char **tok)
{
	struct workload_jwt_svids j;
	int status = -1;
	char err[256];

	if (workload_fetch_jwt(c, aud, n, NULL, &j, &status, err, sizeof(err)) != 0)
		fail_msg("fetch jwt: %s", err);
	assert_int_equal(j.n, 1);
	*tok = strdup(j.v[0].token);
	workload_jwt_svids_free(&j);
}

/* A repeated fetch (same entry, same audience set in any order) is answered from the agent's
 * cache without asking for a new token; another audience set, or a failure, is not. */
static void jwt_cache_serves_repeats(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = entitled_snapshot(f, NULL);
	struct workload_client *c;
	const char *ab[] = {"svc-a", "svc-b"}, *ba[] = {"svc-b", "svc-a"}, *a[] = {"svc-a"};
	char *t1, *t2, *t3;

	publish(f, s);
	c = connect_client(f);
	fetch_one(c, ab, 2, &t1);
	assert_int_equal(jwt_calls(f), 1);
	fetch_one(c, ba, 2, &t2);
	assert_int_equal(jwt_calls(f), 1);
	assert_string_equal(t1, t2);
	fetch_one(c, a, 1, &t3);
	assert_int_equal(jwt_calls(f), 2);
	assert_string_not_equal(t1, t3);
	free(t1);
	free(t2);
	free(t3);
	workload_client_close(c);
}

static void jwt_fetch_failure(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = base_snapshot(f);
	const char *sel[] = {f->uid_sel};
	struct workload_client *c;
	struct workload_jwt_svids j;
	const char *aud[] = {"x"};
	int status = -1;
	char err[256];

	add_entry(s, "e-fail", ID_A, sel, 1);
	publish(f, s);
	c = connect_client(f);
	assert_int_equal(workload_fetch_jwt(c, aud, 1, NULL, &j, &status, err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(status, GRPC_STATUS_UNAVAILABLE);
	assert_non_null(strstr(err, "server unreachable"));
	/* A failure is not cached: the next fetch asks again. */
	assert_int_equal(workload_fetch_jwt(c, aud, 1, NULL, &j, &status, err, sizeof(err)),
			 WORKLOAD_ESTATUS);
	assert_int_equal(jwt_calls(f), 2);
	workload_client_close(c);
}

static void many_streams(void **state)
{
	enum { CONNS = 40, PER_CONN = 25 };
	struct fixture *f = *state;
	struct grpc_header h = {.name = "workload.spiffe.io", .value = "true"};
	struct grpc_client *g[CONNS];
	struct grpc_stream *s[CONNS][PER_CONN];
	struct workload_api_stats st;
	X509SVIDResponse *r = NULL;
	int status;
	char err[256];

	publish(f, entitled_snapshot(f, NULL));
	for (int i = 0; i < CONNS; i++) {
		assert_int_equal(grpc_client_connect_unix(f->sock, 5000, &g[i], err, sizeof(err)), 0);
		for (int k = 0; k < PER_CONN; k++)
			assert_int_equal(grpc_client_stream_open(g[i], "/SpiffeWorkloadAPI/FetchX509SVID",
								 &h, 1, (const uint8_t *)"", 0,
								 &s[i][k], err, sizeof(err)),
					 0);
	}
	for (int i = 0; i < CONNS; i++)
		for (int k = 0; k < PER_CONN; k++) {
			assert_int_equal(x509_next(s[i][k], 10000, &r, &status, err, sizeof(err)), 1);
			x509_svidresponse__free_unpacked(r, NULL);
		}
	on_loop(f, job_stats, &st);
	assert_int_equal(st.streams, CONNS * PER_CONN);
	assert_int_equal(st.conns, CONNS);

	/* One rotation reaches every stream once. */
	int64_t t0 = now_mono_us();
	publish(f, entitled_snapshot(f, NULL));
	for (int i = 0; i < CONNS; i++)
		for (int k = 0; k < PER_CONN; k++) {
			assert_int_equal(x509_next(s[i][k], 10000, &r, &status, err, sizeof(err)), 1);
			x509_svidresponse__free_unpacked(r, NULL);
		}
	print_message("rotation delivered to %d streams in %lld ms\n", CONNS * PER_CONN,
		      (long long)(now_mono_us() - t0) / 1000);
	/* And nothing more. */
	assert_int_equal(x509_next(s[0][0], 200, &r, &status, err, sizeof(err)), 0);
	for (int i = 0; i < CONNS; i++)
		grpc_client_close(g[i]);
}

static void conns_per_uid_limit(void **state)
{
	struct fixture *f = *state;
	struct workload_client *c[17];
	struct workload_bundles b;
	struct workload_api_stats st;
	int status, ok = 0, refused = 0;
	char err[256];

	publish(f, entitled_snapshot(f, NULL));
	/* max_conns_per_uid is 16 in this fixture. */
	for (int i = 0; i < 17; i++) {
		/* A refused connection is closed at once: the client notices while connecting or
		 * on its first call, depending on timing. */
		c[i] = NULL;
		if (workload_client_connect(f->sock, 5000, &c[i], err, sizeof(err)) == 0 &&
		    workload_fetch_x509_bundles(c[i], &b, &status, err, sizeof(err)) == 0) {
			ok++;
			workload_bundles_free(&b);
		} else {
			refused++;
		}
	}
	assert_int_equal(ok, 16);
	assert_int_equal(refused, 1);
	on_loop(f, job_stats, &st);
	assert_true(st.conns_refused >= 1);
	for (int i = 0; i < 17; i++)
		workload_client_close(c[i]);
}

static void live_and_stale_socket(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct workload_api *second = NULL;
	char other[160];
	int fd;

	/* A second API on the same path refuses to start while the first one serves. */
	on_loop(f, job_start, &second);
	assert_int_equal(f->start_rc, -1);
	assert_null(second);
	assert_non_null(strstr(f->start_err, "already serving"));

	/* A stale socket (bound, nobody listening) is replaced. */
	on_loop(f, job_stop, NULL);
	snprintf(other, sizeof(other), "%s", f->sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, other);
	unlink(other);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	on_loop(f, job_start, NULL);
	if (f->start_rc != 0)
		fail_msg("restart over a stale socket: %s", f->start_err);
}

static void resolve_socket(void **state)
{
	char out[256], err[256];

	assert_int_equal(workload_resolve_socket("unix:///run/x.sock", out, sizeof(out), err,
						 sizeof(err)),
			 0);
	assert_string_equal(out, "/run/x.sock");
	assert_int_equal(workload_resolve_socket("/run/y.sock", out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/run/y.sock");
	assert_int_equal(workload_resolve_socket("tcp://127.0.0.1:8081", out, sizeof(out), err,
						 sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "TCP"));
	assert_int_equal(workload_resolve_socket("unix://host/x", out, sizeof(out), err, sizeof(err)),
			 -1);
	setenv("SPIFFE_ENDPOINT_SOCKET", "unix:///env/path.sock", 1);
	assert_int_equal(workload_resolve_socket(NULL, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "/env/path.sock");
	unsetenv("SPIFFE_ENDPOINT_SOCKET");
	assert_int_equal(workload_resolve_socket(NULL, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, WORKLOAD_DEFAULT_SOCKET);
}

/* Runs api_cli_main with stdout and stderr captured into files; returns its exit status. */
static int run_cli(struct fixture *f, char **out, char **errout, int argc, ...)
{
	char *argv[32], opath[160], epath[160];
	int saved_out, saved_err, fd_out, fd_err, rc;
	va_list ap;
	size_t len;

	assert_true(argc < 32);
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	snprintf(opath, sizeof(opath), "%s/cli.out", f->dir);
	snprintf(epath, sizeof(epath), "%s/cli.err", f->dir);
	fflush(stdout);
	fflush(stderr);
	fd_out = open(opath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fd_err = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd_out >= 0 && fd_err >= 0);
	saved_out = dup(1);
	saved_err = dup(2);
	dup2(fd_out, 1);
	dup2(fd_err, 2);
	rc = api_cli_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	close(fd_out);
	close(fd_err);
	assert_int_equal(file_read_all(opath, 1 << 20, (uint8_t **)out, &len), 0);
	assert_int_equal(file_read_all(epath, 1 << 20, (uint8_t **)errout, &len), 0);
	return rc;
}

static void cli_fetch_x509(void **state)
{
	struct fixture *f = *state;
	struct leaf keep;
	char wdir[160], path[200], *out, *err;
	struct stat st;
	json_t *j, *sv;
	uint8_t *pem, *der;
	size_t pem_len, der_len;

	publish(f, entitled_snapshot(f, &keep));
	snprintf(wdir, sizeof(wdir), "%s/out", f->dir);
	assert_int_equal(run_cli(f, &out, &err, 9, "api", "fetch", "x509", "--socket", f->sock,
				 "--write", wdir, "--output", "json"),
			 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	sv = json_array_get(json_object_get(j, "svids"), 0);
	assert_string_equal(json_string_value(json_object_get(sv, "spiffe_id")), ID_A);
	assert_string_equal(json_string_value(json_object_get(sv, "hint")), "internal");
	assert_true(json_integer_value(json_object_get(sv, "not_after")) > now_unix());
	assert_true(json_integer_value(json_object_get(sv, "not_before")) <= now_unix());
	assert_true(strlen(json_string_value(json_object_get(sv, "serial"))) > 0);
	json_decref(j);
	free(out);
	free(err);

	/* The files: the certificate PEM decodes to the served DER, the key is private. */
	snprintf(path, sizeof(path), "%s/svid.0.pem", wdir);
	assert_int_equal(file_read_all(path, 1 << 20, &pem, &pem_len), 0);
	assert_int_equal(pem_decode_concat((char *)pem, pem_len, "CERTIFICATE", &der, &der_len), 0);
	assert_int_equal(der_len, keep.der_len);
	assert_memory_equal(der, keep.der, der_len);
	free(pem);
	free(der);
	snprintf(path, sizeof(path), "%s/svid.0.key", wdir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(file_read_all(path, 1 << 20, &pem, &pem_len), 0);
	assert_non_null(strstr((char *)pem, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(pem_decode_concat((char *)pem, pem_len, "PRIVATE KEY", &der, &der_len), 0);
	assert_int_equal(der_len, keep.key_len);
	assert_memory_equal(der, keep.key, der_len);
	free(pem);
	free(der);
	snprintf(path, sizeof(path), "%s/bundle.0.pem", wdir);
	assert_int_equal(file_read_all(path, 1 << 20, &pem, &pem_len), 0);
	assert_int_equal(pem_decode_concat((char *)pem, pem_len, "CERTIFICATE", &der, &der_len), 0);
	assert_int_equal(der_len, f->ca_len);
	free(pem);
	free(der);

	/* Text output, through SPIFFE_ENDPOINT_SOCKET. */
	snprintf(path, sizeof(path), "unix://%s", f->sock);
	setenv("SPIFFE_ENDPOINT_SOCKET", path, 1);
	assert_int_equal(run_cli(f, &out, &err, 3, "api", "fetch", "x509"), 0);
	unsetenv("SPIFFE_ENDPOINT_SOCKET");
	assert_non_null(strstr(out, "SPIFFE ID:     " ID_A));
	assert_non_null(strstr(out, "Not after:"));
	free(out);
	free(err);
	leaf_free(&keep);
}

static void cli_errors(void **state)
{
	struct fixture *f = *state;
	struct snapshot *s = base_snapshot(f);
	const char *sel[] = {"unix:uid:4000000001"};
	char *out, *err;

	add_entry(s, "e-other", ID_B, sel, 1);
	publish(f, s);
	assert_int_equal(run_cli(f, &out, &err, 5, "api", "fetch", "x509", "--socket", f->sock), 1);
	assert_non_null(strstr(err, "PermissionDenied: no identity issued"));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 5, "api", "fetch", "x509", "--socket",
				 "/nonexistent/api.sock"),
			 1);
	assert_non_null(strstr(err, "cannot connect"));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 5, "api", "fetch", "x509", "--socket",
				 "tcp://127.0.0.1:1"),
			 1);
	assert_non_null(strstr(err, "TCP"));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 4, "api", "fetch", "x509", "--bogus"), 1);
	assert_non_null(strstr(err, "unknown option --bogus"));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 3, "api", "fetch", "nothing"), 1);
	assert_non_null(strstr(err, "unknown command"));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 5, "api", "fetch", "jwt", "--socket", f->sock), 1);
	assert_non_null(strstr(err, "--audience"));
	free(out);
	free(err);
}

static void cli_jwt_bundles_watch(void **state)
{
	struct fixture *f = *state;
	char *out, *err, *tok, *nl;
	json_t *j;

	publish(f, entitled_snapshot(f, NULL));
	assert_int_equal(run_cli(f, &out, &err, 9, "api", "fetch", "jwt", "--socket", f->sock,
				 "--audience", "db", "--output", "json"),
			 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	tok = xstrdup(json_string_value(
		json_object_get(json_array_get(json_object_get(j, "svids"), 0), "svid")));
	json_decref(j);
	free(out);
	free(err);

	assert_int_equal(run_cli(f, &out, &err, 9, "api", "validate", "jwt", "--socket", f->sock,
				 "--audience", "db", "--svid", tok),
			 0);
	assert_non_null(strstr(out, "SPIFFE ID:  " ID_A));
	assert_non_null(strstr(out, "\"exp\""));
	free(out);
	free(err);
	assert_int_equal(run_cli(f, &out, &err, 9, "api", "validate", "jwt", "--socket", f->sock,
				 "--audience", "not-db", "--svid", tok),
			 1);
	assert_non_null(strstr(err, "InvalidArgument: "));
	free(out);
	free(err);
	free(tok);

	assert_int_equal(run_cli(f, &out, &err, 7, "api", "fetch", "bundles", "--socket", f->sock,
				 "--output", "json"),
			 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "x509_bundles"),
								 "spiffe://" TD)),
			       "-----BEGIN CERTIFICATE-----"));
	assert_true(json_is_array(json_object_get(
		json_object_get(json_object_get(j, "jwt_bundles"), "spiffe://" TD), "keys")));
	json_decref(j);
	free(out);
	free(err);

	/* One update, then stop. */
	assert_int_equal(run_cli(f, &out, &err, 8, "api", "watch", "--socket", f->sock, "--count",
				 "1", "--timeout", "5"),
			 0);
	nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_non_null(strstr(out, "update 1: " ID_A " (expires "));
	free(out);
	free(err);
	/* Asked for two, only one comes. */
	assert_int_equal(run_cli(f, &out, &err, 8, "api", "watch", "--socket", f->sock, "--count",
				 "2", "--timeout", "1"),
			 1);
	assert_non_null(strstr(err, "timeout"));
	free(out);
	free(err);
}

int main(void)
{
	/* Each test gets its own fixture (loop thread, socket), so order does not matter. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(resolve_socket),
		cmocka_unit_test_setup_teardown(socket_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(not_ready_then_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(fetch_x509_entitled, setup, teardown),
		cmocka_unit_test_setup_teardown(permission_denied, setup, teardown),
		cmocka_unit_test_setup_teardown(extra_attestor, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_argument_without_header, setup, teardown),
		cmocka_unit_test_setup_teardown(stream_updates_and_end, setup, teardown),
		cmocka_unit_test_setup_teardown(stream_waits_for_svid, setup, teardown),
		cmocka_unit_test_setup_teardown(bundles, setup, teardown),
		cmocka_unit_test_setup_teardown(jwt_fetch_and_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(jwt_fetch_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(jwt_cache_serves_repeats, setup, teardown),
		cmocka_unit_test_setup_teardown(many_streams, setup_many, teardown),
		cmocka_unit_test_setup_teardown(conns_per_uid_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(not_ready_then_ready, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(fetch_x509_entitled, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(permission_denied, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(stream_updates_and_end, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(jwt_fetch_and_validate, setup_inline, teardown),
		cmocka_unit_test_setup_teardown(many_streams, setup_inline_many, teardown),
		cmocka_unit_test_setup_teardown(live_and_stale_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(cli_fetch_x509, setup, teardown),
		cmocka_unit_test_setup_teardown(cli_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(cli_jwt_bundles_watch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
