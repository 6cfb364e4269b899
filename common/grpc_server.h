/* grpc_server.h: a gRPC server on a libuv loop (HTTP/2 via nghttp2, optional TLS 1.3 via wolfSSL).
 *
 * Single-threaded: every function here must be called on the loop's thread. Unary,
 * server-streaming and bidirectional-streaming methods (client_streaming: the client may send
 * more messages after the first). Objects are freed only from libuv close callbacks, never
 * inside one of their own callbacks. */
#ifndef LANYARD_GRPC_SERVER_H
#define LANYARD_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <protobuf-c/protobuf-c.h>

#include "grpc.h"

struct grpc_server;
struct grpc_conn;
struct grpc_call;

struct grpc_method {
	const char *path; /* "/SpiffeWorkloadAPI/FetchX509SVID" */
	bool server_streaming;
	/* Called on the loop when the single request message has fully arrived (END_STREAM from
	 * the client). msg is valid only during the call. The handler answers now or later:
	 * grpc_call_send() any number of messages (streaming) or one (unary), then
	 * grpc_call_finish(). To answer later it takes a reference with grpc_call_ref() and drops
	 * it with grpc_call_unref() when done. */
	void (*on_request)(struct grpc_call *call, const uint8_t *msg, size_t len);
	/* With admission control on (unauth_max_message_size), peers without a client certificate
	 * may call only the methods that set this. */
	bool allow_unauthenticated;
	/* Bidirectional streaming (xDS): on_request gets the first message as soon as it is
	 * complete, without waiting for END_STREAM, and on_message every later one (same
	 * contract: msg valid during the call only). The client ending its side is not reported;
	 * the call stays open until the handler finishes it or the client cancels. */
	bool client_streaming;
	void (*on_message)(struct grpc_call *call, const uint8_t *msg, size_t len);
};

struct grpc_server_config {
	const struct grpc_method *methods; /* unknown path => UNIMPLEMENTED (trailers-only) */
	size_t n_methods;
	void *ud; /* grpc_server_ud() */
	/* After accept (fd allows SO_PEERCRED); a negative return refuses the connection (closed,
	 * on_disconnect is not called). May be NULL. */
	int (*on_connect)(struct grpc_conn *conn, int fd);
	/* The connection is going away; conn data must be released here. May be NULL. */
	void (*on_disconnect)(struct grpc_conn *conn);
	/* The call ended: finished, cancelled by the client (RST_STREAM), deadline passed, or the
	 * connection closed. Called once for every call that reached on_request (never for calls
	 * rejected before it), possibly from inside the loop's processing of that connection but
	 * never from inside grpc_call_send/grpc_call_finish; grpc_call_conn() is still valid here
	 * and NULL afterwards. Sends are refused. May be NULL. */
	void (*on_call_closed)(struct grpc_call *call);
	size_t max_message_size;       /* larger request messages => RESOURCE_EXHAUSTED; 0 = 4 MiB */
	unsigned max_streams_per_conn; /* SETTINGS_MAX_CONCURRENT_STREAMS; 0 = 100 */
	unsigned max_conns;            /* refuse beyond this; 0 = 1024 */
	size_t max_output_per_conn;    /* queued response bytes before the conn is dropped; 0 = 16 MiB */
	/* Deadline for the TLS handshake, the HTTP/2 preface and the first request HEADERS; 0 = 10 s */
	unsigned handshake_timeout_ms;
	/* Admission control (0 = off for each). */
	unsigned max_conns_per_source; /* connections per peer IP address (TCP listeners) */
	/* TLS handshakes in progress (accepted, handshake not complete). A connection beyond it
	 * is reset at accept, before any TLS work: the client sees ECONNRESET at once and retries
	 * after its backoff instead of queueing behind work that would outlast its timeout. With
	 * max_conns_per_source set, one source may hold max(1, max_handshakes / 16) of them, so
	 * that filling the cap with stalled handshakes takes 16 addresses as filling max_conns
	 * does. */
	unsigned max_handshakes;
	unsigned idle_timeout_ms;      /* close a connection this long without an open stream */
	/* TLS peers without a client certificate: one stream at a time, request messages up to this
	 * size, only allow_unauthenticated methods; the request bytes all their calls received add
	 * up to at most unauth_max_buffered (0 = 64 x unauth_max_message_size). */
	size_t unauth_max_message_size;
	size_t unauth_max_buffered;
	/* Announce SETTINGS_HEADER_TABLE_SIZE 0: the peer's HPACK encoder then keeps no dynamic
	 * table, and no connection holds the peer's indexed headers (up to ~16 KB each with the
	 * default 4,096-byte table). Only for servers whose every client honours it, as nghttp2
	 * and Lanyard's agents do: a client that keeps indexing gets a connection error
	 * (COMPRESSION_ERROR) on its first header block after acknowledging the SETTINGS. */
	bool zero_peer_header_table;
};

/* Why admission control turned a connection or a call away (counted, and logged at most once
 * per GRPC_REFUSAL_LOG_INTERVAL_MS per reason with the count since the last line). */
