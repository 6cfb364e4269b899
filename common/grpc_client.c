/* grpc_client.c: blocking gRPC client over nghttp2, optionally through wolfSSL.
 *
 * The transport (TLS and HTTP/2 as memory transforms, the I/O buffers and pumps) is the
 * connection core, h2conn.h; this file drives it with poll() and owns what is gRPC: calls,
 * streams and their message queues. The socket is non-blocking and every wait is a poll()
 * bounded by the caller's deadline, so no call can hang when given a timeout.
 *
 * Response messages carry private keys (X509-SVIDs): a queued message is wiped when it is
 * dropped unread, and the deframer that assembles them never reallocs (grpc.c). */
#include "grpc_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "h2conn.h"
#include "util.h"

#define USER_AGENT "lanyard/0.1"
#define MAX_RECV_MESSAGE (16u * 1024 * 1024)
/* Received messages buffered for a stream its reader has not picked up yet. */
#define MAX_STREAM_QUEUE (32u * 1024 * 1024)
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW (8 << 20)

struct msg {
	struct msg *next;
	uint8_t *data;
	size_t len;
};

struct grpc_stream {
	struct grpc_client *c;
	struct grpc_stream *prev, *next;
	int32_t id;
	uint8_t *req; /* framed request */
	size_t req_len, req_off;
	struct grpc_deframer deframer;
	struct msg *head, *tail;
	size_t n_msgs;
	size_t queued;
	int http_status;
	bool got_status;
	int status;
	char *message;
	bool remote_ended;
	bool closed;
	uint32_t rst_code;
	bool local_error;
	int local_status;
	char local_msg[160];
};

struct grpc_client {
	struct h2conn h2; /* the socket, TLS, nghttp2 session and I/O buffers */
	WOLFSSL_CTX *ctx;
	char authority[300];
	bool tls;
	struct grpc_stream *streams;
	bool broken;
	char err[256];
	int wake_fd; /* -1, or the caller's: readable = end the current wait (grpc_client_set_wake_fd) */
	bool woken;
};


