/* echo_server: an mTLS echo server on liblanyard. It presents its current X509-SVID, accepts
 * only clients whose SPIFFE ID is allowed, and echoes one line per connection. Every new
 * connection gets the newest SVID: rotations need no restart and disturb no open connection.
 *
 *   echo_server [--socket PATH] --listen HOST:PORT (--allow SPIFFE_ID ... | --allow-td TD)
 *
 * One line on stdout per connection:
 *   accepted peer=<id> peer_serial=<hex> serial=<our serial>
 *   refused: <reason>
 * SIGTERM or SIGINT stops it. */
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
#include <unistd.h>

#include <lanyard.h>

#define MAX_ALLOW 32
#define IO_TIMEOUT_S 5

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_server [--socket PATH] --listen HOST:PORT "
			"(--allow SPIFFE_ID ... | --allow-td TRUST_DOMAIN)\n");
}

/* Splits "host:port" (the last colon; "[::1]:8443" too). */
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

static int listen_on(const char *hostport)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE};
	struct addrinfo *res, *ai;
	char host[256], port[16];
	int fd = -1, one = 1, r;

	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0) {
		fprintf(stderr, "echo_server: --listen %s: expected HOST:PORT\n", hostport);
		return -1;
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		fprintf(stderr, "echo_server: %s: %s\n", hostport, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "echo_server: cannot listen on %s: %s\n", hostport, strerror(errno));
	return fd;
}

/* One connection: handshake (the client is verified and authorized inside it), one line
 * echoed back. */
static void serve(lanyard_tls *tls, lanyard_x509_source *src, int fd)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	char peer[2100] = "", peer_serial[80] = "", line[1024], err[512];
	lanyard_x509_svid *me = NULL;
	WOLFSSL *ssl = NULL;
	int n, r;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = lanyard_tls_ssl_new(tls, &ssl, err, sizeof(err));
	if (r < 0) {
		printf("refused: no credentials: %s\n", err);
		goto out;
	}
	wolfSSL_set_fd(ssl, fd);
	r = wolfSSL_accept(ssl);
	if (r != WOLFSSL_SUCCESS) {
		char why[512];

		lanyard_tls_last_error(tls, why, sizeof(why));
		printf("refused: handshake failed (wolfSSL error %d): %s\n",
		       wolfSSL_get_error(ssl, r), why[0] ? why : "-");
		goto out;
	}
	lanyard_tls_peer_id(ssl, peer, sizeof(peer));
	lanyard_tls_peer_serial(ssl, peer_serial, sizeof(peer_serial));
	n = wolfSSL_read(ssl, line, sizeof(line) - 1);
	if (n <= 0) {
		printf("error: read from %s failed (wolfSSL error %d)\n", peer,
		       wolfSSL_get_error(ssl, n));
		goto out;
	}
	if (wolfSSL_write(ssl, line, n) != n) {
		printf("error: write to %s failed\n", peer);
		goto out;
	}
	/* For the log only: the SVID this session was made with may already be older. */
	me = lanyard_x509_source_svid(src);
	printf("accepted peer=%s peer_serial=%s serial=%s\n", peer, peer_serial,
	       me ? lanyard_x509_svid_serial(me) : "?");
	wolfSSL_shutdown(ssl);
out:
	fflush(stdout);
	lanyard_x509_svid_unref(me);
	wolfSSL_free(ssl);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL, *listen_addr = NULL, *allow_td = NULL;
	const char *allow[MAX_ALLOW];
	size_t n_allow = 0;
	lanyard_x509_source *src = NULL;
	lanyard_authorizer *authz = NULL;
	lanyard_tls *tls = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	char err[512];
	int lfd = -1, rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--socket") == 0 && v)
			socket_path = v;
		else if (strcmp(a, "--listen") == 0 && v)
			listen_addr = v;
		else if (strcmp(a, "--allow") == 0 && v && n_allow < MAX_ALLOW)
			allow[n_allow++] = v;
		else if (strcmp(a, "--allow-td") == 0 && v)
			allow_td = v;
		else {
			usage();
			return 2;
		}
		i++;
	}
	if (!listen_addr || (!n_allow && !allow_td) || (n_allow && allow_td)) {
		usage();
		return 2;
	}
	for (size_t i = 0; i < n_allow; i++)
		if (lanyard_spiffeid_check(allow[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "echo_server: --allow %s\n", err);
			return 2;
		}
	authz = n_allow ? lanyard_authorize_one_of(allow, n_allow)
			: lanyard_authorize_member_of(allow_td);
	if (!authz) {
		fprintf(stderr, "echo_server: --allow-td %s: not a trust domain\n", allow_td);
		return 2;
	}
	/* No SA_RESTART: a signal interrupts accept(). */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (lanyard_x509_source_new(socket_path, &src, err, sizeof(err)) < 0 ||
	    lanyard_x509_source_wait_ready(src, 30000, err, sizeof(err)) < 0) {
		fprintf(stderr, "echo_server: %s\n", err);
		goto out;
	}
	if (lanyard_tls_server_new(src, authz, &tls, err, sizeof(err)) < 0) {
		fprintf(stderr, "echo_server: %s\n", err);
		goto out;
	}
	lfd = listen_on(listen_addr);
	if (lfd < 0)
		goto out;
	{
		lanyard_x509_svid *me = lanyard_x509_source_svid(src);

		printf("listening on %s as %s serial=%s\n", listen_addr,
		       lanyard_x509_svid_spiffe_id(me), lanyard_x509_svid_serial(me));
		fflush(stdout);
		lanyard_x509_svid_unref(me);
	}
	while (!stopping) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "echo_server: accept: %s\n", strerror(errno));
			goto out;
		}
		serve(tls, src, fd);
	}
	rc = 0;
out:
	if (lfd >= 0)
		close(lfd);
	lanyard_tls_free(tls);
	lanyard_authorizer_free(authz);
	lanyard_x509_source_free(src);
	wolfSSL_Cleanup();
	return rc;
}
