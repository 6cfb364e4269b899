/* bench_agent.c: benchmarks of lanyard-agent, run by tests/bench/run.sh against an agent (and
 * server) it started (release build).
 *
 *   populate  creates entries parented to the agent over the server's admin API and waits
 *             until the agent holds an SVID for every one (its state.json says so)
 *   rss       the agent's VmRSS once it is idle (steady state)
 *   fetch     connect + attest + first X509SVIDResponse: latency percentiles, then the rate
 *             of several client processes at once
 *   streams   memory per open FetchX509SVID stream, then the fan-out of a renewed SVID to
 *             all of them; with --fetch-name, also the fetch latency of one more client while
 *             they are all open (1,000 concurrent clients)
 *   jwt       FetchJWTSVID latency: cached (the same audience again) and cold (a new audience
 *             each time: the agent asks the server)
 *   restart   agent start to first successful fetch of its persisted SVIDs (server down)
 *
 * Figures go to stdout as "BENCH <name> <value> <unit>"; lines starting with '#' explain them.
 * The exit status is 0 unless the setup itself failed: benchmarks never fail on a number. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>

#include "bench_util.h"
#include "grpc_client.h"
#include "util.h"
#include "workload.pb-c.h"
#include "workload_client.h"
#include "x509.h"

#define TD "example.org"
#define FETCH_PATH "/SpiffeWorkloadAPI/FetchX509SVID"

struct opts {
	const char *admin;
	const char *socket;
	const char *state_dir;
	const char *parent;
	const char *ids_out;
	const char *entry_id;
	const char *name;
	const char *agent_bin;
	const char *config;
	const char *log;
	int pid;
	int from, to, mine;
	int count;
	int procs;
	int runs;
	int server_port;
	int per_conn;           /* streams per connection */
	const char *suffix;     /* of the streams figures' names: "_10k" */
	const char *fetch_name; /* streams: fetch latency with the streams open, under this name */
	double seconds;
	double timeout;
};

static double tv_us(const struct timeval *tv)
{
	return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

/* Waits until the process has used less than 1% of a core over the last second (at most
 * max_s seconds): the steady state the memory figures are taken in. */
static void wait_idle(int pid, double max_s)
{
	double end = now_s() + max_s;
	int64_t prev = proc_cpu_us(pid);
	while (now_s() < end) {
		sleep_s(1.0);
		int64_t cur = proc_cpu_us(pid);
		if (cur < 0)
			bench_die("process %d is gone", pid);
		if (cur - prev <= 10000)
			return;
		prev = cur;
	}
	printf("# note: process %d was still busy after %.0f s\n", pid, max_s);
}


/* ---- populate ---- */

/* SVIDs in the agent's state.json (entries that carry an "svid"), -1 when unreadable. */
static long state_svids(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/state.json", dir);
	json_t *root = json_load_file(path, 0, NULL);
	if (!root)
		return -1;
	json_t *entries = json_object_get(root, "entries"), *e;
	size_t i;
	long n = 0;
	json_array_foreach(entries, i, e)
		if (json_is_object(json_object_get(e, "svid")))
			n++;
	json_decref(root);
	return n;
}

/* Waits until the agent's state.json holds at least want SVIDs; the count it saw. The file is
 * parsed again only when it changed: with 10,000 SVIDs it is 10 MB, and parsing it in a loop
 * would take CPU from the processes being measured. */
static long wait_state(const char *dir, long want, double timeout)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/state.json", dir);
	struct timespec seen = {0};
	double end = now_s() + timeout;
	long n = -1;
	for (;;) {
		struct stat st;
		if (stat(path, &st) == 0 && (st.st_mtim.tv_sec != seen.tv_sec ||
					     st.st_mtim.tv_nsec != seen.tv_nsec)) {
			seen = st.st_mtim;
			n = state_svids(dir);
		}
		if (n >= want || now_s() >= end)
			return n;
		sleep_s(0.5);
	}
}

/* Entries from..to-1 parented to the agent. The first `mine` are for the calling uid (their ids
 * are written to --ids-out); the others are for uids no workload here has, so the agent holds
 * their SVIDs but serves them to nobody in this benchmark. */
