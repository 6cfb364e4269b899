/* echo_client: the mTLS echo client on liblanyard. It makes a NEW TLS connection for every
 * message, so that each one is made with the newest SVID and sees the server's newest one:
 * rotations are exercised continuously. The server must hold an allowed SPIFFE ID.
 *
 *   echo_client [--socket PATH] --connect HOST:PORT (--allow SPIFFE_ID ... | --allow-td TD)
 *               [--count N] [--duration SECONDS] [--interval MS]
 *
 * Stops after N messages (default 1) or, with --duration, when the time is up. One line on
 * stdout per message, then a summary:
 *   ok <i> server=<id> server_serial=<hex> serial=<our serial>
 *   FAIL <i>: <reason>
 *   summary: ok=<n> failed=<n> server_serials=<distinct> client_serials=<distinct>
 * Exit status 0 when every message was echoed, 1 otherwise. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <lanyard.h>

#define MAX_ALLOW 32
#define MAX_SERIALS 4096
#define IO_TIMEOUT_S 5

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_client [--socket PATH] --connect HOST:PORT "
			"(--allow SPIFFE_ID ... | --allow-td TRUST_DOMAIN) [--count N] "
			"[--duration SECONDS] [--interval MS]\n");
}

struct serial_set {
	char v[MAX_SERIALS][80];
	size_t n;
};

static void serial_add(struct serial_set *s, const char *serial)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], serial) == 0)
			return;
	if (s->n < MAX_SERIALS)
		snprintf(s->v[s->n++], sizeof(s->v[0]), "%s", serial);
}

static int split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *c = strrchr(s, ':');
	size_t hl;

	if (!c || !c[1] || strlen(c + 1) >= portlen)
		return -1;
	hl = (size_t)(c - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	snprintf(port, portlen, "%s", c + 1);
	return 0;
}

static int connect_to(const char *host, const char *port, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	struct addrinfo *res, *ai;
	int fd = -1, r;

	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* One message on a fresh connection. 0 on success; err says why otherwise. */
