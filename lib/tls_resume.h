/* tls_resume.h: a bounded table of resumable wolfSSL sessions, for liblanyard's TLS glue (tls.c).
 *
 * A table maps a key (on a client: the peer's name given to lanyard_tls_ssl_new_peer; on a
 * server: the TLS 1.2 session ID) to one WOLFSSL_SESSION, and evicts the least recently used
 * entry when it is full. Every entry carries the WOLFSSL_CTX ("owner") it was made with: a
 * session is only handed out for an ssl of the same ctx, so that nothing resumes across a
 * change of the local SVID or of the bundles (tls.c also empties the table when it rebuilds its
 * ctx), and the expiry of the peer's leaf: an expired peer's session is dropped, not offered.
 *
 * Ownership: the table owns the sessions it holds and frees them on eviction, drop, clear and
 * free. Threading: every function may be called from any thread (one mutex per table); the
 * wolfSSL calls made under it (wolfSSL_set_session, wolfSSL_SESSION_up_ref/free) do no I/O. */
#ifndef LANYARD_TLS_RESUME_H
#define LANYARD_TLS_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

/* Longest key: a peer name ("host:port", a SPIFFE ID...) or a session ID. */
#define TLS_RESUME_KEY_MAX 256

struct tls_resume;

/* A table of at most max sessions (max >= 1). NULL when out of memory. */
struct tls_resume *tls_resume_new(size_t max);
void tls_resume_free(struct tls_resume *r);

/* The entry of key (found, or made empty, evicting the least recently used one): a tag naming
 * it for the calls below, which do nothing once the entry went to another key. 0 when key is
 * empty or longer than TLS_RESUME_KEY_MAX. A client claims its peer's entry when it makes an ssl
 * and stores the session there once the handshake is verified (the tag rides on the ssl). */
uint64_t tls_resume_claim(struct tls_resume *r, const void *key, size_t len);
/* Stores sess in the entry of tag, replacing an older one; the table takes over the caller's
 * reference (and frees it when tag is stale). not_after: the peer leaf's expiry (Unix s). */
void tls_resume_put(struct tls_resume *r, uint64_t tag, WOLFSSL_SESSION *sess,
		    const WOLFSSL_CTX *owner, int64_t not_after);
/* Client: offers the session of tag to ssl (wolfSSL_set_session) when it was made with ssl's
 * ctx and its peer has not expired at now; drops it otherwise. 1 when offered, else 0. */
int tls_resume_offer(struct tls_resume *r, uint64_t tag, WOLFSSL *ssl, int64_t now);
/* Server: the session stored under key with a new reference (the caller frees it), under the
 * same conditions as tls_resume_offer; NULL otherwise. */
WOLFSSL_SESSION *tls_resume_get(struct tls_resume *r, const void *key, size_t len,
				const WOLFSSL_CTX *owner, int64_t now);
/* Forgets the session of tag (a refused resumption), keeping the entry. */
void tls_resume_drop(struct tls_resume *r, uint64_t tag);
/* Server: forgets the session stored under key (a refused resumption), keeping the entry. */
void tls_resume_drop_key(struct tls_resume *r, const void *key, size_t len);
/* Forgets every session. */
void tls_resume_clear(struct tls_resume *r);
/* Number of sessions held. */
size_t tls_resume_count(struct tls_resume *r);

#endif