static int cmd_populate(const struct opts *o)
{
	struct admin adm;
	admin_open(&adm, o->admin);
	FILE *ids = o->ids_out ? fopen(o->ids_out, "a") : NULL;
	if (o->ids_out && !ids)
		bench_die("cannot open %s: %s", o->ids_out, strerror(errno));
	double t0 = now_s();
	for (int i = o->from; i < o->to; i++) {
		char sid[256], sel[64];
		snprintf(sid, sizeof(sid), "spiffe://" TD "/bench/agent/w%d", i);
		snprintf(sel, sizeof(sel), "unix:uid:%ld",
			 i < o->mine ? (long)getuid() : 3000000L + i);
		json_t *body = json_pack("{s:s, s:s, s:[s]}", "spiffe_id", sid, "parent_id",
					 o->parent, "selectors", sel);
		json_t *r = NULL;
		long code = admin_call(&adm, "POST", "/v1/entries", body, &r);
		json_decref(body);
		const char *id = json_string_value(json_object_get(r, "id"));
		if (code != 201 || !id)
			bench_die("POST /v1/entries answered %ld: %s", code, adm.buf ? adm.buf : "");
		if (ids && i < o->mine)
			fprintf(ids, "%s\n", id);
		json_decref(r);
	}
	if (ids)
		fclose(ids);
	admin_close(&adm);
	double t1 = now_s();
	long n = -1;
	if (o->state_dir) {
		n = wait_state(o->state_dir, o->to, o->timeout);
		if (n < o->to)
			bench_die("the agent holds %ld SVIDs after %.0f s, expected %d", n, o->timeout,
			    o->to);
	}
	printf("# populate: %d entries created in %.1f s (%.0f/s over the admin API)%s",
	       o->to - o->from, t1 - t0, (o->to - o->from) / (t1 - t0 > 0 ? t1 - t0 : 1),
	       o->state_dir ? "" : "\n");
	if (o->state_dir)
		printf("; the agent held all %ld SVIDs %.1f s later\n", n, now_s() - t1);
	return 0;
}

/* ---- rss ---- */

static int cmd_rss(const struct opts *o)
{
	if (o->state_dir && o->to > 0) {
		double t0 = now_s();
		long n = wait_state(o->state_dir, o->to, o->timeout);
		if (n < o->to)
			bench_die("the agent holds %ld SVIDs after %.0f s, expected %d", n, o->timeout,
			    o->to);
		printf("# %s: the agent held its %ld SVIDs %.1f s after this step began\n", o->name,
		       n, now_s() - t0);
	}
	wait_idle(o->pid, o->timeout);
	sleep_s(o->seconds);
	long rss = proc_status_kib(o->pid, "VmRSS"), hwm = proc_status_kib(o->pid, "VmHWM");
	long anon = proc_status_kib(o->pid, "RssAnon"), file = proc_status_kib(o->pid, "RssFile");
	if (rss < 0)
		bench_die("cannot read /proc/%d/status", o->pid);
	printf("# %s: VmRSS %ld KiB (anonymous %ld, file-backed %ld), peak VmHWM %ld KiB\n",
	       o->name, rss, anon, file, hwm);
	printf("BENCH %s %ld KiB\n", o->name, rss);
	return 0;
}

/* ---- fetch ---- */

/* Connect, attest, first X509SVIDResponse, close. The microseconds it took, or -1. */
static double one_fetch(const char *sock, char *err, size_t errlen)
{
	struct workload_client *c = NULL;
	struct workload_x509_context x = {0};
	int status = 0;
	int64_t t0 = now_mono_us();
	if (workload_client_connect(sock, 2000, &c, err, errlen) < 0)
		return -1;
	workload_client_set_timeout(c, 5000);
	int r = workload_fetch_x509(c, &x, &status, err, errlen);
	int64_t t1 = now_mono_us();
	bool ok = r == 0 && x.n_svids > 0;
	workload_x509_context_free(&x);
	workload_client_close(c);
	return ok ? (double)(t1 - t0) : -1;
}

