/* h2conn.h: one HTTP/2 connection over a non-blocking socket, optionally through TLS 1.3 (ALPN
 * h2): the transport core the gRPC server (grpc_server.c, driven by libuv) and the gRPC client
 * (grpc_client.c, driven by poll()) share.
 *
 * HTTP/2 and TLS are pure memory transforms here: bytes read from the socket go to wolfSSL
 * (through memory I/O callbacks reading the input buffer) or straight to
 * nghttp2_session_mem_recv; frames from nghttp2_session_mem_send go through wolfSSL_write (whose
 * callback appends to the output buffer) or straight to it; the output buffer is written with
 * send(MSG_NOSIGNAL). The core never waits: its owner polls the fd and calls h2conn_read and
 * h2conn_output/h2conn_flush when the socket is ready. The owner supplies the nghttp2 callbacks
 * (and may supply nghttp2 memory functions and options).
 *
 * Buffers carry private keys (X509-SVID responses, the keys liblanyard receives), so they never
 * leave a copy of their bytes behind: growth allocates a new block, copies, wipes and frees the
 * old one (no realloc), and a drained or freed buffer is wiped before it is released.
 *
 * Not thread-safe: one connection is used by one thread at a time. struct h2conn is embedded in
 * its owner's connection object (one allocation per connection, as libuv does with its
 * handles); its fields are read by the owner but written only through these functions, except
 * `closing`. Functions that fail return a negative value and, when err is not NULL, write a
 * message there; none logs. */
#ifndef LANYARD_H2CONN_H
#define LANYARD_H2CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <nghttp2/nghttp2.h>

#include "tls_leaf.h"

/* A byte queue: bytes from data[off] to data[len] are pending. Zero-initialised is empty. */
struct h2buf {
	uint8_t *data;
	size_t len;
	size_t off;
	size_t cap;
};

/* Makes room for more bytes (compacting or growing without leaving a copy behind). 0 or -1. */
int h2buf_reserve(struct h2buf *b, size_t more);
int h2buf_append(struct h2buf *b, const void *data, size_t len);
static inline size_t h2buf_pending(const struct h2buf *b)
{
	return b->len - b->off;
}
static inline const uint8_t *h2buf_head(const struct h2buf *b)
{
	return b->data + b->off;
}
/* Drops n pending bytes. A drained buffer is wiped and released: a thousand idle connections
 * must not each keep kilobytes of spent output. */
void h2buf_consume(struct h2buf *b, size_t n);
/* Wipes and frees; the buffer is empty and reusable afterwards. */
void h2buf_free(struct h2buf *b);
/* The one way secret-bearing memory grows here and in the gRPC deframer: a fresh block of
 * new_cap bytes holding the first keep bytes of old (keep <= new_cap, keep <= old_cap); old is
 * wiped (old_cap bytes) and freed. On allocation failure returns NULL and leaves old untouched.
 * old may be NULL. */
void *h2buf_regrow(void *old, size_t old_cap, size_t keep, size_t new_cap);

/* h2conn_read and the pumps distinguish a dead socket from a peer speaking badly: after
 * H2CONN_EPROTO the output buffer may hold a TLS alert worth one try (h2conn_send_last). */
enum {
	H2CONN_ESOCK = -1,  /* recv/send failed or the peer closed the socket */
	H2CONN_EPROTO = -2, /* TLS or HTTP/2 error, or the owner set closing */
};

struct h2conn {
	int fd;                 /* owned: closed by h2conn_free; -1 when none */
	bool is_server;
	bool handshake_done;    /* TLS handshake complete (meaningless without ssl) */
	bool closing;           /* set by the owner when it closes from inside a callback: the input
				   pump stops and reports H2CONN_EPROTO */
	WOLFSSL *ssl;           /* NULL: cleartext HTTP/2 with prior knowledge */
	nghttp2_session *session;
	struct h2buf in;        /* TLS records received, not yet read by wolfSSL */
	struct h2buf out;       /* bytes for the socket */
	struct tls_leaf leaf;   /* the peer's leaf as wolfSSL verified it, during the handshake */
	uint8_t *peer_cert;     /* the peer's leaf certificate (DER) after a TLS handshake */
	size_t peer_cert_len;
	bool peer_verified;     /* the handshake verified a certificate of the peer's: stays true
				   after h2conn_drop_peer_cert */
};

/* Starts an empty connection on fd (non-blocking; owned from now on). */
void h2conn_init(struct h2conn *h, int fd, bool is_server);
/* Creates the nghttp2 session (server or client, as h was initialised) with the owner's
 * callbacks and user data; option and mem may be NULL. 0 or -1. */
int h2conn_session_new(struct h2conn *h, const nghttp2_session_callbacks *cbs, void *ud,
		       const nghttp2_option *option, nghttp2_mem *mem);
/* Puts TLS 1.3 with ALPN h2 (mismatch fails) under the connection. A server verifies client
 * certificates when presented (WOLFSSL_VERIFY_PEER) and issues no TLS 1.3 session tickets (no
 * resumption: peers always re-authenticate); a client sends server_name as SNI when it is not NULL
 * or empty. 0 or -1. */
int h2conn_tls_new(struct h2conn *h, WOLFSSL_CTX *ctx, const char *server_name, char *err,
		   size_t errlen);
/* One step of the TLS handshake: 1 once complete (ALPN checked, peer certificate copied), 0 when
 * it waits for the peer, -1 on failure (err holds the reason, without a prefix). A client calls
 * it once to start; afterwards h2conn_input/h2conn_read drive it for both sides. */
int h2conn_handshake(struct h2conn *h, char *err, size_t errlen);
/* Feeds bytes received from the socket: TLS handshake, TLS records and HTTP/2 frames, whose
 * callbacks run from here. 0 or H2CONN_EPROTO. */
int h2conn_input(struct h2conn *h, const uint8_t *data, size_t len, char *err, size_t errlen);
/* Reads what the socket has (a bounded number of reads) into h2conn_input. 0 (no more for now),
 * H2CONN_ESOCK or H2CONN_EPROTO. */
int h2conn_read(struct h2conn *h, char *err, size_t errlen);
/* Moves HTTP/2 frames into the output buffer (through TLS once the handshake is done: the frames
 * of one call are gathered into TLS records of up to 16 KB, not one record per frame) until
 * nghttp2 has none or the buffer holds a high-water mark's worth; *more tells which (may be
 * NULL). 0 or H2CONN_EPROTO. */
int h2conn_output(struct h2conn *h, bool *more, char *err, size_t errlen);
/* Writes what the socket takes of the output buffer. 0 (maybe with bytes left: EAGAIN) or
 * H2CONN_ESOCK. */
int h2conn_flush(struct h2conn *h, char *err, size_t errlen);
/* One non-blocking try at writing the output buffer, errors ignored: a TLS alert that tells a
 * rejected peer why, before the owner closes. */
void h2conn_send_last(struct h2conn *h);
/* Frees the copy of the peer's certificate once its owner kept what it needs of it (a server
 * with ten thousand agents: ~600 bytes each); peer_verified stays. */
void h2conn_drop_peer_cert(struct h2conn *h);
/* Neither HTTP/2 side wants anything more and no byte waits for the socket. */
bool h2conn_done(const struct h2conn *h);
/* Frees the session, the TLS object, the buffers (wiped) and the peer certificate, and closes the
 * fd. NULL-safe; h is reusable after h2conn_init. */
void h2conn_free(struct h2conn *h);

#endif
