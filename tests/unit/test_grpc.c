/* Tests of the gRPC wire helpers, server and client: a real grpc_server runs on a libuv loop in a
 * second thread (Unix socket and TLS on 127.0.0.1), driven by the blocking client. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <nghttp2/nghttp2.h>

#include "der_pem.h"
#include "grpc.h"
#include "grpc_client.h"
#include "grpc_server.h"
#include "tls_leaf.h"
#include "util.h"
#include "keys.h"

#define MAX_MSG 1024

struct fixture {
	uv_loop_t loop;
	uv_async_t stop;
	pthread_t thread;
	struct grpc_server *srv;
	struct grpc_server *tls_srv;
	struct grpc_server *lean_srv; /* cfg.zero_peer_header_table, as the TLS server */
	WOLFSSL_CTX *srv_ctx;
	char dir[64];
	char sock[100];
	char lean_sock[100];
	int tls_port;
	atomic_int calls_closed;
	atomic_int hold_closed;
	atomic_int never_closed;
	atomic_int connects;
	atomic_int disconnects;
	atomic_int servers_done;
};

static struct fixture *F;

static void ms_sleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- server-side handlers (loop thread) ---- */

static struct fixture *fx_of(struct grpc_call *call)
{
	return grpc_server_ud(grpc_conn_server(grpc_call_conn(call)));
}

static void m_echo(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	assert_int_equal(grpc_call_send(call, msg, len), 0);
	assert_int_equal(grpc_call_finish(call, GRPC_STATUS_OK, NULL), 0);
	/* Closed for the handler from now on. */
	assert_true(grpc_call_is_closed(call));
	assert_int_equal(grpc_call_send(call, msg, len), -1);
}

