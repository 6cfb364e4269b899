/* bench_fleet.c: the server under a whole fleet's reconnection, run by tests/bench/run.sh.
 *
 *   bench_fleet storm --admin SOCK --port P --bundle PEM --server-pid PID --config JSON
 *                     --server-bin BIN --server-log FILE --pid-file FILE [options]
 *       --agents N simulated agents (join tokens, --entries entries each) attest, connect over
 *       mutual TLS and hold their entry streams. The server (PID) is then stopped (SIGTERM) and
 *       started again (BIN run --config JSON, output appended to FILE, the new pid written to
 *       --pid-file for run.sh's cleanup). Every agent reconnects as lanyard-agent does: it waits
 *       its jittered backoff (full jitter: 0.1 s to 0.5 s, the top doubling per failed attempt up
 *       to 30 s, as in agent/server_conn.c), connects with its agent SVID (resumes: no
 *       attestation), reads its entry snapshot (SyncEntries) and renews one SVID (SignX509). reconnect_storm_s: from
 *       the stop to the last agent done. --workers threads drive the agents (blocking clients;
 *       each thread owns agents i = w mod workers and serves the one due first).
 *
 * Figures go to stdout as "BENCH <name> <value> <unit>"; lines starting with '#' explain them.
 * Benchmarks never fail on a number: the exit status is 0 unless the setup itself failed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "bench_sim.h"
#include "bench_util.h"
#include "node.pb-c.h"
#include "util.h"
#include "x509.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define BACKOFF_FLOOR_MS 100

struct opts {
	const char *admin, *host, *bundle, *config, *server_bin, *server_log, *pid_file;
	int port, server_pid;
	int agents, entries, setup_threads, workers;
	double timeout;
};

/* One simulated agent's reconnection. */
struct fleet_agent {
	double due;       /* next attempt, now_s() clock */
	unsigned streak;  /* failed attempts in a row */
	double done;      /* 0 until resynced and renewed */
	unsigned attempts;
	uint8_t *sign_req; /* SignX509Request for its first entry */
	size_t sign_req_len;
};

struct storm {
	const struct opts *o;
	struct sim_agent *agents;
	struct fleet_agent *f;
	double end; /* give up */
	int64_t self_cpu_us; /* this process's CPU at the stop (the load generator's own share) */
	_Atomic uint64_t refused, timeouts, failed_calls;
};

/* lanyard-agent's wait before attempt streak + 1: 0.1 s to the streak's step (full jitter). */
static double backoff_s(unsigned streak)
{
	int64_t base = BACKOFF_MAX_MS;
	if (streak <= 1)
		base = BACKOFF_MIN_MS;
	else if (streak - 1 < 16 && ((int64_t)BACKOFF_MIN_MS << (streak - 1)) < BACKOFF_MAX_MS)
		base = (int64_t)BACKOFF_MIN_MS << (streak - 1);
	uint32_t rnd = 0;
	random_bytes(&rnd, sizeof(rnd));
	return (double)(BACKOFF_FLOOR_MS + (int64_t)(rnd % (uint32_t)(base - BACKOFF_FLOOR_MS + 1))) /
	       1000.0;
}

static void make_sign_req(struct sim_agent *a, struct fleet_agent *f)
{
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	if (x509_csr_create(a->key, &csr, &csr_len) < 0)
		bench_die("cannot make a CSR");
	Lanyard__Node__V1__X509SignItem item = LANYARD__NODE__V1__X509_SIGN_ITEM__INIT;
	Lanyard__Node__V1__X509SignItem *items[1] = {&item};
	item.entry_id = a->entry_ids[0];
	item.csr.data = csr;
	item.csr.len = csr_len;
	Lanyard__Node__V1__SignX509Request m = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	m.items = items;
	m.n_items = 1;
	f->sign_req_len = lanyard__node__v1__sign_x509_request__get_packed_size(&m);
	f->sign_req = xmalloc(f->sign_req_len + 1);
	lanyard__node__v1__sign_x509_request__pack(&m, f->sign_req);
	free(csr);
}

