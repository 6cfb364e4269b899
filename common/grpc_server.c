/* grpc_server.c: gRPC server on libuv + nghttp2, optionally over wolfSSL (TLS 1.3, ALPN h2).
 *
 * Every socket is a raw non-blocking fd watched by one uv_poll_t, with one callback per object.
 * The transport (TLS and HTTP/2 as memory transforms, the I/O buffers and pumps) is the
 * connection core, h2conn.h; this file drives it from the loop (listeners, connections, the
 * nghttp2 session, shutdown) and grpc_call.c owns what is gRPC: calls, method dispatch, response
 * streams, deadlines.
 *
 * Re-entrancy: API calls made by handlers (send, finish) never run nghttp2 output or close
 * anything synchronously. They queue work and mark the connection dirty; a uv_idle handle (or
 * the connection's own poll callback) flushes it. So on_call_closed never fires inside
 * grpc_call_send/grpc_call_finish, and nothing is freed inside its own callback: memory goes
 * away in libuv close callbacks only.
 *
 * Lifetimes: a call holds one reference for its open HTTP/2 stream and, when it has a deadline,
 * one for its timer handle (released in the timer's close callback); handlers add their own. The server is
 * freed after shutdown once every handle it created (listener, idle, grace timer, connection
 * polls, call timers) has been closed. */
#include "grpc_server.h"
#include "grpc_server_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "h2conn.h"
#include "log.h"
#include "util.h"

static void conn_close(struct grpc_conn *conn);
static void conn_flush(struct grpc_conn *conn);