static int cmd_fetch(const struct opts *o)
{
	char err[512];
	/* Latency: sequential fetches after a short warm-up. */
	for (int i = 0; i < 50; i++)
		if (one_fetch(o->socket, err, sizeof(err)) < 0)
			bench_die("fetch failed: %s", err);
	double *lat = xcalloc((size_t)o->count, sizeof(double));
	for (int i = 0; i < o->count; i++)
		if ((lat[i] = one_fetch(o->socket, err, sizeof(err))) < 0)
			bench_die("fetch failed: %s", err);
	double p50 = quantile(lat, (size_t)o->count, 0.50),
	       p99 = quantile(lat, (size_t)o->count, 0.99);
	printf("# fetch: %d sequential fetches (new connection each): p50 %.0f us, p90 %.0f us, "
	       "p99 %.0f us, max %.0f us\n",
	       o->count, p50, quantile(lat, (size_t)o->count, 0.90), p99, lat[o->count - 1]);
	printf("BENCH fetch_p50_us %.0f us\n", p50);
	printf("BENCH fetch_p99_us %.0f us\n", p99);
	free(lat);

	/* Rate: o->procs client processes fetch in a loop for o->seconds, o->runs times. */
	double rates[32];
	int runs = o->runs < 32 ? o->runs : 32;
	for (int r = 0; r < runs; r++) {
		int fds[2];
		if (pipe(fds) < 0)
			bench_die("pipe: %s", strerror(errno));
		double start = now_s() + 0.2; /* every child starts at the same moment */
		struct rusage ru0, ru1;
		getrusage(RUSAGE_CHILDREN, &ru0);
		int64_t a0 = o->pid > 0 ? proc_cpu_us(o->pid) : -1;
		for (int p = 0; p < o->procs; p++) {
			pid_t pid = fork();
			if (pid < 0)
				bench_die("fork: %s", strerror(errno));
			if (pid == 0) {
				close(fds[0]);
				sleep_s(start - now_s());
				long n = 0, failed = 0;
				double end = start + o->seconds;
				while (now_s() < end) {
					if (one_fetch(o->socket, err, sizeof(err)) < 0)
						failed++;
					else
						n++;
				}
				long msg[2] = {n, failed};
				ssize_t w = write(fds[1], msg, sizeof(msg));
				_exit(w == sizeof(msg) ? 0 : 1);
			}
		}
		close(fds[1]);
		long total = 0, failed = 0, msg[2];
		while (read(fds[0], msg, sizeof(msg)) == sizeof(msg)) {
			total += msg[0];
			failed += msg[1];
		}
		close(fds[0]);
		while (wait(NULL) > 0)
			;
		int64_t a1 = o->pid > 0 ? proc_cpu_us(o->pid) : -1;
		getrusage(RUSAGE_CHILDREN, &ru1);
		double cli_us = tv_us(&ru1.ru_utime) + tv_us(&ru1.ru_stime) - tv_us(&ru0.ru_utime) -
				tv_us(&ru0.ru_stime);
		rates[r] = (double)total / o->seconds;
		printf("# fetch rate round %d: %d processes, %.0f fetches/s%s; CPU per fetch: "
		       "agent %.0f us, clients %.0f us\n",
		       r + 1, o->procs, rates[r], failed ? " (some failed)" : "",
		       a0 >= 0 && total ? (double)(a1 - a0) / (double)total : 0,
		       total ? cli_us / (double)total : 0);
	}
	printf("BENCH fetch_per_s %.0f /s\n", quantile(rates, (size_t)runs, 0.5));
	return 0;
}

/* ---- jwt ---- */

/* One FetchJWTSVID for aud on c: the microseconds it took. Dies on failure. */
static double one_jwt(struct workload_client *c, const char *aud)
{
	struct workload_jwt_svids j;
	int status = 0;
	char err[512];
	int64_t t0 = now_mono_us();
	if (workload_fetch_jwt(c, &aud, 1, NULL, &j, &status, err, sizeof(err)) != 0)
		bench_die("FetchJWTSVID (audience %s) failed, status %d: %s", aud, status, err);
	int64_t t1 = now_mono_us();
	workload_jwt_svids_free(&j);
	return (double)(t1 - t0);
}

/* The p99 (and *p50) latency of count calls: all for one audience, or a new one each (fresh). */
static double jwt_round(struct workload_client *c, int count, bool fresh, double *p50)
{
	double *lat = xcalloc((size_t)count, sizeof(double));
	char aud[128];
	for (int i = 0; i < count; i++) {
		if (fresh)
			snprintf(aud, sizeof(aud), "bench-cold-%d-%d", (int)getpid(), i);
		else
			snprintf(aud, sizeof(aud), "bench-cached");
		lat[i] = one_jwt(c, aud);
	}
	*p50 = quantile(lat, (size_t)count, 0.5);
	double p99 = quantile(lat, (size_t)count, 0.99);
	free(lat);
	return p99;
}

