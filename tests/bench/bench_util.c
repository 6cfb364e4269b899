/* bench_util.c: shared helpers of bench_server and bench_agent. */
#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

const char *bench_prog = "bench";

void bench_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", bench_prog);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

double now_s(void)
{
	return (double)now_mono_us() / 1e6;
}

void sleep_s(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	size_t i = (size_t)(q * (double)n + 0.5);
	if (i > 0)
		i--;
	return v[i < n ? i : n - 1];
}

int64_t proc_cpu_us(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces: fields are counted from the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return (int64_t)((ut + st) * 1000000ULL / (unsigned long long)(hz > 0 ? hz : 100));
}

/* The pids whose parent is pid, from each /proc/<pid>/task/<tid>/children; how many (<= max). */
static size_t proc_children(int pid, int *out, size_t max)
{
	char path[64], tasks[64];
	size_t n = 0;
	snprintf(tasks, sizeof(tasks), "/proc/%d/task", pid);
	DIR *d = opendir(tasks);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/children", pid, e->d_name);
		FILE *f = fopen(path, "r");
		int c;
		while (f && n < max && fscanf(f, "%d", &c) == 1)
			out[n++] = c;
		if (f)
			fclose(f);
	}
	closedir(d);
	return n;
}

int64_t proc_tree_cpu_us(int pid)
{
	int kids[16];
	int64_t t = proc_cpu_us(pid);
	size_t n = proc_children(pid, kids, 16);
	for (size_t i = 0; t >= 0 && i < n; i++) {
		int64_t c = proc_cpu_us(kids[i]);
		if (c > 0)
			t += c;
	}
	return t;
}

long proc_children_rss_kib(int pid)
{
	int kids[16];
	long sum = 0;
	size_t n = proc_children(pid, kids, 16);
	for (size_t i = 0; i < n; i++) {
		long v = proc_status_kib(kids[i], "VmRSS");
		if (v > 0)
			sum += v;
	}
	return sum;
}

long proc_status_kib(int pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static size_t admin_write(char *p, size_t size, size_t n, void *ud)
{
	struct admin *a = ud;
	size_t l = size * n;
	a->buf = xrealloc(a->buf, a->len + l + 1);
	memcpy(a->buf + a->len, p, l);
	a->len += l;
	a->buf[a->len] = 0;
	return l;
}

void admin_open(struct admin *a, const char *sock)
{
	memset(a, 0, sizeof(*a));
	a->h = curl_easy_init();
	if (!a->h)
		bench_die("curl_easy_init failed");
	a->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(a->h, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(a->h, CURLOPT_HTTPHEADER, a->hdrs);
	curl_easy_setopt(a->h, CURLOPT_WRITEFUNCTION, admin_write);
	curl_easy_setopt(a->h, CURLOPT_WRITEDATA, a);
	/* A batch of 10,000 entries into PostgreSQL took over 30 s at load 15 and ended a full run:
	 * setup may be slow on a busy machine, it is never what a figure measures. */
	curl_easy_setopt(a->h, CURLOPT_TIMEOUT, 600L);
}

void admin_close(struct admin *a)
{
	curl_easy_cleanup(a->h);
	curl_slist_free_all(a->hdrs);
	free(a->buf);
}

long admin_call(struct admin *a, const char *method, const char *path, json_t *body,
		json_t **out)
{
	char url[512];
	snprintf(url, sizeof(url), "http://localhost%s", path);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	a->len = 0;
	if (a->buf)
		a->buf[0] = 0;
	curl_easy_setopt(a->h, CURLOPT_URL, url);
	curl_easy_setopt(a->h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, text ? text : "");
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(a->h, CURLOPT_HTTPGET, 1L);
	CURLcode rc = curl_easy_perform(a->h);
	free(text);
	if (rc != CURLE_OK)
		bench_die("admin API %s %s: %s", method, path, curl_easy_strerror(rc));
	long code = 0;
	curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &code);
	if (out)
		*out = a->len ? json_loads(a->buf, 0, NULL) : NULL;
	return code;
}

const char *loadavg(char *buf, size_t len)
{
	double a[3];
	FILE *f = fopen("/proc/loadavg", "r");
	if (f && fscanf(f, "%lf %lf %lf", &a[0], &a[1], &a[2]) == 3)
		snprintf(buf, len, "%.2f %.2f %.2f", a[0], a[1], a[2]);
	else
		snprintf(buf, len, "?");
	if (f)
		fclose(f);
	return buf;
}
