/* test_h2conn: the HTTP/2-over-TLS connection core (common/h2conn.c) and the secret handling
 * of the gRPC deframer (common/grpc.c).
 *
 * Both files are included here (as h2o's tests do) with free() and realloc() replaced by
 * wrappers, so that the tests can see what a buffer held at the moment it was freed: growth must
 * go to a fresh block and leave the old one zeroed, drained and freed buffers must be zeroed,
 * and nothing may call realloc. The included definitions replace the library's for the whole
 * program. A loopback exchange (cleartext and TLS 1.3 over a socketpair) runs a request and its
 * response through two cores, one per side. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "der_pem.h"
#include "grpc.h"
#include "h2conn.h"
#include "util.h"

/* ---- allocation watch ---- */

static const void *watch_ptr;
static size_t watch_len;
static uint8_t watch_copy[1 << 16];
static int watch_seen;
static int realloc_calls;

static void watched_free(void *p)
{
	if (p && p == watch_ptr) {
		memcpy(watch_copy, p, watch_len);
		watch_seen++;
		watch_ptr = NULL;
	}
	free(p);
}

/* Unused while the included files call no realloc, which is the point. */
static __attribute__((unused)) void *counted_realloc(void *p, size_t n)
{
	realloc_calls++;
	return realloc(p, n);
}

static void watch(const void *p, size_t len)
{
	assert_true(len <= sizeof(watch_copy));
	watch_ptr = p;
	watch_len = len;
	watch_seen = 0;
}

static bool watched_all_zero(void)
{
	for (size_t i = 0; i < watch_len; i++)
		if (watch_copy[i])
			return false;
	return true;
}

#define free watched_free
#define realloc counted_realloc
#include "h2conn.c"
#include "grpc.c"
#undef free
#undef realloc

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7) | 1; /* never zero */
}

/* ---- buffers ---- */

static void test_growth_leaves_no_copy(void **state)
{
	struct h2buf b = { 0 };
	uint8_t secret[4096], more[100];
	const uint8_t *old;

	(void)state;
	realloc_calls = 0;
	fill(secret, sizeof(secret), 1);
	fill(more, sizeof(more), 2);
	assert_int_equal(h2buf_append(&b, secret, sizeof(secret)), 0);
	assert_int_equal(b.cap, sizeof(secret));
	old = b.data;
	watch(old, b.cap);
	assert_int_equal(h2buf_append(&b, more, sizeof(more)), 0);
	/* A fresh block, the old one zeroed before it was freed, the bytes kept. */
	assert_int_equal(watch_seen, 1);
	assert_ptr_not_equal(b.data, old);
	assert_true(watched_all_zero());
	assert_int_equal(h2buf_pending(&b), sizeof(secret) + sizeof(more));
	assert_memory_equal(h2buf_head(&b), secret, sizeof(secret));
	assert_memory_equal(h2buf_head(&b) + sizeof(secret), more, sizeof(more));
	assert_int_equal(realloc_calls, 0);
	h2buf_free(&b);
}

static void test_compaction_leaves_no_copy(void **state)
{
	struct h2buf b = { 0 };
	uint8_t secret[4096], more[2000];

	(void)state;
	fill(secret, sizeof(secret), 3);
	fill(more, sizeof(more), 4);
	assert_int_equal(h2buf_append(&b, secret, sizeof(secret)), 0);
	h2buf_consume(&b, 3000);
	/* Compacts within the same block (no growth): the tail past the data must not keep the
	 * bytes that were moved to the front. */
	assert_int_equal(h2buf_append(&b, more, sizeof(more)), 0);
	assert_int_equal(b.cap, 4096);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 1096 + sizeof(more));
	assert_memory_equal(b.data, secret + 3000, 1096);
	for (size_t i = b.len; i < b.cap; i++)
		assert_int_equal(b.data[i], 0);
	h2buf_free(&b);
}

static void test_drained_and_freed_buffers_wiped(void **state)
{
	struct h2buf b = { 0 };
	uint8_t secret[1000];

	(void)state;
	fill(secret, sizeof(secret), 5);
	assert_int_equal(h2buf_append(&b, secret, sizeof(secret)), 0);
	watch(b.data, b.cap);
	h2buf_consume(&b, 400);
	assert_int_equal(watch_seen, 0);
	h2buf_consume(&b, 600);
	assert_int_equal(watch_seen, 1); /* released once drained */
	assert_true(watched_all_zero());
	assert_null(b.data);
	assert_int_equal(h2buf_pending(&b), 0);

	assert_int_equal(h2buf_append(&b, secret, sizeof(secret)), 0);
	watch(b.data, b.cap);
	h2buf_free(&b);
	assert_int_equal(watch_seen, 1);
	assert_true(watched_all_zero());
	h2buf_free(&b); /* reusable, idempotent */
}

