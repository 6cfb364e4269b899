/* bench_tls.c: the CPU cost of one mutual-TLS handshake through liblanyard's wolfSSL glue.
 *
 *   bench_tls handshake --socket AGENT_SOCK [--count N] [--warmup N] [--tls13|--tls12]
 *
 * Takes its X509-SVID from the Workload API at AGENT_SOCK (the caller's uid needs an entry),
 * then runs N complete handshakes between a liblanyard server and a liblanyard client over a
 * socketpair, both in this one thread, so the process CPU time divided by N is the work of
 * both sides of one handshake: ECDHE, both certificate signatures, both chain verifications
 * against the bundle, the SPIFFE ID checks and the authorizers. Every handshake must end with
 * each side seeing the other's SPIFFE ID, or the program fails: a figure from refused
 * handshakes would be meaningless. Prints "BENCH mtls_handshake_us <value> us" (the median
 * of 5 rounds).
 *
 *   bench_tls resume --socket AGENT_SOCK [--count N] [--warmup N]
 *
 * The same with session resumption on both configurations (lanyard_tls_set_resumption, the
 * client naming its peer): after one full handshake every handshake resumes (TLS 1.2 session
 * IDs: the library's server resumes no TLS 1.3 tickets), including the library's re-check of
 * the peer's chain against the bundle and the authorizer on both sides; a handshake that does
 * not resume fails the run. Prints "BENCH mtls_resume_us <value> us". */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "lanyard.h"

#define ROUNDS 5
#define STEP_LIMIT 1000 /* handshake steps before a stuck handshake is declared broken */

struct opts {
	const char *socket;
	int count;
	int warmup;
	int version; /* 0: whatever both sides agree (TLS 1.3 here); 12: TLS 1.2 forced */
	int resume;  /* the resume command */
};

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_tls handshake|resume --socket AGENT_SOCK [--count N] "
			"[--warmup N] [--tls12]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	if (argc < 2 || (strcmp(argv[1], "handshake") != 0 && strcmp(argv[1], "resume") != 0))
		usage();
	*o = (struct opts){.count = 500, .warmup = 20, .resume = !strcmp(argv[1], "resume")};
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			o->socket = argv[++i];
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			o->count = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
			o->warmup = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--tls12"))
			o->version = 12;
		else
			usage();
	}
	if (!o->socket || o->count < 1 || o->warmup < 0)
		usage();
	if (o->resume)
		o->version = 12;
}

/* Steps one side; 1 when done, 0 when it wants I/O, dies on an error. */
static int step(WOLFSSL *ssl, int server, lanyard_tls *t)
{
	int rc = server ? wolfSSL_accept(ssl) : wolfSSL_connect(ssl);
	int e;
	char why[512];

	if (rc == WOLFSSL_SUCCESS)
		return 1;
	e = wolfSSL_get_error(ssl, rc);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	lanyard_tls_last_error(t, why, sizeof(why));
	bench_die("%s handshake failed: wolfSSL error %d (%s)", server ? "server" : "client", e,
		  why[0] ? why : "no refusal recorded");
}

static void check_peer(WOLFSSL *ssl, const char *want, const char *side)
{
	char id[2048];

	if (lanyard_tls_peer_id(ssl, id, sizeof(id)) != LANYARD_OK || strcmp(id, want) != 0)
		bench_die("%s saw peer \"%s\", expected %s", side, id, want);
}

/* wolfSSL_SetVersion(WOLFSSL_TLSV1_2) on a client of a v23 ctx fails every handshake with
 * VERSION_ERROR (-326) in wolfSSL 5.5.4: cap the version instead. */
static void set_version(WOLFSSL *ssl, int version)
{
	if (version == 12 && wolfSSL_set_max_proto_version(ssl, TLS1_2_VERSION) != WOLFSSL_SUCCESS)
		bench_die("wolfSSL_set_max_proto_version(TLS 1.2) failed");
}

/* One complete handshake on a fresh socketpair; both peers' IDs are checked. With resume, the
 * client names its peer (offering the last session) and both sides must have resumed. */
