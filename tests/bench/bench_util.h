/* bench_util.h: what both benchmark programs need: errors, clocks, statistics, /proc figures
 * and a client for the server's admin API. Benchmarks are not the product: a failure to set
 * something up ends the program (bench_die) rather than being returned. */
#ifndef LANYARD_BENCH_UTIL_H
#define LANYARD_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

/* The program name bench_die prefixes its messages with (set it first thing in main). */
extern const char *bench_prog;

void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

double now_s(void); /* monotonic, in seconds */
void sleep_s(double s);

/* Both sort v. */
double median(double *v, size_t n);
double quantile(double *v, size_t n, double q); /* q in 0..1, nearest rank */

/* utime + stime of a process (all its threads) in microseconds; -1 when unreadable. */
int64_t proc_cpu_us(int pid);
/* proc_cpu_us of pid plus its live child processes (the server's signer, server/signer.h):
 * the CPU an operation costs, wherever the server does it. */
int64_t proc_tree_cpu_us(int pid);
/* VmRSS of pid's live child processes, summed, in KiB (0 without children). */
long proc_children_rss_kib(int pid);
/* A "Key:   123 kB" line of /proc/<pid>/status, in KiB; -1 when missing. */
long proc_status_kib(int pid, const char *key);

/* The first three fields of /proc/loadavg in buf ("?" when unreadable); returns buf. */
const char *loadavg(char *buf, size_t len);

/* The server's admin API (HTTP/JSON on a Unix socket), one keep-alive connection. */
struct admin {
	CURL *h;
	struct curl_slist *hdrs;
	char *buf; /* the last answer's body, NUL-terminated */
	size_t len;
};

void admin_open(struct admin *a, const char *sock);
void admin_close(struct admin *a);
/* One request with an optional JSON body; returns the HTTP status and, when out is given, the
 * JSON answer (caller decrefs; NULL when empty or not JSON). Dies on a transport failure. */
long admin_call(struct admin *a, const char *method, const char *path, json_t *body,
		json_t **out);

#endif
