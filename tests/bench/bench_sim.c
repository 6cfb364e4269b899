/* bench_sim.c: simulated agents of the server benchmarks (see bench_sim.h). */
#include "bench_sim.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "node.pb-c.h"
#include "tls_leaf.h"
#include "util.h"
#include "x509.h"

WOLFSSL_CTX *sim_client_ctx(const uint8_t *roots, size_t roots_len, const struct sim_agent *a)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	if (!ctx)
		bench_die("wolfSSL_CTX_new failed");
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	if (x509_split_der(roots, roots_len, &certs, &lens, &n) < 0 || n == 0)
		bench_die("the bundle holds no certificate");
	for (size_t i = 0; i < n; i++)
		if (wolfSSL_CTX_load_verify_buffer(ctx, certs[i], (long)lens[i],
						   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
			bench_die("cannot load a bundle certificate");
	free(certs);
	free(lens);
	tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	if (a) {
		char *pem = pem_encode("CERTIFICATE", a->chain, a->chain_len);
		uint8_t *key = NULL;
		size_t key_len = 0;
		if (!pem ||
		    wolfSSL_CTX_use_certificate_chain_buffer(ctx, (const unsigned char *)pem,
							     (long)strlen(pem)) != WOLFSSL_SUCCESS ||
		    lkey_to_pkcs8_der(a->key, &key, &key_len) < 0 ||
		    wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len,
						      WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
			bench_die("cannot load an agent SVID into TLS");
		secure_zero(key, key_len);
		free(key);
		free(pem);
	}
	return ctx;
}

struct grpc_client *sim_connect(const char *host, int port, WOLFSSL_CTX *ctx)
{
	struct grpc_client *gc = NULL;
	char err[512];
	for (int attempt = 0; attempt < 5; attempt++) {
		if (grpc_client_connect_tcp(host, port, ctx, NULL, 10000, &gc, err,
					    sizeof(err)) == 0)
			return gc;
		sleep_s(0.2);
	}
	bench_die("cannot connect to the server at %s:%d: %s", host, port, err);
}

/* Attests with the agent's join token and keeps the returned SVID. */
void sim_attest(struct grpc_client *gc, struct sim_agent *a)
{
	uint8_t *csr = NULL, *resp = NULL, *req = NULL;
	size_t csr_len = 0, resp_len = 0;
	int status;
	char err[512];
	if (lkey_generate(KEY_EC_P256, &a->key) < 0 || x509_csr_create(a->key, &csr, &csr_len) < 0)
		bench_die("cannot make the agent key");
	Lanyard__Node__V1__AttestRequest m = LANYARD__NODE__V1__ATTEST_REQUEST__INIT;
	m.attestor = (char *)"join_token";
	m.payload.data = (uint8_t *)a->token;
	m.payload.len = strlen(a->token);
	m.csr.data = csr;
	m.csr.len = csr_len;
	size_t req_len = lanyard__node__v1__attest_request__get_packed_size(&m);
	req = xmalloc(req_len + 1);
	lanyard__node__v1__attest_request__pack(&m, req);
	if (grpc_client_unary(gc, NODE_PATH "Attest", NULL, 0, req, req_len, CALL_TIMEOUT_MS, &resp,
			      &resp_len, &status, err, sizeof(err)) < 0 ||
	    status != GRPC_STATUS_OK)
		bench_die("Attest failed: %s", err);
	Lanyard__Node__V1__AttestResponse *r =
		lanyard__node__v1__attest_response__unpack(NULL, resp_len, resp);
	if (!r || !r->svid.len)
		bench_die("malformed AttestResponse");
	if (strcmp(r->spiffe_id, a->id) != 0)
		bench_die("attested as %s, expected %s", r->spiffe_id, a->id);
	a->chain = xmalloc(r->svid.len);
	memcpy(a->chain, r->svid.data, r->svid.len);
	a->chain_len = r->svid.len;
	lanyard__node__v1__attest_response__free_unpacked(r, NULL);
	free(resp);
	free(req);
	free(csr);
}

void sim_read_bundle(const char *path, uint8_t **der, size_t *len)
{
	uint8_t *pem = NULL;
	size_t pem_len = 0;
	if (file_read_all(path, 1 << 20, &pem, &pem_len) < 0 ||
	    pem_decode_concat((const char *)pem, pem_len, "CERTIFICATE", der, len) < 0 || !*len)
		bench_die("cannot read the bundle %s", path);
	free(pem);
}

WOLFSSL_CTX *sim_bundle_ctx(const char *path, uint8_t **roots, size_t *roots_len)
{
	sim_read_bundle(path, roots, roots_len);
	return sim_client_ctx(*roots, *roots_len, NULL);
}

int sim_open_stream(struct sim_agent *a, char *err, size_t errlen)
{
	Lanyard__Node__V1__SyncRequest m = LANYARD__NODE__V1__SYNC_REQUEST__INIT;
	uint8_t buf[32];
	size_t len = lanyard__node__v1__sync_request__pack(&m, buf), got = 0;
	if (grpc_client_stream_open(a->gc, NODE_PATH "SyncEntries", NULL, 0, buf, len, &a->stream,
				    err, errlen) < 0)
		return -1;
	for (;;) {
		uint8_t *msg = NULL;
		size_t ml = 0;
		int status;
		int r = grpc_stream_next(a->stream, CALL_TIMEOUT_MS, &msg, &ml, &status, err,
					 errlen);
		if (r != 1) {
			if (r == 0)
				snprintf(err, errlen, "no snapshot within %d ms", CALL_TIMEOUT_MS);
			return -1;
		}
		Lanyard__Node__V1__SyncResponse *s =
			lanyard__node__v1__sync_response__unpack(NULL, ml, msg);
		free(msg);
		if (!s) {
			snprintf(err, errlen, "malformed SyncResponse");
			return -1;
		}
		got += s->n_upserts;
		bool complete = s->complete;
		lanyard__node__v1__sync_response__free_unpacked(s, NULL);
		if (complete)
			break;
	}
	if (got != a->n_entries) {
		snprintf(err, errlen, "snapshot of %s held %zu entries, expected %zu", a->id, got,
			 a->n_entries);
		return -1;
	}
	return 0;
}

void sim_free_agents(struct sim_agent *v, int n)
{
	for (int i = 0; i < n; i++) {
		struct sim_agent *a = &v[i];
		grpc_stream_cancel(a->stream);
		grpc_client_close(a->gc);
		if (a->mtls)
			wolfSSL_CTX_free(a->mtls);
		for (size_t j = 0; j < a->n_entries; j++) {
			free(a->entry_ids[j]);
			if (a->csrs)
				free(a->csrs[j]);
		}
		free(a->entry_ids);
		free(a->csrs);
		free(a->csr_lens);
		free(a->chain);
		free(a->sign_req);
		lkey_free(a->key);
	}
	free(v);
}

/* Reads every stream until told to stop: one poll() over all connections. */
void *sim_sync_reader(void *arg)
{
	struct sim_sync *sh = arg;
	struct pollfd *pfd = xcalloc((size_t)sh->n, sizeof(*pfd));
	for (int i = 0; i < sh->n; i++) {
		pfd[i].fd = grpc_client_fd(sh->agents[i].gc);
		pfd[i].events = POLLIN;
	}
	while (!atomic_load(&sh->stop)) {
		int rc = poll(pfd, (nfds_t)sh->n, 100);
		if (rc <= 0)
			continue;
		for (int i = 0; i < sh->n; i++) {
			if (!pfd[i].revents)
				continue;
			struct sim_agent *a = &sh->agents[i];
			for (;;) {
				uint8_t *msg = NULL;
				size_t len = 0;
				int status;
				char err[256];
				int r = grpc_stream_next(a->stream, 0, &msg, &len, &status, err,
							 sizeof(err));
				if (r != 1) {
					if (r != 0 && pfd[i].fd >= 0) {
						atomic_fetch_add(&sh->broken, 1);
						pfd[i].fd = -1;
					}
					break;
				}
				Lanyard__Node__V1__SyncResponse *m =
					lanyard__node__v1__sync_response__unpack(NULL, len, msg);
				if (m) {
					atomic_fetch_add(&sh->upserts, m->n_upserts);
					if (m->n_upserts)
						atomic_store(&a->last_delta_us, now_mono_us());
					lanyard__node__v1__sync_response__free_unpacked(m, NULL);
				}
				atomic_fetch_add(&sh->messages, 1);
				free(msg);
			}
		}
	}
	free(pfd);
	return NULL;
}

/* ---- setup in parallel ---- */

struct par_job {
	void (*fn)(size_t i, void *ctx);
	void *ctx;
	size_t n;
	_Atomic size_t next;
};

static void *par_main(void *arg)
{
	struct par_job *j = arg;
	size_t i;
	while ((i = atomic_fetch_add(&j->next, 1)) < j->n)
		j->fn(i, j->ctx);
	/* FP_ECC keeps a per-thread cache of precomputed points; release this thread's. */
	keys_release_thread_ecc_cache();
	return NULL;
}

void sim_parallel(size_t n, int threads, void (*fn)(size_t i, void *ctx), void *ctx)
{
	struct par_job j = {.fn = fn, .ctx = ctx, .n = n};
	if (threads < 1)
		threads = 1;
	pthread_t *th = xcalloc((size_t)threads, sizeof(*th));
	for (int t = 0; t < threads; t++)
		if (pthread_create(&th[t], NULL, par_main, &j) != 0)
			bench_die("pthread_create failed");
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	free(th);
}

struct setup_ctx {
	const struct sim_setup *p;
	struct sim_agent *v;
	WOLFSSL_CTX *server_only;
	const uint8_t *roots;
	size_t roots_len;
	bool stream;
	_Atomic size_t retries;
};

static void admin_token(struct admin *a, char *tok, size_t len)
{
	json_t *body = json_pack("{s:i}", "ttl", 3600), *r = NULL;
	long code = admin_call(a, "POST", "/v1/tokens", body, &r);
	json_decref(body);
	const char *t = json_string_value(json_object_get(r, "token"));
	if (code != 201 || !t)
		bench_die("POST /v1/tokens answered %ld: %s", code, a->buf ? a->buf : "");
	snprintf(tok, len, "%s", t);
	json_decref(r);
}

/* Join tokens: one admin connection per setup thread; chunks of agents per job. */
#define TOKEN_CHUNK 64
static void token_job(size_t k, void *arg)
{
	struct setup_ctx *c = arg;
	struct admin adm;
	admin_open(&adm, c->p->admin);
	for (size_t i = k * TOKEN_CHUNK; i < (k + 1) * TOKEN_CHUNK && i < (size_t)c->p->agents;
	     i++) {
		struct sim_agent *a = &c->v[i];
		admin_token(&adm, a->token, sizeof(a->token));
		snprintf(a->id, sizeof(a->id), "spiffe://" TD "/lanyard/agent/join_token/%s",
			 a->token);
	}
	admin_close(&adm);
}

/* Entries of agents [from, to) in one /v1/entries/batch request; the answer lists them in
 * the request's order. */
static void entry_batch(struct admin *adm, const struct sim_setup *p, struct sim_agent *v,
			size_t from, size_t to)
{
	json_t *arr = json_array(), *r = NULL;
	for (size_t i = from; i < to; i++) {
		v[i].n_entries = (size_t)p->entries;
		v[i].entry_ids = xcalloc(v[i].n_entries + 1, sizeof(char *));
		for (size_t j = 0; j < v[i].n_entries; j++) {
			char sid[256], sel[64];
			snprintf(sid, sizeof(sid), "spiffe://" TD "/bench/%s/a%zu/w%zu", p->label, i,
				 j);
			snprintf(sel, sizeof(sel), "unix:uid:%zu", 10000 + j);
			json_array_append_new(arr, json_pack("{s:s, s:s, s:[s]}", "spiffe_id", sid,
							     "parent_id", v[i].id, "selectors",
							     sel));
		}
	}
	json_t *body = json_pack("{s:o}", "entries", arr);
	long code = admin_call(adm, "POST", "/v1/entries/batch", body, &r);
	json_decref(body);
	json_t *got = json_object_get(r, "entries");
	if (code != 201 || json_array_size(got) != (to - from) * (size_t)p->entries)
		bench_die("POST /v1/entries/batch answered %ld: %.300s", code,
			  adm->buf ? adm->buf : "");
	size_t k = 0;
	for (size_t i = from; i < to; i++)
		for (size_t j = 0; j < v[i].n_entries; j++, k++) {
			const char *id =
				json_string_value(json_object_get(json_array_get(got, k), "id"));
			if (!id)
				bench_die("an entry of the batch answer has no id");
			v[i].entry_ids[j] = xstrdup(id);
		}
	json_decref(r);
}

static int setup_port(const struct sim_setup *p, size_t i)
{
	return p->port2 && i % 2 ? p->port2 : p->port;
}

/* Attestations of a chunk of agents of one server on one connection (no client certificate:
 * the server allows such a peer one call at a time). */
#define ATTEST_CHUNK 16
static void attest_job(size_t k, void *arg)
{
	struct setup_ctx *c = arg;
	struct grpc_client *gc[2] = {NULL, NULL};
	for (size_t i = k * ATTEST_CHUNK; i < (k + 1) * ATTEST_CHUNK && i < (size_t)c->p->agents;
	     i++) {
		int port = setup_port(c->p, i);
		struct grpc_client **g = &gc[port == c->p->port ? 0 : 1];
		if (!*g)
			*g = sim_connect(c->p->host, port, c->server_only);
		sim_attest(*g, &c->v[i]);
	}
	grpc_client_close(gc[0]);
	grpc_client_close(gc[1]);
}

struct sim_agent *sim_setup_agents(const struct sim_setup *p, WOLFSSL_CTX *server_only)
{
	struct sim_agent *v = xcalloc((size_t)p->agents, sizeof(*v));
	struct setup_ctx c = {.p = p, .v = v, .server_only = server_only};
	double t0 = now_s();
	sim_parallel(((size_t)p->agents + TOKEN_CHUNK - 1) / TOKEN_CHUNK, p->threads, token_job,
		     &c);
	double t1 = now_s();
	struct admin adm;
	admin_open(&adm, p->admin);
	size_t per = SIM_BATCH_ENTRIES / (size_t)p->entries;
	if (per < 1)
		per = 1;
	for (size_t from = 0; from < (size_t)p->agents; from += per)
		entry_batch(&adm, p, v, from,
			    from + per < (size_t)p->agents ? from + per : (size_t)p->agents);
	admin_close(&adm);
	double t2 = now_s();
	sim_parallel(((size_t)p->agents + ATTEST_CHUNK - 1) / ATTEST_CHUNK, p->threads, attest_job,
		     &c);
	double t3 = now_s();
	size_t ne = (size_t)p->agents * (size_t)p->entries;
	printf("# setup %s: %d join tokens in %.1f s, %zu entries in %.1f s (%.0f/s, batches of "
	       "%zu over the admin API), %d attestations in %.1f s (%d threads)\n",
	       p->label, p->agents, t1 - t0, ne, t2 - t1, (double)ne / (t2 - t1 > 0 ? t2 - t1 : 1),
	       per * (size_t)p->entries, p->agents, t3 - t2, p->threads);
	fflush(stdout);
	return v;
}

/* Connects (and opens the stream); a failure is retried, as an agent would (on a starved
 * machine the server's handshake deadline may pass), and counted. */
#define CONNECT_TRIES 5
static void connect_job(size_t i, void *arg)
{
	struct setup_ctx *c = arg;
	struct sim_agent *a = &c->v[i];
	char err[512] = "";
	if (!a->mtls)
		a->mtls = sim_client_ctx(c->roots, c->roots_len, a);
	for (int t = 0; t < CONNECT_TRIES; t++) {
		if (t) {
			atomic_fetch_add(&c->retries, 1);
			sleep_s(0.5);
		}
		if (grpc_client_connect_tcp(c->p->host, setup_port(c->p, i), a->mtls, NULL, 10000,
					    &a->gc, err, sizeof(err)) < 0)
			continue;
		if (!c->stream || sim_open_stream(a, err, sizeof(err)) == 0)
			return;
		grpc_client_close(a->gc); /* and the stream */
		a->gc = NULL;
		a->stream = NULL;
	}
	bench_die("agent %zu: no connection after %d tries: %s", i, CONNECT_TRIES, err);
}

void sim_connect_agents(const struct sim_setup *p, struct sim_agent *v, const uint8_t *roots,
			size_t roots_len, bool stream)
{
	struct setup_ctx c = {.p = p, .v = v, .roots = roots, .roots_len = roots_len,
			      .stream = stream};
	sim_parallel((size_t)p->agents, p->threads, connect_job, &c);
	if (atomic_load(&c.retries))
		printf("# %s: %zu connection attempts failed and were retried\n",
		       p->label ? p->label : "setup", atomic_load(&c.retries));
}

void sim_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}