const char *const grpc_refusal_names[GRPC_REFUSED_N] = {
	[GRPC_REFUSED_MAX_CONNECTIONS] = "max_connections",
	[GRPC_REFUSED_PER_SOURCE] = "per_source",
	[GRPC_REFUSED_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[GRPC_REFUSED_IDLE_TIMEOUT] = "idle_timeout",
	[GRPC_REFUSED_UNAUTHENTICATED_METHOD] = "unauthenticated_method",
	[GRPC_REFUSED_UNAUTHENTICATED_STREAMS] = "unauthenticated_streams",
	[GRPC_REFUSED_MESSAGE_TOO_LARGE] = "message_too_large",
	[GRPC_REFUSED_UNAUTHENTICATED_MEMORY] = "unauthenticated_memory",
	[GRPC_REFUSED_HANDSHAKES] = "handshakes",
};

/* Counts a refusal; logs the first one, then at most one line per interval and reason with the
 * number since the last line (an attacker must not be able to flood the log). */
void refuse(struct grpc_server *s, enum grpc_refusal why)
{
	uint64_t now = uv_now(s->loop);

	s->refused[why]++;
	s->refused_unlogged[why]++;
	if (s->refused_logged_at[why] &&
	    now - s->refused_logged_at[why] < GRPC_REFUSAL_LOG_INTERVAL_MS)
		return;
	log_warnx("grpc: admission control refused %llu connection(s) or call(s) (%s) since the "
		  "last report; %u connections open",
		  (unsigned long long)s->refused_unlogged[why], grpc_refusal_names[why], s->n_conns);
	s->refused_unlogged[why] = 0;
	s->refused_logged_at[why] = now ? now : 1;
}

/* nghttp2 memory.
 *
 * Every nghttp2 session allocates a 16 KiB outbound frame buffer when it is created and keeps it
 * for its whole life: with a thousand idle streams (one connection each) that buffer alone was
 * most of the agent's memory per stream. nghttp2_session_mem_send() packs one frame into that
 * buffer and returns a pointer into it that is valid only until the session's next
 * nghttp2_session_mem_send() call; between calls the buffer holds nothing the session needs (a
 * frame is packed and handed out within one call, and with H2_MAX_SEND_HEADER_BLOCK no header
 * block needs a second buffer). h2conn_output (called by conn_flush) copies every returned frame
 * (into the output buffer, or into its TLS gather buffer on the stack) before the next
 * nghttp2_session_mem_send() call and before anything else runs, and sessions of one server run on one
 * thread and never produce output from inside another session's callbacks (see
 * "Re-entrancy" above). So all the sessions of a server share one frame buffer: the allocation
 * of that size made while a session is being created (conn_setup) is answered with the shared buffer, and
 * freeing it is a no-op. Allocations made later (header values of any length from peers) are
 * never mistaken for it.
 *
 * Our HPACK encoder's table, the same way. A session's encoder allocates a ring of entry
 * pointers for the default table size when it is created (the first allocation of
 * H2_DEFLATE_RING_LEN bytes: nghttp2_hd_deflate_init2 runs before the decoder's init, which
 * makes the same allocation), and with H2_HEADER_TABLE_SIZE 0 it never indexes a header
 * (hd_deflate_decide_indexing; add_hd_table_incremental adds nothing to a table of size 0), so
 * that ring is never read nor written: it is only freed with the session. All sessions share
 * one. */

static void *h2_claim(struct grpc_server *s, size_t size)
{
	if (s->ring_claim && size == H2_DEFLATE_RING_LEN) {
		s->ring_claim = false;
		if (!s->deflate_ring)
			s->deflate_ring = malloc(H2_DEFLATE_RING_LEN);
		return s->deflate_ring;
	}
	if (!s->framebuf_claim || size != H2_FRAMEBUF_LEN)
		return NULL;
	s->framebuf_claim = false;
	if (!s->framebuf)
		s->framebuf = malloc(H2_FRAMEBUF_LEN);
	return s->framebuf;
}

/* The size of ptr when it is one of the blocks all sessions share, else 0. */
static size_t h2_shared(const struct grpc_server *s, const void *ptr)
{
	if (ptr && ptr == s->framebuf)
		return H2_FRAMEBUF_LEN;
	if (ptr && ptr == s->deflate_ring)
		return H2_DEFLATE_RING_LEN;
	return 0;
}

/* What nghttp2 holds besides the shared frame buffer, for grpc_server_h2_mem: malloc's usable
 * size of each block (what the heap gives, a few bytes over what was asked). */
static void *h2_count(struct grpc_server *s, void *p)
{
	if (p) {
		s->h2_bytes += malloc_usable_size(p);
		s->h2_blocks++;
	}
	return p;
}

static void h2_uncount(struct grpc_server *s, void *p)
{
	s->h2_bytes -= malloc_usable_size(p);
	s->h2_blocks--;
}

static void *h2_malloc(size_t size, void *ud)
{
	void *p = h2_claim(ud, size);

	return p ? p : h2_count(ud, malloc(size));
}

static void h2_free(void *ptr, void *ud)
{
	struct grpc_server *s = ud;

	if (!ptr || h2_shared(s, ptr))
		return;
	h2_uncount(s, ptr);
	free(ptr);
}

static void *h2_calloc(size_t nmemb, size_t size, void *ud)
{
	return h2_count(ud, calloc(nmemb, size));
}

static void *h2_realloc(void *ptr, size_t size, void *ud)
{
	struct grpc_server *s = ud;
	size_t old = h2_shared(s, ptr);
	void *p;

	if (!ptr)
		return h2_malloc(size, ud);
	if (old) {
		/* A shared block stays with the others: this session gets its own copy. */
		p = h2_count(s, malloc(size));
		if (p)
			memcpy(p, ptr, size < old ? size : old);
		return p;
	}
	old = malloc_usable_size(ptr);
	p = realloc(ptr, size);
	if (p) {
		s->h2_bytes -= old;
		s->h2_bytes += malloc_usable_size(p);
	}
	return p;
}

/* The sharing relies on how nghttp2 1.x uses its frame buffer (checked against 1.52). */
static bool h2_can_share_framebuf(void)
{
	const nghttp2_info *info = nghttp2_version(0);

	return info && info->version_num >= 0x012800 && info->version_num < 0x020000;
}

/* The encoder ring's sharing relies on the order of allocations in session_new and on HPACK
 * internals: checked against 1.52 only. The patched nghttp2 (LANYARD_NGHTTP2=patched,
 * deploy/nghttp2/) allocates no ring until a header is indexed, which a table of size 0 never
 * does: nothing to share, and the first allocation of that size would be something else. */
static bool h2_can_share_deflate_ring(void)
{
#ifdef LANYARD_NGHTTP2_LAZY_TABLES
	return false;
#endif
	const nghttp2_info *info = nghttp2_version(0);

	return info && info->version_num >= 0x013400 && info->version_num < 0x013500;
}

/* Handle bookkeeping */

static void server_free(struct grpc_server *s)
{
	void (*done)(void *) = s->done;
	void *arg = s->done_arg;

	if (s->tls)
		wolfSSL_CTX_free(s->tls);
	if (s->framebuf) {
		/* It carried response bodies, private keys included. */
		secure_zero(s->framebuf, H2_FRAMEBUF_LEN);
		free(s->framebuf);
	}
	free(s->deflate_ring);
	nghttp2_option_del(s->h2_option);
	nghttp2_session_callbacks_del(s->h2_callbacks);
	free(s->unix_path);
	free(s);
	if (done)
		done(arg);
}

void handle_closed(struct grpc_server *s)
{
	s->handles--;
	if (s->final_close && s->handles == 0)
		server_free(s);
}

static void generic_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void maybe_finish_shutdown(struct grpc_server *s)
{
	if (!s->shutting_down || s->final_close || s->n_conns > 0 || s->listener_active)
		return;
	s->final_close = true;
	uv_close((uv_handle_t *)&s->idle, generic_close_cb);
	uv_close((uv_handle_t *)&s->grace, generic_close_cb);
}

static void idle_cb(uv_idle_t *h)
{
	struct grpc_server *s = h->data;
	struct grpc_conn *conn, *next;

	/* Only the connections dirty now: one marked again meanwhile waits for the next round. */
	conn = s->dirty_head;
	s->dirty_head = s->dirty_tail = NULL;
	for (; conn; conn = next) {
		next = conn->dirty_next;
		conn->dirty_next = NULL;
		if (!conn->dirty)
			continue;
		conn->dirty = false;
		if (conn->want_close)
			conn_close(conn);
		else
			conn_flush(conn);
	}
	if (!s->dirty_head)
		uv_idle_stop(h);
}

void conn_mark_dirty(struct grpc_conn *conn)
{
	struct grpc_server *s = conn->server;

	if (conn->dirty || conn->h2.closing)
		return;
	conn->dirty = true;
	conn->dirty_next = NULL;
	if (s->dirty_tail)
		s->dirty_tail->dirty_next = conn;
	else
		s->dirty_head = conn;
	s->dirty_tail = conn;
	if (!s->final_close)
		uv_idle_start(&s->idle, idle_cb);
}

static void conn_unmark_dirty(struct grpc_conn *conn)
{
	struct grpc_server *s = conn->server;
	struct grpc_conn **pp, *prev = NULL;

	if (!conn->dirty)
		return;
	for (pp = &s->dirty_head; *pp; prev = *pp, pp = &(*pp)->dirty_next) {
		if (*pp == conn) {
			*pp = conn->dirty_next;
			if (s->dirty_tail == conn)
				s->dirty_tail = prev;
			break;
		}
	}
	conn->dirty = false;
	conn->dirty_next = NULL;
}

/* Connections */

/* The connection's TLS handshake completed or it is closing: no longer counted against
 * max_handshakes. */
static void conn_handshake_over(struct grpc_conn *conn)
{
	if (!conn->handshaking)
		return;
	conn->handshaking = false;
	conn->server->n_handshaking--;
}

static void conn_close_cb(uv_handle_t *h)
{
	struct grpc_conn *conn = h->data;
	struct grpc_server *s = conn->server;

	if (--conn->open_handles == 0) {
		/* Before handle_closed, which may free the server: the session's memory functions
		 * (h2_free) use it. */
		h2conn_free(&conn->h2);
		free(conn);
	}
	handle_closed(s);
}

static void conn_close(struct grpc_conn *conn)
{
	struct grpc_server *s = conn->server;

	if (conn->h2.closing)
		return;
	conn->h2.closing = true;
	conn_handshake_over(conn);
	conn_unmark_dirty(conn);
	while (conn->calls) {
		struct grpc_call *call = conn->calls;

		nghttp2_session_set_stream_user_data(conn->h2.session, call->stream_id, NULL);
		call_detach(call);
	}
	if (s->cfg.on_disconnect)
		s->cfg.on_disconnect(conn);
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		s->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	s->n_conns--;
	/* uv_close stops the poll itself (a uv_poll_stop first would cost one more epoll_ctl). */
	uv_close((uv_handle_t *)&conn->poll, conn_close_cb);
	uv_close((uv_handle_t *)&conn->timer, conn_close_cb);
	maybe_finish_shutdown(s);
}

static void conn_poll_cb(uv_poll_t *h, int status, int events);

static void conn_update_events(struct grpc_conn *conn)
{
	int ev = UV_READABLE | UV_DISCONNECT;

	if (h2buf_pending(&conn->h2.out))
		ev |= UV_WRITABLE;
	if (conn->h2.closing || ev == conn->poll_events)
		return;
	conn->poll_events = ev;
	uv_poll_start(&conn->poll, ev, conn_poll_cb);
}

/* Generates pending HTTP/2 output, writes what the socket takes, and closes the connection when
 * it is done or broken. */
static void conn_flush(struct grpc_conn *conn)
{
	struct grpc_server *s = conn->server;
	char err[256];
	bool more = false;

	if (conn->h2.closing)
		return;
	if (conn->want_close) {
		conn_close(conn);
		return;
	}
	if (h2conn_output(&conn->h2, &more, err, sizeof(err)) < 0) {
		if (!conn->h2.closing)
			log_debug("grpc: closing connection: %s", err);
		conn_close(conn);
		return;
	}
	if (h2conn_flush(&conn->h2, NULL, 0) < 0) {
		conn_close(conn);
		return;
	}
	if (!h2buf_pending(&conn->h2.out)) {
		/* More frames may be waiting behind the high-water mark. */
		if (more) {
			conn_mark_dirty(conn);
		} else if (h2conn_done(&conn->h2) || (s->shutting_down && conn->n_calls == 0)) {
			conn_close(conn);
			return;
		}
	}
	conn_update_events(conn);
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
	struct grpc_conn *conn = h->data;
	char err[256];
	int rc;

	if (conn->h2.closing)
		return;
	if (status < 0) {
		conn_close(conn);
		return;
	}
	if (events & (UV_READABLE | UV_DISCONNECT)) {
		rc = h2conn_read(&conn->h2, err, sizeof(err));
		if (conn->h2.handshake_done)
			conn_handshake_over(conn);
		if (rc == H2CONN_EPROTO) {
			if (!conn->h2.closing)
				log_debug("grpc: closing connection: %s", err);
			/* Such as a TLS alert that tells a rejected client why. */
			h2conn_send_last(&conn->h2);
		}
		if (rc < 0) {
			conn_close(conn);
			return;
		}
	}
	conn_flush(conn);
}

void conn_timer_cb(uv_timer_t *t)
{
	struct grpc_conn *conn = t->data;

	if (!conn->established) {
		log_debug("grpc: closing connection: no %s within %u ms",
			  conn->h2.ssl ? "TLS handshake, HTTP/2 preface and request"
				       : "HTTP/2 preface and request",
			  conn->server->cfg.handshake_timeout_ms);
		refuse(conn->server, GRPC_REFUSED_HANDSHAKE_TIMEOUT);
		conn_close(conn);
	} else if (conn->n_calls == 0) {
		log_debug("grpc: closing connection: idle for %u ms",
			  conn->server->cfg.idle_timeout_ms);
		refuse(conn->server, GRPC_REFUSED_IDLE_TIMEOUT);
		conn_close(conn);
	}
}

static const nghttp2_session_callbacks *server_callbacks(struct grpc_server *s)
{
	nghttp2_session_callbacks *cbs;

	if (s->h2_callbacks)
		return s->h2_callbacks;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	s->h2_callbacks = cbs;
	return cbs;
}

/* The HTTP/2 session (sharing the server's frame buffer, see h2_malloc), our SETTINGS and TLS. */
static int conn_setup(struct grpc_server *s, struct grpc_conn *conn)
{
	const nghttp2_session_callbacks *cbs = server_callbacks(s);
	nghttp2_settings_entry settings[2];
	size_t n = 0;
	int rc;

	if (!cbs)
		return -1;
	s->framebuf_claim = s->share_framebuf;
	s->ring_claim = s->share_deflate_ring;
	rc = h2conn_session_new(&conn->h2, cbs, conn, s->h2_option, &s->h2_mem);
	s->framebuf_claim = s->ring_claim = false;
	if (rc < 0)
		return -1;
	settings[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
						 s->cfg.max_streams_per_conn};
	if (s->cfg.zero_peer_header_table)
		settings[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_HEADER_TABLE_SIZE,
							 H2_HEADER_TABLE_SIZE};
	if (nghttp2_submit_settings(conn->h2.session, NGHTTP2_FLAG_NONE, settings, n) != 0)
		return -1;
	if (s->tls && h2conn_tls_new(&conn->h2, s->tls, NULL, NULL, 0) < 0)
		return -1;
	return 0;
}

/* The peer's IP address as bytes (4 or 16), 0 when not an IP socket. */
static size_t source_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
	if (ss->ss_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return 4;
	}
	if (ss->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
		return 16;
	}
	return 0;
}