static void handshake(lanyard_tls *srv, lanyard_tls *cli, const char *id, int version,
		      int resume)
{
	WOLFSSL *s = NULL, *c = NULL;
	char err[256];
	int sv[2], sdone = 0, cdone = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		bench_die("socketpair: %s", strerror(errno));
	if (lanyard_tls_ssl_new(srv, &s, err, sizeof(err)) != LANYARD_OK ||
	    (resume ? lanyard_tls_ssl_new_peer(cli, "bench", &c, err, sizeof(err))
		    : lanyard_tls_ssl_new(cli, &c, err, sizeof(err))) != LANYARD_OK)
		bench_die("lanyard_tls_ssl_new: %s", err);
	set_version(c, version);
	wolfSSL_set_fd(s, sv[0]);
	wolfSSL_set_fd(c, sv[1]);
	for (int i = 0; i < STEP_LIMIT && !(sdone && cdone); i++) {
		if (!cdone)
			cdone = step(c, 0, cli);
		if (!sdone)
			sdone = step(s, 1, srv);
	}
	if (!(sdone && cdone))
		bench_die("handshake did not finish in %d steps", STEP_LIMIT);
	check_peer(s, id, "server");
	check_peer(c, id, "client");
	if (resume == 2 && !(wolfSSL_session_reused(s) && wolfSSL_session_reused(c)))
		bench_die("a handshake did not resume");
	wolfSSL_free(s);
	wolfSSL_free(c);
	close(sv[0]);
	close(sv[1]);
}

int main(int argc, char **argv)
{
	lanyard_x509_source *src = NULL;
	lanyard_x509_svid *svid;
	lanyard_authorizer *authz;
	lanyard_tls *srv = NULL, *cli = NULL;
	double per[ROUNDS];
	struct opts o;
	char err[256], id[2048];

	bench_prog = "bench_tls";
	parse(argc, argv, &o);
#ifndef SESSION_CERTS
	/* The sp build has no SESSION_CERTS: liblanyard cannot re-check a resumed peer and refuses
	 * to resume (lib/tls.c recheck_peer), so there is nothing to measure. */
	if (o.resume) {
		printf("# mtls_resume_us: not measured: this wolfSSL keeps no peer chain (no "
		       "SESSION_CERTS), and liblanyard refuses resumption it cannot re-check\n");
		return 0;
	}
#endif
	if (lanyard_x509_source_new(o.socket, &src, err, sizeof(err)) != LANYARD_OK ||
	    lanyard_x509_source_wait_ready(src, 30000, err, sizeof(err)) != LANYARD_OK)
		bench_die("X.509 source on %s: %s", o.socket, err);
	svid = lanyard_x509_source_svid(src);
	if (!svid)
		bench_die("no X509-SVID from %s", o.socket);
	snprintf(id, sizeof(id), "%s", lanyard_x509_svid_spiffe_id(svid));
	lanyard_x509_svid_unref(svid);
	authz = lanyard_authorize_id(id);
	if (!authz || lanyard_tls_server_new(src, authz, &srv, err, sizeof(err)) != LANYARD_OK ||
	    lanyard_tls_client_new(src, authz, &cli, err, sizeof(err)) != LANYARD_OK)
		bench_die("liblanyard TLS setup: %s", err);
	lanyard_authorizer_free(authz);
	if (o.resume && (lanyard_tls_set_resumption(srv, 64, err, sizeof(err)) != LANYARD_OK ||
			 lanyard_tls_set_resumption(cli, 8, err, sizeof(err)) != LANYARD_OK))
		bench_die("lanyard_tls_set_resumption: %s", err);
	/* The first handshake is a full one; with resume, every later one must resume. */
	for (int i = 0; i < o.warmup + o.resume; i++)
		handshake(srv, cli, id, o.version, o.resume && i > 0 ? 2 : o.resume);
	for (int r = 0; r < ROUNDS; r++) {
		double t0 = cpu_s();

		for (int i = 0; i < o.count; i++)
			handshake(srv, cli, id, o.version, o.resume ? 2 : 0);
		per[r] = (cpu_s() - t0) / o.count * 1e6;
		printf("# round %d: %d %s handshakes (%s), %.1f us CPU each, both sides\n", r + 1,
		       o.count, o.resume ? "resumed" : "full", o.version == 12 ? "TLS 1.2" : "TLS 1.3",
		       per[r]);
	}
	printf("BENCH %s %.1f us\n", o.resume ? "mtls_resume_us" : "mtls_handshake_us",
	       median(per, ROUNDS));
	lanyard_tls_free(srv);
	lanyard_tls_free(cli);
	lanyard_x509_source_free(src);
	return 0;
}