/* ---- the deframer: a response carrying a private key, arriving in pieces ---- */

static void test_deframer_growth_leaves_no_copy(void **state)
{
	static uint8_t msg[20000];
	struct grpc_deframer d;
	uint8_t hdr[GRPC_FRAME_HEADER_LEN], *out = NULL;
	size_t used, out_len = 0, off = 0;
	int grown = 0, rc = GRPC_DEFRAME_NEED_MORE;

	(void)state;
	realloc_calls = 0;
	fill(msg, sizeof(msg), 6);
	grpc_frame_header(hdr, sizeof(msg));
	grpc_deframer_init(&d, 0);
	assert_int_equal(grpc_deframer_feed(&d, hdr, sizeof(hdr), &used, &out, &out_len),
			 GRPC_DEFRAME_NEED_MORE);
	while (off < sizeof(msg)) {
		size_t n = sizeof(msg) - off < 3000 ? sizeof(msg) - off : 3000;
		const uint8_t *before = d.buf;

		watch(d.buf, d.have); /* only the bytes written so far are defined */
		rc = grpc_deframer_feed(&d, msg + off, n, &used, &out, &out_len);
		assert_int_equal(used, n);
		off += n;
		if (rc == GRPC_DEFRAME_NEED_MORE && d.buf != before) {
			grown++;
			assert_int_equal(watch_seen, 1);
			assert_true(watched_all_zero());
		}
	}
	watch_ptr = NULL;
	assert_true(grown >= 2);
	assert_int_equal(rc, GRPC_DEFRAME_MESSAGE);
	assert_int_equal(out_len, sizeof(msg));
	assert_memory_equal(out, msg, sizeof(msg));
	assert_int_equal(realloc_calls, 0);
	free(out);
	grpc_deframer_free(&d);
}

static void test_deframer_wipes_partial_message(void **state)
{
	uint8_t buf[GRPC_FRAME_HEADER_LEN + 500], *out;
	struct grpc_deframer d;
	size_t used, out_len;

	(void)state;
	grpc_frame_header(buf, 1000); /* announces more than arrives */
	fill(buf + GRPC_FRAME_HEADER_LEN, 500, 7);
	grpc_deframer_init(&d, 0);
	assert_int_equal(grpc_deframer_feed(&d, buf, sizeof(buf), &used, &out, &out_len),
			 GRPC_DEFRAME_NEED_MORE);
	watch(d.buf, 500);
	grpc_deframer_free(&d);
	assert_int_equal(watch_seen, 1);
	assert_true(watched_all_zero());
}

/* ---- a loopback exchange through two cores ---- */

#define RESPONSE "hello through the core"

/* The server's response body, handed to nghttp2 in pieces of at most what it asks for. */
struct body_src {
	const uint8_t *data;
	size_t len, off;
};

struct side {
	struct h2conn h2;
	int32_t stream;
	bool got_request;
	uint8_t body[65536];
	size_t body_len;
	bool closed;
	const char *sent;
	struct body_src resp;   /* server: what it answers */
	int max_records;        /* server: most TLS application records one h2conn_output made */
};

static ssize_t body_read(nghttp2_session *session, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct body_src *b = src->ptr;
	size_t n = b->len - b->off < len ? b->len - b->off : len;

	(void)session;
	(void)id;
	(void)ud;
	memcpy(buf, b->data + b->off, n);
	b->off += n;
	if (b->off == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int srv_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct side *sd = ud;
	nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, 0 } };
	nghttp2_data_provider prd = { .source.ptr = &sd->resp, .read_callback = body_read };

	if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		sd->got_request = true;
		assert_int_equal(nghttp2_submit_response(session, frame->hd.stream_id, nv, 1, &prd), 0);
	}
	return 0;
}

static int cli_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
		    size_t len, void *ud)
{
	struct side *sd = ud;

	(void)session;
	(void)flags;
	(void)id;
	assert_true(sd->body_len + len <= sizeof(sd->body));
	memcpy(sd->body + sd->body_len, data, len);
	sd->body_len += len;
	return 0;
}