/* One reconnection attempt: connect with the agent SVID, snapshot, one renewal. 0 or -1. */
static int attempt(struct storm *s, struct sim_agent *a, struct fleet_agent *f)
{
	char err[512];
	int ret = -1;
	grpc_client_close(a->gc);
	a->gc = NULL;
	a->stream = NULL;
	if (grpc_client_connect_tcp(s->o->host, s->o->port, a->mtls, NULL, 10000, &a->gc, err,
				    sizeof(err)) < 0) {
		atomic_fetch_add(strstr(err, "timed out") || strstr(err, "timeout") ? &s->timeouts :
										     &s->refused,
				 1);
		return -1;
	}
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int status;
	if (sim_open_stream(a, err, sizeof(err)) < 0)
		goto out;
	if (grpc_client_unary(a->gc, NODE_PATH "SignX509", NULL, 0, f->sign_req, f->sign_req_len,
			      CALL_TIMEOUT_MS, &resp, &resp_len, &status, err, sizeof(err)) < 0 ||
	    status != GRPC_STATUS_OK)
		goto out;
	Lanyard__Node__V1__SignX509Response *r =
		lanyard__node__v1__sign_x509_response__unpack(NULL, resp_len, resp);
	if (r && r->n_results == 1 && r->results[0]->svid.len && !r->results[0]->error[0])
		ret = 0;
	lanyard__node__v1__sign_x509_response__free_unpacked(r, NULL);
out:
	if (ret < 0)
		atomic_fetch_add(&s->failed_calls, 1);
	free(resp);
	return ret;
}

struct worker {
	pthread_t th;
	struct storm *s;
	int index, n;
};

/* Serves the worker's agents in the order they are due until all are done (or time is up). */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct storm *s = w->s;
	for (;;) {
		int best = -1;
		for (int i = w->index; i < s->o->agents; i += w->n)
			if (!s->f[i].done && (best < 0 || s->f[i].due < s->f[best].due))
				best = i;
		if (best < 0 || now_s() > s->end)
			break;
		struct fleet_agent *f = &s->f[best];
		sleep_s(f->due - now_s());
		f->attempts++;
		if (attempt(s, &s->agents[best], f) == 0) {
			f->done = now_s();
		} else {
			f->streak++;
			f->due = now_s() + backoff_s(f->streak + 1);
		}
	}
	keys_release_thread_ecc_cache(); /* FP_ECC: this thread's cache */
	return NULL;
}

/* Whether a server listens on the Unix socket at path: its file appears at bind(), before
 * listen(), and a request in between would fail the run (admin_call dies on it). */
