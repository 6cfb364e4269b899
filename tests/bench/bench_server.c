/* bench_server.c: benchmarks of lanyard-server, run by tests/bench/run.sh against a server it
 * started (release build).
 *
 *   bench_server issue --admin SOCK --port P --bundle PEM --server-pid PID [options]
 *       Simulated agents (join tokens, entries parented to them) send SignX509 batches over
 *       mutual TLS from several threads. The rate is compared with the raw cryptography of one
 *       issuance (x509_csr_parse + x509_sign_leaf, the functions the server calls) measured in
 *       this process between the rounds: per core (thread CPU time, so other load on the
 *       machine does not skew it) times min(cores, pool), the threads the server signs on.
 *   bench_server sync --admin SOCK --port P --bundle PEM --server-pid PID [options]
 *       Simulated agents keep SyncEntries streams open while one entry changes per second; the
 *       server's CPU time (utime + stime from /proc) per agent per minute is the figure.
 *   With --port2 P --admin2 SOCK --server-pid2 PID (a second server on the same PostgreSQL
 *   database), agents alternate between the two servers, sync changes between the two admin
 *   APIs, and the server CPU figures are of both servers together.
 *   bench_server crypto [--threads N] [--seconds S]
 *       The raw cryptography alone (no server), e.g. to profile it.
 *
 * Figures go to stdout as "BENCH <name> <value> <unit>"; lines starting with '#' explain them.
 * Benchmarks never fail on a number: the exit status is 0 unless the setup itself failed. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include "bench_sim.h"
#include "bench_util.h"
#include "grpc_client.h"
#include "keys.h"
#include "node.pb-c.h"
#include "util.h"
#include "x509.h"


struct opts {
	const char *admin;
	const char *host;
	const char *bundle;
	int port;
	int server_pid;
	/* A second server on the same (PostgreSQL) database: agents of odd index use it, and the
	 * sync changes go through either admin API. 0/NULL: one server. */
	int port2;
	int server_pid2;
	const char *admin2;
	int agents;
	int entries;
	int threads;
	double seconds;
	int runs;
	int pool;
	double rate;
	double idle_seconds;
	int setup_threads;
	const char *name;     /* the figures' prefix: "sync" -> sync_cpu_us_per_agent, ... */
	const char *rss_name; /* also print the server's VmRSS under this name */
};


/* ---- simulated agents ---- */

/* The server agent number index talks to: with two servers, odd agents use the second. */
static int agent_port(const struct opts *o, int index)
{
	return o->port2 && index % 2 ? o->port2 : o->port;
}

/* CPU time of the server(s) under test, their signer processes included, in microseconds. */
static int64_t servers_cpu_us(const struct opts *o)
{
	int64_t t = proc_tree_cpu_us(o->server_pid);
	if (o->server_pid2)
		t += proc_tree_cpu_us(o->server_pid2);
	return t;
}

static struct sim_agent *setup_agents(const struct opts *o, WOLFSSL_CTX *server_only,
				      const char *label)
{
	struct sim_setup p = {
		.admin = o->admin,
		.host = o->host,
		.port = o->port,
		.port2 = o->port2,
		.agents = o->agents,
		.entries = o->entries,
		.threads = o->setup_threads,
		.label = label,
	};
	return sim_setup_agents(&p, server_only);
}

/* ---- issue: the raw cryptography ---- */

struct crypto_set {
	lkey *ca_key;
	uint8_t *ca_der;
	size_t ca_len;
	const uint8_t **csrs;
	size_t *csr_lens;
	size_t n_csrs;
	/* The same work with wolfCrypt's primitives: one ECDSA P-256 verification with a fresh
	 * public key (decoded from its SubjectPublicKeyInfo) and one ECDSA signature. */
	struct prim_item *prim;
	size_t n_prim;
	uint8_t hash[32];
};

struct prim_item {
	uint8_t spki[128];
	word32 spki_len;
	uint8_t sig[ECC_MAX_SIG_SIZE];
	word32 sig_len;
};

struct crypto_thread {
	pthread_t th;
	const struct crypto_set *set;
	bool prim;
	double seconds;
	size_t offset;
	uint64_t done;
	double cpu_s; /* the thread's own CPU time */
};

/* One issuance's cryptography exactly as the server's worker does it: CSR parse and signature
 * check, then the leaf signed by the CA key. */
