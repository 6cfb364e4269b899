/* thread_stack.h: gives back the memory of a thread's stack that a burst of work touched.
 *
 * A thread's stack pages stay resident once touched: after one deep call (a TLS handshake, a
 * signing batch with Debian's fastmath wolfSSL, whose big integers live on the stack) a thread
 * that then idles for hours keeps tens to hundreds of KB it will not use again soon.
 *
 * Contract: acts on the calling thread only, and only on a thread created with pthread_create
 * (on the main thread it does nothing). Call it from a shallow frame between bursts of work: it
 * drops the pages more than THREAD_STACK_KEEP bytes below the caller's frame (they read as zero
 * the next time a call reaches that deep, as fresh stack does). Never call it from a signal
 * handler or with a live object (e.g. a buffer handed to another thread) below the caller's
 * frame. */
#ifndef LANYARD_THREAD_STACK_H
#define LANYARD_THREAD_STACK_H

#include <stddef.h>

/* Left alone below the caller's frame: this function's own frame, the red zone, the syscall. */
#define THREAD_STACK_KEEP (16 * 1024)

/* The bytes given back (0 when there was nothing to give or this is the main thread), or -1 if
 * the stack's bounds are unknown or madvise failed. */
long thread_stack_release(void);

#endif
