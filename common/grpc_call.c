/* grpc_call.c: the calls of grpc_server.c (see grpc_server.h): a call's life from its stream's
 * HEADERS to its close, the nghttp2 callbacks that build it, responses (status, trailers, the
 * data provider), deadlines and admission control of unauthenticated calls, and the grpc_call_*
 * API handlers use.
 *
 * Threads and ownership: the server's loop thread only, as for the rest of grpc_server. A call
 * belongs to its connection while its stream is open (call_detach ends that) and is freed when
 * its last reference goes (the stream's, the deadline timer handle's when the call has a
 * deadline, the handlers'). The
 * re-entrancy rules of grpc_server.c hold here: send and finish queue work and mark the
 * connection dirty, they never run output or close anything themselves. */
#include "grpc_server.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
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

#include "grpc_server_internal.h"

static void call_unref_internal(struct grpc_call *call);

/* Calls */

static void call_timer_close_cb(uv_handle_t *h)
{
	struct grpc_call *call = h->data;
	struct grpc_server *s = call->server;

	free(h);
	call_unref_internal(call);
	handle_closed(s);
}

static void call_stop_deadline(struct grpc_call *call)
{
	if (call->timer)
		uv_timer_stop(call->timer);
}

static void call_free_headers(struct grpc_call *call)
{
	for (size_t i = 0; i < call->n_hdrs; i++) {
		free((char *)call->hdrs[i].name);
		free((char *)call->hdrs[i].value);
	}
	free(call->hdrs);
	call->hdrs = NULL;
	call->n_hdrs = 0;
}

static void call_free(struct grpc_call *call)
{
	call_free_headers(call);
	grpc_deframer_free(&call->deframer);
	if (call->req)
		secure_zero(call->req, call->req_len);
	free(call->req);
	free(call->message);
	h2buf_free(&call->out);
	free(call);
}

static void call_unref_internal(struct grpc_call *call)
{
	if (--call->refs == 0)
		call_free(call);
}

static void call_drop_output(struct grpc_call *call)
{
	if (call->conn)
		call->conn->queued -= h2buf_pending(&call->out);
	h2buf_free(&call->out);
}

/* The stream is gone (closed by nghttp2 or by the connection going away): no more I/O. */
void call_detach(struct grpc_call *call)
{
	struct grpc_conn *conn = call->conn;

	if (call->closed)
		return;
	call->closed = true;
	call->finished = true;
	call_drop_output(call);
	if (call->prev)
		call->prev->next = call->next;
	else
		conn->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	conn->n_calls--;
	conn->server->unauth_buffered -= call->charged;
	call->charged = 0;
	if (conn->n_calls == 0 && conn->established && !conn->h2.closing &&
	    conn->server->cfg.idle_timeout_ms)
		uv_timer_start(&conn->timer, conn_timer_cb, conn->server->cfg.idle_timeout_ms, 0);
	if (call->timer && !call->timer_closing) {
		call->timer_closing = true;
		uv_close((uv_handle_t *)call->timer, call_timer_close_cb);
	}
	if (call->requested && call->server->cfg.on_call_closed)
		call->server->cfg.on_call_closed(call);
	call->conn = NULL;
	call_unref_internal(call); /* the stream's reference */
}

static struct grpc_call *call_new(struct grpc_conn *conn, int32_t stream_id)
{
	struct grpc_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->refs = 1; /* the stream; a deadline timer adds its own */
	call->server = conn->server;
	call->conn = conn;
	call->stream_id = stream_id;
	call->unauth = conn->server->cfg.unauth_max_message_size && conn->h2.ssl &&
		       !conn->h2.peer_verified;
	grpc_deframer_init(&call->deframer, call->unauth ? conn->server->cfg.unauth_max_message_size
							: conn->server->cfg.max_message_size);
	uv_timer_stop(&conn->timer); /* no longer idle */
	call->next = conn->calls;
	if (conn->calls)
		conn->calls->prev = call;
	conn->calls = call;
	conn->n_calls++;
	return call;
}

static nghttp2_nv make_nv(const char *name, const char *value)
{
	nghttp2_nv nv = {
		.name = (uint8_t *)name,
		.value = (uint8_t *)value,
		.namelen = strlen(name),
		.valuelen = strlen(value),
		.flags = NGHTTP2_NV_FLAG_NONE,
	};
	return nv;
}