static int cmd_jwt(const struct opts *o)
{
	struct workload_client *c = NULL;
	char err[512];
	double p50;
	if (workload_client_connect(o->socket, 2000, &c, err, sizeof(err)) < 0)
		bench_die("connect %s: %s", o->socket, err);
	workload_client_set_timeout(c, 10000);
	/* The first call of the cached audience is cold; then every call is a hit. */
	one_jwt(c, "bench-cached");
	double hot = jwt_round(c, o->count, false, &p50);
	printf("# jwt: %d FetchJWTSVID calls, the same audience (cached), one open connection: "
	       "p50 %.0f us, p99 %.0f us\n", o->count, p50, hot);
	printf("BENCH jwt_fetch_p99_us %.0f us\n", hot);
	int cold_n = o->count / 10 > 10 ? o->count / 10 : 10;
	double cold = jwt_round(c, cold_n, true, &p50);
	printf("# jwt: %d FetchJWTSVID calls, a new audience each (the agent asks the server): "
	       "p50 %.2f ms, p99 %.2f ms\n", cold_n, p50 / 1000, cold / 1000);
	printf("BENCH jwt_fetch_cold_p99_ms %.2f ms\n", cold / 1000);
	workload_client_close(c);
	return 0;
}

/* ---- streams: memory per stream and fan-out ---- */

struct wstream {
	struct grpc_client *gc; /* shared by per_conn streams; the first of them owns it */
	bool owns_gc;
	struct grpc_stream *s;
	uint8_t *base; /* the message in force before the renewal */
	size_t base_len;
	uint8_t *last; /* the newest message */
	size_t last_len;
	int64_t got_us; /* when a message differing from base arrived, 0 before */
};

/* Opens a FetchX509SVID stream on gc, or on a new connection when gc is NULL. */
static void open_wstream(struct wstream *w, const char *sock, struct grpc_client *gc)
{
	static const struct grpc_header hdr = {"workload.spiffe.io", "true"};
	char err[512];
	uint8_t *msg = NULL;
	size_t len = 0;
	int status;
	w->owns_gc = !gc;
	if (!gc && grpc_client_connect_unix(sock, 5000, &gc, err, sizeof(err)) < 0)
		bench_die("cannot connect to %s: %s", sock, err);
	w->gc = gc;
	if (grpc_client_stream_open(w->gc, FETCH_PATH, &hdr, 1, NULL, 0, &w->s, err,
				    sizeof(err)) < 0)
		bench_die("cannot open a FetchX509SVID stream: %s", err);
	int r = grpc_stream_next(w->s, 10000, &msg, &len, &status, err, sizeof(err));
	if (r != 1)
		bench_die("FetchX509SVID gave no first message (%d, status %d): %s", r, status, err);
	w->base = msg;
	w->base_len = len;
}

static void close_wstream(struct wstream *w)
{
	grpc_stream_cancel(w->s);
	free(w->base);
	free(w->last);
}

/* Reads whatever arrived on one stream; at is the time it is seen. */
static void drain_one(struct wstream *w, int i, int64_t at)
{
	for (;;) {
		uint8_t *msg = NULL;
		size_t len = 0;
		int status;
		char err[256];
		int r = grpc_stream_next(w->s, 0, &msg, &len, &status, err, sizeof(err));
		if (r == 0)
			break;
		if (r != 1)
			bench_die("stream %d ended (%d, status %d): %s", i, r, status, err);
		/* Only a message that differs from the one in force counts. */
		if (!w->got_us && (len != w->base_len || memcmp(msg, w->base, len) != 0))
			w->got_us = at;
		free(w->last);
		w->last = msg;
		w->last_len = len;
	}
}

/* Reads whatever arrived on every stream: one poll() over every connection (pfd[c] is
 * connection c, which carries streams c * per_conn ...). Reading one stream may buffer the
 * messages of the others of its connection, so a ready connection has all of them read. */
