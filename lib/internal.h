/* internal.h: what the liblanyard modules share; never installed. */
#ifndef LANYARD_INTERNAL_H
#define LANYARD_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lanyard.h"
#include "spiffeid.h"

struct lanyard_x509_svid {
	struct lanyard_x509_context *owner;
	char *spiffe_id;
	char td[TRUST_DOMAIN_MAX + 1];
	char *hint;
	char serial[80];
	int64_t not_before, not_after;
	uint8_t *chain; /* concatenated DER, leaf first */
	size_t chain_len;
	const uint8_t **certs; /* pieces of chain */
	size_t *cert_lens;
	size_t n_certs;
	uint8_t *key; /* PKCS#8 DER, wiped on free */
	size_t key_len;
	const uint8_t *bundle; /* points into the context's bundle of td */
	size_t bundle_len;
};

struct ly_bundle {
	char td[TRUST_DOMAIN_MAX + 1];
	uint8_t *der;
	size_t len;
};

struct lanyard_x509_context {
	int refs; /* refcount.h */
	uint64_t generation;
	struct lanyard_x509_svid *svids;
	size_t n_svids;
	struct ly_bundle *bundles;
	size_t n_bundles;
	const struct lanyard_x509_svid *def; /* NULL when the wanted ID is absent */
};

struct X509SVIDResponse;
/* Builds a context from one FetchX509SVID message, checking every SVID the way go-spiffe does
 * (a valid leaf ID, one URI SAN equal to it, not a CA, a key that matches the leaf): one bad
 * SVID rejects the whole message. want_id selects the default SVID (NULL: the first). */
int ly_context_from_response(const struct X509SVIDResponse *r, const char *want_id,
			     uint64_t generation, struct lanyard_x509_context **out, char *err,
			     size_t errlen);
/* The bundle of td (bare name), or NULL. */
const struct ly_bundle *ly_context_bundle(const struct lanyard_x509_context *ctx, const char *td);

/* Normalizes "example.org" or "spiffe://example.org" into td (TRUST_DOMAIN_MAX + 1 bytes).
 * 0 or -1. */
int ly_trust_domain(const char *in, char *td);

/* A deep copy, for the TLS configurations that keep their own. NULL when out of memory. */
lanyard_authorizer *ly_authorizer_dup(const lanyard_authorizer *a);

/* snprintf into err when err is not NULL; returns code. */
int ly_err(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Maps a gRPC status of the agent to a LANYARD_E* code. */
int ly_code_from_grpc(int status);
/* Calls wolfSSL_Init once per process (it is reference-counted, and never undone here: global
 * cleanup belongs to the application). */
void ly_wolfssl_init(void);

#endif
