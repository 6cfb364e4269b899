/* The node API's entry streams against a real server on loopback: snapshots, deltas that carry
 * exactly what changed for each agent (entry updates, moves between agents, deletions, node
 * aliases gained and lost when an agent's selectors or an alias entry change), and the security
 * checks: a banned or evicted agent loses its stream and its signing rights at once. */
#include <wolfssl/options.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ca.h"
#include "datastore.h"
#include "grpc_client.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "node_api.h"
#include "tls_leaf.h"
#include "util.h"
#include "x509.h"

#define TD "spiffe://example.org"
#define NODE "/lanyard.node.v1.Node/"
#define WAIT_MS 5000

struct fx {
	char dir[64];
	struct datastore *ds;
	struct ca *ca;
	uv_loop_t loop;
	struct node_api *api;
	int port;
	uv_async_t refresh, stop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long asked, done; /* refreshes asked for and run, under lock */
	WOLFSSL_CTX *server_only;
};

/* ---- the server's loop, on its own thread ---- */

static void refresh_cb(uv_async_t *a)
{
	struct fx *f = a->data;
	pthread_mutex_lock(&f->lock);
	unsigned long asked = f->asked;
	pthread_mutex_unlock(&f->lock);
	node_api_refresh(f->api);
	pthread_mutex_lock(&f->lock);
	f->done = asked;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void api_stopped(void *arg)
{
	struct fx *f = arg;
	uv_close((uv_handle_t *)&f->refresh, NULL);
	uv_close((uv_handle_t *)&f->stop, NULL);
}

static void stop_cb(uv_async_t *a)
{
	struct fx *f = a->data;
	node_api_shutdown(f->api, api_stopped, f);
}

static void *loop_thread(void *arg)
{
	struct fx *f = arg;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* Runs node_api_refresh on the loop (as the server does after an admin change) and waits. */
static void refresh(struct fx *f)
{
	pthread_mutex_lock(&f->lock);
	unsigned long want = ++f->asked;
	pthread_mutex_unlock(&f->lock);
	uv_async_send(&f->refresh);
	pthread_mutex_lock(&f->lock);
	while (f->done < want)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

static WOLFSSL_CTX *client_ctx(struct fx *f, const uint8_t *chain, size_t chain_len, lkey *key)
{
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(f->ca, &b), 0);
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	assert_non_null(ctx);
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	assert_int_equal(x509_split_der(b.x509, b.x509_len, &certs, &lens, &n), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(wolfSSL_CTX_load_verify_buffer(ctx, certs[i], (long)lens[i],
								WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
	free(certs);
	free(lens);
	ca_bundle_free(&b);
	tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	if (chain) {
		char *pem = pem_encode("CERTIFICATE", chain, chain_len);
		uint8_t *der = NULL;
		size_t der_len = 0;
		assert_non_null(pem);
		assert_int_equal(wolfSSL_CTX_use_certificate_chain_buffer(
					 ctx, (const unsigned char *)pem, (long)strlen(pem)),
				 WOLFSSL_SUCCESS);
		assert_int_equal(lkey_to_pkcs8_der(key, &der, &der_len), 0);
		assert_int_equal(wolfSSL_CTX_use_PrivateKey_buffer(ctx, der, (long)der_len,
								   WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
		secure_zero(der, der_len);
		free(der);
		free(pem);
	}
	return ctx;
}

static int setup(void **state)
{
	log_setup(LOG_LEVEL_WARN, false);
	struct fx *f = xcalloc(1, sizeof(*f));
	char path[128], err[256];
	strcpy(f->dir, "/tmp/lanyard-nodeapi-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(path, sizeof(path), "%s/ds.sqlite3", f->dir);
	if (datastore_open_sqlite(path, &f->ds, err, sizeof(err)) < 0)
		return -1;
	struct ca_options co = {.trust_domain = "example.org", .data_dir = f->dir,
				.key_type = KEY_EC_P256, .ca_ttl = 86400};
	if (ca_open(&co, f->ds, now_unix(), &f->ca, err, sizeof(err)) < 0) {
		fprintf(stderr, "ca_open: %s\n", err);
		return -1;
	}
	uv_loop_init(&f->loop);
	struct node_api_options no = {.bind_address = "127.0.0.1", .port = 0,
				      .trust_domain = "example.org",
				      .default_x509_svid_ttl = 3600, .default_jwt_svid_ttl = 300,
				      .agent_svid_ttl = 3600};
	if (node_api_start(&f->loop, &no, f->ds, f->ca, &f->api, err, sizeof(err)) < 0) {
		fprintf(stderr, "node_api_start: %s\n", err);
		return -1;
	}
	f->port = node_api_port(f->api);
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	uv_async_init(&f->loop, &f->refresh, refresh_cb);
	f->refresh.data = f;
	uv_async_init(&f->loop, &f->stop, stop_cb);
	f->stop.data = f;
	if (pthread_create(&f->thread, NULL, loop_thread, f) != 0)
		return -1;
	f->server_only = client_ctx(f, NULL, 0, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	uv_async_send(&f->stop);
	pthread_join(f->thread, NULL);
	int rc = uv_loop_close(&f->loop) == 0 ? 0 : -1;
	wolfSSL_CTX_free(f->server_only);
	ca_close(f->ca);
	datastore_close(f->ds);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		rc = -1;
	free(f);
	return rc;
}

/* ---- a simulated agent ---- */

struct known {
	char id[40];
	int64_t revision;
};

struct agent {
	char id[256];
	lkey *key;
	uint8_t *chain;
	size_t chain_len;
	WOLFSSL_CTX *mtls;
	struct grpc_client *gc;
	struct grpc_stream *stream;
	struct known known[32]; /* what the stream told it, as the real agent keeps it */
	size_t n_known;
};

static struct grpc_client *connect_to(struct fx *f, WOLFSSL_CTX *ctx)
{
	struct grpc_client *gc = NULL;
	char err[256];
	if (grpc_client_connect_tcp("127.0.0.1", f->port, ctx, NULL, WAIT_MS, &gc, err,
				    sizeof(err)) < 0)
		fail_msg("connect: %s", err);
	return gc;
}

static void attest(struct fx *f, struct agent *a, const char *token, const char *alias)
{
	uint8_t *csr = NULL, *resp = NULL, *req = NULL;
	size_t csr_len = 0, resp_len = 0;
	int status;
	char err[256];
	assert_int_equal(ds_token_create(f->ds, token, alias, 0), 0);
	assert_int_equal(lkey_generate(KEY_EC_P256, &a->key), 0);
	assert_int_equal(x509_csr_create(a->key, &csr, &csr_len), 0);
	Lanyard__Node__V1__AttestRequest m = LANYARD__NODE__V1__ATTEST_REQUEST__INIT;
	m.attestor = (char *)"join_token";
	m.payload.data = (uint8_t *)token;
	m.payload.len = strlen(token);
	m.csr.data = csr;
	m.csr.len = csr_len;
	size_t req_len = lanyard__node__v1__attest_request__get_packed_size(&m);
	req = xmalloc(req_len + 1);
	lanyard__node__v1__attest_request__pack(&m, req);
	struct grpc_client *gc = connect_to(f, f->server_only);
	assert_int_equal(grpc_client_unary(gc, NODE "Attest", NULL, 0, req, req_len, WAIT_MS, &resp,
					   &resp_len, &status, err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	grpc_client_close(gc);
	Lanyard__Node__V1__AttestResponse *r =
		lanyard__node__v1__attest_response__unpack(NULL, resp_len, resp);
	assert_non_null(r);
	snprintf(a->id, sizeof(a->id), "%s", r->spiffe_id);
	a->chain = xmalloc(r->svid.len);
	memcpy(a->chain, r->svid.data, r->svid.len);
	a->chain_len = r->svid.len;
	lanyard__node__v1__attest_response__free_unpacked(r, NULL);
	free(resp);
	free(req);
	free(csr);
	a->mtls = client_ctx(f, a->chain, a->chain_len, a->key);
	a->gc = connect_to(f, a->mtls);
}

static void agent_free(struct agent *a)
{
	grpc_client_close(a->gc);
	wolfSSL_CTX_free(a->mtls);
	lkey_free(a->key);
	free(a->chain);
}

static struct known *known_find(struct agent *a, const char *id)
{
	for (size_t i = 0; i < a->n_known; i++)
		if (strcmp(a->known[i].id, id) == 0)
			return &a->known[i];
	return NULL;
}

/* Applies one SyncResponse; false when there was none within timeout_ms. *ended gets the
 * status when the stream ended instead. */
static bool next_msg(struct agent *a, int timeout_ms, size_t *ups, size_t *rems, int *ended)
{
	uint8_t *msg = NULL;
	size_t len = 0;
	int status = -1;
	char err[256];
	*ups = *rems = 0;
	Lanyard__Node__V1__SyncResponse *m = NULL;
	for (;;) {
		int r = grpc_stream_next(a->stream, timeout_ms, &msg, &len, &status, err,
					 sizeof(err));
		if (r == 2 && ended) {
			*ended = status;
			return false;
		}
		if (r != 1)
			return false;
		m = lanyard__node__v1__sync_response__unpack(NULL, len, msg);
		free(msg);
		assert_non_null(m);
		/* The federated bundle set (none here) after the snapshot: not about entries. */
		if (!m->federated_bundles_set || m->reset || m->n_upserts || m->n_removed_ids ||
		    m->bundle)
			break;
		lanyard__node__v1__sync_response__free_unpacked(m, NULL);
	}
	if (m->reset)
		a->n_known = 0;
	for (size_t i = 0; i < m->n_upserts; i++) {
		struct known *k = known_find(a, m->upserts[i]->id);
		if (!k) {
			assert_true(a->n_known < ARRAY_LEN(a->known));
			k = &a->known[a->n_known++];
			snprintf(k->id, sizeof(k->id), "%s", m->upserts[i]->id);
		}
		k->revision = m->upserts[i]->revision;
	}
	for (size_t i = 0; i < m->n_removed_ids; i++) {
		struct known *k = known_find(a, m->removed_ids[i]);
		assert_non_null(k); /* never told to remove what it was not sent */
		*k = a->known[--a->n_known];
	}
	*ups = m->n_upserts;
	*rems = m->n_removed_ids;
	lanyard__node__v1__sync_response__free_unpacked(m, NULL);
	return true;
}

static void open_stream(struct agent *a)
{
	Lanyard__Node__V1__SyncRequest m = LANYARD__NODE__V1__SYNC_REQUEST__INIT;
	uint8_t buf[32];
	size_t len = lanyard__node__v1__sync_request__pack(&m, buf);
	char err[256];
	assert_int_equal(grpc_client_stream_open(a->gc, NODE "SyncEntries", NULL, 0, buf, len,
						 &a->stream, err, sizeof(err)),
			 0);
	size_t u, r;
	assert_true(next_msg(a, WAIT_MS, &u, &r, NULL)); /* the snapshot: one message here */
}

/* The delta this agent gets after a change: upserts and removals, or nothing (0, 0). */
static void expect_delta(struct agent *a, size_t ups, size_t rems)
{
	size_t u = 0, r = 0;
	if (ups || rems) {
		assert_true(next_msg(a, WAIT_MS, &u, &r, NULL));
		assert_int_equal(u, ups);
		assert_int_equal(r, rems);
	}
	/* Nothing more (the refresh has run: anything else would be queued already). */
	assert_false(next_msg(a, 200, &u, &r, NULL));
}

/* The agent knows exactly the entries listed, at their stored revisions. */
static void expect_known(struct fx *f, struct agent *a, const char *const *ids, size_t n)
{
	assert_int_equal(a->n_known, n);
	for (size_t i = 0; i < n; i++) {
		struct known *k = known_find(a, ids[i]);
		assert_non_null(k);
		struct entry *e;
		assert_int_equal(ds_entry_get(f->ds, ids[i], &e), 0);
		assert_int_equal(k->revision, e->revision);
		entry_free(e);
	}
}

static void expect_ended(struct agent *a, int status)
{
	size_t u, r;
	int ended = -1;
	for (int i = 0; i < 10 && ended < 0; i++)
		next_msg(a, WAIT_MS / 10, &u, &r, &ended);
	assert_int_equal(ended, status);
}

/* SignX509 for one entry: the gRPC status, and in *item_err whether the item was refused. */
static int sign(struct fx *f, struct agent *a, const char *entry_id, bool *item_err)
{
	uint8_t *csr = NULL, *resp = NULL, *req = NULL;
	size_t csr_len = 0, resp_len = 0;
	int status;
	char err[256];
	lkey *k;
	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(x509_csr_create(k, &csr, &csr_len), 0);
	Lanyard__Node__V1__X509SignItem it = LANYARD__NODE__V1__X509_SIGN_ITEM__INIT;
	Lanyard__Node__V1__X509SignItem *items[] = {&it};
	it.entry_id = (char *)entry_id;
	it.csr.data = csr;
	it.csr.len = csr_len;
	Lanyard__Node__V1__SignX509Request m = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	m.items = items;
	m.n_items = 1;
	size_t req_len = lanyard__node__v1__sign_x509_request__get_packed_size(&m);
	req = xmalloc(req_len + 1);
	lanyard__node__v1__sign_x509_request__pack(&m, req);
	assert_int_equal(grpc_client_unary(a->gc, NODE "SignX509", NULL, 0, req, req_len, WAIT_MS,
					   &resp, &resp_len, &status, err, sizeof(err)),
			 0);
	if (status == GRPC_STATUS_OK) {
		Lanyard__Node__V1__SignX509Response *r =
			lanyard__node__v1__sign_x509_response__unpack(NULL, resp_len, resp);
		assert_non_null(r);
		assert_int_equal(r->n_results, 1);
		*item_err = r->results[0]->error && *r->results[0]->error;
		assert_true(*item_err || r->results[0]->svid.len > 0);
		lanyard__node__v1__sign_x509_response__free_unpacked(r, NULL);
	}
	free(resp);
	free(req);
	free(csr);
	lkey_free(k);
	return status;
}

static char *add(struct fx *f, const char *spiffe_id, const char *parent, const char *sel)
{
	struct entry e = {0};
	char *sels[1] = {(char *)sel};
	e.spiffe_id = (char *)spiffe_id;
	e.parent_id = (char *)parent;
	e.selectors = sels;
	e.n_selectors = 1;
	struct entry *c = entry_dup(&e);
	char err[256];
	assert_int_equal(ds_entry_create(f->ds, c, err, sizeof(err)), 0);
	char *id = xstrdup(c->id);
	entry_free(c);
	return id;
}

/* Changes one member of a stored entry. */
static void modify(struct fx *f, const char *id, const char *parent, const char *sel,
		   const char *hint)
{
	struct entry *e;
	char err[256];
	assert_int_equal(ds_entry_get(f->ds, id, &e), 0);
	if (parent) {
		free(e->parent_id);
		e->parent_id = xstrdup(parent);
	}
	if (sel) {
		free(e->selectors[0]);
		e->selectors[0] = xstrdup(sel);
	}
	if (hint) {
		free(e->hint);
		e->hint = xstrdup(hint);
	}
	assert_int_equal(ds_entry_update(f->ds, e, err, sizeof(err)), 0);
	entry_free(e);
}

static void streams_follow_changes(void **state)
{
	struct fx *f = *state;
	struct agent a1 = {0}, a2 = {0};
	attest(f, &a1, "token-one", TD "/node/group");
	attest(f, &a2, "token-two", NULL);

	char *e1 = add(f, TD "/w1", a1.id, "unix:uid:1");
	char *e2 = add(f, TD "/w2", a2.id, "unix:uid:2");
	char *e3 = add(f, TD "/w3", TD "/node/group", "unix:uid:3");
	open_stream(&a1);
	open_stream(&a2);
	expect_known(f, &a1, (const char *[]){e1, e3}, 2);
	expect_known(f, &a2, (const char *[]){e2}, 1);

	/* An update reaches its agent only. */
	modify(f, e1, NULL, NULL, "changed");
	refresh(f);
	expect_delta(&a1, 1, 0);
	expect_delta(&a2, 0, 0);
	expect_known(f, &a1, (const char *[]){e1, e3}, 2);

	/* A refresh with nothing changed sends nothing. */
	refresh(f);
	expect_delta(&a1, 0, 0);
	expect_delta(&a2, 0, 0);

	/* An entry moving from one agent to the other: a removal and an upsert. */
	modify(f, e2, a1.id, NULL, NULL);
	refresh(f);
	expect_delta(&a1, 1, 0);
	expect_delta(&a2, 0, 1);
	expect_known(f, &a1, (const char *[]){e1, e2, e3}, 3);
	assert_int_equal(a2.n_known, 0);

	/* Several changes between two refreshes go out in one delta each. */
	char *e4 = add(f, TD "/w4", a2.id, "unix:uid:4");
	assert_int_equal(ds_entry_delete(f->ds, e3), 0);
	modify(f, e1, NULL, NULL, "again");
	refresh(f);
	expect_delta(&a1, 1, 1);
	expect_delta(&a2, 1, 0);
	expect_known(f, &a1, (const char *[]){e1, e2}, 2);
	expect_known(f, &a2, (const char *[]){e4}, 1);

	/* Node aliases: a2 gains node selectors (re-attested, say), an alias entry for them and a
	 * workload parented to the alias appear; then the alias stops matching. */
	struct agent_record *rec;
	assert_int_equal(ds_agent_get(f->ds, a2.id, &rec), 0);
	char *sels[] = {(char *)"k8s_psat:cluster:c1"};
	rec->selectors = sels;
	rec->n_selectors = 1;
	assert_int_equal(ds_agent_upsert(f->ds, rec), 0);
	rec->selectors = NULL;
	rec->n_selectors = 0;
	agent_record_free(rec);
	char *alias = add(f, TD "/cluster/c1", TD "/lanyard/server", "k8s_psat:cluster:c1");
	char *e5 = add(f, TD "/w5", TD "/cluster/c1", "unix:uid:5");
	refresh(f);
	expect_delta(&a1, 0, 0);
	expect_delta(&a2, 1, 0);
	expect_known(f, &a2, (const char *[]){e4, e5}, 2);
	modify(f, alias, NULL, "k8s_psat:cluster:c2", NULL);
	refresh(f);
	expect_delta(&a2, 0, 1);
	expect_known(f, &a2, (const char *[]){e4}, 1);
	modify(f, alias, NULL, "k8s_psat:cluster:c1", NULL);
	refresh(f);
	expect_delta(&a2, 1, 0);
	expect_known(f, &a2, (const char *[]){e4, e5}, 2);

	/* Signing follows the same view. */
	bool item_err = false;
	assert_int_equal(sign(f, &a2, e5, &item_err), GRPC_STATUS_OK);
	assert_false(item_err);
	assert_int_equal(sign(f, &a2, e1, &item_err), GRPC_STATUS_OK);
	assert_true(item_err);

	/* A ban ends the stream and refuses signing at once; so does an eviction. */
	assert_int_equal(ds_agent_set_banned(f->ds, a2.id, true), 0);
	assert_int_equal(sign(f, &a2, e4, &item_err), GRPC_STATUS_PERMISSION_DENIED);
	refresh(f);
	expect_ended(&a2, GRPC_STATUS_PERMISSION_DENIED);
	expect_delta(&a1, 0, 0);
	assert_int_equal(ds_agent_delete(f->ds, a1.id), 0);
	refresh(f);
	expect_ended(&a1, GRPC_STATUS_PERMISSION_DENIED);
	assert_int_equal(sign(f, &a1, e1, &item_err), GRPC_STATUS_PERMISSION_DENIED);

	agent_free(&a1);
	agent_free(&a2);
	free(e1);
	free(e2);
	free(e3);
	free(e4);
	free(e5);
	free(alias);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(streams_follow_changes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
