/* mem_trim.h: gives freed heap back to the system once a burst has settled.
 *
 * glibc keeps the pages of freed blocks resident: after a burst (thousands of TLS handshakes,
 * a 10,000-entry batch) the free memory between the long-lived blocks that follow it (one per
 * agent connection) stays in the process's RSS, and only malloc_trim() gives it back (its
 * madvise reaches free pages inside an arena, not just at its top). The server samples its
 * resident size against the heap in use and trims when the difference has grown by
 * MEM_TRIM_SLACK_BYTES over its level after the last trim, on two samples in a row (so not in
 * the middle of a burst that is still growing).
 *
 * Threading: one struct mem_trim per process, used by the thread that owns it only (the server's
 * main loop, from its one-second tick); malloc_trim itself is thread-safe. */
#ifndef LANYARD_MEM_TRIM_H
#define LANYARD_MEM_TRIM_H

#include <stdbool.h>
#include <stdint.h>

#define MEM_TRIM_SLACK_BYTES (8u << 20)
#define MEM_TRIM_INTERVAL_S 5

struct mem_trim {
	uint64_t baseline;   /* resident minus in use after the last trim (or the lowest seen) */
	bool have_baseline;
	unsigned over;       /* samples in a row above baseline + MEM_TRIM_SLACK_BYTES */
	int64_t next_sample; /* unix seconds */
	uint64_t trims;
	uint64_t released;   /* bytes of RSS the trims gave back, summed */
};

/* Decision only, no I/O: records one sample (resident bytes, heap bytes in use) and returns
 * true when the caller should trim now. After a trim the next sample sets the baseline. */
bool mem_trim_decide(struct mem_trim *t, uint64_t resident, uint64_t in_use);

/* Samples the process at most every MEM_TRIM_INTERVAL_S and trims when mem_trim_decide says
 * so. Returns 1 when it trimmed, 0 otherwise. */
int mem_trim_tick(struct mem_trim *t, int64_t now);

#endif