static void m_stream(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	char buf[32];
	int i, n = len == 1 ? msg[0] : 0;

	for (i = 0; i < n; i++) {
		int l = snprintf(buf, sizeof(buf), "msg-%d", i);

		assert_int_equal(grpc_call_send(call, (uint8_t *)buf, (size_t)l), 0);
	}
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

struct async_req {
	uv_timer_t timer;
	struct grpc_call *call;
	uint8_t msg[MAX_MSG];
	size_t len;
};

static void async_closed(uv_handle_t *h)
{
	free(h->data);
}

static void async_fire(uv_timer_t *t)
{
	struct async_req *ar = t->data;

	if (!grpc_call_is_closed(ar->call)) {
		grpc_call_send(ar->call, ar->msg, ar->len);
		grpc_call_finish(ar->call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(ar->call);
	uv_close((uv_handle_t *)&ar->timer, async_closed);
}

static void m_async(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fixture *fx = fx_of(call);
	struct async_req *ar = calloc(1, sizeof(*ar));

	assert_non_null(ar);
	ar->call = call;
	memcpy(ar->msg, msg, len);
	ar->len = len;
	grpc_call_ref(call);
	uv_timer_init(&fx->loop, &ar->timer);
	ar->timer.data = ar;
	uv_timer_start(&ar->timer, async_fire, 30, 0);
}

/* A stream whose messages come one at a time, each after the previous went out, and whose
 * status comes on a tick of its own: every message starts a new DATA item and the trailers
 * follow none (grpc_call.c: data_live). */
#define DRIP_COUNT 5

struct drip {
	uv_timer_t timer;
	struct grpc_call *call;
	int sent;
};

static void drip_tick(uv_timer_t *t)
{
	struct drip *d = t->data;
	char buf[16];

	if (grpc_call_is_closed(d->call)) {
		grpc_call_unref(d->call);
		uv_close((uv_handle_t *)&d->timer, async_closed);
		return;
	}
	if (d->sent == DRIP_COUNT) {
		grpc_call_finish(d->call, GRPC_STATUS_ABORTED, "drip done");
		grpc_call_unref(d->call);
		uv_close((uv_handle_t *)&d->timer, async_closed);
		return;
	}
	int l = snprintf(buf, sizeof(buf), "drip-%d", d->sent++);
	assert_int_equal(grpc_call_send(d->call, (uint8_t *)buf, (size_t)l), 0);
	uv_timer_start(&d->timer, drip_tick, 20, 0);
}

static void m_drip(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fixture *fx = fx_of(call);
	struct drip *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->call = call;
	grpc_call_ref(call);
	uv_timer_init(&fx->loop, &d->timer);
	d->timer.data = d;
	drip_tick(&d->timer);
}

static void m_never(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_set_data(call, (void *)"never");
}

#define FAIL_MESSAGE "caf\xc3\xa9 100% d\xc3\xa9j\xc3\xa0 vu\nline2 %41"

static void m_fail(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED, FAIL_MESSAGE);
}

static void m_hold(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_call_set_data(call, (void *)"hold");
	grpc_call_send(call, (const uint8_t *)"first", 5);
}

static void m_headers(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	char out[512];
	const char *x = grpc_call_header(call, "x-test");
	const char *ua = grpc_call_header(call, "user-agent");
	int l = snprintf(out, sizeof(out), "%s|%s|%s", x ? x : "(none)", ua ? ua : "(none)",
			 grpc_call_path(call));

	grpc_call_send(call, (uint8_t *)out, (size_t)l);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void m_peer(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	size_t n = 0;
	const uint8_t *der = grpc_conn_peer_cert(grpc_call_conn(call), &n);

	grpc_call_send(call, der, der ? n : 0);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* The handler keeps nothing of the certificate: the connection's copy goes (node API). */
static void m_drop_peer(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	grpc_conn_drop_peer_cert(grpc_call_conn(call));
	grpc_call_send(call, (const uint8_t *)"", 0);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void m_conns(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	char out[32];
	int l = snprintf(out, sizeof(out), "%u",
			 grpc_server_conn_count(grpc_conn_server(grpc_call_conn(call))));

	grpc_call_send(call, (uint8_t *)out, (size_t)l);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* Streams far more than the connection's output cap at once: the connection gets dropped. */
static void m_flood(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	static uint8_t chunk[256 * 1024];
	int i;

	for (i = 0; i < 64; i++)
		if (grpc_call_send(call, chunk, sizeof(chunk)) < 0)
			return;
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* Large messages whose every byte depends on the request's seed, the message index and the
 * offset: a frame of one connection showing up in another's response would be caught. */
#define BIG_LEN 40000
#define BIG_COUNT 3

static uint8_t big_byte(unsigned seed, int m, size_t k)
{
	return (uint8_t)(seed * 131u + (unsigned)m * 17u + (unsigned)(k * 7u) + (unsigned)(k >> 8));
}

static void m_big(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	uint8_t *buf = malloc(BIG_LEN);
	unsigned seed = len == 1 ? msg[0] : 0;

	assert_non_null(buf);
	for (int m = 0; m < BIG_COUNT; m++) {
		for (size_t k = 0; k < BIG_LEN; k++)
			buf[k] = big_byte(seed, m, k);
		assert_int_equal(grpc_call_send(call, buf, BIG_LEN), 0);
	}
	free(buf);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* The server's nghttp2 heap ("bytes blocks"), read on the loop thread. */
static void m_mem(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	char out[64];
	size_t bytes, blocks;

	grpc_server_h2_mem(grpc_conn_server(grpc_call_conn(call)), &bytes, &blocks);
	int l = snprintf(out, sizeof(out), "%zu %zu", bytes, blocks);
	grpc_call_send(call, (uint8_t *)out, (size_t)l);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method methods[] = {
	{ .path = "/test.Test/Echo", .on_request = m_echo },
	{ .path = "/test.Test/Stream", .server_streaming = true, .on_request = m_stream },
	{ .path = "/test.Test/Async", .on_request = m_async },
	{ .path = "/test.Test/Never", .on_request = m_never },
	{ .path = "/test.Test/Fail", .on_request = m_fail },
	{ .path = "/test.Test/Hold", .server_streaming = true, .on_request = m_hold },
	{ .path = "/test.Test/Headers", .on_request = m_headers },
	{ .path = "/test.Test/Peer", .on_request = m_peer },
	{ .path = "/test.Test/DropPeer", .on_request = m_drop_peer },
	{ .path = "/test.Test/Conns", .on_request = m_conns },
	{ .path = "/test.Test/Flood", .server_streaming = true, .on_request = m_flood },
	{ .path = "/test.Test/Big", .server_streaming = true, .on_request = m_big },
	{ .path = "/test.Test/Mem", .on_request = m_mem },
	{ .path = "/test.Test/Drip", .server_streaming = true, .on_request = m_drip },
};

static int on_connect(struct grpc_conn *conn, int fd)
{
	struct fixture *fx = grpc_server_ud(grpc_conn_server(conn));
	int *data = malloc(sizeof(int));

	assert_non_null(data);
	*data = fd;
	assert_int_equal(grpc_conn_fd(conn), fd);
	grpc_conn_set_data(conn, data);
	atomic_fetch_add(&fx->connects, 1);
	return 0;
}

static void on_disconnect(struct grpc_conn *conn)
{
	struct fixture *fx = grpc_server_ud(grpc_conn_server(conn));

	free(grpc_conn_data(conn));
	atomic_fetch_add(&fx->disconnects, 1);
}

static void on_call_closed(struct grpc_call *call)
{
	struct fixture *fx = fx_of(call);
	const char *tag = grpc_call_data(call);

	atomic_fetch_add(&fx->calls_closed, 1);
	if (tag && strcmp(tag, "hold") == 0)
		atomic_fetch_add(&fx->hold_closed, 1);
	if (tag && strcmp(tag, "never") == 0)
		atomic_fetch_add(&fx->never_closed, 1);
	assert_true(grpc_call_is_closed(call));
}

static void server_done(void *arg)
{
	struct fixture *fx = arg;

	atomic_fetch_add(&fx->servers_done, 1);
}

static void stop_cb(uv_async_t *a)
{
	struct fixture *fx = a->data;

	grpc_server_shutdown(fx->srv, 200, server_done, fx);
	if (fx->tls_srv)
		grpc_server_shutdown(fx->tls_srv, 200, server_done, fx);
	if (fx->lean_srv)
		grpc_server_shutdown(fx->lean_srv, 200, server_done, fx);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
	struct fixture *fx = arg;

	uv_run(&fx->loop, UV_RUN_DEFAULT);
	/* wolfSSL's fixed-point ECC cache is per thread: free this thread's. */
	keys_release_thread_ecc_cache();
	return NULL;
}

/* ---- certificates (openssl CLI) ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int make_certs(const char *d)
{
	/* Two CAs: "ca" issues the server and client certs, "other" is trusted by nobody. */
	if (sh("cd %s && printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,"
	       "digitalSignature\\nextendedKeyUsage=serverAuth,clientAuth\\nsubjectAltName=%s\\n'"
	       " > srv.ext && printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,"
	       "digitalSignature\\nextendedKeyUsage=serverAuth,clientAuth\\nsubjectAltName=%s\\n'"
	       " > cli.ext",
	       d, "URI:spiffe://example.org/server,DNS:localhost", "URI:spiffe://example.org/client"))
		return -1;
	const char *names[] = { "ca", "other" };
	for (int i = 0; i < 2; i++)
		if (sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		       "-keyout %s.key -out %s.pem -days 2 -subj /CN=%s -addext "
		       "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
		       ">/dev/null 2>&1",
		       d, names[i], names[i], names[i]))
			return -1;
	const char *leaves[][2] = { { "srv", "ca" }, { "cli", "ca" }, { "rogue", "other" } };
	for (int i = 0; i < 3; i++)
		if (sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		       "-keyout %s.key -out %s.csr -subj /CN=%s >/dev/null 2>&1 && openssl x509 -req "
		       "-in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem -days 1 "
		       "-extfile %s.ext >/dev/null 2>&1",
		       d, leaves[i][0], leaves[i][0], leaves[i][0], leaves[i][0], leaves[i][1],
		       leaves[i][1], leaves[i][0], i == 0 ? "srv" : "cli"))
			return -1;
	return 0;
}

static char *path_in(const char *name)
{
	static char p[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", F->dir, name);
	return p[i];
}

static WOLFSSL_CTX *client_ctx(const char *ca, const char *cert, const char *key)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());

	assert_non_null(ctx);
	assert_int_equal(wolfSSL_CTX_load_verify_locations(ctx, path_in(ca), NULL), WOLFSSL_SUCCESS);
	tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	if (cert) {
		assert_int_equal(wolfSSL_CTX_use_certificate_file(ctx, path_in(cert), WOLFSSL_FILETYPE_PEM),
				 WOLFSSL_SUCCESS);
		assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(ctx, path_in(key), WOLFSSL_FILETYPE_PEM),
				 WOLFSSL_SUCCESS);
	}
	return ctx;
}

static int group_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct grpc_server_config cfg = {
		.methods = methods,
		.n_methods = ARRAY_LEN(methods),
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_call_closed = on_call_closed,
		.max_message_size = MAX_MSG,
		.max_output_per_conn = 2u * 1024 * 1024,
		.handshake_timeout_ms = 1000,
	};
	char err[256];

	if (!fx)
		return -1;
	cfg.ud = fx;
	F = fx;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/lanyard-grpc-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->sock, sizeof(fx->sock), "%s/api.sock", fx->dir);
	if (make_certs(fx->dir) < 0) {
		fprintf(stderr, "openssl failed\n");
		return -1;
	}
	uv_loop_init(&fx->loop);
	if (grpc_server_listen_unix(&fx->loop, fx->sock, &cfg, &fx->srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "listen: %s\n", err);
		return -1;
	}
	if (grpc_server_port(fx->srv) != -1)
		return -1;
	fx->srv_ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	if (!fx->srv_ctx ||
	    wolfSSL_CTX_use_certificate_file(fx->srv_ctx, path_in("srv.pem"), WOLFSSL_FILETYPE_PEM) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_file(fx->srv_ctx, path_in("srv.key"), WOLFSSL_FILETYPE_PEM) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_load_verify_locations(fx->srv_ctx, path_in("ca.pem"), NULL) != WOLFSSL_SUCCESS)
		return -1;
	/* The TLS server is configured as the node API: its clients are all ours. */
	cfg.zero_peer_header_table = true;
	snprintf(fx->lean_sock, sizeof(fx->lean_sock), "%s/lean.sock", fx->dir);
	if (grpc_server_listen_unix(&fx->loop, fx->lean_sock, &cfg, &fx->lean_srv, err,
				    sizeof(err)) < 0) {
		fprintf(stderr, "listen: %s\n", err);
		return -1;
	}
	if (grpc_server_listen_tcp(&fx->loop, "127.0.0.1", 0, fx->srv_ctx, &cfg, &fx->tls_srv, err,
				   sizeof(err)) < 0) {
		fprintf(stderr, "listen tcp: %s\n", err);
		return -1;
	}
	/* The server holds its own reference. */
	wolfSSL_CTX_free(fx->srv_ctx);
	fx->srv_ctx = NULL;
	fx->tls_port = grpc_server_port(fx->tls_srv);
	if (fx->tls_port <= 0)
		return -1;
	uv_async_init(&fx->loop, &fx->stop, stop_cb);
	fx->stop.data = fx;
	if (pthread_create(&fx->thread, NULL, loop_thread, fx) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *fx = *state;
	int rc = 0;

	uv_async_send(&fx->stop);
	pthread_join(fx->thread, NULL);
	if (atomic_load(&fx->servers_done) != 3) {
		fprintf(stderr, "shutdown callbacks: %d\n", atomic_load(&fx->servers_done));
		rc = -1;
	}
	/* Every handle the servers created is closed. */
	if (uv_loop_close(&fx->loop) != 0) {
		fprintf(stderr, "loop still has handles\n");
		rc = -1;
	}
	if (atomic_load(&fx->connects) != atomic_load(&fx->disconnects)) {
		fprintf(stderr, "connects %d != disconnects %d\n", atomic_load(&fx->connects),
			atomic_load(&fx->disconnects));
		rc = -1;
	}
	if (access(fx->sock, F_OK) == 0) {
		fprintf(stderr, "socket not removed\n");
		rc = -1;
	}
	sh("rm -rf %s", fx->dir);
	free(fx);
	return rc;
}

/* ---- helpers ---- */

static struct grpc_client *connect_unix(void)
{
	struct grpc_client *c = NULL;
	char err[256] = "";

	if (grpc_client_connect_unix(F->sock, 2000, &c, err, sizeof(err)) < 0)
		fail_msg("connect: %s", err);
	return c;
}

static int unary(struct grpc_client *c, const char *path, const void *req, size_t len, int timeout,
		 uint8_t **resp, size_t *rlen, char *err, size_t errlen)
{
	int status = -1;
	int rc = grpc_client_unary(c, path, NULL, 0, req, len, timeout, resp, rlen, &status, err, errlen);

	if (rc < 0)
		fail_msg("transport failure: %s", err);
	return status;
}

static bool wait_counter(atomic_int *ctr, int want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (atomic_load(ctr) >= want)
			return true;
		ms_sleep(10);
	}
	return atomic_load(ctr) >= want;
}

/* Reads until EOF: true when the peer closed within ms. */
static bool peer_closes(int fd, int ms)
{
	int64_t end = now_mono_us() / 1000 + ms;
	char buf[4096];

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = end - now_mono_us() / 1000;
		ssize_t n;

		if (left <= 0)
			return false;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return true;
	}
}

/* ---- wire helper tests ---- */

static void test_status_names(void **state)
{
	assert_string_equal(grpc_status_name(GRPC_STATUS_OK), "OK");
	assert_string_equal(grpc_status_name(GRPC_STATUS_PERMISSION_DENIED), "PERMISSION_DENIED");
	assert_string_equal(grpc_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
	assert_string_equal(grpc_status_name(17), "UNKNOWN_STATUS");
	assert_string_equal(grpc_status_name(-1), "UNKNOWN_STATUS");
	assert_string_equal(grpc_status_camel(GRPC_STATUS_CANCELLED), "Canceled");
	assert_string_equal(grpc_status_camel(GRPC_STATUS_PERMISSION_DENIED), "PermissionDenied");
	assert_string_equal(grpc_status_camel(GRPC_STATUS_UNAUTHENTICATED), "Unauthenticated");
	assert_null(grpc_status_camel(17));
	assert_null(grpc_status_camel(-1));
}

static void test_framing(void **state)
{
	struct grpc_deframer d;
	uint8_t stream[64], *m, *f;
	size_t n = 0, flen, used, mlen, i;
	const char *msgs[] = { "hello", "", "world!" };
	int got = 0;

	for (i = 0; i < 3; i++) {
		f = grpc_frame((const uint8_t *)msgs[i], strlen(msgs[i]), &flen);
		assert_non_null(f);
		assert_int_equal(flen, strlen(msgs[i]) + 5);
		assert_int_equal(f[0], 0);
		assert_int_equal(f[4], strlen(msgs[i]));
		memcpy(stream + n, f, flen);
		n += flen;
		free(f);
	}
	/* Byte by byte. */
	grpc_deframer_init(&d, 100);
	assert_true(grpc_deframer_idle(&d));
	for (i = 0; i < n; i++) {
		int rc = grpc_deframer_feed(&d, stream + i, 1, &used, &m, &mlen);

		assert_int_equal(used, 1);
		if (rc == GRPC_DEFRAME_MESSAGE) {
			assert_non_null(m);
			assert_int_equal(mlen, strlen(msgs[got]));
			assert_memory_equal(m, msgs[got], mlen);
			free(m);
			got++;
		} else {
			assert_int_equal(rc, GRPC_DEFRAME_NEED_MORE);
			if (i + 1 < n)
				assert_false(grpc_deframer_idle(&d));
		}
	}
	assert_int_equal(got, 3);
	assert_true(grpc_deframer_idle(&d));
	/* All at once: one message per call, the rest left for the next. */
	got = 0;
	for (i = 0; i < n; i += used) {
		int rc = grpc_deframer_feed(&d, stream + i, n - i, &used, &m, &mlen);

		if (rc == GRPC_DEFRAME_MESSAGE) {
			assert_memory_equal(m, msgs[got], mlen);
			free(m);
			got++;
		}
	}
	assert_int_equal(got, 3);
	/* Partial message pending. */
	assert_int_equal(grpc_deframer_feed(&d, stream, 7, &used, &m, &mlen), GRPC_DEFRAME_NEED_MORE);
	assert_false(grpc_deframer_idle(&d));
	grpc_deframer_free(&d);

	/* Too large, compressed, bad flag; errors stick. */
	uint8_t big[5] = { 0, 0, 0, 0, 101 };
	grpc_deframer_init(&d, 100);
	assert_int_equal(grpc_deframer_feed(&d, big, 5, &used, &m, &mlen), GRPC_DEFRAME_TOO_LARGE);
	assert_int_equal(grpc_deframer_feed(&d, stream, 5, &used, &m, &mlen), GRPC_DEFRAME_TOO_LARGE);
	assert_false(grpc_deframer_idle(&d));
	grpc_deframer_free(&d);
	uint8_t comp[6] = { 1, 0, 0, 0, 1, 'x' };
	grpc_deframer_init(&d, 100);
	assert_int_equal(grpc_deframer_feed(&d, comp, 6, &used, &m, &mlen), GRPC_DEFRAME_COMPRESSED);
	grpc_deframer_free(&d);
	comp[0] = 7;
	grpc_deframer_init(&d, 100);
	assert_int_equal(grpc_deframer_feed(&d, comp, 6, &used, &m, &mlen), GRPC_DEFRAME_BAD_FLAG);
	grpc_deframer_free(&d);
	/* Exactly the maximum is fine. */
	grpc_deframer_init(&d, 4);
	uint8_t four[9] = { 0, 0, 0, 0, 4, 'a', 'b', 'c', 'd' };
	assert_int_equal(grpc_deframer_feed(&d, four, 9, &used, &m, &mlen), GRPC_DEFRAME_MESSAGE);
	assert_int_equal(mlen, 4);
	free(m);
	grpc_deframer_free(&d);
}

static void test_percent(void **state)
{
	char *e = grpc_percent_encode("a%b\n \xc3\xa9~");
	char *d;

	assert_string_equal(e, "a%25b%0A %C3%A9~");
	d = grpc_percent_decode(e);
	assert_string_equal(d, "a%b\n \xc3\xa9~");
	free(e);
	free(d);
	d = grpc_percent_decode("%zz%4%41%6a%");
	assert_string_equal(d, "%zz%4Aj%");
	free(d);
	e = grpc_percent_encode(NULL);
	assert_string_equal(e, "");
	free(e);
}

static void test_timeout(void **state)
{
	struct {
		const char *s;
		int rc;
		int64_t ms;
	} cases[] = {
		{ "100m", 0, 100 },      { "1S", 0, 1000 },       { "2M", 0, 120000 },
		{ "1H", 0, 3600000 },    { "1n", 0, 1 },          { "0n", 0, 0 },
		{ "1000u", 0, 1 },       { "1001u", 0, 2 },       { "99999999H", 0, 359999996400000 },
		{ "12345678m", 0, 12345678 },
		{ "123456789m", -1, 0 }, { "", -1, 0 },          { "10", -1, 0 },
		{ "10x", -1, 0 },        { "m", -1, 0 },          { "-1m", -1, 0 },
		{ "10mm", -1, 0 },       { " 1m", -1, 0 },        { "1 m", -1, 0 },
	};
	char buf[16];
	int64_t ms;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		ms = -7;
		assert_int_equal(grpc_timeout_parse(cases[i].s, &ms), cases[i].rc);
		if (cases[i].rc == 0)
			assert_int_equal(ms, cases[i].ms);
	}
	assert_int_equal(grpc_timeout_parse(NULL, &ms), -1);
	grpc_timeout_format(100, buf);
	assert_string_equal(buf, "100m");
	grpc_timeout_format(-5, buf);
	assert_string_equal(buf, "0m");
	grpc_timeout_format(100000000, buf);
	assert_string_equal(buf, "100000S");
	grpc_timeout_format(100000001, buf);
	assert_string_equal(buf, "100001S");
	grpc_timeout_format(INT64_MAX, buf);
	assert_int_equal(grpc_timeout_parse(buf, &ms), 0);
	assert_true(ms > 0);
}

/* ---- client/server tests ---- */

static void test_unary_ok(void **state)
{
	struct grpc_client *c = connect_unix();
	uint8_t *resp = NULL;
	size_t len = 0;
	char err[256];

	assert_null(grpc_client_peer_cert(c, NULL));
	assert_true(grpc_client_fd(c) >= 0);
	for (int i = 0; i < 20; i++) {
		char req[32];
		int l = snprintf(req, sizeof(req), "ping %d", i);

		assert_int_equal(unary(c, "/test.Test/Echo", req, (size_t)l, 2000, &resp, &len, err,
				       sizeof(err)),
				 GRPC_STATUS_OK);
		assert_int_equal(len, (size_t)l);
		assert_memory_equal(resp, req, len);
		free(resp);
	}
	/* Empty request and response. */
	assert_int_equal(unary(c, "/test.Test/Echo", "", 0, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	assert_non_null(resp);
	assert_int_equal(len, 0);
	free(resp);
	grpc_client_close(c);
}

static void test_metadata(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_header h[] = { { "x-test", "hello world" } };
	uint8_t *resp = NULL;
	size_t len = 0;
	int status = -1;
	char err[256];

	assert_int_equal(grpc_client_unary(c, "/test.Test/Headers", h, 1, NULL, 0, 2000, &resp, &len,
					   &status, err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_int_equal(len, strlen("hello world|lanyard/0.1|/test.Test/Headers"));
	assert_memory_equal(resp, "hello world|lanyard/0.1|/test.Test/Headers", len);
	free(resp);
	grpc_client_close(c);
}

static void test_async(void **state)
{
	struct grpc_client *c = connect_unix();
	uint8_t *resp = NULL;
	size_t len = 0;
	char err[256];

	assert_int_equal(unary(c, "/test.Test/Async", "later", 5, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	assert_int_equal(len, 5);
	assert_memory_equal(resp, "later", 5);
	free(resp);
	grpc_client_close(c);
}

static void test_stream(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_stream *s = NULL;
	uint8_t n = 25, *msg;
	size_t len;
	int status = -1, got = 0, rc;
	char err[256];

	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Stream", NULL, 0, &n, 1, &s, err,
						 sizeof(err)),
			 0);
	while ((rc = grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err))) == 1) {
		char want[32];

		snprintf(want, sizeof(want), "msg-%d", got);
		assert_int_equal(len, strlen(want));
		assert_memory_equal(msg, want, len);
		free(msg);
		got++;
	}
	assert_int_equal(rc, 2);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_int_equal(got, 25);
	/* Ended streams stay ended. */
	assert_int_equal(grpc_stream_next(s, 0, &msg, &len, &status, err, sizeof(err)), 2);
	grpc_stream_cancel(s);

	/* Two streams interleaved on one connection plus a unary call between. */
	struct grpc_stream *a, *b;
	uint8_t na = 3, nb = 4, *resp;
	int ga = 0, gb = 0;

	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Stream", NULL, 0, &na, 1, &a, err,
						 sizeof(err)),
			 0);
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Stream", NULL, 0, &nb, 1, &b, err,
						 sizeof(err)),
			 0);
	assert_int_equal(unary(c, "/test.Test/Echo", "x", 1, 2000, &resp, &len, err, sizeof(err)), 0);
	free(resp);
	while ((rc = grpc_stream_next(b, 2000, &msg, &len, &status, err, sizeof(err))) == 1) {
		free(msg);
		gb++;
	}
	assert_int_equal(rc, 2);
	while ((rc = grpc_stream_next(a, 2000, &msg, &len, &status, err, sizeof(err))) == 1) {
		free(msg);
		ga++;
	}
	assert_int_equal(rc, 2);
	assert_int_equal(ga, 3);
	assert_int_equal(gb, 4);
	grpc_stream_cancel(a);
	grpc_stream_cancel(b);
	grpc_client_close(c);
}