static void drain(struct wstream *v, int n, int per_conn, struct pollfd *pfd, int timeout_ms)
{
	int n_conns = (n + per_conn - 1) / per_conn;
	if (poll(pfd, (nfds_t)n_conns, timeout_ms) <= 0)
		return;
	int64_t t = now_mono_us();
	for (int c = 0; c < n_conns; c++) {
		if (!pfd[c].revents)
			continue;
		for (int i = c * per_conn; i < n && i < (c + 1) * per_conn; i++)
			drain_one(&v[i], i, t);
	}
}

/* Sequential fetches (new connection each) while the streams are open: the p99 as name. */
static void fetch_with_streams(const struct opts *o, int n)
{
	char err[512];
	int count = o->procs * 500;
	double *lat = xcalloc((size_t)count, sizeof(double));
	for (int i = 0; i < count; i++)
		if ((lat[i] = one_fetch(o->socket, err, sizeof(err))) < 0)
			bench_die("fetch failed: %s", err);
	double p99 = quantile(lat, (size_t)count, 0.99);
	printf("# %s: %d sequential fetches while %d other clients hold open streams: p50 %.0f us, "
	       "p99 %.0f us, max %.0f us\n",
	       o->fetch_name, count, n, quantile(lat, (size_t)count, 0.5), p99, lat[count - 1]);
	printf("BENCH %s %.0f us\n", o->fetch_name, p99);
	free(lat);
}

/* The leaf serial of the first SVID of an X509SVIDResponse, "" when unreadable. */
static void first_serial(const uint8_t *msg, size_t len, char *out, size_t outlen)
{
	out[0] = 0;
	X509SVIDResponse *r = x509_svidresponse__unpack(NULL, len, msg);
	if (!r)
		return;
	struct x509_info info;
	if (r->n_svids && x509_parse(r->svids[0]->x509_svid.data, r->svids[0]->x509_svid.len, &info,
				     NULL, 0) == 0) {
		snprintf(out, outlen, "%s", info.serial);
		x509_info_free(&info);
	}
	x509_svidresponse__free_unpacked(r, NULL);
}