static int cli_close(nghttp2_session *session, int32_t id, uint32_t code, void *ud)
{
	struct side *sd = ud;

	(void)session;
	(void)code;
	if (id == sd->stream)
		sd->closed = true;
	return 0;
}

static void side_start(struct side *sd, int fd, bool server, WOLFSSL_CTX *ctx)
{
	nghttp2_session_callbacks *cbs;

	memset(sd, 0, sizeof(*sd));
	h2conn_init(&sd->h2, fd, server);
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	if (server) {
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, srv_frame_recv);
	} else {
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cli_data);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cli_close);
	}
	assert_int_equal(h2conn_session_new(&sd->h2, cbs, sd, NULL, NULL), 0);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(nghttp2_submit_settings(sd->h2.session, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	if (ctx)
		assert_int_equal(h2conn_tls_new(&sd->h2, ctx, server ? NULL : "localhost", NULL, 0), 0);
}

/* TLS records of type application data (23) in buf, each checked to be whole and at most
 * 16 KB of plaintext plus the record's expansion. */
static int count_app_records(const uint8_t *buf, size_t len)
{
	size_t pos = 0;
	int n = 0;

	while (pos + 5 <= len) {
		size_t rl = (size_t)buf[pos + 3] << 8 | buf[pos + 4];

		assert_true(rl <= 16384 + 256);
		n += buf[pos] == 23;
		pos += 5 + rl;
	}
	assert_int_equal(pos, len);
	return n;
}

static void side_pump(struct side *sd)
{
	char err[256] = "";
	size_t before = h2buf_pending(&sd->h2.out);

	if (h2conn_output(&sd->h2, NULL, err, sizeof(err)) < 0)
		fail_msg("%s side: %s", sd->h2.is_server ? "server" : "client", err);
	if (sd->h2.ssl && sd->h2.handshake_done) {
		int n = count_app_records(h2buf_head(&sd->h2.out) + before,
					  h2buf_pending(&sd->h2.out) - before);

		if (n > sd->max_records)
			sd->max_records = n;
	}
	if (h2conn_flush(&sd->h2, err, sizeof(err)) < 0 ||
	    h2conn_read(&sd->h2, err, sizeof(err)) < 0)
		fail_msg("%s side: %s", sd->h2.is_server ? "server" : "client", err);
}

/* One request and its response of len bytes; returns the most TLS records the server made in
 * one h2conn_output call. */
#ifdef HAVE_SESSION_TICKET
/* The length of the session ticket the client holds (0: none). wolfSSL_get_SessionTicket needs
 * only HAVE_SESSION_TICKET, not the OpenSSL-compatibility layer the daemons' wolfSSL leaves out.
 * Only a wolfSSL with tickets compiled (Debian's) can issue one: there h2conn_tls_new must turn
 * them off. The daemons' SP build has no ticket code at all (deploy/build-wolfssl-sp.sh refuses
 * an options.h with HAVE_SESSION_TICKET), and its client would skip a ticket unread. */
static word32 ticket_len(WOLFSSL *ssl)
{
	static byte buf[1 << 14]; /* larger than any ticket: a short buffer also reports 0 */
	word32 len = sizeof(buf);

	assert_int_equal(wolfSSL_get_SessionTicket(ssl, buf, &len), WOLFSSL_SUCCESS);
	return len;
}
#endif

static int exchange_body(WOLFSSL_CTX *srv_ctx, WOLFSSL_CTX *cli_ctx, const uint8_t *resp,
			 size_t len)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/t", 5, 2, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0 },
	};
	struct side srv, cli;
	char err[256];
	int fds[2], i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
	side_start(&srv, fds[0], true, srv_ctx);
	side_start(&cli, fds[1], false, cli_ctx);
	srv.resp = (struct body_src){ .data = resp, .len = len };
	cli.stream = nghttp2_submit_request(cli.h2.session, NULL, nv, 4, NULL, &cli);
	assert_true(cli.stream > 0);
	if (cli_ctx)
		assert_true(h2conn_handshake(&cli.h2, err, sizeof(err)) >= 0);
	/* Bounded: a handful of round trips is enough; machine speed does not matter here. */
	for (i = 0; i < 200 && !cli.closed; i++) {
		side_pump(&cli);
		side_pump(&srv);
	}
	assert_true(srv.got_request);
	assert_true(cli.closed);
	assert_int_equal(cli.body_len, len);
	assert_memory_equal(cli.body, resp, len);
	if (cli_ctx) {
		assert_true(cli.h2.handshake_done && srv.h2.handshake_done);
		assert_non_null(cli.h2.peer_cert); /* the server's certificate, copied */
		assert_true(cli.h2.peer_cert_len > 100);
		assert_null(srv.h2.peer_cert); /* no client certificate presented */
#ifdef HAVE_SESSION_TICKET
		/* The server issued no session ticket (h2conn_tls_new): the client read the whole
		 * response, so a NewSessionTicket sent after the handshake would have arrived. */
		assert_int_equal(ticket_len(cli.h2.ssl), 0);
#endif
	}
	h2conn_free(&cli.h2);
	h2conn_free(&srv.h2);
	assert_int_equal(cli.h2.fd, -1);
	return srv.max_records;
}