enum grpc_refusal {
	GRPC_REFUSED_MAX_CONNECTIONS,
	GRPC_REFUSED_PER_SOURCE,
	GRPC_REFUSED_HANDSHAKE_TIMEOUT,
	GRPC_REFUSED_IDLE_TIMEOUT,
	GRPC_REFUSED_UNAUTHENTICATED_METHOD,
	GRPC_REFUSED_UNAUTHENTICATED_STREAMS,
	GRPC_REFUSED_MESSAGE_TOO_LARGE,
	GRPC_REFUSED_UNAUTHENTICATED_MEMORY,
	GRPC_REFUSED_HANDSHAKES,
	GRPC_REFUSED_N
};
#define GRPC_REFUSAL_LOG_INTERVAL_MS 10000
/* Metric label values: "max_connections", "per_source", ... */
extern const char *const grpc_refusal_names[GRPC_REFUSED_N];

/* Binds and listens on a Unix socket (the caller prepared the directory and umask); cleartext
 * HTTP/2 with prior knowledge. cfg is copied (methods array is not: it must outlive the server). */
int grpc_server_listen_unix(uv_loop_t *loop, const char *path, const struct grpc_server_config *cfg,
			    struct grpc_server **out, char *err, size_t errlen);
/* Binds addr:port (port 0 = ephemeral, see grpc_server_port). tls NULL = cleartext; otherwise TLS
 * 1.3 with ALPN h2: the server takes a reference on tls. The caller configured the server cert,
 * key and the CA to verify client certificates; the server sets WOLFSSL_VERIFY_PEER (client certs
 * verified when presented, not required) on each session. */
int grpc_server_listen_tcp(uv_loop_t *loop, const char *addr, int port, WOLFSSL_CTX *tls,
			   const struct grpc_server_config *cfg, struct grpc_server **out, char *err,
			   size_t errlen);
/* Adopts an already bound and listening socket (Unix or TCP); the server owns it afterwards
 * (closed on shutdown, even when this call fails). */
int grpc_server_listen_fd(uv_loop_t *loop, int listen_fd, WOLFSSL_CTX *tls,
			  const struct grpc_server_config *cfg, struct grpc_server **out, char *err,
			  size_t errlen);

/* New connections use tls from now on (CA rotation); takes a reference, drops the old one. */
void grpc_server_set_tls(struct grpc_server *s, WOLFSSL_CTX *tls);
void *grpc_server_ud(struct grpc_server *s);
unsigned grpc_server_conn_count(struct grpc_server *s);
/* What the HTTP/2 sessions of all its connections hold on the heap (nghttp2's blocks, counted
 * at malloc's usable size; the one frame buffer they share is not counted): memory per
 * connection, for tests and diagnostics. Loop thread. */
void grpc_server_h2_mem(struct grpc_server *s, size_t *bytes, size_t *blocks);
/* The configured connection limit (after defaults). */
unsigned grpc_server_max_conns(struct grpc_server *s);
/* Refusals since the start, indexed by enum grpc_refusal. */
void grpc_server_refusals(struct grpc_server *s, uint64_t out[GRPC_REFUSED_N]);
/* The bound TCP port (host order), or -1 for a Unix socket. */
int grpc_server_port(struct grpc_server *s);
/* Graceful stop: stop accepting, send GOAWAY, give open calls up to grace_ms to finish, then
 * close everything; done(arg) runs on the loop once all handles are closed and the server is
 * freed. Call once. done may be NULL. */
void grpc_server_shutdown(struct grpc_server *s, int grace_ms, void (*done)(void *arg), void *arg);

/* Connections */
struct grpc_server *grpc_conn_server(struct grpc_conn *c);
void grpc_conn_set_data(struct grpc_conn *c, void *data);
void *grpc_conn_data(struct grpc_conn *c);
int grpc_conn_fd(struct grpc_conn *c);
/* The client's leaf certificate (DER) presented in mutual TLS, NULL when none or cleartext.
 * Valid while the connection lives. */
const uint8_t *grpc_conn_peer_cert(struct grpc_conn *c, size_t *len);
/* The owner kept what it needs of the peer's certificate: the connection's copy is freed
 * (~600 bytes per connection). The peer stays authenticated (its calls are not the
 * unauthenticated ones of admission control); grpc_conn_peer_cert returns NULL from now on. */
void grpc_conn_drop_peer_cert(struct grpc_conn *c);
unsigned grpc_conn_stream_count(struct grpc_conn *c);

/* Calls */
/* NULL once the call closed (after on_call_closed returned). */
struct grpc_conn *grpc_call_conn(struct grpc_call *call);
const char *grpc_call_path(const struct grpc_call *call);
/* Request metadata by lower-case name, NULL if absent. Available until on_request returns
 * (released afterwards, so that long-lived streams do not keep it). */
const char *grpc_call_header(const struct grpc_call *call, const char *name);
void grpc_call_set_data(struct grpc_call *call, void *data);
void *grpc_call_data(struct grpc_call *call);
/* Keep the call's memory alive across async work. */
void grpc_call_ref(struct grpc_call *call);
void grpc_call_unref(struct grpc_call *call);
/* True after cancel, finish, deadline or connection close: sends are refused (-1). */
bool grpc_call_is_closed(const struct grpc_call *call);
/* Frames and queues one message; sends the response headers first if needed. 0 or -1. */
int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len);
/* Packs m into a buffer wiped afterwards (X509-SVID responses carry private keys) and sends it
 * as grpc_call_send does. 0 or -1. */
int grpc_call_send_pb(struct grpc_call *call, const ProtobufCMessage *m);
/* Trailers with grpc-status and the percent-encoded grpc-message (message may be NULL);
 * trailers-only when nothing was sent. Closes the call. 0 or -1 (already closed). */
int grpc_call_finish(struct grpc_call *call, int status, const char *message);

#endif