static int64_t now_ms(void)
{
	return now_mono_us() / 1000;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left before deadline (-1 = none) in poll() form. */
static int remaining_ms(int64_t deadline)
{
	int64_t r;

	if (deadline < 0)
		return -1;
	r = deadline - now_ms();
	if (r < 0)
		return 0;
	return r > 0x7fffffff ? 0x7fffffff : (int)r;
}

static int client_fail(struct grpc_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int client_fail(struct grpc_client *c, const char *fmt, ...)
{
	va_list ap;

	if (c->broken)
		return -1;
	c->broken = true;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* Socket I/O */

/* Moves HTTP/2 output into the output buffer (bounded) and writes what the socket takes. */
static int send_pending(struct grpc_client *c)
{
	char e[256];

	if (c->broken)
		return -1;
	if (h2conn_output(&c->h2, NULL, e, sizeof(e)) < 0 || h2conn_flush(&c->h2, e, sizeof(e)) < 0)
		return client_fail(c, "%s", e);
	return 0;
}

/* One round: write, wait up to timeout_ms for the socket (and the wake fd when wakeable), read,
 * write again. */
static int client_io(struct grpc_client *c, int timeout_ms, bool wakeable)
{
	struct pollfd pfd[2] = {{.fd = c->h2.fd, .events = POLLIN}, {.fd = c->wake_fd, .events = POLLIN}};
	char e[256];
	int rc;

	if (send_pending(c) < 0)
		return -1;
	if (h2buf_pending(&c->h2.out))
		pfd[0].events |= POLLOUT;
	rc = poll(pfd, wakeable && c->wake_fd >= 0 ? 2 : 1, timeout_ms);
	if (rc < 0 && errno != EINTR)
		return client_fail(c, "poll: %s", strerror(errno));
	if (rc > 0 && wakeable && c->wake_fd >= 0 && (pfd[1].revents & POLLIN)) {
		uint64_t drain;

		c->woken = true;
		while (read(c->wake_fd, &drain, sizeof(drain)) > 0)
			;
	}
	if (rc > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
		if (h2conn_read(&c->h2, e, sizeof(e)) < 0)
			return client_fail(c, "%s", e);
	}
	if (send_pending(c) < 0)
		return -1;
	if (h2conn_done(&c->h2))
		return client_fail(c, "the server closed the connection");
	return 0;
}

/* Streams */

static struct grpc_stream *stream_of(nghttp2_session *session, int32_t id)
{
	return nghttp2_session_get_stream_user_data(session, id);
}

static void stream_local_error(struct grpc_stream *s, int status, const char *msg)
{
	if (s->local_error)
		return;
	s->local_error = true;
	s->local_status = status;
	snprintf(s->local_msg, sizeof(s->local_msg), "%s", msg);
	if (!s->closed && s->c && !s->c->broken)
		nghttp2_submit_rst_stream(s->c->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

static bool stream_ended(const struct grpc_stream *s)
{
	return s->closed || s->remote_ended || s->local_error;
}

static int http_to_grpc(int http)
{
	switch (http) {
	case 400:
		return GRPC_STATUS_INTERNAL;
	case 401:
		return GRPC_STATUS_UNAUTHENTICATED;
	case 403:
		return GRPC_STATUS_PERMISSION_DENIED;
	case 404:
		return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_STATUS_UNAVAILABLE;
	default:
		return GRPC_STATUS_UNKNOWN;
	}
}

static void stream_final_status(const struct grpc_stream *s, int *status, char *err, size_t errlen)
{
	if (s->local_error) {
		*status = s->local_status;
		errorf(err, errlen, "%s", s->local_msg);
	} else if (s->http_status != 0 && s->http_status != 200) {
		*status = http_to_grpc(s->http_status);
		errorf(err, errlen, "HTTP status %d", s->http_status);
	} else if (s->got_status) {
		*status = s->status;
		errorf(err, errlen, "%s", s->message ? s->message : "");
	} else if (s->rst_code == NGHTTP2_CANCEL) {
		*status = GRPC_STATUS_CANCELLED;
		errorf(err, errlen, "stream cancelled by the server");
	} else if (s->rst_code == NGHTTP2_REFUSED_STREAM) {
		*status = GRPC_STATUS_UNAVAILABLE;
		errorf(err, errlen, "stream refused by the server");
	} else if (s->rst_code) {
		*status = GRPC_STATUS_INTERNAL;
		errorf(err, errlen, "stream reset by the server: %s",
			nghttp2_http2_strerror(s->rst_code));
	} else {
		*status = GRPC_STATUS_INTERNAL;
		errorf(err, errlen, "response ended without grpc-status");
	}
}

static void stream_free(struct grpc_stream *s)
{
	struct msg *m, *next;

	for (m = s->head; m; m = next) {
		next = m->next;
		secure_zero(m->data, m->len);
		free(m->data);
		free(m);
	}
	grpc_deframer_free(&s->deframer);
	free(s->req);
	free(s->message);
	free(s);
}

static void stream_unlink(struct grpc_stream *s)
{
	struct grpc_client *c = s->c;

	if (!c)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	if (!s->closed && c->h2.session)
		nghttp2_session_set_stream_user_data(c->h2.session, s->id, NULL);
	s->c = NULL;
}

/* nghttp2 callbacks */

static ssize_t req_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *out, size_t length,
			   uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_stream *s = stream_of(session, stream_id);
	size_t n;

	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = s->req_len - s->req_off;
	if (n > length)
		n = length;
	memcpy(out, s->req + s->req_off, n);
	s->req_off += n;
	if (s->req_off == s->req_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct grpc_stream *s;
	char v[16];

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	s = stream_of(session, frame->hd.stream_id);
	if (!s)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 8 ? valuelen : 8), value);
		s->http_status = atoi(v);
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		char *end;
		long st;

		snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 8 ? valuelen : 8), value);
		st = strtol(v, &end, 10);
		s->got_status = true;
		s->status = (valuelen > 0 && valuelen < 8 && *end == '\0' && st >= 0 && st <= 0x7fff)
				    ? (int)st
				    : GRPC_STATUS_UNKNOWN;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		char *raw = strndup((const char *)value, valuelen);

		free(s->message);
		s->message = raw ? grpc_percent_decode(raw) : NULL;
		free(raw);
	}
	return 0;
}

