/* grpc_server_internal.h: what the pieces of the gRPC server share: grpc_server.c (listeners,
 * connections, the nghttp2 session, shutdown) and grpc_call.c (calls, their nghttp2 callbacks and
 * the grpc_call_* API). Only those two files include this.
 *
 * Threads: the server's loop thread only. The server owns its connections, a connection its open
 * calls (see the lifetimes in grpc_server.c). */
#ifndef LANYARD_GRPC_SERVER_INTERNAL_H
#define LANYARD_GRPC_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "grpc_server.h"
#include "h2conn.h"

#define MAX_HEADER_BYTES 16384
#define MAX_HEADERS 64
#define ACCEPT_BATCH 64
/* nghttp2's outbound frame buffer: frame header, pad length, one maximum-size payload
 * (NGHTTP2_FRAMEBUF_CHUNKLEN, not public). */
#define H2_FRAMEBUF_LEN (9 + 1 + 16384)
/* Response header blocks we send are small; at most one frame buffer's worth keeps nghttp2 to a
 * single frame buffer per session (it sizes the buffer chain from this). */
#define H2_MAX_SEND_HEADER_BLOCK 16384
/* Our HPACK encoder's dynamic table: none. A peer opens a few streams per connection, so
 * indexing saves a few bytes per request, while the table held its entries for the
 * connection's life (ten thousand agents: megabytes). The peer's encoder keeps the default
 * 4,096 unless the server's cfg.zero_peer_header_table announces 0 (then this is what we
 * announce): a client that indexes without honouring a smaller size, as simple hand-written
 * ones do, would fail with COMPRESSION_ERROR, so only servers whose clients are all Lanyard's
 * own (the node API) do. */
#define H2_HEADER_TABLE_SIZE 0
/* nghttp2's HPACK ring of entry pointers, sized for the default 4,096-byte table (one slot per
 * 32 bytes) whatever the table size (hd_context_init). */
#define H2_DEFLATE_RING_LEN (4096 / 32 * sizeof(void *))

struct grpc_call {
	int refs;
	struct grpc_server *server;
	struct grpc_conn *conn; /* NULL once the call closed (after on_call_closed) */
	struct grpc_call *prev, *next; /* the connection's open calls */
	int32_t stream_id;
	const struct grpc_method *method;
	struct grpc_header *hdrs; /* owned copies */
	size_t n_hdrs;
	size_t hdr_bytes;
	bool hdr_overflow;
	struct grpc_deframer deframer;
	uint8_t *req;
	size_t req_len;
	bool have_req;
	bool headers_complete; /* request HEADERS fully received and accepted */
	bool client_ended;     /* END_STREAM from the client */
	bool requested;        /* on_request was called */
	bool headers_sent;     /* response HEADERS submitted (with a data provider) */
	bool finished;         /* no more sends: finish, error or deadline */
	bool trailers_submitted;
	bool rst_after_response;
	bool deferred;         /* data provider returned NGHTTP2_ERR_DEFERRED */
	bool data_live;        /* nghttp2 holds a DATA item of ours for the stream */
	bool closed;           /* the stream is gone */
	int status;
	char *message;
	struct h2buf out;      /* framed response messages not yet handed to nghttp2 */
	uv_timer_t *timer;     /* grpc-timeout deadline; NULL without one */
	bool timer_closing;
	bool unauth;           /* the peer presented no client certificate (admission control) */
	size_t charged;        /* request bytes counted in the server's unauth_buffered */
	void *data;
};

struct grpc_conn {
	struct grpc_server *server;
	struct grpc_conn *prev, *next;       /* server's connections */
	struct grpc_conn *dirty_next;
	bool dirty;
	struct h2conn h2; /* the socket, TLS, nghttp2 session and I/O buffers */
	uv_poll_t poll;
	uv_timer_t timer; /* handshake + preface + first request deadline, then idle timeout */
	int open_handles;
	bool established; /* first request HEADERS received */
	bool handshaking; /* TLS handshake in progress: counted in the server's n_handshaking */
	uint8_t source[16]; /* peer IP address (per-source limit); source_len 0 = none */
	size_t source_len;
	int poll_events;
	bool want_close;
	size_t queued; /* bytes in calls' out buffers */
	struct grpc_call *calls;
	unsigned n_calls;
	void *data;
};

struct grpc_server {
	uv_loop_t *loop;
	struct grpc_server_config cfg;
	int listen_fd;
	uv_poll_t listener;
	bool listener_active;
	int port;
	char *unix_path; /* unlinked on shutdown when we bound it */
	WOLFSSL_CTX *tls;
	bool tcp; /* TCP listener: set TCP_NODELAY on accepted sockets */
	nghttp2_option *h2_option;
	nghttp2_session_callbacks *h2_callbacks; /* made on the first connection */
	nghttp2_mem h2_mem;
	/* One outbound frame buffer shared by every session (see h2_malloc), and whether the next
	 * allocation of that size is the one a session being created asks for. */
	uint8_t *framebuf;
	bool framebuf_claim;
	bool share_framebuf;
	/* The encoder's HPACK ring shared the same way (see h2_claim). */
	void *deflate_ring;
	bool ring_claim;
	bool share_deflate_ring;
	size_t h2_bytes, h2_blocks; /* nghttp2's other blocks (grpc_server_h2_mem) */
	struct grpc_conn *conns;
	unsigned n_conns;
	unsigned n_handshaking; /* connections with handshaking set (max_handshakes) */
	size_t unauth_buffered; /* sum of the charged bytes of unauthenticated calls */
	uint64_t refused[GRPC_REFUSED_N];
	uint64_t refused_unlogged[GRPC_REFUSED_N];
	uint64_t refused_logged_at[GRPC_REFUSED_N]; /* uv_now of the last line, 0 = never */
	struct grpc_conn *dirty_head, *dirty_tail;
	uv_idle_t idle;
	uv_timer_t grace;
	unsigned handles;
	bool shutting_down;
	bool final_close;
	void (*done)(void *arg);
	void *done_arg;
};

/* Shared between the pieces of this module. */
void conn_mark_dirty(struct grpc_conn *conn);
void conn_timer_cb(uv_timer_t *t);
void handle_closed(struct grpc_server *s);
void refuse(struct grpc_server *s, enum grpc_refusal why);
void call_detach(struct grpc_call *call);
int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud);
int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *ud);
int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud);
int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud);
int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud);
int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *ud);

#endif
