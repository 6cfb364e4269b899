/* parallel.c: every index is run exactly once, on more than one thread when there is work and
 * more than one CPU, and small or empty work runs on the caller alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "parallel.h"

struct work {
	atomic_int *hits;
	pthread_t *who;
	pthread_t caller;
	atomic_int by_others;
	int wait_for_others;
};

static void visit(void *ctx, size_t i)
{
	struct work *w = ctx;
	atomic_fetch_add(&w->hits[i], 1);
	w->who[i] = pthread_self();
	if (!pthread_equal(w->who[i], w->caller)) {
		atomic_fetch_add(&w->by_others, 1);
		return;
	}
	/* The caller holds its first index until a helper thread has done one (10 s at most: on a
	 * busy machine a new thread may start late, and the test must not depend on speed). */
	for (int t = 0; w->wait_for_others && t < 10000 && !atomic_load(&w->by_others); t++)
		usleep(1000);
	w->wait_for_others = 0;
}

static size_t run(size_t n, size_t min_each, int wait_for_others, size_t *other_threads)
{
	struct work w = {.hits = calloc(n + 1, sizeof(atomic_int)),
			 .who = calloc(n + 1, sizeof(pthread_t)), .caller = pthread_self(),
			 .wait_for_others = wait_for_others};
	assert_non_null(w.hits);
	assert_non_null(w.who);
	parallel_for(n, min_each, visit, &w);
	size_t once = 0;
	*other_threads = 0;
	for (size_t i = 0; i < n; i++) {
		once += atomic_load(&w.hits[i]) == 1;
		*other_threads += !pthread_equal(w.who[i], w.caller);
	}
	free(w.hits);
	free(w.who);
	return once;
}

static void every_index_once(void **state)
{
	(void)state;
	size_t others;
	assert_int_equal(run(5000, 16, sysconf(_SC_NPROCESSORS_ONLN) > 1, &others), 5000);
	if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
		assert_true(others > 0);
}

static void small_work_stays_on_the_caller(void **state)
{
	(void)state;
	size_t others;
	assert_int_equal(run(0, 16, 0, &others), 0);
	assert_int_equal(run(10, 16, 0, &others), 10);
	assert_int_equal(others, 0);
	assert_int_equal(run(1, 0, 0, &others), 1);
	assert_int_equal(others, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_index_once),
		cmocka_unit_test(small_work_stays_on_the_caller),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