/* Connections open from this source and, of those, the ones still in their TLS handshake.
 * A linear scan: accepts are rare next to requests, and max_conns bounds the list. */
static unsigned source_count(const struct grpc_server *s, const uint8_t *key, size_t len,
			     unsigned *handshaking)
{
	const struct grpc_conn *c;
	unsigned n = 0;

	*handshaking = 0;
	for (c = s->conns; c; c = c->next) {
		if (c->source_len == len && memcmp(c->source, key, len) == 0) {
			n++;
			*handshaking += c->handshaking;
		}
	}
	return n;
}

/* Connection limits: 0 to admit, -1 refused (counted). */
static int admit(struct grpc_server *s, const uint8_t *key, size_t len)
{
	unsigned hs_cap = s->tls ? s->cfg.max_handshakes : 0, hs = 0;

	if (s->n_conns >= s->cfg.max_conns) {
		refuse(s, GRPC_REFUSED_MAX_CONNECTIONS);
		return -1;
	}
	if (hs_cap && s->n_handshaking >= hs_cap) {
		refuse(s, GRPC_REFUSED_HANDSHAKES);
		return -1;
	}
	if (!len || !s->cfg.max_conns_per_source)
		return 0;
	if (source_count(s, key, len, &hs) >= s->cfg.max_conns_per_source) {
		refuse(s, GRPC_REFUSED_PER_SOURCE);
		return -1;
	}
	if (hs_cap && hs >= (hs_cap / 16 > 0 ? hs_cap / 16 : 1)) {
		refuse(s, GRPC_REFUSED_HANDSHAKES);
		return -1;
	}
	return 0;
}