static int one_message(lanyard_tls *tls, const char *host, const char *port, long i,
		       char *server, size_t serverlen, char *server_serial, size_t seriallen,
		       char *mine, size_t minelen, char *err, size_t errlen)
{
	char msg[64], back[64];
	WOLFSSL *ssl = NULL;
	int fd = -1, len, n, got = 0, r, ret = -1;

	r = lanyard_tls_ssl_new(tls, &ssl, err, errlen);
	if (r < 0)
		goto out;
	fd = connect_to(host, port, err, errlen);
	if (fd < 0)
		goto out;
	wolfSSL_set_fd(ssl, fd);
	r = wolfSSL_connect(ssl);
	if (r != WOLFSSL_SUCCESS) {
		char why[512];

		lanyard_tls_last_error(tls, why, sizeof(why));
		snprintf(err, errlen, "handshake failed (wolfSSL error %d; last refusal: %.300s)",
			 wolfSSL_get_error(ssl, r), why[0] ? why : "none");
		goto out;
	}
	lanyard_tls_peer_id(ssl, server, serverlen);
	lanyard_tls_peer_serial(ssl, server_serial, seriallen);
	/* The serial of the certificate this session presented (owned by the session). */
	{
		WOLFSSL_X509 *x = wolfSSL_get_certificate(ssl);
		unsigned char sn[64];
		int snlen = sizeof(sn);

		mine[0] = '\0';
		if (x && wolfSSL_X509_get_serial_number(x, sn, &snlen) == WOLFSSL_SUCCESS) {
			size_t o = 0;

			for (int k = 0; k < snlen && o + 3 <= minelen; k++)
				o += (size_t)snprintf(mine + o, minelen - o, "%02x", sn[k]);
		}
	}
	len = snprintf(msg, sizeof(msg), "hello %ld\n", i);
	if (wolfSSL_write(ssl, msg, len) != len) {
		snprintf(err, errlen, "write failed (wolfSSL error %d): the server refused us?",
			 wolfSSL_get_error(ssl, 0));
		goto out;
	}
	/* In TLS 1.3 a server that refuses the client certificate says so only now. */
	while (got < len) {
		n = wolfSSL_read(ssl, back + got, (int)sizeof(back) - 1 - got);
		if (n <= 0) {
			snprintf(err, errlen, "read failed (wolfSSL error %d): refused by the server?",
				 wolfSSL_get_error(ssl, n));
			goto out;
		}
		got += n;
	}
	if (memcmp(back, msg, (size_t)len) != 0) {
		snprintf(err, errlen, "the echo differs");
		goto out;
	}
	wolfSSL_shutdown(ssl);
	ret = 0;
out:
	wolfSSL_free(ssl);
	if (fd >= 0)
		close(fd);
	return ret;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL, *target = NULL, *allow_td = NULL;
	const char *allow[MAX_ALLOW];
	size_t n_allow = 0;
	long count = -1, duration_s = -1, interval_ms = 0, ok = 0, failed = 0;
	lanyard_x509_source *src = NULL;
	lanyard_authorizer *authz = NULL;
	lanyard_tls *tls = NULL;
	struct serial_set *servers = NULL, *mine = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	char host[256], port[16], err[512];
	long long deadline = 0;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (strcmp(a, "--socket") == 0 && v)
			socket_path = v;
		else if (strcmp(a, "--connect") == 0 && v)
			target = v;
		else if (strcmp(a, "--allow") == 0 && v && n_allow < MAX_ALLOW)
			allow[n_allow++] = v;
		else if (strcmp(a, "--allow-td") == 0 && v)
			allow_td = v;
		else if (strcmp(a, "--count") == 0 && v)
			count = strtol(v, &end, 10);
		else if (strcmp(a, "--duration") == 0 && v)
			duration_s = strtol(v, &end, 10);
		else if (strcmp(a, "--interval") == 0 && v)
			interval_ms = strtol(v, &end, 10);
		else {
			usage();
			return 2;
		}
		if (end && (*end || end == v || strtol(v, NULL, 10) < 0)) {
			fprintf(stderr, "echo_client: %s %s: not a non-negative number\n", a, v);
			return 2;
		}
		i++;
	}
	if (!target || (!n_allow && !allow_td) || (n_allow && allow_td) ||
	    split_hostport(target, host, sizeof(host), port, sizeof(port)) < 0) {
		usage();
		return 2;
	}
	if (count < 0 && duration_s < 0)
		count = 1;
	for (size_t i = 0; i < n_allow; i++)
		if (lanyard_spiffeid_check(allow[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "echo_client: --allow %s\n", err);
			return 2;
		}
	authz = n_allow ? lanyard_authorize_one_of(allow, n_allow)
			: lanyard_authorize_member_of(allow_td);
	servers = calloc(1, sizeof(*servers));
	mine = calloc(1, sizeof(*mine));
	if (!authz || !servers || !mine) {
		fprintf(stderr, "echo_client: bad --allow-td or out of memory\n");
		goto out;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (lanyard_x509_source_new(socket_path, &src, err, sizeof(err)) < 0 ||
	    lanyard_x509_source_wait_ready(src, 30000, err, sizeof(err)) < 0) {
		fprintf(stderr, "echo_client: %s\n", err);
		goto out;
	}
	if (lanyard_tls_client_new(src, authz, &tls, err, sizeof(err)) < 0) {
		fprintf(stderr, "echo_client: %s\n", err);
		goto out;
	}
	if (duration_s >= 0)
		deadline = now_ms() + duration_s * 1000;
	for (long i = 0; !stopping; i++) {
		char server[2100] = "", sserial[80] = "", myserial[80] = "";

		if (count >= 0 && i >= count)
			break;
		if (duration_s >= 0 && now_ms() >= deadline)
			break;
		if (one_message(tls, host, port, i, server, sizeof(server), sserial, sizeof(sserial),
				myserial, sizeof(myserial), err, sizeof(err)) == 0) {
			ok++;
			serial_add(servers, sserial);
			serial_add(mine, myserial);
			printf("ok %ld server=%s server_serial=%s serial=%s\n", i, server, sserial,
			       myserial);
		} else {
			failed++;
			printf("FAIL %ld: %s\n", i, err);
		}
		fflush(stdout);
		if (interval_ms > 0) {
			struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};

			nanosleep(&ts, NULL);
		}
	}
	printf("summary: ok=%ld failed=%ld server_serials=%zu client_serials=%zu\n", ok, failed,
	       servers->n, mine->n);
	rc = failed == 0 && ok > 0 ? 0 : 1;
out:
	fflush(stdout);
	lanyard_tls_free(tls);
	lanyard_authorizer_free(authz);
	lanyard_x509_source_free(src);
	free(servers);
	free(mine);
	wolfSSL_Cleanup();
	return rc;
}
