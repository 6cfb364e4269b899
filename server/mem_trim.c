/* mem_trim.c: see mem_trim.h. */
#include "mem_trim.h"

#include <malloc.h>

#include "log.h"
#include "procstats.h"
#include "util.h"

bool mem_trim_decide(struct mem_trim *t, uint64_t resident, uint64_t in_use)
{
	uint64_t slack = resident > in_use ? resident - in_use : 0;

	if (!t->have_baseline || slack < t->baseline) {
		/* The first sample, the one after a trim, or less than ever: what is not heap
		 * (code, stacks, libraries) plus the free memory glibc keeps anyway. */
		t->baseline = slack;
		t->have_baseline = true;
		t->over = 0;
		return false;
	}
	if (slack - t->baseline < MEM_TRIM_SLACK_BYTES) {
		t->over = 0;
		return false;
	}
	if (++t->over < 2)
		return false;
	t->over = 0;
	t->have_baseline = false;
	return true;
}

int mem_trim_tick(struct mem_trim *t, int64_t now)
{
	uint64_t before, after;
	struct mallinfo2 mi;

	if (now < t->next_sample)
		return 0;
	t->next_sample = now + MEM_TRIM_INTERVAL_S;
	before = procstats_resident();
	if (!before)
		return 0;
	mi = mallinfo2();
	if (!mem_trim_decide(t, before, mi.uordblks + mi.hblkhd))
		return 0;
	heap_trim();
	t->trims++;
	after = procstats_resident();
	if (after && after < before) {
		t->released += before - after;
		log_debug("memory: gave %llu KiB of freed heap back to the system",
			  (unsigned long long)((before - after) >> 10));
	}
	return 1;
}