static void crypto_one(const struct crypto_set *s, size_t i)
{
	struct csr_info ci = {0};
	char err[256];
	if (x509_csr_parse(s->csrs[i], s->csr_lens[i], &ci, err, sizeof(err)) < 0)
		bench_die("x509_csr_parse: %s", err);
	int64_t now = now_unix();
	struct x509_leaf_params p = {
		.spiffe_id = "spiffe://" TD "/bench/raw/workload",
		.not_before = now - 10,
		.not_after = now + 3600,
		.spki = ci.spki,
		.spki_len = ci.spki_len,
	};
	uint8_t *der = NULL;
	size_t len = 0;
	if (x509_sign_leaf(s->ca_key, s->ca_der, s->ca_len, &p, &der, &len) < 0)
		bench_die("x509_sign_leaf failed");
	free(der);
	csr_info_free(&ci);
}

static void prim_one(const struct crypto_set *s, size_t i, ecc_key *ca, WC_RNG *rng)
{
	const struct prim_item *it = &s->prim[i];
	ecc_key k;
	word32 idx = 0;
	int res = 0;
	if (wc_ecc_init(&k) != 0 || wc_EccPublicKeyDecode(it->spki, &idx, &k, it->spki_len) != 0 ||
	    wc_ecc_verify_hash(it->sig, it->sig_len, s->hash, sizeof(s->hash), &res, &k) != 0 ||
	    res != 1)
		bench_die("wc_ecc_verify_hash failed");
	wc_ecc_free(&k);
	uint8_t sig[ECC_MAX_SIG_SIZE];
	word32 sig_len = sizeof(sig);
	if (wc_ecc_sign_hash(s->hash, sizeof(s->hash), sig, &sig_len, rng, ca) != 0)
		bench_die("wc_ecc_sign_hash failed");
}

static void *crypto_main(void *arg)
{
	struct crypto_thread *t = arg;
	const struct crypto_set *s = t->set;
	WC_RNG rng;
	ecc_key ca;
	if (t->prim && (wc_InitRng(&rng) != 0 || wc_ecc_init(&ca) != 0 ||
			wc_ecc_make_key(&rng, 32, &ca) != 0))
		bench_die("cannot make an ECC key");
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	double end = now_s() + t->seconds;
	size_t i = t->offset;
	while (now_s() < end) {
		/* Check the clock every few issuances only: it is cheap, but not free. */
		for (int k = 0; k < 8; k++) {
			if (t->prim)
				prim_one(s, i % s->n_prim, &ca, &rng);
			else
				crypto_one(s, i % s->n_csrs);
			i++;
			t->done++;
		}
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	t->cpu_s = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
	if (t->prim) {
		wc_ecc_free(&ca);
		wc_FreeRng(&rng);
	}
	/* FP_ECC keeps a per-thread cache of precomputed points; release this thread's. */
	keys_release_thread_ecc_cache();
	return NULL;
}

struct rate {
	double wall; /* issuances per second of elapsed time, all threads together */
	double core; /* issuances per CPU-second: what one core does when it is all ours */
};

/* The rate of n threads in parallel. On a busy machine the wall rate depends on the CPU share
 * the threads get; the per-core rate does not. */
static struct rate crypto_rate(const struct crypto_set *s, bool prim, int n, double seconds)
{
	struct crypto_thread *t = xcalloc((size_t)n, sizeof(*t));
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		t[i].set = s;
		t[i].prim = prim;
		t[i].seconds = seconds;
		t[i].offset = (size_t)i * s->n_csrs / (size_t)n;
		pthread_create(&t[i].th, NULL, crypto_main, &t[i]);
	}
	uint64_t total = 0;
	double cpu = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(t[i].th, NULL);
		total += t[i].done;
		cpu += t[i].cpu_s;
	}
	double el = now_s() - t0;
	free(t);
	return (struct rate){.wall = (double)total / el, .core = cpu > 0 ? (double)total / cpu : 0};
}