/* Queues a response message for the stream's reader. */
static bool stream_take_message(void *ud, uint8_t *m, size_t mlen)
{
	struct grpc_stream *s = ud;
	struct msg *e = NULL;

	if (s->queued + mlen > MAX_STREAM_QUEUE)
		stream_local_error(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many unread response messages");
	else if (!(e = malloc(sizeof(*e))))
		stream_local_error(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	if (!e) {
		secure_zero(m, mlen);
		free(m);
		return false;
	}
	e->next = NULL;
	e->data = m;
	e->len = mlen;
	if (s->tail)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	s->n_msgs++;
	s->queued += mlen;
	return true;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *ud)
{
	struct grpc_stream *s = stream_of(session, stream_id);
	char msg[128];

	if (!s || s->local_error)
		return 0;
	switch (grpc_deframer_feed_all(&s->deframer, data, len, stream_take_message, s)) {
	case 0:
		break;
	case GRPC_DEFRAME_TOO_LARGE:
		snprintf(msg, sizeof(msg), "response message larger than the maximum (%u bytes)",
			 MAX_RECV_MESSAGE);
		stream_local_error(s, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		break;
	case GRPC_DEFRAME_COMPRESSED:
		stream_local_error(s, GRPC_STATUS_INTERNAL,
				   "compressed response messages are not supported");
		break;
	default:
		stream_local_error(s, GRPC_STATUS_INTERNAL, "malformed response message");
		break;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct grpc_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	s = stream_of(session, frame->hd.stream_id);
	if (!s)
		return 0;
	s->remote_ended = true;
	if (!grpc_deframer_idle(&s->deframer) && !s->local_error) {
		s->local_error = true;
		s->local_status = GRPC_STATUS_INTERNAL;
		snprintf(s->local_msg, sizeof(s->local_msg), "truncated response message");
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *ud)
{
	struct grpc_stream *s = stream_of(session, stream_id);

	if (!s)
		return 0;
	s->closed = true;
	s->rst_code = error_code;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	return 0;
}

/* Connection setup */

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int rc;

	do
		rc = poll(&pfd, 1, remaining_ms(deadline));
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	return 0;
}

/* Non-blocking connect bounded by deadline. Returns the fd or -errno. */
static int connect_addr(int family, const struct sockaddr *sa, socklen_t salen, int64_t deadline)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (fd < 0)
		return -errno;
	for (;;) {
		rc = connect(fd, sa, salen);
		if (rc == 0)
			return fd;
		if (errno == EINTR)
			continue;
		/* A Unix socket whose backlog is full says EAGAIN: try again until the deadline. */
		if (errno == EAGAIN && family == AF_UNIX) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };

			if (remaining_ms(deadline) == 0) {
				close(fd);
				return -ETIMEDOUT;
			}
			nanosleep(&ts, NULL);
			continue;
		}
		break;
	}
	if (errno != EINPROGRESS) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = wait_fd(fd, POLLOUT, deadline);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		close(fd);
		return soerr ? -soerr : -EIO;
	}
	return fd;
}