/* Turns a connection away at once: a reset (no FIN handshake, no TIME_WAIT here), which the
 * client sees as ECONNRESET on its first read. */
static void reset_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void conn_accept(struct grpc_server *s, int fd, const struct sockaddr_storage *peer)
{
	struct grpc_conn *conn;
	uint8_t key[16];
	size_t key_len = source_key(peer, key);

	if (admit(s, key, key_len) < 0) {
		reset_close(fd);
		return;
	}
	conn = calloc(1, sizeof(*conn));
	if (!conn) {
		close(fd);
		return;
	}
	conn->server = s;
	memcpy(conn->source, key, key_len);
	conn->source_len = key_len;
	h2conn_init(&conn->h2, fd, true);
	if (s->cfg.on_connect && s->cfg.on_connect(conn, fd) < 0) {
		close(fd);
		free(conn);
		return;
	}
	if (conn_setup(s, conn) < 0 || uv_poll_init(s->loop, &conn->poll, fd) != 0)
		goto fail;
	conn->poll.data = conn;
	uv_timer_init(s->loop, &conn->timer);
	conn->timer.data = conn;
	conn->open_handles = 2;
	s->handles += 2;
	uv_timer_start(&conn->timer, conn_timer_cb, s->cfg.handshake_timeout_ms, 0);
	conn->next = s->conns;
	if (s->conns)
		s->conns->prev = conn;
	s->conns = conn;
	s->n_conns++;
	if (conn->h2.ssl) {
		conn->handshaking = true;
		s->n_handshaking++;
	}
	/* Our SETTINGS frame goes out with the first answer to the client's preface, not now: a
	 * frame of its own would wake the client for nothing and cost a send(2) per connection. */
	conn_update_events(conn);
	return;
fail:
	if (s->cfg.on_disconnect)
		s->cfg.on_disconnect(conn);
	h2conn_free(&conn->h2);
	free(conn);
}

