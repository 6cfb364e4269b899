/* rng.h: the process's random number generator: one wolfSSL WC_RNG per thread.
 *
 * Contract: WC_RNG is not thread-safe, and both daemons draw random numbers from several threads
 * (the server signs on workers, the agent mints keys on its sync thread), so each thread gets its
 * own, created on its first use and freed when the thread exits. Never share the pointer with
 * another thread. random_bytes (util.h) is the byte-level front end; the crypto modules (keys.c,
 * x509_build.c, jwt.c) pass rng_thread() to wolfSSL. */
#ifndef LANYARD_RNG_H
#define LANYARD_RNG_H

struct WC_RNG;

/* The calling thread's RNG, created on first use; NULL on failure. Calling it also registers the
 * thread's exit cleanup of wolfSSL's ECC point cache (see rng.c). */
struct WC_RNG *rng_thread(void);

#endif
