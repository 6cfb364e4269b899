/* grpc_client.h: a blocking gRPC client (HTTP/2 via nghttp2, optional TLS 1.3 via wolfSSL),
 * driven with poll(). One client is used by one thread at a time; a client owns one connection
 * and may have several server-streaming calls open on it. */
#ifndef LANYARD_GRPC_CLIENT_H
#define LANYARD_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "grpc.h"

struct grpc_client;
struct grpc_stream;

/* Connects to a Unix socket (cleartext HTTP/2 with prior knowledge). 0 or -1 (err says). */
int grpc_client_connect_unix(const char *path, int timeout_ms, struct grpc_client **out, char *err,
			     size_t errlen);
/* TLS when tls != NULL (ALPN h2, TLS 1.3; the caller set up verification and its client cert in
 * the ctx; server_name, for SNI, may be NULL). The client takes a reference on tls. The TLS
 * handshake completes before this returns. */
int grpc_client_connect_tcp(const char *host, int port, WOLFSSL_CTX *tls, const char *server_name,
			    int timeout_ms, struct grpc_client **out, char *err, size_t errlen);
/* Server leaf certificate (DER) under TLS, NULL otherwise. Valid while the client lives. */
const uint8_t *grpc_client_peer_cert(struct grpc_client *c, size_t *len);

/* Unary call. timeout_ms >= 0 bounds the whole call and is sent as grpc-timeout; -1 waits
 * forever. Returns 0 when the call completed: *status is the grpc status; when OK, *resp holds
 * the message (caller frees; non-NULL even when empty), otherwise err holds the grpc-message.
 * Returns -1 on transport failure or timeout (err says; the connection is then unusable when
 * the failure was a transport one). Messages for open streams that arrive meanwhile are
 * buffered for them. */
int grpc_client_unary(struct grpc_client *c, const char *path, const struct grpc_header *hdrs,
		      size_t n_hdrs, const uint8_t *req, size_t req_len, int timeout_ms, uint8_t **resp,
		      size_t *resp_len, int *status, char *err, size_t errlen);
/* Opens a server-streaming call and sends its single request. 0 or -1. */
int grpc_client_stream_open(struct grpc_client *c, const char *path, const struct grpc_header *hdrs,
			    size_t n_hdrs, const uint8_t *req, size_t req_len, struct grpc_stream **out,
			    char *err, size_t errlen);
/* Waits up to timeout_ms (-1 forever, 0 poll) for the stream's next message, driving the whole
 * connection. Returns 1 with a message (caller frees), 0 on timeout, 2 when the stream ended
 * (*status and err = grpc-message filled), -1 on transport failure (err). */
int grpc_stream_next(struct grpc_stream *s, int timeout_ms, uint8_t **msg, size_t *len, int *status,
		     char *err, size_t errlen);
/* Sends RST_STREAM CANCEL if the stream is still open, and frees it. Also the way to free a
 * stream that ended. NULL-safe. */
void grpc_stream_cancel(struct grpc_stream *s);
int grpc_client_fd(struct grpc_client *c);
/* fd (non-blocking, the caller's: an eventfd or a pipe's read end; -1 = none) is polled with the
 * connection while grpc_stream_next waits: when it becomes readable, it is drained and that
 * wait returns as on a timeout, so another thread can wake a caller waiting for server
 * messages. A unary call is not interrupted. */
void grpc_client_set_wake_fd(struct grpc_client *c, int fd);
/* Closes the connection and frees the client and every stream still attached to it: streams
 * must not be used afterwards. NULL-safe. */
void grpc_client_close(struct grpc_client *c);

#endif
