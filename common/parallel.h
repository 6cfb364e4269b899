/* parallel.h: run independent pieces of CPU-bound work on the machine's cores.
 *
 * parallel_for(n, min_each, fn, ctx) calls fn(ctx, i) once for every i in [0, n), on up to
 * PARALLEL_MAX_THREADS threads (the caller's included) and never more than the online CPUs or
 * n / min_each, and returns when every call has returned. The calls run concurrently: fn may
 * write only its own i's results and read what nothing writes meanwhile. If a thread cannot be
 * started, the others (at least the caller) do its share: the work is always done.
 *
 * Threads: any thread; the helper threads live only for the call. */
#ifndef LANYARD_PARALLEL_H
#define LANYARD_PARALLEL_H

#include <stddef.h>

#define PARALLEL_MAX_THREADS 8

void parallel_for(size_t n, size_t min_each, void (*fn)(void *ctx, size_t i), void *ctx);

#endif
