/* parallel.c: see parallel.h. Work is handed out one index at a time from an atomic counter,
 * so uneven pieces even out. */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

struct par {
	size_t n;
	atomic_size_t next;
	void (*fn)(void *ctx, size_t i);
	void *ctx;
};

static void *par_worker(void *arg)
{
	struct par *p = arg;
	for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;)
		p->fn(p->ctx, i);
	return NULL;
}

static size_t par_threads(size_t n, size_t min_each)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t t = cpus > 0 ? (size_t)cpus : 1;
	if (t > PARALLEL_MAX_THREADS)
		t = PARALLEL_MAX_THREADS;
	size_t by_work = min_each ? n / min_each : n;
	if (t > by_work)
		t = by_work;
	return t ? t : 1;
}

void parallel_for(size_t n, size_t min_each, void (*fn)(void *ctx, size_t i), void *ctx)
{
	struct par p = {.n = n, .fn = fn, .ctx = ctx};
	pthread_t th[PARALLEL_MAX_THREADS];
	size_t started = 0, want = par_threads(n, min_each);
	atomic_init(&p.next, 0);
	for (size_t k = 1; k < want; k++) {
		if (pthread_create(&th[started], NULL, par_worker, &p) != 0)
			break; /* the threads already started and this one share the rest */
		started++;
	}
	par_worker(&p);
	for (size_t k = 0; k < started; k++)
		pthread_join(th[k], NULL);
}