static int tls_handshake(struct grpc_client *c, int64_t deadline, char *err, size_t errlen)
{
	char e[256];
	int rc = h2conn_handshake(&c->h2, e, sizeof(e));

	if (rc < 0) {
		errorf(err, errlen, "TLS handshake with %s failed: %s", c->authority, e);
		return -1;
	}
	while (!c->h2.handshake_done) {
		if (h2conn_flush(&c->h2, e, sizeof(e)) < 0)
			goto fail;
		rc = wait_fd(c->h2.fd, h2buf_pending(&c->h2.out) ? POLLIN | POLLOUT : POLLIN, deadline);
		if (rc < 0) {
			errorf(err, errlen, "TLS handshake with %s: %s", c->authority,
			       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			return -1;
		}
		if (h2conn_read(&c->h2, e, sizeof(e)) < 0)
			goto fail;
	}
	return 0;
fail:
	errorf(err, errlen, "TLS handshake with %s: %s", c->authority, e);
	return -1;
}

static int client_start(struct grpc_client *c, int64_t deadline, char *err, size_t errlen)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
	};
	int rc = -1;

	if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
		errorf(err, errlen, "out of memory");
		goto out;
	}
	/* No HPACK dynamic table for our requests: every server then holds none of our headers
	 * for the connection's life (a node API server has ten thousand agents), and a request's
	 * few headers cost a few dozen bytes more. */
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	/* The session exists before the TLS handshake: records read with the handshake's last
	 * flight may already carry HTTP/2 frames. Nothing is sent before the handshake is done. */
	if (h2conn_session_new(&c->h2, cbs, c, opt, NULL) < 0) {
		errorf(err, errlen, "out of memory");
		goto out;
	}
	if (nghttp2_submit_settings(c->h2.session, NGHTTP2_FLAG_NONE, settings, ARRAY_LEN(settings)) != 0 ||
	    nghttp2_session_set_local_window_size(c->h2.session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0) {
		errorf(err, errlen, "HTTP/2 setup failed");
		goto out;
	}
	if (c->tls && tls_handshake(c, deadline, err, errlen) < 0)
		goto out;
	if (send_pending(c) < 0) {
		errorf(err, errlen, "%s", c->err);
		goto out;
	}
	rc = 0;
out:
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	return rc;
}

static struct grpc_client *client_new(int fd)
{
	struct grpc_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	h2conn_init(&c->h2, fd, false);
	c->wake_fd = -1;
	return c;
}