static void test_drip(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_stream *s;
	uint8_t *msg;
	size_t len;
	int status = -1, rc, got = 0;
	char err[256], want[16];

	for (int round = 0; round < 2; round++) {
		got = 0;
		assert_int_equal(grpc_client_stream_open(c, "/test.Test/Drip", NULL, 0, NULL, 0, &s, err,
							 sizeof(err)),
				 0);
		while ((rc = grpc_stream_next(s, 3000, &msg, &len, &status, err, sizeof(err))) == 1) {
			int l = snprintf(want, sizeof(want), "drip-%d", got++);

			assert_int_equal(len, (size_t)l);
			assert_memory_equal(msg, want, len);
			free(msg);
		}
		assert_int_equal(rc, 2);
		assert_int_equal(got, DRIP_COUNT);
		assert_int_equal(status, GRPC_STATUS_ABORTED);
		assert_string_equal(err, "drip done");
		grpc_stream_cancel(s);
	}
	grpc_client_close(c);
}

static void test_unimplemented(void **state)
{
	struct grpc_client *c = connect_unix();
	uint8_t *resp = NULL;
	size_t len = 0;
	char err[256] = "";

	int st_ = unary(c, "/test.Test/Nope", "x", 1, 2000, &resp, &len, err, sizeof(err));
	printf("nope: %d %s\n", st_, err);
	assert_int_equal(st_,
			 GRPC_STATUS_UNIMPLEMENTED);
	assert_null(resp);
	assert_non_null(strstr(err, "/test.Test/Nope"));
	/* The connection still works. */
	assert_int_equal(unary(c, "/test.Test/Echo", "y", 1, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	free(resp);
	grpc_client_close(c);
}

static void test_error_message(void **state)
{
	struct grpc_client *c = connect_unix();
	uint8_t *resp = NULL;
	size_t len = 0;
	char err[256] = "";

	assert_int_equal(unary(c, "/test.Test/Fail", "x", 1, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_PERMISSION_DENIED);
	assert_string_equal(err, FAIL_MESSAGE);
	assert_null(resp);
	grpc_client_close(c);
}

static void test_oversized(void **state)
{
	struct grpc_client *c = connect_unix();
	uint8_t *big = calloc(1, 64 * 1024), *resp = NULL;
	size_t len = 0;
	char err[256] = "";

	assert_int_equal(unary(c, "/test.Test/Echo", big, MAX_MSG + 1, 2000, &resp, &len, err,
			       sizeof(err)),
			 GRPC_STATUS_RESOURCE_EXHAUSTED);
	/* Far larger than a flow-control window: the server answers before reading it all. */
	assert_int_equal(unary(c, "/test.Test/Echo", big, 64 * 1024, 2000, &resp, &len, err,
			       sizeof(err)),
			 GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_int_equal(unary(c, "/test.Test/Echo", big, MAX_MSG, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	assert_int_equal(len, MAX_MSG);
	free(resp);
	free(big);
	grpc_client_close(c);
}

static void test_deadline(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_header h[] = { { "grpc-timeout", "100m" } };
	struct grpc_stream *s;
	uint8_t *resp = NULL, *msg;
	size_t len = 0;
	int status = -1, before = atomic_load(&F->never_closed);
	char err[256] = "";
	int64_t t0 = now_mono_us();

	/* The server enforces grpc-timeout: the stream reader waits much longer. */
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Never", h, 1, (uint8_t *)"x", 1, &s, err,
						 sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(s, 5000, &msg, &len, &status, err, sizeof(err)), 2);
	assert_int_equal(status, GRPC_STATUS_DEADLINE_EXCEEDED);
	assert_true(now_mono_us() - t0 < 3000000);
	grpc_stream_cancel(s);
	assert_true(wait_counter(&F->never_closed, before + 1, 2000));

	/* A unary call with a timeout never hangs. */
	t0 = now_mono_us();
	assert_int_equal(unary(c, "/test.Test/Never", "x", 1, 150, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_DEADLINE_EXCEEDED);
	assert_true(now_mono_us() - t0 < 2000000);
	assert_true(wait_counter(&F->never_closed, before + 2, 2000));
	/* Polling a stream with timeout 0 returns at once. */
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Never", NULL, 0, (uint8_t *)"x", 1, &s,
						 err, sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(s, 0, &msg, &len, &status, err, sizeof(err)), 0);
	assert_int_equal(grpc_stream_next(s, 50, &msg, &len, &status, err, sizeof(err)), 0);
	grpc_stream_cancel(s);
	assert_true(wait_counter(&F->never_closed, before + 3, 2000));
	grpc_client_close(c);
}

static void test_cancel(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_stream *s;
	uint8_t *msg;
	size_t len;
	int status, before = atomic_load(&F->hold_closed);
	char err[256];

	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Hold", NULL, 0, NULL, 0, &s, err,
						 sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err)), 1);
	assert_memory_equal(msg, "first", 5);
	free(msg);
	assert_int_equal(grpc_stream_next(s, 50, &msg, &len, &status, err, sizeof(err)), 0);
	grpc_stream_cancel(s);
	assert_true(wait_counter(&F->hold_closed, before + 1, 2000));

	/* Closing the client with a stream open closes the call too. */
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Hold", NULL, 0, NULL, 0, &s, err,
						 sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err)), 1);
	free(msg);
	grpc_client_close(c);
	assert_true(wait_counter(&F->hold_closed, before + 2, 2000));
}

