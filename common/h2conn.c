/* h2conn.c: the HTTP/2-over-TLS connection core (see h2conn.h for the contracts). */
#include "h2conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls_leaf.h"
#include "util.h"

#define READ_CHUNK 16384
#define READS_PER_CALL 8
/* Stop pulling frames from nghttp2 while this much is waiting for the socket. */
#define OUT_HIGH_WATER 65536
#define BUF_MIN_CAP 4096

/* Buffers */

void *h2buf_regrow(void *old, size_t old_cap, size_t keep, size_t new_cap)
{
	uint8_t *p = malloc(new_cap ? new_cap : 1);

	if (!p)
		return NULL;
	if (old) {
		memcpy(p, old, keep);
		secure_zero(old, old_cap);
		free(old);
	}
	return p;
}

int h2buf_reserve(struct h2buf *b, size_t more)
{
	size_t need, ncap;
	uint8_t *p;

	if (b->off && b->off == b->len) {
		b->off = b->len = 0;
	} else if (b->off > 0 && b->len + more > b->cap && b->off >= b->cap / 2) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		/* The moved-from tail still holds bytes now also held at the front. */
		secure_zero(b->data + b->len, b->cap - b->len);
	}
	need = b->len + more;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : BUF_MIN_CAP;
	while (ncap < need)
		ncap *= 2;
	p = h2buf_regrow(b->data, b->cap, b->len, ncap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int h2buf_append(struct h2buf *b, const void *data, size_t len)
{
	if (h2buf_reserve(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

void h2buf_consume(struct h2buf *b, size_t n)
{
	b->off += n;
	if (b->off == b->len)
		h2buf_free(b);
}

void h2buf_free(struct h2buf *b)
{
	if (b->data) {
		secure_zero(b->data, b->cap);
		free(b->data);
	}
	memset(b, 0, sizeof(*b));
}

/* wolfSSL memory I/O */

static int tls_recv_cb(WOLFSSL *ssl, char *out, int sz, void *ctx)
{
	struct h2conn *h = ctx;
	size_t n = h2buf_pending(&h->in);

	(void)ssl;
	if (n == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	if (n > (size_t)sz)
		n = (size_t)sz;
	memcpy(out, h2buf_head(&h->in), n);
	h2buf_consume(&h->in, n);
	return (int)n;
}

static int tls_send_cb(WOLFSSL *ssl, char *in, int sz, void *ctx)
{
	struct h2conn *h = ctx;

	(void)ssl;
	if (h2buf_append(&h->out, in, (size_t)sz) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

static const char *peer_name(const struct h2conn *h)
{
	return h->is_server ? "client" : "server";
}

static const char *tls_error(WOLFSSL *ssl, int rc, char *buf, size_t len)
{
	int e = wolfSSL_get_error(ssl, rc);

	wolfSSL_ERR_error_string_n((unsigned long)e, buf, (unsigned long)len);
	return buf;
}

/* Setup */

void h2conn_init(struct h2conn *h, int fd, bool is_server)
{
	memset(h, 0, sizeof(*h));
	h->fd = fd;
	h->is_server = is_server;
}

int h2conn_session_new(struct h2conn *h, const nghttp2_session_callbacks *cbs, void *ud,
		       const nghttp2_option *option, nghttp2_mem *mem)
{
	int rc;

	if (h->is_server)
		rc = nghttp2_session_server_new3(&h->session, cbs, ud, option, mem);
	else
		rc = nghttp2_session_client_new3(&h->session, cbs, ud, option, mem);
	return rc == 0 ? 0 : -1;
}

int h2conn_tls_new(struct h2conn *h, WOLFSSL_CTX *ctx, const char *server_name, char *err,
		   size_t errlen)
{
	char alpn[] = "h2";

	h->ssl = wolfSSL_new(ctx);
	if (!h->ssl) {
		errorf(err, errlen, "wolfSSL_new failed");
		return -1;
	}
	wolfSSL_SSLSetIORecv(h->ssl, tls_recv_cb);
	wolfSSL_SSLSetIOSend(h->ssl, tls_send_cb);
	wolfSSL_SetIOReadCtx(h->ssl, h);
	wolfSSL_SetIOWriteCtx(h->ssl, h);
	if (h->is_server)
		tls_leaf_ssl_verify(h->ssl, WOLFSSL_VERIFY_PEER);
	/* The peer's identity is copied while wolfSSL verifies it (tls_leaf.h says why). */
	tls_leaf_capture(h->ssl, &h->leaf);
	if (h->is_server) {
		/* No resumption here (peers re-authenticate with a full handshake): a session
		 * ticket would cost an encryption and a record per handshake for nothing. A no-op
		 * (0) in a wolfSSL without HAVE_SESSION_TICKET, such as the daemons' SP build. */
		if (wolfSSL_no_ticket_TLSv13(h->ssl) < 0) { /* 0 on success */
			errorf(err, errlen, "TLS setup failed (session tickets)");
			return -1;
		}
	}
	if (wolfSSL_SetMinVersion(h->ssl, WOLFSSL_TLSV1_3) != WOLFSSL_SUCCESS ||
	    wolfSSL_UseALPN(h->ssl, alpn, sizeof(alpn) - 1, WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
		    WOLFSSL_SUCCESS) {
		errorf(err, errlen, "TLS setup failed");
		return -1;
	}
	if (!h->is_server && server_name && *server_name &&
	    wolfSSL_UseSNI(h->ssl, WOLFSSL_SNI_HOST_NAME, server_name,
			   (unsigned short)strlen(server_name)) != WOLFSSL_SUCCESS) {
		errorf(err, errlen, "TLS SNI setup failed");
		return -1;
	}
	return 0;
}

/* After the handshake: the protocol must be h2 (the peer's leaf was copied at verify time). */
static int handshake_finish(struct h2conn *h, char *err, size_t errlen)
{
	char *proto = NULL;
	unsigned short plen = 0;

	if (wolfSSL_ALPN_GetProtocol(h->ssl, &proto, &plen) != WOLFSSL_SUCCESS || plen != 2 ||
	    memcmp(proto, "h2", 2) != 0) {
		errorf(err, errlen, "the %s did not negotiate ALPN h2", peer_name(h));
		return -1;
	}
	/* Published only now: the leaf is the peer's once the handshake proved the key. */
	h->peer_cert = h->leaf.der;
	h->peer_cert_len = h->leaf.len;
	h->peer_verified = h->peer_cert != NULL;
	h->leaf.der = NULL;
	tls_leaf_free(&h->leaf);
	h->handshake_done = true;
	return 0;
}

int h2conn_handshake(struct h2conn *h, char *err, size_t errlen)
{
	char ebuf[WOLFSSL_MAX_ERROR_SZ];
	int rc, e;

	if (h->handshake_done)
		return 1;
	rc = h->is_server ? wolfSSL_accept(h->ssl) : wolfSSL_connect(h->ssl);
	if (rc != WOLFSSL_SUCCESS) {
		e = wolfSSL_get_error(h->ssl, rc);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return 0;
		errorf(err, errlen, "%s", tls_error(h->ssl, rc, ebuf, sizeof(ebuf)));
		return -1;
	}
	return handshake_finish(h, err, errlen) < 0 ? -1 : 1;
}

/* Input */

static int feed_h2(struct h2conn *h, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	ssize_t rv = nghttp2_session_mem_recv(h->session, data, len);

	if (rv < 0) {
		errorf(err, errlen, "HTTP/2 protocol error: %s", nghttp2_strerror((int)rv));
		return H2CONN_EPROTO;
	}
	if (h->closing) {
		errorf(err, errlen, "connection closing");
		return H2CONN_EPROTO;
	}
	return 0;
}

int h2conn_input(struct h2conn *h, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	uint8_t plain[READ_CHUNK];
	char ebuf[WOLFSSL_MAX_ERROR_SZ];

	if (!h->ssl)
		return feed_h2(h, data, len, err, errlen);
	if (h2buf_append(&h->in, data, len) < 0) {
		errorf(err, errlen, "out of memory");
		return H2CONN_EPROTO;
	}
	if (!h->handshake_done) {
		int rc = h2conn_handshake(h, ebuf, sizeof(ebuf));

		if (rc < 0) {
			errorf(err, errlen, "TLS handshake failed: %s", ebuf);
			return H2CONN_EPROTO;
		}
		if (rc == 0)
			return 0;
	}
	for (;;) {
		int n = wolfSSL_read(h->ssl, plain, sizeof(plain));
		int e;

		if (n > 0) {
			int rc = feed_h2(h, plain, (size_t)n, err, errlen);

			secure_zero(plain, (size_t)n);
			if (rc < 0)
				return rc;
			continue;
		}
		e = wolfSSL_get_error(h->ssl, n);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return 0;
		if (e == WOLFSSL_ERROR_ZERO_RETURN)
			errorf(err, errlen, "%s closed the TLS connection", peer_name(h));
		else
			errorf(err, errlen, "TLS: %s", tls_error(h->ssl, n, ebuf, sizeof(ebuf)));
		return H2CONN_EPROTO;
	}
}

int h2conn_read(struct h2conn *h, char *err, size_t errlen)
{
	uint8_t buf[READ_CHUNK];
	int i;

	for (i = 0; i < READS_PER_CALL; i++) {
		ssize_t n = recv(h->fd, buf, sizeof(buf), 0);
		int rc;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			errorf(err, errlen, "recv: %s", strerror(errno));
			return H2CONN_ESOCK;
		}
		if (n == 0) {
			errorf(err, errlen, "connection closed by the %s", peer_name(h));
			return H2CONN_ESOCK;
		}
		rc = h2conn_input(h, buf, (size_t)n, err, errlen);
		if (!h->ssl)
			secure_zero(buf, (size_t)n);
		if (rc < 0)
			return rc;
		if ((size_t)n < sizeof(buf))
			return 0;
	}
	return 0;
}

/* Output */

/* Plaintext gathered for one TLS record: the frames nghttp2 hands out one at a time (a response's
 * HEADERS, DATA and trailers) go out as one record instead of one each, sparing a record's
 * encryption, header and tag per frame. 16 KB is TLS's largest record. */
#define TLS_GATHER 16384

struct gather {
	uint8_t buf[TLS_GATHER];
	size_t len;
};

static int tls_write_all(struct h2conn *h, const uint8_t *data, size_t len, char *err,
			 size_t errlen)
{
	if (len && wolfSSL_write(h->ssl, data, (int)len) != (int)len) {
		errorf(err, errlen, "TLS write failed");
		return H2CONN_EPROTO;
	}
	return 0;
}

/* Adds a frame to g, writing g through TLS first when the frame does not fit; a frame as large
 * as g goes straight through. */
static int gather_add(struct h2conn *h, struct gather *g, const uint8_t *data, size_t n,
		      char *err, size_t errlen)
{
	if (g->len + n > sizeof(g->buf)) {
		int rc = tls_write_all(h, g->buf, g->len, err, errlen);
		secure_zero(g->buf, g->len);
		g->len = 0;
		if (rc < 0)
			return rc;
	}
	if (n >= sizeof(g->buf))
		return tls_write_all(h, data, n, err, errlen);
	memcpy(g->buf + g->len, data, n);
	g->len += n;
	return 0;
}

/* The frames nghttp2 has ready, through g when there is TLS (*more: stopped at the high water
 * mark). */
static int output_frames(struct h2conn *h, struct gather *g, bool *more, char *err,
			 size_t errlen)
{
	for (;;) {
		const uint8_t *data;
		ssize_t n;

		if (h2buf_pending(&h->out) + g->len >= OUT_HIGH_WATER) {
			if (more)
				*more = true;
			return 0;
		}
		n = nghttp2_session_mem_send(h->session, &data);
		if (h->closing) {
			errorf(err, errlen, "connection closing");
			return H2CONN_EPROTO;
		}
		if (n < 0) {
			errorf(err, errlen, "HTTP/2: %s", nghttp2_strerror((int)n));
			return H2CONN_EPROTO;
		}
		if (n == 0)
			return 0;
		int rc = h->ssl ? gather_add(h, g, data, (size_t)n, err, errlen)
				: h2buf_append(&h->out, data, (size_t)n) < 0 ? H2CONN_EPROTO : 0;
		if (rc < 0) {
			if (!h->ssl)
				errorf(err, errlen, "out of memory");
			return rc;
		}
	}
}

int h2conn_output(struct h2conn *h, bool *more, char *err, size_t errlen)
{
	struct gather g;

	if (more)
		*more = false;
	if (!h->session || (h->ssl && !h->handshake_done))
		return 0;
	g.len = 0;
	int rc = output_frames(h, &g, more, err, errlen);
	/* Frames gathered before an error still go out (a GOAWAY before the session closed). */
	if (g.len) {
		char werr[64];
		int w = tls_write_all(h, g.buf, g.len, werr, sizeof(werr));
		if (rc == 0 && w < 0) {
			rc = w;
			errorf(err, errlen, "%s", werr);
		}
		secure_zero(g.buf, g.len);
	}
	return rc;
}

int h2conn_flush(struct h2conn *h, char *err, size_t errlen)
{
	while (h2buf_pending(&h->out)) {
		ssize_t n = send(h->fd, h2buf_head(&h->out), h2buf_pending(&h->out), MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			errorf(err, errlen, "send: %s", n < 0 ? strerror(errno) : "no progress");
			return H2CONN_ESOCK;
		}
		h2buf_consume(&h->out, (size_t)n);
	}
	return 0;
}

void h2conn_send_last(struct h2conn *h)
{
	if (h2buf_pending(&h->out))
		(void)!send(h->fd, h2buf_head(&h->out), h2buf_pending(&h->out),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
}

void h2conn_drop_peer_cert(struct h2conn *h)
{
	free(h->peer_cert);
	h->peer_cert = NULL;
	h->peer_cert_len = 0;
}

bool h2conn_done(const struct h2conn *h)
{
	return !h2buf_pending(&h->out) && !nghttp2_session_want_read(h->session) &&
	       !nghttp2_session_want_write(h->session);
}

void h2conn_free(struct h2conn *h)
{
	if (!h)
		return;
	if (h->session)
		nghttp2_session_del(h->session);
	if (h->ssl)
		wolfSSL_free(h->ssl);
	if (h->fd >= 0)
		close(h->fd);
	h2buf_free(&h->in);
	h2buf_free(&h->out);
	h2conn_drop_peer_cert(h);
	tls_leaf_free(&h->leaf);
	h->session = NULL;
	h->ssl = NULL;
	h->fd = -1;
	h->peer_verified = false;
}
