/* rng.c: one WC_RNG per thread (contract in rng.h). */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <pthread.h>
#include <stdlib.h>

#include "rng.h"

/* One WC_RNG per thread, created on first use: WC_RNG is not thread-safe and the server signs
 * from worker threads. Freed when the thread exits. */
static pthread_key_t rng_key;
static pthread_once_t rng_once = PTHREAD_ONCE_INIT;

static void rng_destroy(void *p)
{
	wc_FreeRng(p);
	free(p);
	/* This build has FP_ECC: every thread that does ECC math fills a thread-local cache of
	 * precomputed points that is only released by wc_ecc_fp_free on that thread. Threads that
	 * drew from their RNG release it here, at their exit. */
	wc_ecc_fp_free();
}

static void rng_key_init(void)
{
	pthread_key_create(&rng_key, rng_destroy);
}

WC_RNG *rng_thread(void)
{
	pthread_once(&rng_once, rng_key_init);
	WC_RNG *rng = pthread_getspecific(rng_key);
	if (!rng) {
		rng = calloc(1, sizeof(*rng));
		if (!rng || wc_InitRng(rng) != 0) {
			free(rng);
			return NULL;
		}
		if (pthread_setspecific(rng_key, rng) != 0) {
			rng_destroy(rng);
			return NULL;
		}
	}
	return rng;
}