/* A wake fd ends a long wait for a stream message at once and is drained by the client. */
static void test_wake_fd(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_stream *s;
	uint8_t *msg, b = 1;
	size_t len;
	int status, p[2];
	char err[256];

	(void)state;
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	grpc_client_set_wake_fd(c, p[0]);
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Hold", NULL, 0, NULL, 0, &s, err,
						 sizeof(err)),
			 0);
	assert_int_equal(grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err)), 1);
	free(msg);
	assert_int_equal(write(p[1], &b, 1), 1);
	assert_int_equal(grpc_stream_next(s, 60000, &msg, &len, &status, err, sizeof(err)), 0);
	/* The wake-up was consumed: nothing left to read. */
	assert_int_equal(read(p[0], &b, 1), -1);
	assert_int_equal(errno, EAGAIN);
	/* And the stream still works. */
	assert_int_equal(grpc_stream_next(s, 0, &msg, &len, &status, err, sizeof(err)), 0);
	grpc_stream_cancel(s);
	grpc_client_close(c);
	close(p[0]);
	close(p[1]);
}

static void garbage(const void *data, size_t len)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", F->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	send(fd, data, len, MSG_NOSIGNAL);
	assert_true(peer_closes(fd, 3000));
	close(fd);
}

static void test_garbage(void **state)
{
	uint8_t rnd[4096];
	const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	uint8_t after[sizeof(preface) - 1 + sizeof(rnd)];
	struct grpc_client *c;
	uint8_t *resp;
	size_t len;
	char err[256];

	garbage("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	assert_int_equal(random_bytes(rnd, sizeof(rnd)), 0);
	garbage(rnd, sizeof(rnd));
	/* A valid preface followed by random frames. */
	memcpy(after, preface, sizeof(preface) - 1);
	memcpy(after + sizeof(preface) - 1, rnd, sizeof(rnd));
	garbage(after, sizeof(after));

	/* TLS port: plain HTTP/2 preface, random bytes. */
	{
		struct grpc_client *tc = NULL;
		int fd;
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)F->tls_port),
					   .sin_addr.s_addr = htonl(0x7f000001) };

		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		send(fd, rnd, sizeof(rnd), MSG_NOSIGNAL);
		assert_true(peer_closes(fd, 3000));
		close(fd);
		/* A cleartext HTTP/2 client against the TLS port fails cleanly. */
		assert_int_equal(grpc_client_connect_tcp("127.0.0.1", F->tls_port, NULL, NULL, 2000, &tc,
							 err, sizeof(err)),
				 0);
		int status;
		assert_int_equal(grpc_client_unary(tc, "/test.Test/Echo", NULL, 0, (uint8_t *)"x", 1, 2000,
						   &resp, &len, &status, err, sizeof(err)),
				 -1);
		grpc_client_close(tc);
	}

	/* Silent peers are dropped after the handshake timeout, on both ports. */
	{
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)F->tls_port),
					   .sin_addr.s_addr = htonl(0x7f000001) };
		int u = socket(AF_UNIX, SOCK_STREAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", F->sock);
		assert_int_equal(connect(u, (struct sockaddr *)&sun, sizeof(sun)), 0);
		assert_int_equal(connect(t, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_true(peer_closes(u, 3000));
		assert_true(peer_closes(t, 3000));
		close(u);
		close(t);
	}

	/* The server still serves. */
	c = connect_unix();
	assert_int_equal(unary(c, "/test.Test/Echo", "ok", 2, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	free(resp);
	grpc_client_close(c);
}

/* Reads the server's first frame on a raw connection: its SETTINGS. Returns the payload length. */
static size_t read_server_settings(int fd, uint8_t *buf, size_t cap)
{
	size_t got = 0, need = 9;
	int i;

	/* Bounded: the frame is a few dozen bytes; each poll waits up to a second. */
	for (i = 0; i < 20 && got < need; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = recv(fd, buf + got, cap - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
		if (got >= 9)
			need = 9 + ((size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2]);
		assert_true(need <= cap);
	}
	assert_true(got >= need);
	assert_int_equal(buf[3], 0x4); /* SETTINGS */
	assert_int_equal(buf[4] & 0x1, 0); /* not an ACK */
	return need - 9;
}

/* The server announces its stream limit and leaves the peer's HPACK table at the default (a
 * client that indexes without honouring a smaller size must keep working: exec_race.py). */
static void test_server_settings(void **state)
{
	const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	const uint8_t empty_settings[9] = { 0, 0, 0, 0x4, 0, 0, 0, 0, 0 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint8_t buf[512];
	size_t len, k;
	long table = -1, streams = -1;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	(void)state;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", F->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL),
			 (ssize_t)sizeof(preface) - 1);
	assert_int_equal(send(fd, empty_settings, sizeof(empty_settings), MSG_NOSIGNAL),
			 (ssize_t)sizeof(empty_settings));
	len = read_server_settings(fd, buf, sizeof(buf));
	assert_int_equal(len % 6, 0);
	for (k = 0; k < len; k += 6) {
		const uint8_t *e = buf + 9 + k;
		unsigned id = (unsigned)e[0] << 8 | e[1];
		long v = (long)((uint32_t)e[2] << 24 | (uint32_t)e[3] << 16 | (uint32_t)e[4] << 8 | e[5]);

		if (id == NGHTTP2_SETTINGS_HEADER_TABLE_SIZE)
			table = v;
		else if (id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
			streams = v;
	}
	assert_int_equal(table, -1); /* the peer's HPACK table is left at the default */
	assert_true(streams > 0);
	close(fd);
}

static int connect_raw(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads frames until one of type `type` (its payload goes to buf, up to cap): its 9-byte header
 * in hd, or false when the connection closed or nothing came for 20 s. */
static bool read_frame_of(int fd, uint8_t type, uint8_t hd[9], uint8_t *buf, size_t cap)
{
	for (int i = 0; i < 200; i++) {
		size_t got = 0, len;
		uint8_t skip[512];

		while (got < 9) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			ssize_t n;

			if (poll(&pfd, 1, 20000) <= 0)
				return false;
			n = recv(fd, hd + got, 9 - got, 0);
			if (n <= 0)
				return false;
			got += (size_t)n;
		}
		len = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
		for (got = 0; got < len;) {
			size_t want = len - got > sizeof(skip) ? sizeof(skip) : len - got;
			ssize_t n = recv(fd, skip, want, MSG_WAITALL);

			if (n <= 0)
				return false;
			if (hd[3] == type && got < cap)
				memcpy(buf + got, skip, (size_t)n < cap - got ? (size_t)n : cap - got);
			got += (size_t)n;
		}
		if (hd[3] == type)
			return true;
	}
	return false;
}

/* A request's header block as a client that indexes every literal would send it; with
 * size_update, it opens with a dynamic table size update to 0 (what an encoder owes a
 * decoder that lowered SETTINGS_HEADER_TABLE_SIZE). */
static size_t indexed_request(uint8_t *out, bool size_update)
{
	static const uint8_t block[] = {
		0x83, 0x86,								/* POST, http */
		0x44, 15, '/', 't', 'e', 's', 't', '.', 'T', 'e', 's', 't', '/', 'E', 'c', 'h', 'o',
		0x41, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',			/* :authority */
		0x5f, 16, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '/', 'g', 'r', 'p', 'c',
		0x40, 2, 't', 'e', 8, 't', 'r', 'a', 'i', 'l', 'e', 'r', 's',
	};
	size_t n = 0, len = sizeof(block) + size_update;

	out[n++] = 0;
	out[n++] = (uint8_t)(len >> 8);
	out[n++] = (uint8_t)len;
	out[n++] = 0x1; /* HEADERS */
	out[n++] = 0x4 | 0x1; /* END_HEADERS | END_STREAM */
	out[n++] = 0, out[n++] = 0, out[n++] = 0, out[n++] = 1; /* stream 1 */
	if (size_update)
		out[n++] = 0x20;
	memcpy(out + n, block, sizeof(block));
	return n + sizeof(block);
}

/* A server with zero_peer_header_table announces SETTINGS_HEADER_TABLE_SIZE 0. A client that
 * acknowledges it and updates its table gets its answer; one that acknowledges it and indexes
 * anyway gets a connection error (GOAWAY COMPRESSION_ERROR), not a crash; clients keep working. */
static void test_zero_peer_header_table(void **state)
{
	const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	const uint8_t empty_settings[9] = { 0, 0, 0, 0x4, 0, 0, 0, 0, 0 };
	const uint8_t settings_ack[9] = { 0, 0, 0, 0x4, 0x1, 0, 0, 0, 0 };
	uint8_t buf[512], hd[9], req[128];
	long table = -1;

	(void)state;
	for (int honour = 1; honour >= 0; honour--) {
		int fd = connect_raw(F->lean_sock);
		size_t len, k;

		send_all(fd, preface, sizeof(preface) - 1);
		send_all(fd, empty_settings, sizeof(empty_settings));
		len = read_server_settings(fd, buf, sizeof(buf));
		for (k = 0; k + 6 <= len; k += 6) {
			const uint8_t *e = buf + 9 + k;

			if (((unsigned)e[0] << 8 | e[1]) == NGHTTP2_SETTINGS_HEADER_TABLE_SIZE)
				table = (long)((uint32_t)e[2] << 24 | (uint32_t)e[3] << 16 |
					       (uint32_t)e[4] << 8 | e[5]);
		}
		assert_int_equal(table, 0);
		send_all(fd, settings_ack, sizeof(settings_ack));
		len = indexed_request(req, honour);
		send_all(fd, req, len);
		if (honour) {
			/* The server's answer (a trailers-only status: no request message). */
			assert_true(read_frame_of(fd, 0x1, hd, buf, sizeof(buf)));
			assert_int_equal(hd[8], 1);
		} else {
			assert_true(read_frame_of(fd, 0x7, hd, buf, sizeof(buf)));
			assert_int_equal((uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
						 (uint32_t)buf[6] << 8 | buf[7],
					 NGHTTP2_COMPRESSION_ERROR);
			assert_true(peer_closes(fd, 5000));
		}
		close(fd);
	}
	/* Lanyard's client works with it, on a connection of many requests. */
	struct grpc_client *c = NULL;
	char err[256];
	uint8_t *resp;
	size_t rlen;

	assert_int_equal(grpc_client_connect_unix(F->lean_sock, 2000, &c, err, sizeof(err)), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(unary(c, "/test.Test/Echo", "abc", 3, 2000, &resp, &rlen, err,
				       sizeof(err)),
				 GRPC_STATUS_OK);
		free(resp);
	}
	grpc_client_close(c);
}

static void test_flood(void **state)
{
	struct grpc_client *c = connect_unix();
	struct grpc_stream *s;
	uint8_t *msg;
	size_t len;
	int status, rc;
	char err[256];

	/* The handler queues 16 MiB against a 2 MiB cap: the server drops the connection rather
	 * than buffering it. */
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Flood", NULL, 0, NULL, 0, &s, err,
						 sizeof(err)),
			 0);
	for (int i = 0; i < 100; i++) {
		rc = grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err));
		if (rc != 1)
			break;
		free(msg);
	}
	assert_true(rc == -1 || (rc == 2 && status != GRPC_STATUS_OK));
	grpc_stream_cancel(s);
	grpc_client_close(c);
}

struct worker {
	pthread_t t;
	int ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct grpc_client *c = NULL;
	char err[256];

	if (grpc_client_connect_unix(F->sock, 5000, &c, err, sizeof(err)) < 0)
		return NULL;
	for (int i = 0; i < 10; i++) {
		uint8_t *resp = NULL;
		size_t len;
		int status;
		char req[16];
		int l = snprintf(req, sizeof(req), "w%d", i);

		if (grpc_client_unary(c, "/test.Test/Echo", NULL, 0, (uint8_t *)req, (size_t)l, 5000, &resp,
				      &len, &status, err, sizeof(err)) == 0 &&
		    status == GRPC_STATUS_OK && len == (size_t)l && memcmp(resp, req, len) == 0)
			w->ok++;
		free(resp);
	}
	grpc_client_close(c);
	return NULL;
}

static void test_many_connections(void **state)
{
	enum { N = 100 };
	struct grpc_client *cs[N];
	struct worker ws[8];
	uint8_t *resp;
	size_t len;
	char err[256];
	int i;

	for (i = 0; i < N; i++)
		cs[i] = connect_unix();
	for (i = 0; i < N; i++) {
		assert_int_equal(unary(cs[i], "/test.Test/Echo", "m", 1, 2000, &resp, &len, err,
				       sizeof(err)),
				 GRPC_STATUS_OK);
		free(resp);
	}
	assert_int_equal(unary(cs[0], "/test.Test/Conns", "", 0, 2000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	char num[16];
	snprintf(num, sizeof(num), "%.*s", (int)len, resp);
	free(resp);
	assert_true(atoi(num) >= N);
	for (i = 0; i < N; i++)
		grpc_client_close(cs[i]);

	memset(ws, 0, sizeof(ws));
	for (i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&ws[i].t, NULL, worker_main, &ws[i]), 0);
	for (i = 0; i < 8; i++) {
		pthread_join(ws[i].t, NULL);
		assert_int_equal(ws[i].ok, 10);
	}
}

struct big_worker {
	pthread_t t;
	uint8_t seed;
	int ok;
};

static void *big_worker_main(void *arg)
{
	struct big_worker *w = arg;
	struct grpc_client *c = NULL;
	char err[256];

	if (grpc_client_connect_unix(F->sock, 5000, &c, err, sizeof(err)) < 0)
		return NULL;
	for (int round = 0; round < 5; round++) {
		struct grpc_stream *s = NULL;
		uint8_t *msg;
		size_t len;
		int status = -1, rc, m = 0;
		bool good = true;

		if (grpc_client_stream_open(c, "/test.Test/Big", NULL, 0, &w->seed, 1, &s, err,
					    sizeof(err)) < 0)
			break;
		while ((rc = grpc_stream_next(s, 5000, &msg, &len, &status, err, sizeof(err))) == 1) {
			if (len != BIG_LEN || m >= BIG_COUNT)
				good = false;
			for (size_t k = 0; good && k < len; k++)
				good = msg[k] == big_byte(w->seed, m, k);
			free(msg);
			m++;
		}
		if (rc == 2 && status == GRPC_STATUS_OK && good && m == BIG_COUNT)
			w->ok++;
		grpc_stream_cancel(s);
	}
	grpc_client_close(c);
	return NULL;
}

/* Every connection's HTTP/2 session shares one outbound frame buffer (grpc_server.c): responses
 * of many frames on many connections at once must still arrive intact. */
static void test_shared_frame_buffer(void **state)
{
	enum { N = 8 };
	struct big_worker ws[N];

	memset(ws, 0, sizeof(ws));
	for (int i = 0; i < N; i++) {
		ws[i].seed = (uint8_t)(i * 37 + 1);
		assert_int_equal(pthread_create(&ws[i].t, NULL, big_worker_main, &ws[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(ws[i].t, NULL);
		assert_int_equal(ws[i].ok, 5);
	}
}

static void test_connect_errors(void **state)
{
	struct grpc_client *c = NULL;
	char err[256] = "", path[200];

	snprintf(path, sizeof(path), "%s/missing.sock", F->dir);
	assert_int_equal(grpc_client_connect_unix(path, 500, &c, err, sizeof(err)), -1);
	assert_null(c);
	assert_non_null(strstr(err, "missing.sock"));
	grpc_client_close(NULL);
	grpc_stream_cancel(NULL);
}

/* ---- TLS ---- */

/* The DER of the one certificate in pem_name (common/der_pem: the daemons' wolfSSL has no
 * OpenSSL-compatibility X509 calls). */
static size_t read_der(const char *pem_name, uint8_t *out, size_t cap)
{
	uint8_t *pem = NULL, *der = NULL;
	size_t pem_len = 0, sz = 0;

	assert_int_equal(file_read_all(path_in(pem_name), 1 << 16, &pem, &pem_len), 0);
	assert_int_equal(pem_decode_concat((const char *)pem, pem_len, "CERTIFICATE", &der, &sz), 0);
	free(pem);
	assert_true(sz > 0 && sz <= cap);
	memcpy(out, der, sz);
	free(der);
	return sz;
}

static void test_tls_mutual(void **state)
{
	WOLFSSL_CTX *ctx = client_ctx("ca.pem", "cli.pem", "cli.key");
	struct grpc_client *c = NULL;
	uint8_t want[4096], *resp;
	size_t wlen, len, plen = 0;
	const uint8_t *peer;
	char err[256] = "";

	assert_int_equal(grpc_client_connect_tcp("127.0.0.1", F->tls_port, ctx, "localhost", 3000, &c,
						 err, sizeof(err)),
			 0);
	wolfSSL_CTX_free(ctx); /* the client holds its own reference */
	peer = grpc_client_peer_cert(c, &plen);
	assert_non_null(peer);
	wlen = read_der("srv.pem", want, sizeof(want));
	assert_int_equal(plen, wlen);
	assert_memory_equal(peer, want, wlen);
	/* The server sees our leaf. */
	assert_int_equal(unary(c, "/test.Test/Peer", "", 0, 3000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	wlen = read_der("cli.pem", want, sizeof(want));
	assert_int_equal(len, wlen);
	assert_memory_equal(resp, want, wlen);
	free(resp);
	/* Streaming works over TLS too. */
	struct grpc_stream *s;
	uint8_t n = 10, *msg;
	int rc, got = 0, status;
	assert_int_equal(grpc_client_stream_open(c, "/test.Test/Stream", NULL, 0, &n, 1, &s, err,
						 sizeof(err)),
			 0);
	while ((rc = grpc_stream_next(s, 2000, &msg, &len, &status, err, sizeof(err))) == 1) {
		free(msg);
		got++;
	}
	assert_int_equal(rc, 2);
	assert_int_equal(got, 10);
	grpc_stream_cancel(s);
	/* Once the owner dropped the connection's copy of our certificate, it is gone. */
	assert_int_equal(unary(c, "/test.Test/DropPeer", "", 0, 3000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	free(resp);
	assert_int_equal(unary(c, "/test.Test/Peer", "", 0, 3000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	assert_int_equal(len, 0);
	free(resp);
	grpc_client_close(c);
}

static void h2_mem_of(struct grpc_client *c, long *bytes, long *blocks)
{
	uint8_t *resp;
	size_t len;
	char err[256], out[64];

	assert_int_equal(unary(c, "/test.Test/Mem", "", 0, 3000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	snprintf(out, sizeof(out), "%.*s", (int)len, resp);
	free(resp);
	assert_int_equal(sscanf(out, "%ld %ld", bytes, blocks), 2);
}

static struct grpc_client *connect_tls(WOLFSSL_CTX *ctx)
{
	struct grpc_client *c = NULL;
	char err[256] = "";

	if (grpc_client_connect_tcp("127.0.0.1", F->tls_port, ctx, "localhost", 3000, &c, err,
				    sizeof(err)) < 0)
		fail_msg("connect: %s", err);
	return c;
}

/* What a connection holding one long-lived stream costs in nghttp2 (an agent's entry stream
 * on the node API), and that a connection's HTTP/2 memory does not grow with the requests it
 * serves, whatever their headers. Figures are printed; the bounds are loose. */
static void test_conn_memory(void **state)
{
	enum { N = 16, REQUESTS = 40 };
	WOLFSSL_CTX *ctx = client_ctx("ca.pem", "cli.pem", "cli.key");
	struct grpc_client *probe = connect_tls(ctx), *cs[N];
	struct grpc_stream *ss[N];
	long b0, k0, b1, k1, b2, k2;
	char err[256];

	h2_mem_of(probe, &b0, &k0);
	for (int i = 0; i < N; i++) {
		uint8_t *msg;
		size_t len;
		int status;

		cs[i] = connect_tls(ctx);
		assert_int_equal(grpc_client_stream_open(cs[i], "/test.Test/Hold", NULL, 0, NULL, 0,
							 &ss[i], err, sizeof(err)),
				 0);
		assert_int_equal(grpc_stream_next(ss[i], 3000, &msg, &len, &status, err, sizeof(err)),
				 1);
		free(msg);
	}
	h2_mem_of(probe, &b1, &k1);
	printf("# conn_memory: nghttp2 per connection holding one stream: %.0f B in %.1f blocks\n",
	       (double)(b1 - b0) / N, (double)(k1 - k0) / N);
	/* Requests with headers of their own on one connection: its sessions keep no more. */
	for (int r = 0; r < REQUESTS; r++) {
		struct grpc_header h = { "x-request", NULL };
		char v[64];
		uint8_t *resp;
		size_t len;
		int status;

		snprintf(v, sizeof(v), "request-%d-with-a-value-of-some-length", r);
		h.value = v;
		assert_int_equal(grpc_client_unary(cs[0], "/test.Test/Echo", &h, 1, (uint8_t *)"x", 1,
						   3000, &resp, &len, &status, err, sizeof(err)),
				 0);
		assert_int_equal(status, GRPC_STATUS_OK);
		free(resp);
	}
	h2_mem_of(probe, &b2, &k2);
	printf("# conn_memory: after %d requests with distinct headers on one connection: %+ld B "
	       "in %+ld blocks\n", REQUESTS, b2 - b1, k2 - k1);
	assert_true(b1 - b0 < N * 16384L);
	/* No peer's header is indexed (zero_peer_header_table), no closed stream kept. */
	assert_true(b2 - b1 < 1024);
	for (int i = 0; i < N; i++) {
		grpc_stream_cancel(ss[i]);
		grpc_client_close(cs[i]);
	}
	grpc_client_close(probe);
	wolfSSL_CTX_free(ctx);
}

static void test_tls_no_client_cert(void **state)
{
	WOLFSSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
	struct grpc_client *c = NULL;
	uint8_t *resp;
	size_t len;
	char err[256] = "";

	assert_int_equal(grpc_client_connect_tcp("127.0.0.1", F->tls_port, ctx, NULL, 3000, &c, err,
						 sizeof(err)),
			 0);
	assert_int_equal(unary(c, "/test.Test/Peer", "", 0, 3000, &resp, &len, err, sizeof(err)),
			 GRPC_STATUS_OK);
	assert_int_equal(len, 0);
	free(resp);
	grpc_client_close(c);
	wolfSSL_CTX_free(ctx);
}

static void test_tls_untrusted_server(void **state)
{
	WOLFSSL_CTX *ctx = client_ctx("other.pem", "cli.pem", "cli.key");
	struct grpc_client *c = NULL;
	char err[256] = "";

	assert_int_equal(grpc_client_connect_tcp("127.0.0.1", F->tls_port, ctx, NULL, 3000, &c, err,
						 sizeof(err)),
			 -1);
	assert_null(c);
	assert_non_null(strstr(err, "TLS handshake"));
	printf("untrusted server: %s\n", err);
	wolfSSL_CTX_free(ctx);
}

static void test_tls_untrusted_client(void **state)
{
	WOLFSSL_CTX *ctx = client_ctx("ca.pem", "rogue.pem", "rogue.key");
	struct grpc_client *c = NULL;
	uint8_t *resp = NULL;
	size_t len;
	int status = -1, rc;
	char err[256] = "";

	/* In TLS 1.3 the rejection shows on the first read after the handshake. */
	rc = grpc_client_connect_tcp("127.0.0.1", F->tls_port, ctx, NULL, 3000, &c, err, sizeof(err));
	if (rc == 0) {
		rc = grpc_client_unary(c, "/test.Test/Peer", NULL, 0, (uint8_t *)"", 0, 3000, &resp, &len,
				       &status, err, sizeof(err));
		assert_int_equal(rc, -1);
		grpc_client_close(c);
	}
	assert_null(resp);
	printf("untrusted client: %s\n", err);
	wolfSSL_CTX_free(ctx);
}

static void count_done(void *arg)
{
	atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_tls_rotate_ctx(void **state)
{
	/* set_tls must be called on the loop thread; a call through the loop would need more
	 * plumbing, so this checks the reference counting on a private server instead. */
	uv_loop_t loop;
	struct grpc_server *s = NULL;
	struct grpc_server_config cfg = { .methods = methods, .n_methods = 1 };
	WOLFSSL_CTX *a = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	WOLFSSL_CTX *b = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	char err[256];
	atomic_int done = 0;

	uv_loop_init(&loop);
	assert_int_equal(grpc_server_listen_tcp(&loop, "127.0.0.1", 0, a, &cfg, &s, err, sizeof(err)), 0);
	wolfSSL_CTX_free(a);
	grpc_server_set_tls(s, b);
	wolfSSL_CTX_free(b);
	grpc_server_shutdown(s, 0, count_done, &done);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(atomic_load(&done), 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

struct private_srv {
	uv_loop_t loop;
	uv_async_t stop;
	struct grpc_server *srv;
	atomic_int done;
};

static void private_stop(uv_async_t *a)
{
	struct private_srv *p = a->data;

	grpc_server_shutdown(p->srv, 100, count_done, &p->done);
	uv_close((uv_handle_t *)a, NULL);
}

static void *private_thread(void *arg)
{
	struct private_srv *p = arg;

	uv_run(&p->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* The agent creates its socket itself (umask, mode) and hands the fd over. */
static void test_listen_fd(void **state)
{
	struct private_srv p;
	struct grpc_server_config cfg = { .methods = methods, .n_methods = 1 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct grpc_client *c = NULL;
	struct grpc_server *dup = NULL;
	pthread_t t;
	uint8_t *resp;
	size_t len;
	int fd, status;
	char err[256], dir[] = "/tmp/lanyard-grpcfd-XXXXXX";

	memset(&p, 0, sizeof(p));
	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s.sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	uv_loop_init(&p.loop);
	assert_int_equal(grpc_server_listen_fd(&p.loop, fd, NULL, &cfg, &p.srv, err, sizeof(err)), 0);
	assert_int_equal(grpc_server_port(p.srv), -1);
	/* Binding the same path again fails with a message naming it. */
	assert_int_equal(grpc_server_listen_unix(&p.loop, sun.sun_path, &cfg, &dup, err, sizeof(err)), -1);
	assert_null(dup);
	assert_non_null(strstr(err, "s.sock"));
	uv_async_init(&p.loop, &p.stop, private_stop);
	p.stop.data = &p;
	assert_int_equal(pthread_create(&t, NULL, private_thread, &p), 0);

	assert_int_equal(grpc_client_connect_unix(sun.sun_path, 2000, &c, err, sizeof(err)), 0);
	assert_int_equal(grpc_client_unary(c, "/test.Test/Echo", NULL, 0, (uint8_t *)"fd", 2, 2000, &resp,
					   &len, &status, err, sizeof(err)),
			 0);
	assert_int_equal(status, GRPC_STATUS_OK);
	assert_memory_equal(resp, "fd", 2);
	free(resp);

	/* Shutdown with a client still connected: GOAWAY, then the client sees the end. */
	uv_async_send(&p.stop);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&p.done), 1);
	assert_int_equal(uv_loop_close(&p.loop), 0);
	assert_int_equal(grpc_client_unary(c, "/test.Test/Echo", NULL, 0, (uint8_t *)"fd", 2, 2000, &resp,
					   &len, &status, err, sizeof(err)),
			 -1);
	grpc_client_close(c);
	unlink(sun.sun_path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest wire[] = {
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_percent),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_tls_rotate_ctx),
		cmocka_unit_test(test_listen_fd),
	};
	const struct CMUnitTest net[] = {
		cmocka_unit_test(test_unary_ok),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_async),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_drip),
		cmocka_unit_test(test_unimplemented),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_wake_fd),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_server_settings),
		cmocka_unit_test(test_zero_peer_header_table),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_many_connections),
		cmocka_unit_test(test_shared_frame_buffer),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_tls_mutual),
		cmocka_unit_test(test_tls_no_client_cert),
		cmocka_unit_test(test_conn_memory),
		cmocka_unit_test(test_tls_untrusted_server),
		cmocka_unit_test(test_tls_untrusted_client),
	};
	int rc;

	signal(SIGPIPE, SIG_IGN);
	wolfSSL_Init();
	rc = cmocka_run_group_tests_name("grpc_wire", wire, NULL, NULL);
	rc += cmocka_run_group_tests_name("grpc_net", net, group_setup, group_teardown);
	wolfSSL_Cleanup();
	return rc;
}
