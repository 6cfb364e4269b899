/* tls_leaf.c: the peer's leaf certificate, copied at verify time (see tls_leaf.h). */
#include "tls_leaf.h"

#include <stdlib.h>
#include <string.h>

#ifndef WOLFSSL_ALWAYS_VERIFY_CB
#error "tls_leaf needs a wolfSSL built with WOLFSSL_ALWAYS_VERIFY_CB (the callback must see the leaf)"
#endif

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	struct tls_leaf *leaf = store->userCtx;
	uint8_t *copy;

	/* Depth 0 is the leaf; intermediates only reach the callback with an error. */
	if (!leaf || store->error_depth != 0 || store->totalCerts < 1 || !store->certs ||
	    !store->certs[0].buffer || store->certs[0].length == 0)
		return preverify;
	copy = malloc(store->certs[0].length);
	if (!copy)
		return 0; /* fail the handshake rather than run without the peer's identity */
	memcpy(copy, store->certs[0].buffer, store->certs[0].length);
	tls_leaf_free(leaf);
	leaf->der = copy;
	leaf->len = store->certs[0].length;
	leaf->error = store->error;
	return preverify;
}

void tls_leaf_ctx_verify(WOLFSSL_CTX *ctx, int mode)
{
	wolfSSL_CTX_set_verify(ctx, mode, verify_cb);
}

void tls_leaf_ssl_verify(WOLFSSL *ssl, int mode)
{
	wolfSSL_set_verify(ssl, mode, verify_cb);
}

void tls_leaf_capture(WOLFSSL *ssl, struct tls_leaf *leaf)
{
	wolfSSL_SetCertCbCtx(ssl, leaf);
}

void tls_leaf_free(struct tls_leaf *leaf)
{
	if (!leaf)
		return;
	free(leaf->der);
	memset(leaf, 0, sizeof(*leaf));
}