/* Builds grpc-status/grpc-message headers into nv (2 entries max); returns the count. The
 * encoded message is returned in *enc for the caller to free after submitting. */
static size_t status_nv(nghttp2_nv *nv, char status_str[16], int status, const char *message,
			char **enc)
{
	size_t n = 0;

	snprintf(status_str, 16, "%d", status);
	nv[n++] = make_nv("grpc-status", status_str);
	*enc = NULL;
	if (message && *message) {
		*enc = grpc_percent_encode(message);
		if (*enc)
			nv[n++] = make_nv("grpc-message", *enc);
	}
	return n;
}

/* A response without a body: trailers-only gRPC status. When the client is still sending, the
 * stream is reset (NO_ERROR) once the response is out, so that it does not linger half-open. */
static void call_respond_status(struct grpc_call *call, int status, const char *message)
{
	nghttp2_nv nv[4];
	char st[16], *enc;
	size_t n = 0;

	nv[n++] = make_nv(":status", "200");
	nv[n++] = make_nv("content-type", "application/grpc");
	n += status_nv(nv + n, st, status, message, &enc);
	nghttp2_submit_response(call->conn->h2.session, call->stream_id, nv, n, NULL);
	free(enc);
	call->trailers_submitted = true;
	call->finished = true;
	call->rst_after_response = true;
	call_stop_deadline(call);
	conn_mark_dirty(call->conn);
}

static void call_respond_http(struct grpc_call *call, const char *http_status)
{
	nghttp2_nv nv[1] = { make_nv(":status", http_status) };

	nghttp2_submit_response(call->conn->h2.session, call->stream_id, nv, 1, NULL);
	call->trailers_submitted = true;
	call->finished = true;
	call->rst_after_response = true;
	call_stop_deadline(call);
	conn_mark_dirty(call->conn);
}

static void call_fail(struct grpc_call *call, int status, const char *message)
{
	if (call->finished)
		return;
	log_debug("grpc: %s: %s: %s", call->method ? call->method->path : "?",
		  grpc_status_name(status), message);
	call_respond_status(call, status, message);
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *out, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_call *call = source->ptr;
	size_t n = h2buf_pending(&call->out);

	if (n > length)
		n = length;
	if (n) {
		memcpy(out, h2buf_head(&call->out), n);
		h2buf_consume(&call->out, n);
		call->conn->queued -= n;
	}
	if (h2buf_pending(&call->out) == 0 && call->finished && !call->trailers_submitted) {
		nghttp2_nv nv[2];
		char st[16], *enc;
		size_t cnt = status_nv(nv, st, call->status, call->message, &enc);

		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(session, stream_id, nv, cnt) != 0)
			*data_flags &= ~NGHTTP2_DATA_FLAG_NO_END_STREAM;
		free(enc);
		call->trailers_submitted = true;
		call->data_live = false;
		return (ssize_t)n;
	}
	if (n == 0) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (h2buf_pending(&call->out) == 0) {
		/* Drained: the DATA item ends with this frame (no END_STREAM) instead of waiting,
		 * deferred, inside nghttp2 (an outbound item per idle stream, an agent's entry
		 * stream for days); call_resume submits a new one for the next message. */
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		call->data_live = false;
	}
	return (ssize_t)n;
}

static const nghttp2_data_provider call_data = { .read_callback = data_read_cb };

static int call_start_response(struct grpc_call *call)
{
	nghttp2_nv nv[2] = { make_nv(":status", "200"), make_nv("content-type", "application/grpc") };
	nghttp2_data_provider prd = call_data;

	prd.source.ptr = call;
	if (nghttp2_submit_response(call->conn->h2.session, call->stream_id, nv, 2, &prd) != 0)
		return -1;
	call->headers_sent = true;
	call->data_live = true;
	return 0;
}

/* After the response HEADERS, with no DATA item in nghttp2: one for the queued messages, or
 * the trailers when the call finished with nothing left to send. */
