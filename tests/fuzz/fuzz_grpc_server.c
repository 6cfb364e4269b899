/* fuzz_grpc_server: the gRPC server (common/grpc_server.h) as any local process meets it: the
 * agent serves the Workload API in cleartext HTTP/2 on a Unix socket that every workload may
 * connect to. The input is what one client sends on one connection.
 *
 * One server on a Unix socket in a temp directory lives for the whole process, on a libuv loop
 * this harness turns by hand (UV_RUN_NOWAIT), so each input runs to its end without threads or
 * sleeps: connect, write the input, half-close, and turn the loop, reading what the server
 * answers, until the server has closed the connection and freed it. A server that does not close
 * a half-closed connection within the bound is a failure (a hang).
 *
 * The first input byte is how the rest is written: 0 in one write, otherwise in writes of that
 * many bytes with a turn of the loop after each (so frames arrive split). The test methods:
 *   /fuzz.Test/Unary    echoes the request message and finishes OK
 *   /fuzz.Test/Stream   server-streaming: sends (first request byte % 4) messages, finishes OK
 *   /fuzz.Test/Later    answers on a later turn of the loop (a handler that does async work),
 *                       by which time the client may have cancelled or the connection closed
 *   /fuzz.Test/Bidi     bidirectional (xDS-like): echoes every client message as it arrives,
 *                       finishes OK on an empty one */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "fuzz.h"
#include "grpc_server.h"

#define MAX_TURNS 20000
#define MAX_PENDING 256

struct harness {
	uv_loop_t loop;
	struct grpc_server *srv;
	char dir[64];
	char sock[96];
	struct grpc_call *pending[MAX_PENDING]; /* Later calls, each holding a reference */
	size_t n_pending;
	unsigned calls_open; /* on_request seen, on_call_closed not yet */
};

static struct harness H;

static void on_unary(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	if (grpc_call_send(call, msg, len) == 0)
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	else
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "send failed");
}

static void on_stream(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	unsigned n = len ? msg[0] % 4 : 1;
	for (unsigned i = 0; i < n; i++) {
		uint8_t m[2] = { (uint8_t)i, 0xab };
		if (grpc_call_send(call, m, sizeof(m)) < 0)
			break;
	}
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_later(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	if (H.n_pending == MAX_PENDING) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many pending calls");
		return;
	}
	grpc_call_ref(call);
	H.pending[H.n_pending++] = call;
}

static void on_bidi(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	FUZZ_CHECK(!grpc_call_is_closed(call));
	if (len == 0 || grpc_call_send(call, msg, len) < 0)
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method methods[] = {
	{ .path = "/fuzz.Test/Unary", .on_request = on_unary },
	{ .path = "/fuzz.Test/Stream", .server_streaming = true, .on_request = on_stream },
	{ .path = "/fuzz.Test/Later", .on_request = on_later },
	{ .path = "/fuzz.Test/Bidi", .server_streaming = true, .client_streaming = true,
	  .on_request = on_bidi, .on_message = on_bidi },
};

static int on_connect(struct grpc_conn *conn, int fd)
{
	(void)conn;
	(void)fd;
	return 0;
}

static void on_call_closed(struct grpc_call *call)
{
	(void)call;
	FUZZ_CHECK(H.calls_open > 0);
	H.calls_open--;
}

/* Wraps the methods to count open calls (on_call_closed must balance on_request). */
static void counted(struct grpc_call *call, const uint8_t *msg, size_t len);

static const struct grpc_method counted_methods[] = {
	{ .path = "/fuzz.Test/Unary", .on_request = counted },
	{ .path = "/fuzz.Test/Stream", .server_streaming = true, .on_request = counted },
	{ .path = "/fuzz.Test/Later", .on_request = counted },
	{ .path = "/fuzz.Test/Bidi", .server_streaming = true, .client_streaming = true,
	  .on_request = counted, .on_message = on_bidi },
};

static void counted(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	const char *path = grpc_call_path(call);
	H.calls_open++;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (path && strcmp(path, methods[i].path) == 0) {
			methods[i].on_request(call, msg, len);
			return;
		}
	}
	FUZZ_CHECK(!"on_request for a path that is not a method");
}

