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
	/* With FP_ECC (Debian's wolfSSL), every thread that does ECC math fills a thread-local
	 * table of precomputed points that only wc_ecc_fp_free on that thread releases (see
	 * keys_release_thread_ecc_cache); threads that drew from their RNG release it here, at
	 * their exit. The SP-math build has no such table. */
#ifdef FP_ECC
	wc_ecc_fp_free();
#endif
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
