/* tls_leaf.h: the peer's leaf certificate, copied while wolfSSL verifies it.
 *
 * The daemons identify a peer by its leaf certificate (its SPIFFE ID). Reading it after the
 * handshake (wolfSSL_get_peer_chain) needs wolfSSL's SESSION_CERTS, which gives every connection's
 * WOLFSSL_SESSION two static chains of MAX_CHAIN_DEPTH certificates (~37 KB, kept for the
 * connection's life). Taking the leaf from the verify callback instead works in every build, so
 * the daemons' private wolfSSL (deploy/build-wolfssl-sp.sh) is built without SESSION_CERTS.
 *
 * wolfSSL calls the callback for the leaf on every handshake that receives a certificate (both our
 * builds define WOLFSSL_ALWAYS_VERIFY_CB; tls_leaf_capture refuses a build without it at compile
 * time). The callback never changes wolfSSL's verdict: it returns the preverify result it was
 * given, so verification failures still fail the handshake, and a connection set up with
 * WOLFSSL_VERIFY_NONE (the agent's insecure bootstrap) still gets the leaf to check by hand.
 *
 * Not thread-safe: a tls_leaf belongs to one WOLFSSL, used by one thread at a time. */
#ifndef LANYARD_TLS_LEAF_H
#define LANYARD_TLS_LEAF_H

#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

struct tls_leaf {
	uint8_t *der; /* the peer's leaf (DER) once the handshake received one; else NULL */
	size_t len;
	int error;    /* wolfSSL's verify error for the leaf (0: verified, or none yet) */
};

/* Sets the verify mode of ctx, or of one WOLFSSL, together with the callback that copies the
 * leaf: a WOLFSSL made from ctx afterwards (or that ssl) can then capture its peer's leaf. They
 * replace wolfSSL_CTX_set_verify / wolfSSL_set_verify for every connection whose peer the
 * daemons identify. (Not "keep the mode and add the callback": wolfSSL can report a verify mode
 * only with its OpenSSL-compatibility "all" layer, which the sp build leaves out, see
 * deploy/build-wolfssl-sp.sh.) */
void tls_leaf_ctx_verify(WOLFSSL_CTX *ctx, int mode);
void tls_leaf_ssl_verify(WOLFSSL *ssl, int mode);
/* The leaf of ssl's next handshake lands in *leaf, which must outlive it. Uses ssl's certificate
 * callback context (wolfSSL_SetCertCbCtx). ssl must carry the callback (one of the two above;
 * wolfSSL cannot tell without that same "all" layer): without it the leaf stays empty and the
 * peer is not identified (the node API refuses such a connection, the agent such a server). */
void tls_leaf_capture(WOLFSSL *ssl, struct tls_leaf *leaf);
/* Frees the copy; the leaf is empty and reusable afterwards. NULL-safe. */
void tls_leaf_free(struct tls_leaf *leaf);

#endif