static void call_submit_more(struct grpc_call *call)
{
	nghttp2_session *session = call->conn->h2.session;
	nghttp2_data_provider prd = call_data;
	int rv;

	prd.source.ptr = call;
	if (h2buf_pending(&call->out)) {
		/* END_STREAM as submit_response's item has: data_read_cb's EOF always withholds
		 * it but when trailers cannot be submitted. */
		rv = nghttp2_submit_data(session, NGHTTP2_FLAG_END_STREAM, call->stream_id, &prd);
		call->data_live = rv == 0;
	} else if (call->finished) {
		nghttp2_nv nv[2];
		char st[16], *enc;
		size_t cnt = status_nv(nv, st, call->status, call->message, &enc);

		rv = nghttp2_submit_trailer(session, call->stream_id, nv, cnt);
		free(enc);
		call->trailers_submitted = true;
	} else {
		return;
	}
	if (rv != 0) {
		log_debug("grpc: %s: cannot continue the response: %s",
			  call->method ? call->method->path : "?", nghttp2_strerror(rv));
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	}
}

static void call_resume(struct grpc_call *call)
{
	if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(call->conn->h2.session, call->stream_id);
	} else if (!call->data_live && call->headers_sent && !call->trailers_submitted) {
		call_submit_more(call);
	}
	conn_mark_dirty(call->conn);
}

static void call_timer_cb(uv_timer_t *t);

/* The grpc-timeout deadline: a timer handle of its own, allocated only for calls that have one
 * (an agent's entry stream has none and lives for days). It holds a reference on the call
 * until its close callback. */
static void call_arm_deadline(struct grpc_call *call, uint64_t ms)
{
	uv_timer_t *t = malloc(sizeof(*t));

	if (!t) {
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	uv_timer_init(call->server->loop, t);
	t->data = call;
	call->timer = t;
	call->refs++;
	call->server->handles++;
	uv_timer_start(t, call_timer_cb, ms, 0);
}

static void call_timer_cb(uv_timer_t *t)
{
	struct grpc_call *call = t->data;

	if (call->finished || !call->conn)
		return;
	if (!call->requested) {
		call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
		return;
	}
	/* The handler may still hold the call; it sees sends refused from now on. Messages already
	 * queued still go out before the trailers (dropping part of a framed message would
	 * corrupt the stream). */
	if (!call->headers_sent) {
		call_respond_status(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
		return;
	}
	call->finished = true;
	call->status = GRPC_STATUS_DEADLINE_EXCEEDED;
	free(call->message);
	call->message = strdup("deadline exceeded");
	call_resume(call);
}

/* A message of a bidirectional stream: the first goes to on_request at once (the client keeps
 * its side open), later ones to on_message. Takes over m. */
static void call_stream_message(struct grpc_call *call, uint8_t *m, size_t len)
{
	if (!call->requested) {
		call->requested = true;
		call->have_req = true;
		call->method->on_request(call, m, len);
		call_free_headers(call);
	} else if (call->method->on_message) {
		call->method->on_message(call, m, len);
	}
	secure_zero(m, len);
	free(m);
}

static void call_request_complete(struct grpc_call *call)
{
	uint8_t *req;
	size_t len;

	if (call->finished)
		return;
	/* A bidirectional stream got its messages as they came: the client merely half-closed. */
	if (call->method->client_streaming && call->requested)
		return;
	if (!grpc_deframer_idle(&call->deframer)) {
		call_fail(call, GRPC_STATUS_INTERNAL, "truncated request message");
		return;
	}
	if (!call->have_req) {
		call_fail(call, GRPC_STATUS_INTERNAL, "missing request message");
		return;
	}
	req = call->req;
	len = call->req_len;
	call->req = NULL;
	call->requested = true;
	call->method->on_request(call, req, len);
	/* Requests carry secrets too (join tokens in Attest). */
	secure_zero(req, len);
	free(req);
	/* Metadata is for on_request only: a long-lived stream does not keep it. */
	call_free_headers(call);
}

static const char *find_header(const struct grpc_call *call, const char *name)
{
	size_t i;

	for (i = 0; i < call->n_hdrs; i++)
		if (strcmp(call->hdrs[i].name, name) == 0)
			return call->hdrs[i].value;
	return NULL;
}

/* Admission control for a peer without a client certificate: allowed methods only, one at a
 * time. 0, or -1 when the call was refused. */
static int call_refuse_unauth(struct grpc_call *call)
{
	if (!call->method->allow_unauthenticated) {
		refuse(call->server, GRPC_REFUSED_UNAUTHENTICATED_METHOD);
		call_fail(call, GRPC_STATUS_UNAUTHENTICATED,
			  "this method requires a client certificate");
		return -1;
	}
	if (call->conn->n_calls > 1) {
		refuse(call->server, GRPC_REFUSED_UNAUTHENTICATED_STREAMS);
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "one call at a time without a client certificate");
		return -1;
	}
	return 0;
}

/* Request HEADERS complete: route and validate. */
static void call_headers_done(struct grpc_call *call)
{
	const struct grpc_server_config *cfg = &call->server->cfg;
	const char *method = find_header(call, ":method");
	const char *path = find_header(call, ":path");
	const char *ctype = find_header(call, "content-type");
	const char *timeout = find_header(call, "grpc-timeout");
	char msg[256];
	size_t i;

	if (call->hdr_overflow) {
		call_respond_http(call, "431");
		return;
	}
	if (!method || strcmp(method, "POST") != 0) {
		call_respond_http(call, "405");
		return;
	}
	if (!ctype || strncmp(ctype, "application/grpc", 16) != 0 ||
	    (ctype[16] != '\0' && ctype[16] != '+' && ctype[16] != ';')) {
		call_respond_http(call, "415");
		return;
	}
	for (i = 0; path && i < cfg->n_methods; i++) {
		if (strcmp(cfg->methods[i].path, path) == 0) {
			call->method = &cfg->methods[i];
			break;
		}
	}
	if (!call->method) {
		snprintf(msg, sizeof(msg), "unknown method %.200s", path ? path : "(none)");
		call_fail(call, GRPC_STATUS_UNIMPLEMENTED, msg);
		return;
	}
	if (call->unauth && call_refuse_unauth(call) < 0)
		return;
	call->headers_complete = true;
	if (timeout) {
		int64_t ms;

		if (grpc_timeout_parse(timeout, &ms) == 0)
			call_arm_deadline(call, (uint64_t)ms);
		else
			log_debug("grpc: ignoring malformed grpc-timeout %.32s", timeout);
	}
}

/* nghttp2 callbacks */

int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct grpc_conn *conn = ud;
	struct grpc_call *call;

	if (conn->h2.closing)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = call_new(conn, frame->hd.stream_id);
	if (!call)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct grpc_conn *conn = ud;
	struct grpc_call *call;
	struct grpc_header *h;
	char *n, *v;

	if (conn->h2.closing)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call || call->hdr_overflow)
		return 0;
	call->hdr_bytes += namelen + valuelen + 32;
	if (call->hdr_bytes > MAX_HEADER_BYTES || call->n_hdrs >= MAX_HEADERS) {
		call->hdr_overflow = true;
		return 0;
	}
	h = realloc(call->hdrs, (call->n_hdrs + 1) * sizeof(*h));
	if (!h)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	call->hdrs = h;
	n = strndup((const char *)name, namelen);
	v = strndup((const char *)value, valuelen);
	if (!n || !v) {
		free(n);
		free(v);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	h[call->n_hdrs].name = n;
	h[call->n_hdrs].value = v;
	call->n_hdrs++;
	return 0;
}