static void listener_cb(uv_poll_t *h, int status, int events)
{
	struct grpc_server *s = h->data;
	int i;

	if (status < 0 || s->shutting_down)
		return;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer = { .ss_family = AF_UNSPEC };
		socklen_t peer_len = sizeof(peer);
		int fd = accept4(s->listen_fd, (struct sockaddr *)&peer, &peer_len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("grpc: accept");
			return;
		}
		if (s->tcp) {
			int one = 1;

			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		conn_accept(s, fd, &peer);
	}
}

static void listener_close_cb(uv_handle_t *h)
{
	struct grpc_server *s = h->data;

	close(s->listen_fd);
	s->listen_fd = -1;
	s->listener_active = false;
	maybe_finish_shutdown(s);
	handle_closed(s);
}

/* Server setup */

static int server_start(uv_loop_t *loop, int fd, WOLFSSL_CTX *tls, const struct grpc_server_config *cfg,
			struct grpc_server **out, char *err, size_t errlen)
{
	struct grpc_server *s;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fl;

	*out = NULL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		errorf(err, errlen, "fcntl: %s", strerror(errno));
		close(fd);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		errorf(err, errlen, "grpc server: %s", strerror(ENOMEM));
		close(fd);
		return -1;
	}
	s->loop = loop;
	s->cfg = *cfg;
	if (!s->cfg.max_message_size)
		s->cfg.max_message_size = GRPC_DEFAULT_MAX_MESSAGE;
	if (!s->cfg.max_streams_per_conn)
		s->cfg.max_streams_per_conn = 100;
	if (!s->cfg.max_conns)
		s->cfg.max_conns = 1024;
	if (!s->cfg.max_output_per_conn)
		s->cfg.max_output_per_conn = 16u * 1024 * 1024;
	if (!s->cfg.handshake_timeout_ms)
		s->cfg.handshake_timeout_ms = 10000;
	if (!s->cfg.unauth_max_buffered)
		s->cfg.unauth_max_buffered = 64 * s->cfg.unauth_max_message_size;
	s->listen_fd = fd;
	s->port = -1;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		s->tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	}
	if (nghttp2_option_new(&s->h2_option) != 0) {
		errorf(err, errlen, "grpc server: %s", strerror(ENOMEM));
		close(fd);
		free(s);
		return -1;
	}
	nghttp2_option_set_max_send_header_block_length(s->h2_option, H2_MAX_SEND_HEADER_BLOCK);
	nghttp2_option_set_max_deflate_dynamic_table_size(s->h2_option, H2_HEADER_TABLE_SIZE);
	/* nghttp2 keeps up to SETTINGS_MAX_CONCURRENT_STREAMS closed streams per connection (for
	 * RFC 7540 priorities, which we do not use): an agent's renewals would each leave one. */
	nghttp2_option_set_no_closed_streams(s->h2_option, 1);
	s->h2_mem = (nghttp2_mem){.mem_user_data = s, .malloc = h2_malloc, .free = h2_free,
				  .calloc = h2_calloc, .realloc = h2_realloc};
	s->share_framebuf = h2_can_share_framebuf();
	s->share_deflate_ring = H2_HEADER_TABLE_SIZE == 0 && h2_can_share_deflate_ring();
	if (uv_poll_init(loop, &s->listener, fd) != 0) {
		errorf(err, errlen, "uv_poll_init failed");
		nghttp2_option_del(s->h2_option);
		close(fd);
		free(s);
		return -1;
	}
	if (tls) {
		wolfSSL_CTX_up_ref(tls);
		s->tls = tls;
	}
	s->listener.data = s;
	s->listener_active = true;
	uv_idle_init(loop, &s->idle);
	s->idle.data = s;
	uv_timer_init(loop, &s->grace);
	s->grace.data = s;
	s->handles = 3;
	uv_poll_start(&s->listener, UV_READABLE, listener_cb);
	*out = s;
	return 0;
}