/* The CA (EC P-256, the server's default key type) and n fresh keys for the primitives. */
static void crypto_prepare(struct crypto_set *cs, size_t n_prim)
{
	struct x509_ca_params cap = {
		.spiffe_id = "spiffe://" TD,
		.common_name = "bench CA",
		.not_before = now_unix() - 60,
		.not_after = now_unix() + 86400,
	};
	if (lkey_generate(KEY_EC_P256, &cs->ca_key) < 0 ||
	    x509_make_ca(cs->ca_key, NULL, NULL, 0, &cap, &cs->ca_der, &cs->ca_len) < 0)
		bench_die("cannot make the CA for the raw measurement");
	WC_RNG rng;
	if (wc_InitRng(&rng) != 0 || wc_RNG_GenerateBlock(&rng, cs->hash, sizeof(cs->hash)) != 0)
		bench_die("wc_InitRng failed");
	cs->n_prim = n_prim;
	cs->prim = xcalloc(n_prim + 1, sizeof(*cs->prim));
	for (size_t i = 0; i < n_prim; i++) {
		struct prim_item *it = &cs->prim[i];
		ecc_key k;
		it->sig_len = sizeof(it->sig);
		int len;
		if (wc_ecc_init(&k) != 0 || wc_ecc_make_key(&rng, 32, &k) != 0 ||
		    wc_ecc_sign_hash(cs->hash, sizeof(cs->hash), it->sig, &it->sig_len, &rng, &k) != 0 ||
		    (len = wc_EccPublicKeyToDer(&k, it->spki, sizeof(it->spki), 1)) <= 0)
			bench_die("cannot make an ECC key");
		it->spki_len = (word32)len;
		wc_ecc_free(&k);
	}
	wc_FreeRng(&rng);
}

static void crypto_release(struct crypto_set *cs)
{
	free(cs->prim);
	free(cs->ca_der);
	lkey_free(cs->ca_key);
}

/* The raw measurement alone (no server), e.g. to profile it: --threads N, --seconds S,
 * --agents x --entries distinct CSRs. */
static int cmd_crypto(const struct opts *o)
{
	struct crypto_set cs = {0};
	cs.n_csrs = (size_t)o->agents * (size_t)o->entries;
	cs.csrs = xcalloc(cs.n_csrs + 1, sizeof(*cs.csrs));
	cs.csr_lens = xcalloc(cs.n_csrs + 1, sizeof(size_t));
	for (size_t i = 0; i < cs.n_csrs; i++) {
		lkey *k = NULL;
		uint8_t *der = NULL;
		if (lkey_generate(KEY_EC_P256, &k) < 0 || x509_csr_create(k, &der, &cs.csr_lens[i]) < 0)
			bench_die("cannot make a CSR");
		cs.csrs[i] = der;
		lkey_free(k);
	}
	crypto_prepare(&cs, cs.n_csrs);
	struct rate x = crypto_rate(&cs, false, o->threads, o->seconds);
	struct rate p = crypto_rate(&cs, true, o->threads, o->seconds);
	printf("BENCH crypto_issue_%dt_per_s %.0f /s\n", o->threads, x.wall);
	printf("BENCH crypto_issue_core_per_s %.0f /s\n", x.core);
	printf("BENCH crypto_prim_%dt_per_s %.0f /s\n", o->threads, p.wall);
	printf("BENCH crypto_prim_core_per_s %.0f /s\n", p.core);
	for (size_t i = 0; i < cs.n_csrs; i++)
		free((void *)cs.csrs[i]);
	free(cs.csrs);
	free(cs.csr_lens);
	crypto_release(&cs);
	return 0;
}

/* ---- issue: end to end ---- */

struct issue_shared {
	struct sim_agent *agents;
	int n_agents;
	int n_threads;
	atomic_bool stop;
	_Atomic uint64_t ok, failed, calls;
};

struct issue_thread {
	pthread_t th;
	struct issue_shared *sh;
	int index;
};

static void *issue_main(void *arg)
{
	struct issue_thread *t = arg;
	struct issue_shared *sh = t->sh;
	while (!atomic_load(&sh->stop)) {
		for (int i = t->index; i < sh->n_agents && !atomic_load(&sh->stop);
		     i += sh->n_threads) {
			struct sim_agent *a = &sh->agents[i];
			uint8_t *resp = NULL;
			size_t resp_len = 0;
			int status;
			char err[512];
			if (grpc_client_unary(a->gc, NODE_PATH "SignX509", NULL, 0, a->sign_req,
					      a->sign_req_len, CALL_TIMEOUT_MS, &resp, &resp_len,
					      &status, err, sizeof(err)) < 0)
				bench_die("SignX509 transport failure: %s", err);
			if (status != GRPC_STATUS_OK)
				bench_die("SignX509 answered %s: %s", grpc_status_name(status), err);
			Lanyard__Node__V1__SignX509Response *r =
				lanyard__node__v1__sign_x509_response__unpack(NULL, resp_len, resp);
			if (!r)
				bench_die("malformed SignX509Response");
			uint64_t ok = 0;
			for (size_t k = 0; k < r->n_results; k++)
				if (r->results[k]->svid.len && !r->results[k]->error[0])
					ok++;
			atomic_fetch_add(&sh->ok, ok);
			atomic_fetch_add(&sh->failed, r->n_results - ok);
			atomic_fetch_add(&sh->calls, 1);
			lanyard__node__v1__sign_x509_response__free_unpacked(r, NULL);
			free(resp);
		}
	}
	return NULL;
}

