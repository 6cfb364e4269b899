/* Unit tests of thread_stack.c: the stack pages a deep call touched are resident until
 * thread_stack_release() gives them back, the thread keeps working afterwards, and the main
 * thread is left alone. Residency is read with mincore(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "thread_stack.h"

#define DEEP (256 * 1024)

/* Touches DEEP bytes of stack; the sum keeps the compiler from dropping the buffer. */
static __attribute__((noinline)) unsigned deep_call(unsigned char fill)
{
	volatile unsigned char buf[DEEP];
	unsigned sum = 0;
	for (size_t i = 0; i < DEEP; i += 512)
		buf[i] = fill;
	for (size_t i = 0; i < DEEP; i += 512)
		sum += buf[i];
	return sum;
}

/* Resident pages of the calling thread's stack from its lowest usable page up to 64 KB below
 * the caller's frame (well under what the release keeps). */
static size_t resident_below_frame(void)
{
	pthread_attr_t attr;
	void *addr;
	size_t size, page = (size_t)sysconf(_SC_PAGESIZE);
	assert_int_equal(pthread_getattr_np(pthread_self(), &attr), 0);
	assert_int_equal(pthread_attr_getstack(&attr, &addr, &size), 0);
	pthread_attr_destroy(&attr);
	uintptr_t lo = ((uintptr_t)addr + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)__builtin_frame_address(0) - 64 * 1024) & ~(page - 1);
	assert_true(hi > lo);
	size_t n = (hi - lo) / page, resident = 0;
	unsigned char *vec = malloc(n);
	assert_non_null(vec);
	assert_int_equal(mincore((void *)lo, hi - lo, vec), 0);
	for (size_t i = 0; i < n; i++)
		resident += vec[i] & 1;
	free(vec);
	return resident;
}

struct result {
	size_t before, after;
	long released;
	unsigned again;
};

static void *worker(void *arg)
{
	struct result *r = arg;
	(void)deep_call(1);
	r->before = resident_below_frame();
	r->released = thread_stack_release();
	r->after = resident_below_frame();
	/* The same depth again works: the released pages come back as fresh (zeroed) stack. */
	r->again = deep_call(2);
	return NULL;
}

static void releases_touched_pages(void **state)
{
	pthread_attr_t attr;
	pthread_t t;
	struct result r = {0};
	assert_int_equal(pthread_attr_init(&attr), 0);
	/* 8 MB like glibc's default: static TLS comes out of the same allocation, and under
	 * ThreadSanitizer its per-thread state alone takes most of a 1 MB stack. */
	assert_int_equal(pthread_attr_setstacksize(&attr, 8 * 1024 * 1024), 0);
	assert_int_equal(pthread_create(&t, &attr, worker, &r), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	pthread_attr_destroy(&attr);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	print_message("resident below the frame: %zu pages before, %zu after; %ld bytes released\n",
		      r.before, r.after, r.released);
	/* deep_call touched a page every 512 bytes over 256 KB, most of it below the window. */
	assert_true(r.before >= (DEEP - 128 * 1024) / page);
	assert_int_equal(r.after, 0);
	assert_true(r.released >= (long)(DEEP - 128 * 1024));
	assert_int_equal(r.again, 2u * (DEEP / 512));
}

static void main_thread_untouched(void **state)
{
	(void)deep_call(3);
	assert_int_equal(thread_stack_release(), 0);
	assert_int_equal(deep_call(4), 4u * (DEEP / 512));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(releases_touched_pages),
		cmocka_unit_test(main_thread_untouched),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