int grpc_client_connect_unix(const char *path, int timeout_ms, struct grpc_client **out, char *err,
			     size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int64_t deadline = deadline_after(timeout_ms);
	struct grpc_client *c;
	int fd;

	*out = NULL;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errorf(err, errlen, "%s: socket path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline);
	if (fd < 0) {
		errorf(err, errlen, "connect %s: %s", path,
			fd == -ETIMEDOUT ? "timed out" : strerror(-fd));
		return -1;
	}
	c = client_new(fd);
	if (!c) {
		close(fd);
		errorf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(c->authority, sizeof(c->authority), "localhost");
	if (client_start(c, deadline, err, errlen) < 0) {
		grpc_client_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

int grpc_client_connect_tcp(const char *host, int port, WOLFSSL_CTX *tls, const char *server_name,
			    int timeout_ms, struct grpc_client **out, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	int64_t deadline = deadline_after(timeout_ms);
	struct grpc_client *c = NULL;
	char portstr[16], hostbuf[256];
	int fd = -ETIMEDOUT, rc, one = 1;

	*out = NULL;
	if (!host || port <= 0 || port > 65535) {
		errorf(err, errlen, "invalid address %s:%d", host ? host : "(null)", port);
		return -1;
	}
	if (host[0] == '[') {
		size_t l = strlen(host);

		if (l < 3 || host[l - 1] != ']' || l - 2 >= sizeof(hostbuf)) {
			errorf(err, errlen, "invalid host %s", host);
			return -1;
		}
		memcpy(hostbuf, host + 1, l - 2);
		hostbuf[l - 2] = '\0';
		host = hostbuf;
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		errorf(err, errlen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline);
		if (fd >= 0 || remaining_ms(deadline) == 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		errorf(err, errlen, "connect %s:%d: %s", host, port,
			fd == -ETIMEDOUT ? "timed out" : strerror(-fd));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = client_new(fd);
	if (!c) {
		close(fd);
		errorf(err, errlen, "out of memory");
		return -1;
	}
	if (strchr(host, ':'))
		snprintf(c->authority, sizeof(c->authority), "[%s]:%d", host, port);
	else
		snprintf(c->authority, sizeof(c->authority), "%s:%d", host, port);
	if (tls) {
		wolfSSL_CTX_up_ref(tls);
		c->ctx = tls;
		c->tls = true;
		if (h2conn_tls_new(&c->h2, tls, server_name, err, errlen) < 0)
			goto fail;
	}
	if (client_start(c, deadline, err, errlen) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	grpc_client_close(c);
	return -1;
}

const uint8_t *grpc_client_peer_cert(struct grpc_client *c, size_t *len)
{
	if (len)
		*len = c->h2.peer_cert_len;
	return c->h2.peer_cert;
}

int grpc_client_fd(struct grpc_client *c)
{
	return c->h2.fd;
}

void grpc_client_set_wake_fd(struct grpc_client *c, int fd)
{
	c->wake_fd = fd;
}

static int stream_open(struct grpc_client *c, const char *path, const struct grpc_header *hdrs,
		       size_t n_hdrs, const uint8_t *req, size_t req_len, int timeout_ms,
		       struct grpc_stream **out, char *err, size_t errlen)
{
	nghttp2_data_provider prd = { .read_callback = req_read_cb };
	struct grpc_stream *s = NULL;
	nghttp2_nv *nv = NULL;
	char tmo[16];
	size_t n = 0, i;
	int32_t id;

	*out = NULL;
	if (c->broken) {
		errorf(err, errlen, "%s", c->err);
		return -1;
	}
	if (!nghttp2_session_check_request_allowed(c->h2.session)) {
		errorf(err, errlen, "the server is closing the connection (GOAWAY)");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	nv = calloc(n_hdrs + 9, sizeof(*nv));
	if (!s || !nv)
		goto nomem;
	s->req = grpc_frame(req, req_len, &s->req_len);
	if (!s->req)
		goto nomem;
	grpc_deframer_init(&s->deframer, MAX_RECV_MESSAGE);
#define NV(n_, v_)                                                                                 \
	do {                                                                                       \
		nv[n].name = (uint8_t *)(n_);                                                      \
		nv[n].namelen = strlen(n_);                                                        \
		nv[n].value = (uint8_t *)(v_);                                                     \
		nv[n].valuelen = strlen(v_);                                                       \
		nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                                \
		n++;                                                                               \
	} while (0)
	NV(":method", "POST");
	NV(":scheme", c->tls ? "https" : "http");
	NV(":path", path);
	NV(":authority", c->authority);
	NV("te", "trailers");
	NV("content-type", "application/grpc");
	NV("user-agent", USER_AGENT);
	if (timeout_ms >= 0) {
		grpc_timeout_format(timeout_ms, tmo);
		NV("grpc-timeout", tmo);
	}
	for (i = 0; i < n_hdrs; i++) {
		if (timeout_ms >= 0 && strcmp(hdrs[i].name, "grpc-timeout") == 0)
			continue;
		NV(hdrs[i].name, hdrs[i].value);
	}
#undef NV
	id = nghttp2_submit_request(c->h2.session, NULL, nv, n, &prd, s);
	free(nv);
	nv = NULL;
	if (id < 0) {
		errorf(err, errlen, "cannot start the call: %s", nghttp2_strerror(id));
		stream_free(s);
		return -1;
	}
	s->id = id;
	s->c = c;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	if (send_pending(c) < 0) {
		errorf(err, errlen, "%s", c->err);
		stream_unlink(s);
		stream_free(s);
		return -1;
	}
	*out = s;
	return 0;
nomem:
	free(nv);
	if (s)
		stream_free(s);
	errorf(err, errlen, "out of memory");
	return -1;
}

int grpc_client_stream_open(struct grpc_client *c, const char *path, const struct grpc_header *hdrs,
			    size_t n_hdrs, const uint8_t *req, size_t req_len, struct grpc_stream **out,
			    char *err, size_t errlen)
{
	return stream_open(c, path, hdrs, n_hdrs, req, req_len, -1, out, err, errlen);
}

/* Drives the connection until the stream has a message or ended, the deadline passed (0) or
 * the connection broke (-1). Returns 1 when the condition holds. */
static int stream_wait(struct grpc_stream *s, bool for_end, int64_t deadline)
{
	bool first = true;

	for (;;) {
		struct grpc_client *c = s->c;

		if (stream_ended(s) || (!for_end && s->head))
			return 1;
		if (!c || c->broken)
			return -1;
		if (!first && remaining_ms(deadline) == 0)
			return 0;
		first = false;
		/* Only a wait for a stream message is woken: a unary call runs to its answer. */
		client_io(c, remaining_ms(deadline), !for_end);
		if (c->woken) {
			c->woken = false;
			return 0;
		}
	}
}

static struct msg *stream_pop(struct grpc_stream *s)
{
	struct msg *m = s->head;

	if (m) {
		s->head = m->next;
		if (!s->head)
			s->tail = NULL;
		s->n_msgs--;
		s->queued -= m->len;
	}
	return m;
}

int grpc_stream_next(struct grpc_stream *s, int timeout_ms, uint8_t **msg, size_t *len, int *status,
		     char *err, size_t errlen)
{
	int rc = stream_wait(s, false, deadline_after(timeout_ms));
	struct msg *m;

	*msg = NULL;
	*len = 0;
	if (s->local_error) {
		/* A local error (bad message, overflow) ends the stream at once. */
		stream_final_status(s, status, err, errlen);
		return 2;
	}
	m = stream_pop(s);
	if (m) {
		*msg = m->data;
		*len = m->len;
		free(m);
		return 1;
	}
	if (rc == 1) {
		stream_final_status(s, status, err, errlen);
		return 2;
	}
	if (rc == 0)
		return 0;
	errorf(err, errlen, "%s", s->c ? s->c->err : "the connection is closed");
	return -1;
}

static void stream_cancel(struct grpc_stream *s)
{
	struct grpc_client *c = s->c;

	if (c && !c->broken && !s->closed) {
		nghttp2_submit_rst_stream(c->h2.session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
		stream_unlink(s);
		send_pending(c);
	} else {
		stream_unlink(s);
	}
}

void grpc_stream_cancel(struct grpc_stream *s)
{
	if (!s)
		return;
	stream_cancel(s);
	stream_free(s);
}

int grpc_client_unary(struct grpc_client *c, const char *path, const struct grpc_header *hdrs,
		      size_t n_hdrs, const uint8_t *req, size_t req_len, int timeout_ms, uint8_t **resp,
		      size_t *resp_len, int *status, char *err, size_t errlen)
{
	struct grpc_stream *s;
	struct msg *m;
	int rc;

	*resp = NULL;
	*resp_len = 0;
	if (stream_open(c, path, hdrs, n_hdrs, req, req_len, timeout_ms, &s, err, errlen) < 0)
		return -1;
	rc = stream_wait(s, true, deadline_after(timeout_ms));
	if (rc < 0) {
		errorf(err, errlen, "%s", c->err);
		grpc_stream_cancel(s);
		return -1;
	}
	if (rc == 0) {
		/* As in gRPC, a deadline passing on the client is a call status, and the
		 * connection stays usable. */
		*status = GRPC_STATUS_DEADLINE_EXCEEDED;
		errorf(err, errlen, "deadline exceeded after %d ms", timeout_ms);
		grpc_stream_cancel(s);
		return 0;
	}
	stream_final_status(s, status, err, errlen);
	if (*status == GRPC_STATUS_OK) {
		if (s->n_msgs != 1) {
			*status = GRPC_STATUS_INTERNAL;
			errorf(err, errlen, "%s response message for a unary call",
				s->n_msgs ? "more than one" : "no");
		} else {
			m = stream_pop(s);
			*resp = m->data;
			*resp_len = m->len;
			free(m);
		}
	}
	grpc_stream_cancel(s);
	return 0;
}

void grpc_client_close(struct grpc_client *c)
{
	if (!c)
		return;
	while (c->streams) {
		struct grpc_stream *s = c->streams;

		stream_unlink(s);
		stream_free(s);
	}
	h2conn_free(&c->h2);
	if (c->ctx)
		wolfSSL_CTX_free(c->ctx);
	free(c);
}
