/* thread_stack.c: see thread_stack.h. */
#include "thread_stack.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

long thread_stack_release(void)
{
	if (getpid() == gettid())
		return 0; /* the main thread's stack is the kernel's growsdown mapping: left alone */
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return -1;
	void *addr = NULL;
	size_t size = 0, guard = 0;
	int rc = pthread_attr_getstack(&attr, &addr, &size);
	if (rc == 0)
		rc = pthread_attr_getguardsize(&attr, &guard);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return -1;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	/* addr is the lowest usable byte; skipping one more guard's worth costs nothing. */
	uintptr_t lo = ((uintptr_t)addr + guard + page - 1) & ~(page - 1);
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	if (here < (uintptr_t)addr || here > (uintptr_t)addr + size || here - lo <= THREAD_STACK_KEEP)
		return 0;
	uintptr_t hi = (here - THREAD_STACK_KEEP) & ~(page - 1);
	if (hi <= lo)
		return 0;
	if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
		return -1;
	return (long)(hi - lo);
}
