/* procstats.h: a few facts about the running process, read from /proc/self, for the metrics
 * both daemons expose. Reading them touches only procfs (no blocking I/O). */
#ifndef LANYARD_PROCSTATS_H
#define LANYARD_PROCSTATS_H

#include <stdint.h>

#include "metrics.h"

struct procstats {
	uint64_t resident_bytes; /* RSS, from /proc/self/statm */
	uint64_t virtual_bytes;
	int64_t open_fds;        /* entries in /proc/self/fd; -1 when unknown */
	int64_t max_fds;         /* RLIMIT_NOFILE soft limit; -1 when unlimited or unknown */
	double cpu_seconds;      /* user + system time, from /proc/self/stat */
	int64_t threads;         /* from /proc/self/stat; -1 when unknown */
};

/* Fills out; members it could not read are left at 0 (or -1 where noted). Returns 0, or -1 when
 * nothing could be read at all. */
int procstats_read(struct procstats *out);

/* The resident size alone (/proc/self/statm: no walk of /proc/self/fd); 0 when unknown. */
uint64_t procstats_resident(void);

/* Writes the process families with the given prefix ("lanyard_agent"):
 * <prefix>_process_resident_memory_bytes, _process_virtual_memory_bytes, _process_open_fds,
 * _process_max_fds, _process_cpu_seconds_total, _process_threads, _start_time_seconds,
 * _uptime_seconds and _build_info{version="..."} 1. */
void procstats_write_metrics(struct metrics *m, const char *prefix, const struct procstats *ps,
			     int64_t start_time, int64_t now, const char *version);

#endif