static int cmd_streams(const struct opts *o)
{
	int n = o->count;
	wait_idle(o->pid, o->timeout);
	long rss0 = proc_status_kib(o->pid, "VmRSS");
	int pc = o->per_conn, n_conns = (n + pc - 1) / pc;
	struct wstream *v = xcalloc((size_t)n, sizeof(*v));
	double t0 = now_s();
	for (int i = 0; i < n; i++)
		open_wstream(&v[i], o->socket, i % pc ? v[i - i % pc].gc : NULL);
	double opened = now_s() - t0;
	wait_idle(o->pid, o->timeout);
	long rss1 = proc_status_kib(o->pid, "VmRSS");
	printf("# streams: %d FetchX509SVID streams (%d per connection, %d connections) opened in "
	       "%.2f s; agent VmRSS %ld KiB before, %ld KiB with them open\n",
	       n, pc, n_conns, opened, rss0, rss1);
	printf("BENCH stream_kib_each%s %.1f KiB\n", o->suffix, (double)(rss1 - rss0) / n);
	if (o->fetch_name)
		fetch_with_streams(o, n);

	struct pollfd *pfd = xcalloc((size_t)n_conns, sizeof(*pfd));
	for (int c = 0; c < n_conns; c++) {
		pfd[c].fd = grpc_client_fd(v[c * pc].gc);
		pfd[c].events = POLLIN;
	}
	struct admin adm;
	admin_open(&adm, o->admin);
	char path[256], serial0[80], serial1[80];
	snprintf(path, sizeof(path), "/v1/entries/%s", o->entry_id);
	double *fan = xcalloc((size_t)o->runs, sizeof(double));
	double *total = xcalloc((size_t)o->runs, sizeof(double));
	int done_runs = 0;
	for (int r = 0; r < o->runs; r++) {
		drain(v, n, pc, pfd, 0);
		for (int i = 0; i < n; i++) {
			if (v[i].last) {
				free(v[i].base);
				v[i].base = v[i].last;
				v[i].base_len = v[i].last_len;
				v[i].last = NULL;
			}
			v[i].got_us = 0;
		}
		first_serial(v[0].base, v[0].base_len, serial0, sizeof(serial0));
		/* A new TTL is a new revision of the entry: the agent must have it re-signed. The
		 * base differs from one run to the next (several runs share the entry). */
		int ttl = 3600 + (int)(getpid() % 1000) * 2 + (r % 2 ? 0 : 1);
		json_t *body = json_pack("{s:i}", "x509_svid_ttl", ttl);
		int64_t t_put = now_mono_us();
		long code = admin_call(&adm, "PUT", path, body, NULL);
		json_decref(body);
		if (code != 200)
			bench_die("PUT %s answered %ld: %s", path, code, adm.buf ? adm.buf : "");
		int got = 0;
		double end = now_s() + o->timeout;
		while (got < n && now_s() < end) {
			drain(v, n, pc, pfd, 100);
			got = 0;
			for (int i = 0; i < n; i++)
				got += v[i].got_us != 0;
		}
		if (got < n) {
			printf("# fan-out round %d: only %d of %d streams got the renewed SVID "
			       "within %.0f s\n",
			       r + 1, got, n, o->timeout);
			continue;
		}
		int64_t first = INT64_MAX, last = 0;
		for (int i = 0; i < n; i++) {
			first = v[i].got_us < first ? v[i].got_us : first;
			last = v[i].got_us > last ? v[i].got_us : last;
		}
		first_serial(v[n - 1].last, v[n - 1].last_len, serial1, sizeof(serial1));
		if (!serial1[0] || strcmp(serial0, serial1) == 0)
			bench_die("round %d: the streams got a message but not a new SVID (serial %s)",
			    r + 1, serial1);
		fan[done_runs] = (double)(last - first) / 1000.0;
		total[done_runs] = (double)(last - t_put) / 1000.0;
		printf("# fan-out round %d: serial %s -> %s; first stream %.1f ms after the entry "
		       "update, all %d streams %.1f ms after the first\n",
		       r + 1, serial0, serial1, (double)(first - t_put) / 1000.0, n,
		       fan[done_runs]);
		done_runs++;
	}
	admin_close(&adm);
	printf("# fanout_ms: from the first stream receiving the renewed SVID (the agent's hot "
	       "swap) to the last of %d; fanout_total_ms also counts the server push and the "
	       "re-signing after the entry update\n",
	       n);
	printf("BENCH fanout%s_ms %.1f ms\n", o->suffix, quantile(fan, (size_t)done_runs, 0.5));
	printf("BENCH fanout_total%s_ms %.1f ms\n", o->suffix,
	       quantile(total, (size_t)done_runs, 0.5));
	for (int i = 0; i < n; i++)
		close_wstream(&v[i]);
	for (int i = 0; i < n; i += pc)
		grpc_client_close(v[i].gc);
	free(v);
	free(pfd);
	free(fan);
	free(total);
	return 0;
}

/* ---- restart ---- */

static bool server_down(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	bool down = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED;
	close(fd);
	return down;
}