static void finish_pending(void)
{
	size_t n = H.n_pending;
	H.n_pending = 0;
	for (size_t i = 0; i < n; i++) {
		struct grpc_call *c = H.pending[i];
		if (!grpc_call_is_closed(c)) {
			static const uint8_t reply[] = "later";
			if (grpc_call_send(c, reply, sizeof(reply)) == 0)
				grpc_call_finish(c, GRPC_STATUS_OK, NULL);
			else
				grpc_call_finish(c, GRPC_STATUS_UNAVAILABLE, "send failed");
		} else {
			FUZZ_CHECK(grpc_call_send(c, (const uint8_t *)"x", 1) < 0);
			FUZZ_CHECK(grpc_call_finish(c, GRPC_STATUS_OK, NULL) < 0);
		}
		grpc_call_unref(c);
	}
}

static void cleanup(void)
{
	if (H.sock[0])
		unlink(H.sock);
	if (H.dir[0])
		rmdir(H.dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[256];

	fuzz_quiet_logs();
	signal(SIGPIPE, SIG_IGN);
	snprintf(H.dir, sizeof(H.dir), "/tmp/lanyard-fuzz-XXXXXX");
	if (!mkdtemp(H.dir)) {
		perror("mkdtemp");
		abort();
	}
	snprintf(H.sock, sizeof(H.sock), "%s/grpc.sock", H.dir);
	atexit(cleanup);
	uv_loop_init(&H.loop);
	struct grpc_server_config cfg = {
		.methods = counted_methods,
		.n_methods = sizeof(counted_methods) / sizeof(counted_methods[0]),
		.on_connect = on_connect,
		.on_call_closed = on_call_closed,
		/* Small limits, so that inputs of a few kilobytes reach them. */
		.max_message_size = 4096,
		.max_streams_per_conn = 8,
		.max_output_per_conn = 64 * 1024,
		.handshake_timeout_ms = 60000,
	};
	if (grpc_server_listen_unix(&H.loop, H.sock, &cfg, &H.srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_grpc_server: listen: %s\n", err);
		abort();
	}
	return 0;
}

/* Reads whatever the server sent; true once it closed its side. */
static bool drain(int fd)
{
	uint8_t buf[16384];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0)
			return true;
		if (errno == EINTR)
			continue;
		/* ECONNRESET: the server closed with unread input; as good as closed. */
		return errno != EAGAIN && errno != EWOULDBLOCK;
	}
}

static void turn(void)
{
	uv_run(&H.loop, UV_RUN_NOWAIT);
	finish_pending();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!H.srv)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size < 1)
		return 0;
	size_t chunk = data[0] ? data[0] : size;
	data++;
	size--;

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0);
	int sndbuf = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", H.sock);
	FUZZ_CHECK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);

	bool server_closed = false;
	size_t off = 0;
	unsigned turns = 0;
	while (off < size && !server_closed) {
		size_t n = size - off < chunk ? size - off : chunk;
		ssize_t w = send(fd, data + off, n, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EAGAIN && errno != EINTR)
			break; /* the server closed the connection */
		turn();
		server_closed = drain(fd);
		FUZZ_CHECK(++turns < MAX_TURNS);
	}
	shutdown(fd, SHUT_WR);
	/* The server must notice the end of the input and let go of the connection. */
	while (!server_closed || grpc_server_conn_count(H.srv) > 0 || H.n_pending) {
		turn();
		if (!server_closed)
			server_closed = drain(fd);
		if (++turns >= MAX_TURNS) {
			fprintf(stderr, "fuzz_grpc_server: the connection is still open after %u turns "
					"of the loop (server closed its side: %s, connections: %u)\n",
				turns, server_closed ? "yes" : "no", grpc_server_conn_count(H.srv));
			abort();
		}
	}
	/* Close callbacks of the connection's handles run on the next turns. */
	for (int i = 0; i < 4; i++)
		turn();
	FUZZ_CHECK(H.calls_open == 0);
	close(fd);
	return 0;
}