struct issue_round {
	double per_s;
	double server_cpu_s;
	double self_cpu_s;
	uint64_t failed;
};

static struct issue_round issue_round(struct issue_shared *sh, const struct opts *o,
				      double seconds)
{
	struct issue_thread *t = xcalloc((size_t)sh->n_threads, sizeof(*t));
	atomic_store(&sh->stop, false);
	atomic_store(&sh->ok, 0);
	atomic_store(&sh->failed, 0);
	int64_t s0 = servers_cpu_us(o), c0 = proc_cpu_us(getpid());
	double t0 = now_s();
	for (int i = 0; i < sh->n_threads; i++) {
		t[i].sh = sh;
		t[i].index = i;
		pthread_create(&t[i].th, NULL, issue_main, &t[i]);
	}
	sleep_s(seconds);
	/* Issuances are counted up to the stop signal; calls in flight then finish uncounted. */
	uint64_t ok = atomic_load(&sh->ok);
	double el = now_s() - t0;
	int64_t s1 = servers_cpu_us(o), c1 = proc_cpu_us(getpid());
	atomic_store(&sh->stop, true);
	for (int i = 0; i < sh->n_threads; i++)
		pthread_join(t[i].th, NULL);
	free(t);
	return (struct issue_round){
		.per_s = (double)ok / el,
		.server_cpu_s = (double)(s1 - s0) / 1e6,
		.self_cpu_s = (double)(c1 - c0) / 1e6,
		.failed = atomic_load(&sh->failed),
	};
}

static void prepare_sign_requests(struct sim_agent *a)
{
	a->csrs = xcalloc(a->n_entries + 1, sizeof(uint8_t *));
	a->csr_lens = xcalloc(a->n_entries + 1, sizeof(size_t));
	Lanyard__Node__V1__X509SignItem *items = xcalloc(a->n_entries + 1, sizeof(*items));
	Lanyard__Node__V1__X509SignItem **ptrs = xcalloc(a->n_entries + 1, sizeof(*ptrs));
	for (size_t j = 0; j < a->n_entries; j++) {
		lkey *k = NULL;
		if (lkey_generate(KEY_EC_P256, &k) < 0 ||
		    x509_csr_create(k, &a->csrs[j], &a->csr_lens[j]) < 0)
			bench_die("cannot make a workload CSR");
		lkey_free(k);
		lanyard__node__v1__x509_sign_item__init(&items[j]);
		items[j].entry_id = a->entry_ids[j];
		items[j].csr.data = a->csrs[j];
		items[j].csr.len = a->csr_lens[j];
		ptrs[j] = &items[j];
	}
	Lanyard__Node__V1__SignX509Request m = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	m.items = ptrs;
	m.n_items = a->n_entries;
	a->sign_req_len = lanyard__node__v1__sign_x509_request__get_packed_size(&m);
	a->sign_req = xmalloc(a->sign_req_len + 1);
	lanyard__node__v1__sign_x509_request__pack(&m, a->sign_req);
	free(items);
	free(ptrs);
}