static pid_t spawn_agent(const struct opts *o)
{
	pid_t pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(o->agent_bin, o->agent_bin, "run", "--config", o->config, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int cmd_restart(const struct opts *o)
{
	if (o->server_port > 0 && !server_down(o->server_port))
		bench_die("the server still answers on port %d: stop it first", o->server_port);
	double *ready = xcalloc((size_t)o->runs, sizeof(double));
	int n_ok = 0;
	for (int r = 0; r < o->runs; r++) {
		char err[512] = "";
		int64_t t0 = now_mono_us();
		pid_t pid = spawn_agent(o);
		double end = now_s() + o->timeout, us = -1;
		while (now_s() < end) {
			int status;
			if (waitpid(pid, &status, WNOHANG) == pid)
				bench_die("the agent exited at start (status %d); see %s", status,
				    o->log);
			if (one_fetch(o->socket, err, sizeof(err)) >= 0) {
				us = (double)(now_mono_us() - t0);
				break;
			}
			sleep_s(0.0005);
		}
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		if (us < 0) {
			printf("# restart round %d: no SVID served within %.0f s: %s\n", r + 1,
			       o->timeout, err);
			continue;
		}
		ready[n_ok++] = us / 1000.0;
		printf("# restart round %d: first SVID served %.1f ms after the agent started\n",
		       r + 1, us / 1000.0);
	}
	const char *name = o->name ? o->name : "restart_ready_ms";
	printf("# %s: fork+exec of lanyard-agent to the first successful FetchX509SVID of its "
	       "persisted SVIDs, the server being down (port %d refused connections)\n",
	       name, o->server_port);
	printf("BENCH %s %.1f ms\n", name, quantile(ready, (size_t)n_ok, 0.5));
	free(ready);
	return 0;
}

/* ---- command line ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_agent populate --admin SOCK --parent ID --from N --to N [--mine N]\n"
		"                            [--ids-out FILE] [--state DIR] [--timeout S]\n"
		"       bench_agent rss --pid P --name NAME [--state DIR --to N] [--seconds S]\n"
		"       bench_agent fetch --socket S [--pid AGENT] [--count N] [--procs N]\n"
		"                         [--seconds S] [--runs N]\n"
		"       bench_agent streams --socket S --pid P --admin SOCK --entry-id ID\n"
		"                           [--count N] [--runs N] [--per-conn K] [--suffix S]\n"
		"                           [--fetch-name NAME --procs N]\n"
		"       bench_agent jwt --socket S [--count N]\n"
		"       bench_agent restart --agent-bin B --config C --socket S --log F\n"
		"                           [--server-port P] [--runs N] [--name NAME]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bench_prog = "bench_agent";
	if (argc < 2)
		usage();
	struct opts o = {
		.count = 2000,
		.procs = 2,
		.runs = 3,
		.seconds = 3,
		.timeout = 120,
		.per_conn = 1,
		.suffix = "",
	};
	for (int i = 2; i < argc; i += 2) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (strcmp(k, "--admin") == 0)
			o.admin = v;
		else if (strcmp(k, "--socket") == 0)
			o.socket = v;
		else if (strcmp(k, "--state") == 0)
			o.state_dir = v;
		else if (strcmp(k, "--parent") == 0)
			o.parent = v;
		else if (strcmp(k, "--ids-out") == 0)
			o.ids_out = v;
		else if (strcmp(k, "--entry-id") == 0)
			o.entry_id = v;
		else if (strcmp(k, "--name") == 0)
			o.name = v;
		else if (strcmp(k, "--agent-bin") == 0)
			o.agent_bin = v;
		else if (strcmp(k, "--config") == 0)
			o.config = v;
		else if (strcmp(k, "--log") == 0)
			o.log = v;
		else if (strcmp(k, "--pid") == 0)
			o.pid = atoi(v);
		else if (strcmp(k, "--from") == 0)
			o.from = atoi(v);
		else if (strcmp(k, "--to") == 0)
			o.to = atoi(v);
		else if (strcmp(k, "--mine") == 0)
			o.mine = atoi(v);
		else if (strcmp(k, "--count") == 0)
			o.count = atoi(v);
		else if (strcmp(k, "--procs") == 0)
			o.procs = atoi(v);
		else if (strcmp(k, "--runs") == 0)
			o.runs = atoi(v);
		else if (strcmp(k, "--per-conn") == 0)
			o.per_conn = atoi(v);
		else if (strcmp(k, "--suffix") == 0)
			o.suffix = v;
		else if (strcmp(k, "--fetch-name") == 0)
			o.fetch_name = v;
		else if (strcmp(k, "--server-port") == 0)
			o.server_port = atoi(v);
		else if (strcmp(k, "--seconds") == 0)
			o.seconds = atof(v);
		else if (strcmp(k, "--timeout") == 0)
			o.timeout = atof(v);
		else
			usage();
	}
	if (o.count < 1 || o.procs < 1 || o.runs < 1 || o.per_conn < 1 || o.seconds < 0 || o.timeout <= 0)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* 10,000 streams need their connections' descriptors: the soft limit up to the hard one. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const char *cmd = argv[1];
	int ret;
	if (strcmp(cmd, "populate") == 0 && o.admin && o.parent && o.to > o.from)
		ret = cmd_populate(&o);
	else if (strcmp(cmd, "rss") == 0 && o.pid > 0 && o.name)
		ret = cmd_rss(&o);
	else if (strcmp(cmd, "fetch") == 0 && o.socket)
		ret = cmd_fetch(&o);
	else if (strcmp(cmd, "streams") == 0 && o.socket && o.pid > 0 && o.admin && o.entry_id)
		ret = cmd_streams(&o);
	else if (strcmp(cmd, "jwt") == 0 && o.socket)
		ret = cmd_jwt(&o);
	else if (strcmp(cmd, "restart") == 0 && o.agent_bin && o.config && o.socket && o.log)
		ret = cmd_restart(&o);
	else
		usage();
	curl_global_cleanup();
	return ret;
}