int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct grpc_conn *conn = ud;
	struct grpc_call *call;

	if (conn->h2.closing)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (!conn->established && frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		conn->established = true;
		uv_timer_stop(&conn->timer);
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call || call->closed)
		return 0;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call->client_ended = true;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		call_headers_done(call);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && call->headers_complete)
		call_request_complete(call);
	return 0;
}

static bool call_take_message(void *ud, uint8_t *m, size_t mlen)
{
	struct grpc_call *call = ud;

	if (call->method->client_streaming) {
		call_stream_message(call, m, mlen);
		return !call->finished;
	}
	if (call->have_req) {
		secure_zero(m, mlen);
		free(m);
		call_fail(call, GRPC_STATUS_UNIMPLEMENTED,
			  "more than one request message for a unary or server-streaming method");
		return false;
	}
	call->have_req = true;
	call->req = m;
	call->req_len = mlen;
	return true;
}

/* Counts request bytes of an unauthenticated call against the server-wide cap. 0, or -1 when
 * the cap is reached (the call was refused). */
static int charge_unauth(struct grpc_call *call, size_t len)
{
	struct grpc_server *s = call->server;
	size_t cap = s->cfg.unauth_max_buffered;

	if (s->unauth_buffered + len > cap) {
		refuse(s, GRPC_REFUSED_UNAUTHENTICATED_MEMORY);
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "too much unauthenticated work in progress, try again later");
		return -1;
	}
	s->unauth_buffered += len;
	call->charged += len;
	return 0;
}