/* The first answer of every agent is checked: one SVID per entry, for the entry's SPIFFE ID. */
static void check_first_answer(struct sim_agent *a, const char *label, int index)
{
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int status;
	char err[512];
	if (grpc_client_unary(a->gc, NODE_PATH "SignX509", NULL, 0, a->sign_req, a->sign_req_len,
			      CALL_TIMEOUT_MS, &resp, &resp_len, &status, err, sizeof(err)) < 0 ||
	    status != GRPC_STATUS_OK)
		bench_die("SignX509 failed: %s", err);
	Lanyard__Node__V1__SignX509Response *r =
		lanyard__node__v1__sign_x509_response__unpack(NULL, resp_len, resp);
	if (!r || r->n_results != a->n_entries)
		bench_die("SignX509 gave %zu results for %zu items", r ? r->n_results : 0, a->n_entries);
	for (size_t k = 0; k < r->n_results; k++) {
		struct x509_info info;
		char want[256];
		snprintf(want, sizeof(want), "spiffe://" TD "/bench/%s/a%d/w%zu", label, index, k);
		if (r->results[k]->error[0])
			bench_die("SignX509 item error: %s", r->results[k]->error);
		if (x509_parse(r->results[k]->svid.data, r->results[k]->svid.len, &info, err,
			       sizeof(err)) < 0 ||
		    strcmp(info.spiffe_id, want) != 0)
			bench_die("SignX509 returned an SVID for %s, expected %s", info.spiffe_id, want);
		x509_info_free(&info);
	}
	lanyard__node__v1__sign_x509_response__free_unpacked(r, NULL);
	free(resp);
}