int grpc_server_listen_fd(uv_loop_t *loop, int listen_fd, WOLFSSL_CTX *tls,
			  const struct grpc_server_config *cfg, struct grpc_server **out, char *err,
			  size_t errlen)
{
	return server_start(loop, listen_fd, tls, cfg, out, err, errlen);
}

int grpc_server_listen_unix(uv_loop_t *loop, const char *path, const struct grpc_server_config *cfg,
			    struct grpc_server **out, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	*out = NULL;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: socket path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		errorf(err, errlen, "%s: socket: %s", path, strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, SOMAXCONN) < 0) {
		errorf(err, errlen, "%s: bind/listen: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (server_start(loop, fd, NULL, cfg, out, err, errlen) < 0)
		return -1;
	(*out)->unix_path = strdup(path);
	return 0;
}

int grpc_server_listen_tcp(uv_loop_t *loop, const char *addr, int port, WOLFSSL_CTX *tls,
			   const struct grpc_server_config *cfg, struct grpc_server **out, char *err,
			   size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char host[256], portstr[16];
	int fd = -1, rc, e = 0, one = 1;

	*out = NULL;
	if (port < 0 || port > 65535) {
		if (err && errlen)
			snprintf(err, errlen, "invalid port %d", port);
		return -1;
	}
	/* Accept "[::1]" as well as "::1". */
	if (addr && addr[0] == '[') {
		size_t l = strlen(addr);

		if (l < 3 || addr[l - 1] != ']' || l - 2 >= sizeof(host)) {
			if (err && errlen)
				snprintf(err, errlen, "invalid address %s", addr);
			return -1;
		}
		memcpy(host, addr + 1, l - 2);
		host[l - 2] = '\0';
		addr = host;
	}
	if (addr && !*addr)
		addr = NULL;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", addr ? addr : "*", gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s:%d: %s", addr ? addr : "*", port, strerror(e));
		return -1;
	}
	return server_start(loop, fd, tls, cfg, out, err, errlen);
}