static bool unix_listening(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static int wait_exit(int pid, double timeout)
{
	double end = now_s() + timeout;
	while (now_s() < end) {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return 0;
		/* Our own child (the second restart): reap it. */
		waitpid(pid, NULL, WNOHANG);
		sleep_s(0.005);
	}
	return -1;
}

static int start_server(const struct opts *o)
{
	pid_t pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(o->server_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(o->server_bin, o->server_bin, "run", "--config", o->config, (char *)NULL);
		_exit(127);
	}
	FILE *pf = fopen(o->pid_file, "w");
	if (!pf)
		bench_die("cannot write %s", o->pid_file);
	fprintf(pf, "%d\n", (int)pid);
	fclose(pf);
	return (int)pid;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const struct opts *o, struct storm *s, double t_stop, double t_exited,
		   double t_started, int new_pid)
{
	double *d = xcalloc((size_t)o->agents + 1, sizeof(double));
	size_t n_done = 0;
	uint64_t attempts = 0;
	for (int i = 0; i < o->agents; i++) {
		attempts += s->f[i].attempts;
		if (s->f[i].done)
			d[n_done++] = s->f[i].done - t_stop;
	}
	qsort(d, n_done, sizeof(double), cmp_double);
	char la[64];
	printf("# storm: %d agents; server stopped in %.2f s and serving again %.2f s after the "
	       "stop; %zu agents back (p50 %.1f s, p99 %.1f s), %" PRIu64 " attempts: %" PRIu64
	       " connections refused or reset, %" PRIu64 " timed out, %" PRIu64 " calls failed; "
	       "new server %.1f s CPU, VmHWM %ld KiB; this load generator %.1f s CPU; load "
	       "average %s\n",
	       o->agents, t_exited - t_stop, t_started - t_stop, n_done,
	       n_done ? quantile(d, n_done, 0.5) : 0, n_done ? quantile(d, n_done, 0.99) : 0,
	       attempts, atomic_load(&s->refused), atomic_load(&s->timeouts),
	       atomic_load(&s->failed_calls), (double)proc_cpu_us(new_pid) / 1e6,
	       proc_status_kib(new_pid, "VmHWM"),
	       (double)(proc_cpu_us((int)getpid()) - s->self_cpu_us) / 1e6, loadavg(la, sizeof(la)));
	if (n_done < (size_t)o->agents)
		printf("# WARNING: %zu agents were not back within %.0f s\n",
		       (size_t)o->agents - n_done, o->timeout);
	printf("BENCH reconnect_storm_s %.1f s\n", n_done ? d[n_done - 1] : o->timeout);
	printf("BENCH reconnect_storm_p50_s %.1f s\n", n_done ? quantile(d, n_done, 0.5) : 0);
	free(d);
}

static int cmd_storm(const struct opts *o)
{
	uint8_t *roots = NULL;
	size_t roots_len = 0;
	WOLFSSL_CTX *server_only = sim_bundle_ctx(o->bundle, &roots, &roots_len);
	struct sim_setup p = {.admin = o->admin, .host = o->host, .port = o->port,
			      .agents = o->agents, .entries = o->entries,
			      .threads = o->setup_threads, .label = "storm"};
	struct sim_agent *agents = sim_setup_agents(&p, server_only);
	double t0 = now_s();
	sim_connect_agents(&p, agents, roots, roots_len, true);
	struct storm s = {.o = o, .agents = agents};
	s.f = xcalloc((size_t)o->agents, sizeof(*s.f));
	for (int i = 0; i < o->agents; i++)
		make_sign_req(&agents[i], &s.f[i]);
	printf("# storm: %d agents connected with their snapshots in %.1f s\n", o->agents,
	       now_s() - t0);

	s.self_cpu_us = proc_cpu_us((int)getpid());
	double t_stop = now_s();
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	kill(o->server_pid, SIGTERM);
	printf("# storm: SIGTERM to the server at unix_ms=%lld\n",
	       (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
	if (wait_exit(o->server_pid, 60) < 0)
		bench_die("the server (pid %d) did not stop within 60 s", o->server_pid);
	double t_exited = now_s();
	int new_pid = start_server(o);
	/* Every agent noticed the loss at the stop and waits its first backoff. */
	for (int i = 0; i < o->agents; i++)
		s.f[i].due = t_stop + backoff_s(1);
	s.end = t_stop + o->timeout;
	struct worker *w = xcalloc((size_t)o->workers, sizeof(*w));
	for (int i = 0; i < o->workers; i++) {
		w[i] = (struct worker){.s = &s, .index = i, .n = o->workers};
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	/* When the new server answered first: its admin socket. */
	double t_started = 0;
	struct admin adm;
	while (!t_started && now_s() < s.end) {
		if (unix_listening(o->admin)) {
			admin_open(&adm, o->admin);
			if (admin_call(&adm, "GET", "/v1/bundle", NULL, NULL) == 200)
				t_started = now_s();
			admin_close(&adm);
		}
		if (!t_started)
			sleep_s(0.01);
	}
	for (int i = 0; i < o->workers; i++)
		pthread_join(w[i].th, NULL);
	report(o, &s, t_stop, t_exited, t_started, new_pid);
	for (int i = 0; i < o->agents; i++)
		free(s.f[i].sign_req);
	free(s.f);
	free(w);
	sim_free_agents(agents, o->agents);
	wolfSSL_CTX_free(server_only);
	free(roots);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_fleet storm --admin SOCK --port P --bundle PEM --server-pid PID\n"
		"         --config JSON --server-bin BIN --server-log FILE --pid-file FILE\n"
		"         [--host 127.0.0.1] [--agents N] [--entries N] [--setup-threads N]\n"
		"         [--workers N] [--timeout S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bench_prog = "bench_fleet";
	if (argc < 2 || strcmp(argv[1], "storm") != 0)
		usage();
	struct opts o = {.host = "127.0.0.1", .agents = 5000, .entries = 1, .setup_threads = 4,
			 .workers = 64, .timeout = 300};
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		const char **str[] = {&o.admin, &o.host, &o.bundle, &o.config, &o.server_bin,
				      &o.server_log, &o.pid_file};
		const char *str_keys[] = {"--admin", "--host", "--bundle", "--config",
					  "--server-bin", "--server-log", "--pid-file"};
		int *num[] = {&o.port, &o.server_pid, &o.agents, &o.entries, &o.setup_threads,
			      &o.workers};
		const char *num_keys[] = {"--port", "--server-pid", "--agents", "--entries",
					  "--setup-threads", "--workers"};
		bool known = false;
		for (size_t j = 0; j < sizeof(str) / sizeof(str[0]); j++)
			if (strcmp(k, str_keys[j]) == 0)
				*str[j] = v, known = true;
		for (size_t j = 0; j < sizeof(num) / sizeof(num[0]); j++)
			if (strcmp(k, num_keys[j]) == 0)
				*num[j] = atoi(v), known = true;
		if (strcmp(k, "--timeout") == 0)
			o.timeout = atof(v), known = true;
		if (!known)
			usage();
	}
	if (argc % 2 != 0 || !o.admin || !o.bundle || !o.config || !o.server_bin ||
	    !o.server_log || !o.pid_file || o.port <= 0 || o.server_pid <= 0 || o.agents < 1 ||
	    o.entries < 1 || o.setup_threads < 1 || o.workers < 1 || o.timeout <= 0)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	sim_raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	wolfSSL_Init();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int ret = cmd_storm(&o);
	curl_global_cleanup();
	wolfSSL_Cleanup();
	return ret;
}