static void exchange(WOLFSSL_CTX *srv_ctx, WOLFSSL_CTX *cli_ctx)
{
	exchange_body(srv_ctx, cli_ctx, (const uint8_t *)RESPONSE, strlen(RESPONSE));
}

static void test_loopback_cleartext(void **state)
{
	(void)state;
	exchange(NULL, NULL);
}

/* Makes DIR/NAME.crt and DIR/NAME.key (self-signed P-256, CN=localhost); false without the
 * openssl CLI. */
static bool make_cert(const char *dir, const char *name)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
		 "%s/%s.key -out %s/%s.crt -days 1 -subj /CN=localhost >/dev/null 2>&1",
		 dir, name, dir, name);
	return system(cmd) == 0;
}

static void remove_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

static void test_loopback_tls(void **state)
{
	char dir[] = "/tmp/test_h2conn.XXXXXX", crt[512], key[512];
	WOLFSSL_CTX *sctx, *cctx;

	(void)state;
	assert_non_null(mkdtemp(dir));
	if (!make_cert(dir, "c")) {
		remove_dir(dir);
		skip(); /* no openssl CLI */
	}
	snprintf(crt, sizeof(crt), "%s/c.crt", dir);
	snprintf(key, sizeof(key), "%s/c.key", dir);
	sctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	assert_non_null(sctx);
	assert_non_null(cctx);
	assert_int_equal(wolfSSL_CTX_use_certificate_file(sctx, crt, WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(sctx, key, WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	/* The exchange is what is tested here, not verification (test_grpc does that). */
	tls_leaf_ctx_verify(cctx, WOLFSSL_VERIFY_NONE);
	exchange(sctx, cctx);
	/* A response's HEADERS and DATA frames leave in one TLS record, not one each. */
	assert_int_equal(exchange_body(sctx, cctx, (const uint8_t *)RESPONSE, strlen(RESPONSE)), 1);
	/* A body larger than a record: split into records of at most 16 KB, arriving whole. */
	size_t big_len = 40000;
	uint8_t *big = malloc(big_len);
	assert_non_null(big);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (uint8_t)(i * 7 + i / 251);
	assert_true(exchange_body(sctx, cctx, big, big_len) >= 3);
	free(big);
	wolfSSL_CTX_free(sctx);
	wolfSSL_CTX_free(cctx);
	remove_dir(dir);
}

/* ---- mutual TLS: the peer's leaf is taken while wolfSSL verifies it (tls_leaf.c) ---- */

static WOLFSSL_CTX *mtls_ctx(bool server, const char *dir, const char *own, const char *trusted)
{
	char crt[512], key[512], ca[512];
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method() :
						    wolfTLSv1_3_client_method());

	assert_non_null(ctx);
	snprintf(crt, sizeof(crt), "%s/%s.crt", dir, own);
	snprintf(key, sizeof(key), "%s/%s.key", dir, own);
	snprintf(ca, sizeof(ca), "%s/%s.crt", dir, trusted);
	assert_int_equal(wolfSSL_CTX_use_certificate_file(ctx, crt, WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	assert_int_equal(wolfSSL_CTX_load_verify_locations(ctx, ca, NULL), WOLFSSL_SUCCESS);
	tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	return ctx;
}

/* The DER of DIR/NAME.crt (its one certificate). The caller frees. Read with common/der_pem:
 * the daemons' wolfSSL has no OpenSSL-compatibility X509 calls. */
static uint8_t *cert_der(const char *dir, const char *name, int *len)
{
	char path[512];
	uint8_t *pem = NULL, *der = NULL;
	size_t pem_len = 0, der_len = 0;

	snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
	assert_int_equal(file_read_all(path, 1 << 16, &pem, &pem_len), 0);
	assert_int_equal(pem_decode_concat((const char *)pem, pem_len, "CERTIFICATE", &der, &der_len), 0);
	free(pem);
	assert_true(der_len > 0 && der_len < 1 << 16);
	*len = (int)der_len;
	return der;
}

/* Runs both handshakes to completion or failure (bounded); returns the server's result. */
static int handshake_pair(struct side *srv, struct side *cli)
{
	char err[256];
	int i, rs = 0, rc = 0;

	for (i = 0; i < 50 && (rs == 0 || rc == 0); i++) {
		if (rc == 0)
			rc = h2conn_handshake(&cli->h2, err, sizeof(err));
		(void)h2conn_flush(&cli->h2, err, sizeof(err));
		if (rs == 0 && h2conn_read(&srv->h2, err, sizeof(err)) < 0)
			rs = -1;
		else if (rs == 0)
			rs = srv->h2.handshake_done ? 1 : 0;
		(void)h2conn_flush(&srv->h2, err, sizeof(err));
		if (rc == 1 && rs != 0)
			break;
		if (rc == 0 && h2conn_read(&cli->h2, err, sizeof(err)) < 0)
			rc = -1;
	}
	return rs;
}

static void mtls_round(const char *dir, const char *client_cert, bool want_ok)
{
	WOLFSSL_CTX *sctx = mtls_ctx(true, dir, "srv", "cli");
	WOLFSSL_CTX *cctx = mtls_ctx(false, dir, client_cert, "srv");
	struct side srv, cli;
	int fds[2], len = 0;
	uint8_t *want = cert_der(dir, client_cert, &len);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
	side_start(&srv, fds[0], true, sctx);
	side_start(&cli, fds[1], false, cctx);
	if (want_ok) {
		assert_int_equal(handshake_pair(&srv, &cli), 1);
		/* Exactly the client's leaf, published once the handshake completed. */
		assert_non_null(srv.h2.peer_cert);
		assert_int_equal(srv.h2.peer_cert_len, (size_t)len);
		assert_memory_equal(srv.h2.peer_cert, want, (size_t)len);
		assert_null(srv.h2.leaf.der);
		assert_non_null(cli.h2.peer_cert); /* and the server's, on the client */
		/* Dropping the copy keeps the verdict. */
		assert_true(srv.h2.peer_verified);
		h2conn_drop_peer_cert(&srv.h2);
		assert_null(srv.h2.peer_cert);
		assert_int_equal(srv.h2.peer_cert_len, 0);
		assert_true(srv.h2.peer_verified);
	} else {
		/* The callback does not change wolfSSL's verdict: an untrusted client fails. */
		assert_int_equal(handshake_pair(&srv, &cli), -1);
		assert_false(srv.h2.handshake_done);
		assert_null(srv.h2.peer_cert);
		assert_false(srv.h2.peer_verified);
	}
	free(want);
	h2conn_free(&cli.h2);
	h2conn_free(&srv.h2);
	wolfSSL_CTX_free(sctx);
	wolfSSL_CTX_free(cctx);
}

static void test_mtls_peer_leaf_taken_at_verify_time(void **state)
{
	char dir[] = "/tmp/test_h2conn.XXXXXX";

	(void)state;
	assert_non_null(mkdtemp(dir));
	if (!make_cert(dir, "srv") || !make_cert(dir, "cli") || !make_cert(dir, "rogue")) {
		remove_dir(dir);
		skip();
	}
	mtls_round(dir, "cli", true);
	mtls_round(dir, "rogue", false);
	/* A legitimate client still gets through after the refused one. */
	mtls_round(dir, "cli", true);
	remove_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_growth_leaves_no_copy),
		cmocka_unit_test(test_compaction_leaves_no_copy),
		cmocka_unit_test(test_drained_and_freed_buffers_wiped),
		cmocka_unit_test(test_deframer_growth_leaves_no_copy),
		cmocka_unit_test(test_deframer_wipes_partial_message),
		cmocka_unit_test(test_loopback_cleartext),
		cmocka_unit_test(test_loopback_tls),
		cmocka_unit_test(test_mtls_peer_leaf_taken_at_verify_time),
	};

	wolfSSL_Init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