static int cmd_issue(const struct opts *o)
{
	uint8_t *roots = NULL;
	size_t roots_len = 0;
	WOLFSSL_CTX *server_only = sim_bundle_ctx(o->bundle, &roots, &roots_len);
	struct admin adm;
	admin_open(&adm, o->admin);
	struct sim_agent *agents = setup_agents(o, server_only, "issue");
	admin_close(&adm);

	struct crypto_set cs = {0};
	cs.n_csrs = (size_t)o->agents * (size_t)o->entries;
	cs.csrs = xcalloc(cs.n_csrs + 1, sizeof(*cs.csrs));
	cs.csr_lens = xcalloc(cs.n_csrs + 1, sizeof(size_t));
	size_t k = 0;
	for (int i = 0; i < o->agents; i++) {
		prepare_sign_requests(&agents[i]);
		agents[i].mtls = sim_client_ctx(roots, roots_len, &agents[i]);
		agents[i].gc = sim_connect(o->host, agent_port(o, i), agents[i].mtls);
		check_first_answer(&agents[i], "issue", i);
		for (size_t j = 0; j < agents[i].n_entries; j++, k++) {
			cs.csrs[k] = agents[i].csrs[j];
			cs.csr_lens[k] = agents[i].csr_lens[j];
		}
	}
	crypto_prepare(&cs, cs.n_csrs);

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int par = (int)(ncpu < o->pool ? ncpu : o->pool);
	if (par < 1)
		par = 1;
	struct issue_shared sh = {
		.agents = agents,
		.n_agents = o->agents,
		.n_threads = o->threads,
	};
	printf("# issue: %d agents x %d entries, batches of %d CSRs, %d client threads (one call in "
	       "flight each), %d rounds of %.1f s; limit threads = min(cores %ld, server pool %d) = "
	       "%d\n",
	       o->agents, o->entries, o->entries, o->threads, o->runs, o->seconds, ncpu, o->pool,
	       par);
	issue_round(&sh, o, o->seconds / 4 > 0.5 ? o->seconds / 4 : 0.5); /* warm-up */

	/* Per round: every figure, then medians over the rounds. */
	enum { RAW1, RAWP, CORE, PRIM1, PRIMP, PCORE, E2E, RATIO, RATIO_PRIM, CPU_EFF, SRV, CLI,
	       N_SERIES };
	double (*v)[N_SERIES] = xcalloc((size_t)o->runs, sizeof(*v));
	double raw_seconds = o->seconds / 4 > 0.5 ? o->seconds / 4 : 0.5;
	uint64_t failed = 0;
	for (int r = 0; r < o->runs; r++) {
		double *x = v[r];
		struct rate r1 = crypto_rate(&cs, false, 1, raw_seconds);
		struct rate rp = crypto_rate(&cs, false, par, raw_seconds);
		struct rate p1 = crypto_rate(&cs, true, 1, raw_seconds);
		struct rate pp = crypto_rate(&cs, true, par, raw_seconds);
		x[RAW1] = r1.wall;
		x[RAWP] = rp.wall;
		x[CORE] = (r1.core + rp.core) / 2;
		x[PRIM1] = p1.wall;
		x[PRIMP] = pp.wall;
		x[PCORE] = (p1.core + pp.core) / 2;
		struct issue_round ir = issue_round(&sh, o, o->seconds);
		failed += ir.failed;
		x[E2E] = ir.per_s;
		/* The limit: every core the server's pool can use, each doing nothing but this. */
		x[RATIO] = ir.per_s / (x[CORE] * par);
		x[RATIO_PRIM] = ir.per_s / (x[PCORE] * par);
		x[SRV] = ir.server_cpu_s / o->seconds;
		x[CLI] = ir.self_cpu_s / o->seconds;
		/* SVIDs per second of server CPU, against one core's raw rate. */
		x[CPU_EFF] = ir.server_cpu_s > 0 ? ir.per_s * o->seconds / ir.server_cpu_s / x[CORE]
						 : 0;
		printf("# round %d: raw x509 %.0f/s per core (wall: %.0f/s 1 thread, %.0f/s %d "
		       "threads); wolfCrypt primitives %.0f/s per core; end to end %.0f/s using %.2f "
		       "server cores (load generator %.2f)\n",
		       r + 1, x[CORE], x[RAW1], x[RAWP], par, x[PCORE], x[E2E], x[SRV], x[CLI]);
	}
	double m[N_SERIES], col[64];
	int nr = o->runs < 64 ? o->runs : 64;
	for (int f = 0; f < N_SERIES; f++) {
		for (int r = 0; r < nr; r++)
			col[r] = v[r][f];
		m[f] = median(col, (size_t)nr);
	}
	if (failed)
		printf("# WARNING: %" PRIu64 " items were refused during the rounds\n", failed);
	printf("# issue_ratio = issue_per_s / (raw per-core rate x %d), the limit of this machine: "
	       "min(%ld cores, server pool %d) threads doing nothing but the cryptography of an "
	       "issuance (x509_csr_parse + x509_sign_leaf, what the server's workers call), the "
	       "per-core rate measured in thread CPU time in the same round. Medians of %d rounds. "
	       "On a busy machine the server gets less than %d cores (it used %.2f); "
	       "issue_cpu_ratio = SVIDs per server CPU-second / the per-core rate does not depend "
	       "on that. issue_prim_ratio uses wolfCrypt's bare ECDSA verify + sign as the limit.\n",
	       par, ncpu, o->pool, nr, par, m[SRV]);
	printf("BENCH crypto_issue_core_per_s %.0f /s\n", m[CORE]);
	printf("BENCH crypto_issue_1t_per_s %.0f /s\n", m[RAW1]);
	printf("BENCH crypto_issue_par_per_s %.0f /s\n", m[RAWP]);
	printf("BENCH crypto_prim_core_per_s %.0f /s\n", m[PCORE]);
	printf("BENCH issue_per_s %.0f /s\n", m[E2E]);
	printf("BENCH issue_ratio %.2f ratio\n", m[RATIO]);
	printf("BENCH issue_cpu_ratio %.2f ratio\n", m[CPU_EFF]);
	printf("BENCH issue_prim_ratio %.2f ratio\n", m[RATIO_PRIM]);
	printf("BENCH issue_server_cores %.2f cores\n", m[SRV]);
	printf("# issue_server_rss_kib: the network-facing process after the rounds; "
	       "issue_signer_rss_kib: its child processes (the CA key signer)\n");
	printf("BENCH issue_server_rss_kib %ld KiB\n", proc_status_kib(o->server_pid, "VmRSS"));
	printf("BENCH issue_signer_rss_kib %ld KiB\n", proc_children_rss_kib(o->server_pid));

	free(v);
	free(cs.csrs);
	free(cs.csr_lens);
	crypto_release(&cs);
	sim_free_agents(agents, o->agents);
	wolfSSL_CTX_free(server_only);
	free(roots);
	return 0;
}

/* ---- sync: many agents holding entry streams ---- */