int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *ud)
{
	struct grpc_conn *conn = ud;
	struct grpc_call *call;
	char msg[128];

	if (conn->h2.closing)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!call || call->finished || !call->headers_complete)
		return 0;
	if (call->unauth && charge_unauth(call, len) < 0)
		return 0;
	switch (grpc_deframer_feed_all(&call->deframer, data, len, call_take_message, call)) {
	case 0:
		break;
	case GRPC_DEFRAME_TOO_LARGE:
		refuse(call->server, GRPC_REFUSED_MESSAGE_TOO_LARGE);
		snprintf(msg, sizeof(msg), "request message larger than the maximum (%zu bytes)",
			 call->deframer.max);
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
		break;
	case GRPC_DEFRAME_COMPRESSED:
		call_fail(call, GRPC_STATUS_UNIMPLEMENTED, "compressed messages are not supported");
		break;
	case GRPC_DEFRAME_NOMEM:
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		break;
	default:
		call_fail(call, GRPC_STATUS_INTERNAL, "malformed message prefix");
		break;
	}
	return 0;
}

int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct grpc_call *call;

	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call && call->rst_after_response && !call->client_ended && !call->closed)
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					  NGHTTP2_NO_ERROR);
	return 0;
}

int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *ud)
{
	struct grpc_conn *conn = ud;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!call || call->closed)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	call_detach(call);
	(void)conn;
	return 0;
}

/* Call API */

struct grpc_conn *grpc_call_conn(struct grpc_call *call)
{
	return call->conn;
}

const char *grpc_call_path(const struct grpc_call *call)
{
	return call->method ? call->method->path : find_header(call, ":path");
}

const char *grpc_call_header(const struct grpc_call *call, const char *name)
{
	return find_header(call, name);
}

void grpc_call_set_data(struct grpc_call *call, void *data)
{
	call->data = data;
}

void *grpc_call_data(struct grpc_call *call)
{
	return call->data;
}

void grpc_call_ref(struct grpc_call *call)
{
	call->refs++;
}

void grpc_call_unref(struct grpc_call *call)
{
	if (call)
		call_unref_internal(call);
}

bool grpc_call_is_closed(const struct grpc_call *call)
{
	return call->finished || call->closed || !call->conn;
}

int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct grpc_conn *conn = call->conn;
	uint8_t hdr[GRPC_FRAME_HEADER_LEN];

	if (grpc_call_is_closed(call) || conn->h2.closing || conn->want_close || !call->requested)
		return -1;
	if (len > UINT32_MAX)
		return -1;
	if (conn->queued + len + GRPC_FRAME_HEADER_LEN > conn->server->cfg.max_output_per_conn) {
		log_warnx("grpc: peer is not reading its responses (%zu bytes queued); dropping the "
			  "connection", conn->queued);
		conn->want_close = true;
		conn_mark_dirty(conn);
		return -1;
	}
	grpc_frame_header(hdr, (uint32_t)len);
	if (h2buf_reserve(&call->out, len + GRPC_FRAME_HEADER_LEN) < 0)
		return -1;
	h2buf_append(&call->out, hdr, sizeof(hdr));
	if (len)
		h2buf_append(&call->out, msg, len);
	conn->queued += len + GRPC_FRAME_HEADER_LEN;
	if (!call->headers_sent) {
		if (call_start_response(call) < 0) {
			call_drop_output(call);
			return -1;
		}
		conn_mark_dirty(conn);
		return 0;
	}
	call_resume(call);
	return 0;
}

int grpc_call_send_pb(struct grpc_call *call, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	if (!buf)
		return -1;
	protobuf_c_message_pack(m, buf);
	rc = grpc_call_send(call, buf, len);
	secure_zero(buf, len);
	free(buf);
	return rc;
}

int grpc_call_finish(struct grpc_call *call, int status, const char *message)
{
	if (grpc_call_is_closed(call) || call->conn->h2.closing || !call->requested)
		return -1;
	call_stop_deadline(call);
	if (!call->headers_sent) {
		call_respond_status(call, status, message);
		return 0;
	}
	call->finished = true;
	call->status = status;
	free(call->message);
	call->message = message && *message ? strdup(message) : NULL;
	call_resume(call);
	return 0;
}