void grpc_server_set_tls(struct grpc_server *s, WOLFSSL_CTX *tls)
{
	if (tls)
		wolfSSL_CTX_up_ref(tls);
	if (s->tls)
		wolfSSL_CTX_free(s->tls);
	s->tls = tls;
}

void *grpc_server_ud(struct grpc_server *s)
{
	return s->cfg.ud;
}

void grpc_server_h2_mem(struct grpc_server *s, size_t *bytes, size_t *blocks)
{
	*bytes = s->h2_bytes;
	*blocks = s->h2_blocks;
}

unsigned grpc_server_conn_count(struct grpc_server *s)
{
	return s->n_conns;
}

unsigned grpc_server_max_conns(struct grpc_server *s)
{
	return s->cfg.max_conns;
}

void grpc_server_refusals(struct grpc_server *s, uint64_t out[GRPC_REFUSED_N])
{
	memcpy(out, s->refused, sizeof(s->refused));
}

int grpc_server_port(struct grpc_server *s)
{
	return s->port;
}

static void grace_cb(uv_timer_t *t)
{
	struct grpc_server *s = t->data;

	while (s->conns)
		conn_close(s->conns);
}

void grpc_server_shutdown(struct grpc_server *s, int grace_ms, void (*done)(void *arg), void *arg)
{
	struct grpc_conn *conn, *next;

	if (s->shutting_down)
		return;
	s->shutting_down = true;
	s->done = done;
	s->done_arg = arg;
	uv_poll_stop(&s->listener);
	uv_close((uv_handle_t *)&s->listener, listener_close_cb);
	if (s->unix_path)
		unlink(s->unix_path);
	for (conn = s->conns; conn; conn = next) {
		next = conn->next;
		if (conn->h2.handshake_done || !conn->h2.ssl)
			nghttp2_submit_goaway(conn->h2.session, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(conn->h2.session),
					      NGHTTP2_NO_ERROR, NULL, 0);
		conn_mark_dirty(conn);
	}
	uv_timer_start(&s->grace, grace_cb, grace_ms > 0 ? (uint64_t)grace_ms : 0, 0);
}

/* Connection accessors */

struct grpc_server *grpc_conn_server(struct grpc_conn *c)
{
	return c->server;
}

void grpc_conn_set_data(struct grpc_conn *c, void *data)
{
	c->data = data;
}

void *grpc_conn_data(struct grpc_conn *c)
{
	return c->data;
}

int grpc_conn_fd(struct grpc_conn *c)
{
	return c->h2.fd;
}

const uint8_t *grpc_conn_peer_cert(struct grpc_conn *c, size_t *len)
{
	if (len)
		*len = c->h2.peer_cert_len;
	return c->h2.peer_cert;
}

void grpc_conn_drop_peer_cert(struct grpc_conn *c)
{
	h2conn_drop_peer_cert(&c->h2);
}

unsigned grpc_conn_stream_count(struct grpc_conn *c)
{
	return c->n_calls;
}