static int cmd_sync(const struct opts *o)
{
	uint8_t *roots = NULL;
	size_t roots_len = 0;
	WOLFSSL_CTX *server_only = sim_bundle_ctx(o->bundle, &roots, &roots_len);
	struct admin adm, adm2;
	admin_open(&adm, o->admin);
	if (o->admin2)
		admin_open(&adm2, o->admin2);
	struct sim_agent *agents = setup_agents(o, server_only, o->name);
	double t0 = now_s();
	struct sim_setup p = {.host = o->host, .port = o->port, .port2 = o->port2,
			      .agents = o->agents, .threads = o->setup_threads, .label = o->name};
	sim_connect_agents(&p, agents, roots, roots_len, true);
	printf("# %s: %d agents connected over mutual TLS with their snapshots in %.1f s (%d "
	       "threads)\n", o->name, o->agents, now_s() - t0, o->setup_threads);
	fflush(stdout);

	struct sim_sync sh = {.agents = agents, .n = o->agents};
	pthread_t reader;
	pthread_create(&reader, NULL, sim_sync_reader, &sh);
	sleep_s(1); /* let the connection setup's work drain */

	int64_t c0 = servers_cpu_us(o);
	sleep_s(o->idle_seconds);
	int64_t c1 = servers_cpu_us(o);
	double idle = (double)(c1 - c0) / o->agents / (o->idle_seconds / 60);

	/* One change per 1/rate seconds, each to an entry of the next agent (round-robin). */
	size_t n_changes = (size_t)(o->seconds * o->rate);
	double *lat = xcalloc(n_changes + 1, sizeof(double));
	size_t n_lat = 0, missed = 0;
	uint64_t ups0 = atomic_load(&sh.upserts);
	int64_t s0 = servers_cpu_us(o);
	double start = now_s();
	for (size_t k = 0; k < n_changes; k++) {
		double due = start + (double)k / o->rate;
		double wait = due - now_s();
		if (wait > 0)
			sleep_s(wait);
		struct sim_agent *a = &agents[k % (size_t)o->agents];
		const char *eid = a->entry_ids[(k / (size_t)o->agents) % a->n_entries];
		char path[128];
		snprintf(path, sizeof(path), "/v1/entries/%s", eid);
		json_t *body = json_pack("{s:o}", "hint", json_sprintf("change-%zu", k)), *r = NULL;
		/* Two servers: agents alternate between them, and so do the changes, shifted by
		 * two, so that half the changes are made on the other server than the agent's. */
		struct admin *via = o->admin2 && k % 4 >= 2 ? &adm2 : &adm;
		int64_t t = now_mono_us();
		long code = admin_call(via, "PUT", path, body, &r);
		json_decref(body);
		json_decref(r);
		if (code != 200)
			bench_die("PUT %s answered %ld: %s", path, code, via->buf ? via->buf : "");
		/* The delta's latency, waited for within the change's own time slot. */
		double limit = now_s() + 0.9 / o->rate;
		while (atomic_load(&a->last_delta_us) < t && now_s() < limit)
			sleep_s(0.0005);
		if (atomic_load(&a->last_delta_us) >= t)
			lat[n_lat++] = (double)(atomic_load(&a->last_delta_us) - t) / 1000.0;
		else
			missed++;
	}
	/* The window ends with the last change's slot. */
	sleep_s(start + (double)n_changes / o->rate - now_s());
	double el = now_s() - start;
	int64_t s1 = servers_cpu_us(o);
	long rss = proc_status_kib(o->server_pid, "VmRSS");
	char la[64];
	uint64_t ups = atomic_load(&sh.upserts) - ups0;
	atomic_store(&sh.stop, true);
	pthread_join(reader, NULL);

	double busy = (double)(s1 - s0) / o->agents / (el / 60);
	printf("# %s: %d agents x %d entries; idle %.0f s: server %.1f ms CPU; %zu changes in "
	       "%.0f s (%.2f/s): server %.1f ms CPU, %" PRIu64 " entry upserts pushed, %zu "
	       "deltas not seen within the slot, %d streams broken; load average %s\n",
	       o->name, o->agents, o->entries, o->idle_seconds, (double)(c1 - c0) / 1000, n_changes, el,
	       (double)n_changes / el, (double)(s1 - s0) / 1000, ups, missed,
	       atomic_load(&sh.broken), loadavg(la, sizeof(la)));
	printf("BENCH %s_cpu_us_per_agent %.1f us/agent/min\n", o->name, busy);
	printf("BENCH %s_idle_cpu_us_per_agent %.1f us/agent/min\n", o->name, idle);
	printf("BENCH %s_delta_p50_ms %.2f ms\n", o->name, median(lat, n_lat));
	if (o->rss_name) {
		printf("# %s: server VmRSS with %d agent streams and %d entries (VmHWM %ld KiB), "
		       "load average %s\n", o->name, o->agents, o->agents * o->entries,
		       proc_status_kib(o->server_pid, "VmHWM"), loadavg(la, sizeof(la)));
		printf("BENCH %s %ld KiB\n", o->rss_name, rss);
	}
	fflush(stdout);
	free(lat);
	admin_close(&adm);
	if (o->admin2)
		admin_close(&adm2);
	sim_free_agents(agents, o->agents);
	wolfSSL_CTX_free(server_only);
	free(roots);
	return 0;
}

