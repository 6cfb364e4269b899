/* procstats.c: resident memory, file descriptors and CPU time of this process from /proc/self. */
#include "procstats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small procfs file into buf (NUL-terminated). Returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < len - 1) {
		ssize_t n = read(fd, buf + off, len - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	return (ssize_t)off;
}

static int read_statm(struct procstats *out)
{
	char buf[256];
	unsigned long long size, resident;
	if (read_small("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return -1;
	long page = sysconf(_SC_PAGESIZE);
	if (page <= 0)
		page = 4096;
	out->virtual_bytes = (uint64_t)size * (uint64_t)page;
	out->resident_bytes = (uint64_t)resident * (uint64_t)page;
	return 0;
}

uint64_t procstats_resident(void)
{
	struct procstats ps = { 0 };

	return read_statm(&ps) == 0 ? ps.resident_bytes : 0;
}

static int read_stat(struct procstats *out)
{
	char buf[1024];
	if (read_small("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return -1;
	/* The command name (field 2) may hold spaces and parentheses: fields resume after the
	 * last ')'. Field 3 is then the first one. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p++;
	unsigned long long utime = 0, stime = 0;
	long long threads = -1;
	int field = 2;
	char *save = NULL;
	for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		field++;
		if (field == 14)
			utime = strtoull(tok, NULL, 10);
		else if (field == 15)
			stime = strtoull(tok, NULL, 10);
		else if (field == 20) {
			threads = strtoll(tok, NULL, 10);
			break;
		}
	}
	if (field < 20)
		return -1;
	long tck = sysconf(_SC_CLK_TCK);
	if (tck <= 0)
		tck = 100;
	out->cpu_seconds = (double)(utime + stime) / (double)tck;
	out->threads = threads;
	return 0;
}

static int64_t count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int64_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	/* The directory stream's own descriptor was among them. */
	return n > 0 ? n - 1 : 0;
}

int procstats_read(struct procstats *out)
{
	memset(out, 0, sizeof(*out));
	out->threads = -1;
	out->max_fds = -1;
	int got = 0;
	if (read_statm(out) == 0)
		got++;
	if (read_stat(out) == 0)
		got++;
	out->open_fds = count_fds();
	if (out->open_fds >= 0)
		got++;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		out->max_fds = (int64_t)rl.rlim_cur;
	return got ? 0 : -1;
}

static void family(struct metrics *m, const char *prefix, const char *suffix,
		   enum metric_type type, const char *help, double v)
{
	char name[128];
	snprintf(name, sizeof(name), "%s_%s", prefix, suffix);
	metrics_single(m, name, type, help, v);
}

/* The process families carry the standard names of Prometheus client libraries (process_*, no
 * daemon prefix), so dashboards and alerts written for any exporter work unchanged; each daemon
 * is its own scrape target, so the job label tells them apart. */
void procstats_write_metrics(struct metrics *m, const char *prefix, const struct procstats *ps,
			     int64_t start_time, int64_t now, const char *version)
{
	char name[128];
	snprintf(name, sizeof(name), "%s_build_info", prefix);
	metrics_family(m, name, METRIC_GAUGE, "Always 1; the version label tells the build.");
	metrics_sample(m, name, 1, "version", version, NULL);
	family(m, prefix, "uptime_seconds", METRIC_GAUGE, "Seconds since the daemon started.",
	       (double)(now - start_time));
	metrics_single(m, "process_start_time_seconds", METRIC_GAUGE,
		       "Start time of the process since unix epoch in seconds.", (double)start_time);
	metrics_single(m, "process_resident_memory_bytes", METRIC_GAUGE,
		       "Resident memory size in bytes.", (double)ps->resident_bytes);
	metrics_single(m, "process_virtual_memory_bytes", METRIC_GAUGE,
		       "Virtual memory size in bytes.", (double)ps->virtual_bytes);
	if (ps->open_fds >= 0)
		metrics_single(m, "process_open_fds", METRIC_GAUGE, "Number of open file descriptors.",
			       (double)ps->open_fds);
	if (ps->max_fds >= 0)
		metrics_single(m, "process_max_fds", METRIC_GAUGE,
			       "Maximum number of open file descriptors.", (double)ps->max_fds);
	metrics_single(m, "process_cpu_seconds_total", METRIC_COUNTER,
		       "Total user and system CPU time spent in seconds.", ps->cpu_seconds);
	if (ps->threads >= 0)
		metrics_single(m, "process_threads", METRIC_GAUGE, "Number of OS threads.",
			       (double)ps->threads);
}