/* ---- command line ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_server issue|sync --admin SOCK --port P --bundle PEM --server-pid PID\n"
		"       bench_server crypto [--threads N] [--seconds S]\n"
		"         [--host 127.0.0.1] [--agents N] [--entries N] [--threads N]\n"
		"         [--seconds S] [--runs N] [--pool N] [--rate R] [--idle-seconds S]\n"
		"         [--setup-threads N] [--name PREFIX] [--rss-name NAME]  (sync)\n"
		"         [--port2 P --admin2 SOCK --server-pid2 PID]  (a second server, one database)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bench_prog = "bench_server";
	if (argc < 2)
		usage();
	struct opts o = {
		.host = "127.0.0.1",
		.agents = 64,
		.entries = 10,
		.threads = 8,
		.seconds = 5,
		.runs = 3,
		.pool = 4,
		.rate = 1,
		.idle_seconds = 10,
		.setup_threads = 4,
		.name = "sync",
	};
	const char *pool_env = getenv("UV_THREADPOOL_SIZE");
	if (pool_env && atoi(pool_env) > 0)
		o.pool = atoi(pool_env);
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (strcmp(k, "--admin") == 0)
			o.admin = v;
		else if (strcmp(k, "--host") == 0)
			o.host = v;
		else if (strcmp(k, "--bundle") == 0)
			o.bundle = v;
		else if (strcmp(k, "--port") == 0)
			o.port = atoi(v);
		else if (strcmp(k, "--server-pid") == 0)
			o.server_pid = atoi(v);
		else if (strcmp(k, "--port2") == 0)
			o.port2 = atoi(v);
		else if (strcmp(k, "--server-pid2") == 0)
			o.server_pid2 = atoi(v);
		else if (strcmp(k, "--admin2") == 0)
			o.admin2 = v;
		else if (strcmp(k, "--agents") == 0)
			o.agents = atoi(v);
		else if (strcmp(k, "--entries") == 0)
			o.entries = atoi(v);
		else if (strcmp(k, "--threads") == 0)
			o.threads = atoi(v);
		else if (strcmp(k, "--seconds") == 0)
			o.seconds = atof(v);
		else if (strcmp(k, "--runs") == 0)
			o.runs = atoi(v);
		else if (strcmp(k, "--pool") == 0)
			o.pool = atoi(v);
		else if (strcmp(k, "--rate") == 0)
			o.rate = atof(v);
		else if (strcmp(k, "--idle-seconds") == 0)
			o.idle_seconds = atof(v);
		else if (strcmp(k, "--setup-threads") == 0)
			o.setup_threads = atoi(v);
		else if (strcmp(k, "--name") == 0)
			o.name = v;
		else if (strcmp(k, "--rss-name") == 0)
			o.rss_name = v;
		else
			usage();
	}
	bool crypto = strcmp(argv[1], "crypto") == 0;
	if (o.agents < 1 || o.entries < 1 || o.threads < 1 || o.seconds <= 0 || o.runs < 1 ||
	    o.pool < 1 || o.rate <= 0 || o.idle_seconds <= 0 || o.setup_threads < 1)
		usage();
	if (!crypto && (!o.admin || !o.bundle || o.port <= 0 || o.server_pid <= 0))
		usage();
	if (!crypto && proc_cpu_us(o.server_pid) < 0)
		bench_die("cannot read /proc/%d/stat", o.server_pid);
	if (!crypto && (o.port2 || o.server_pid2 || o.admin2) &&
	    (o.port2 <= 0 || !o.admin2 || proc_cpu_us(o.server_pid2) < 0))
		bench_die("a second server needs --port2, --admin2 and a valid --server-pid2");
	setvbuf(stdout, NULL, _IOLBF, 0);
	sim_raise_nofile();
	wolfSSL_Init();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int ret;
	if (crypto)
		ret = cmd_crypto(&o);
	else if (strcmp(argv[1], "issue") == 0)
		ret = cmd_issue(&o);
	else if (strcmp(argv[1], "sync") == 0)
		ret = cmd_sync(&o);
	else
		usage();
	curl_global_cleanup();
	wolfSSL_Cleanup();
	return ret;
}
