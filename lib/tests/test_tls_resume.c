/* Tests of liblanyard's TLS session resumption (lanyard_tls_set_resumption,
 * lanyard_tls_ssl_new_peer) through the public API, with real wolfSSL over socketpairs between
 * sources fed by in-process fake agents: a resumption happens and costs less; a resumed peer
 * is checked again against the current authorizer, bundle and clock; an update of the local
 * source (SVID or bundle) ends resumption; a client replaying another identity's session ID
 * without its secret does not get that identity, and the legitimate client keeps resuming;
 * threads share configurations. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lanyard.h>

#include "keys.h"
#include "tls_harness.h"

#define SRV_ID "spiffe://example.org/server"
#define CLI_ID "spiffe://example.org/client"

/* Authorizer callbacks whose answer the test changes: the ID in *ud is allowed. */
static const char *srv_allows = CLI_ID, *cli_allows = SRV_ID;

static int allow_current(void *ud, const char *peer_id)
{
	return strcmp(peer_id, *(const char **)ud) == 0 ? 0 : 1;
}

struct pair {
	struct test_ca ca;
	struct peer srv, cli;
	lanyard_tls *stls, *ctls;
	lanyard_authorizer *sa, *ca_authz;
};

static void pair_start(struct pair *p, const char *tag, int64_t srv_ttl)
{
	char err[256], name[64];

	srv_allows = CLI_ID;
	cli_allows = SRV_ID;
	assert_int_equal(test_ca_new("example.org", &p->ca), 0);
	snprintf(name, sizeof(name), "%s-srv", tag);
	peer_start(&p->srv, name, &p->ca, SRV_ID, NULL, NULL);
	if (srv_ttl) {
		test_svid_free(&p->srv.svid);
		assert_int_equal(test_svid_new(&p->ca, SRV_ID, srv_ttl, &p->srv.svid), 0);
		serve_svid(p->srv.fa, &p->srv.svid);
		assert_true(wait_generation(p->srv.src, 2, 5000));
	}
	snprintf(name, sizeof(name), "%s-cli", tag);
	peer_start(&p->cli, name, &p->ca, CLI_ID, NULL, NULL);
	p->sa = lanyard_authorize_func(allow_current, &srv_allows);
	p->ca_authz = lanyard_authorize_func(allow_current, &cli_allows);
	assert_int_equal(lanyard_tls_server_new(p->srv.src, p->sa, &p->stls, err, sizeof(err)), 0);
	assert_int_equal(lanyard_tls_client_new(p->cli.src, p->ca_authz, &p->ctls, err, sizeof(err)),
			 0);
	assert_int_equal(lanyard_tls_set_resumption(p->stls, 64, err, sizeof(err)), 0);
	assert_int_equal(lanyard_tls_set_resumption(p->ctls, 8, err, sizeof(err)), 0);
	client_tls12 = 1;
	client_peer = "server:443";
}

static void pair_stop(struct pair *p)
{
	client_tls12 = 0;
	client_peer = NULL;
	lanyard_tls_free(p->stls);
	lanyard_tls_free(p->ctls);
	lanyard_authorizer_free(p->sa);
	lanyard_authorizer_free(p->ca_authz);
	peer_stop(&p->srv);
	peer_stop(&p->cli);
	test_ca_free(&p->ca);
}

/* A connection; *reused tells whether both sides resumed (they must agree). */
static bool connect_once(struct pair *p, bool *reused)
{
	struct conn c;
	bool ok;

	conn_open(&c, p->stls, p->ctls);
	ok = c.srv_ok && c.cli_ok && conn_echo(&c, "ping");
	if (ok) {
		if (!raw_server_ctx)
			assert_int_equal(wolfSSL_session_reused(c.cli),
					 wolfSSL_session_reused(c.srv));
		*reused = wolfSSL_session_reused(c.cli) != 0;
	}
	conn_close(&c);
	return ok;
}

static double cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void test_resume_happens(void **state)
{
	struct pair p;
	struct conn c;
	char id[256], err[256];
	bool reused;
	double t0, full, resumed;

	pair_start(&p, "happens", 0);
	/* TLS 1.3 against the library's server: no tickets, so full handshakes (that work). */
	client_tls12 = 0;
	for (int i = 0; i < 2; i++) {
		assert_true(connect_once(&p, &reused));
		assert_false(reused);
	}
	client_tls12 = 1;
	/* The first connection is a full handshake; the next ones resume, and both sides still
	 * know who the peer is. */
	t0 = cpu_us();
	assert_true(connect_once(&p, &reused));
	full = cpu_us() - t0;
	assert_false(reused);
	t0 = cpu_us();
	conn_open(&c, p.stls, p.ctls);
	resumed = cpu_us() - t0;
	assert_true(c.srv_ok && c.cli_ok && conn_echo(&c, "again"));
	assert_true(wolfSSL_session_reused(c.cli));
	assert_true(wolfSSL_session_reused(c.srv));
	assert_int_equal(lanyard_tls_peer_id(c.cli, id, sizeof(id)), 0);
	assert_string_equal(id, SRV_ID);
	assert_int_equal(lanyard_tls_peer_id(c.srv, id, sizeof(id)), 0);
	assert_string_equal(id, CLI_ID);
	conn_close(&c);
	printf("# TLS 1.2 mutual handshake, both sides: full %.0f us CPU, resumed %.0f us CPU\n",
	       full, resumed);

	/* Without a peer name the client offers nothing. */
	client_peer = NULL;
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	client_peer = "server:443";

	/* A client whose resumption is off offers nothing either; and a server configuration
	 * refuses a peer name and late settings. */
	{
		lanyard_tls *t;
		WOLFSSL *ssl;

		assert_int_equal(lanyard_tls_client_new(p.cli.src, p.ca_authz, &t, err, sizeof(err)),
				 0);
		conn_open(&c, p.stls, t);
		assert_true(c.srv_ok && c.cli_ok);
		assert_false(wolfSSL_session_reused(c.cli));
		conn_close(&c);
		assert_int_equal(lanyard_tls_set_resumption(t, 4, err, sizeof(err)), LANYARD_EINVAL);
		assert_int_equal(lanyard_tls_ssl_new_peer(p.stls, "x", &ssl, err, sizeof(err)),
				 LANYARD_EINVAL);
		assert_int_equal(lanyard_tls_ssl_new_peer(t, NULL, &ssl, err, sizeof(err)),
				 LANYARD_EINVAL);
		lanyard_tls_free(t);
	}
	pair_stop(&p);
}

/* The client stops allowing the server: its resumed handshake fails and it forgets the
 * session. Allowed again, it makes a full handshake, then resumes again. */
static void client_stops_allowing_server(struct pair *p)
{
	struct conn c;
	char err[256];
	bool reused;

	cli_allows = "spiffe://example.org/someone-else";
	conn_open(&c, p->stls, p->ctls);
	assert_false(c.cli_ok);
	conn_close(&c);
	lanyard_tls_last_error(p->ctls, err, sizeof(err));
	assert_non_null(strstr(err, SRV_ID " is not authorized"));
	cli_allows = SRV_ID;
	assert_true(connect_once(p, &reused));
	assert_false(reused);
	assert_true(connect_once(p, &reused));
	assert_true(reused);
}

static void test_resume_rechecks_authorizer(void **state)
{
	struct pair p;
	struct conn c;
	char err[256];
	bool reused;

	pair_start(&p, "authz", 0);
	assert_true(connect_once(&p, &reused));
	assert_true(connect_once(&p, &reused));
	assert_true(reused);

	client_stops_allowing_server(&p);

	/* The server no longer allows the client: its resumed handshake fails, and the server
	 * forgets the session (the client still offers it: a full handshake follows). */
	srv_allows = "spiffe://example.org/someone-else";
	conn_open(&c, p.stls, p.ctls);
	assert_false(c.srv_ok);
	assert_false(conn_echo(&c, "no"));
	conn_close(&c);
	lanyard_tls_last_error(p.stls, err, sizeof(err));
	assert_non_null(strstr(err, CLI_ID " is not authorized"));
	srv_allows = CLI_ID;
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	assert_true(connect_once(&p, &reused));
	assert_true(reused);
	pair_stop(&p);
}

/* A session kept by hand (wolfSSL_get1_session) and offered again with wolfSSL_set_session on
 * an ssl of cfg: the library's check still runs when it resumes. */
static bool resume_by_hand(struct pair *p, lanyard_tls *cfg, WOLFSSL_SESSION *s, bool *cli_ok)
{
	struct conn c;
	bool reused;

	client_peer = NULL;
	client_session = s;
	conn_open(&c, p->stls, cfg);
	*cli_ok = c.cli_ok;
	reused = c.cli && wolfSSL_session_reused(c.cli);
	conn_close(&c);
	client_session = NULL;
	client_peer = "server:443";
	return reused;
}

static void test_resume_other_id_and_expiry(void **state)
{
	struct pair p;
	struct conn c;
	WOLFSSL_SESSION *s;
	lanyard_authorizer *other = lanyard_authorize_id("spiffe://example.org/other");
	lanyard_tls *t;
	char err[256];
	bool reused, cli_ok;

	/* The server's SVID lives 3 s. */
	pair_start(&p, "expiry", 3);
	conn_open(&c, p.stls, p.ctls);
	assert_true(c.srv_ok && c.cli_ok && conn_echo(&c, "x"));
	s = wolfSSL_get1_session(c.cli);
	assert_non_null(s);
	conn_close(&c);

	/* A configuration that allows another ID refuses the server when it resumes its
	 * session (made by the same source, so the ctx is the same). */
	assert_int_equal(lanyard_tls_client_new(p.cli.src, other, &t, err, sizeof(err)), 0);
	assert_false(resume_by_hand(&p, t, s, &cli_ok) && cli_ok);
	assert_false(cli_ok);
	lanyard_tls_last_error(t, err, sizeof(err));
	assert_non_null(strstr(err, SRV_ID " is not authorized"));
	lanyard_tls_free(t);

	/* Fine before expiry... */
	assert_true(resume_by_hand(&p, p.ctls, s, &cli_ok));
	assert_true(cli_ok);
	/* ...refused once the server's leaf expired, though the session itself still is valid:
	 * neither offered by the cache nor accepted when offered by hand. (Validity is in whole
	 * seconds and the leaf is valid through its notAfter second: 4.5 s is past it.) */
	ms_sleep(4500);
	conn_open(&c, p.stls, p.ctls);
	assert_false(c.cli_ok);
	assert_false(wolfSSL_session_reused(c.cli));
	conn_close(&c);
	resume_by_hand(&p, p.ctls, s, &cli_ok);
	assert_false(cli_ok);
	lanyard_tls_last_error(p.ctls, err, sizeof(err));
	assert_non_null(strstr(err, "does not verify"));
	wolfSSL_SESSION_free(s);
	lanyard_authorizer_free(other);
	pair_stop(&p);
	(void)reused;
}

static void test_resume_not_across_updates(void **state)
{
	struct pair p;
	struct test_ca other_ca;
	uint8_t *both;
	bool reused;

	pair_start(&p, "updates", 0);
	assert_true(connect_once(&p, &reused));
	assert_true(connect_once(&p, &reused));
	assert_true(reused);

	/* The client's bundle changes (a second CA joins): no resumption, a full handshake. */
	assert_int_equal(test_ca_new("example.org", &other_ca), 0);
	both = malloc(p.ca.len + other_ca.len);
	assert_non_null(both);
	memcpy(both, p.ca.der, p.ca.len);
	memcpy(both + p.ca.len, other_ca.der, other_ca.len);
	p.cli.svid.bundle = both;
	p.cli.svid.bundle_len = p.ca.len + other_ca.len;
	serve_svid(p.cli.fa, &p.cli.svid);
	assert_true(wait_generation(p.cli.src, 2, 5000));
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	assert_true(connect_once(&p, &reused));
	assert_true(reused);

	/* The client's SVID rotates: its sessions were authenticated with the old one. */
	peer_rotate(&p.cli, &p.ca);
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	assert_true(connect_once(&p, &reused));
	assert_true(reused);

	/* The server's SVID rotates: it resumes none of its old sessions. */
	peer_rotate(&p.srv, &p.ca);
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	assert_true(connect_once(&p, &reused));
	assert_true(reused);
	free(both);
	test_ca_free(&other_ca);
	pair_stop(&p);
}

/* The attacker knows the legitimate client's session ID (it travels in clear) but not its
 * secret: a session with that ID and another secret, offered by a client of another identity,
 * does not resume as the legitimate client; the legitimate client still resumes. */
static void test_resume_replayed_session_id(void **state)
{
	struct pair p;
	struct peer mallory;
	struct conn c;
	WOLFSSL_SESSION *s, *forged = NULL;
	unsigned char *der = NULL, *q, secret[64];
	const unsigned char *cq;
	lanyard_tls *mt;
	lanyard_authorizer *any = lanyard_authorize_any();
	char err[256], id[256];
	int len, slen;
	bool reused, cli_ok, found = false;

	pair_start(&p, "replay", 0);
	srv_allows = CLI_ID;
	conn_open(&c, p.stls, p.ctls);
	assert_true(c.srv_ok && c.cli_ok && conn_echo(&c, "x"));
	s = wolfSSL_get1_session(c.cli);
	conn_close(&c);
	assert_non_null(s);

	/* The forged session: the same bytes with the secret replaced. */
	slen = wolfSSL_SESSION_get_master_key(s, secret, sizeof(secret));
	assert_true(slen > 0);
	len = wolfSSL_i2d_SSL_SESSION(s, NULL);
	assert_true(len > 0);
	der = malloc((size_t)len);
	q = der;
	assert_int_equal(wolfSSL_i2d_SSL_SESSION(s, &q), len);
	for (int i = 0; i + slen <= len && !found; i++) {
		if (memcmp(der + i, secret, (size_t)slen) == 0) {
			for (int j = 0; j < slen; j++)
				der[i + j] ^= 0x5a;
			found = true;
		}
	}
	assert_true(found);
	cq = der;
	forged = wolfSSL_d2i_SSL_SESSION(NULL, &cq, len);
	assert_non_null(forged);

	/* Mallory is another workload of the same trust domain, allowed by nobody. */
	peer_start(&mallory, "replay-mallory", &p.ca, "spiffe://example.org/mallory", NULL, NULL);
	assert_int_equal(lanyard_tls_client_new(mallory.src, any, &mt, err, sizeof(err)), 0);
	client_session = forged;
	conn_open(&c, p.stls, mt);
	client_session = NULL;
	assert_false(c.srv_ok);
	if (c.cli)
		assert_false(wolfSSL_session_reused(c.cli) && conn_echo(&c, "as client?"));
	if (c.srv)
		assert_int_not_equal(lanyard_tls_peer_id(c.srv, id, sizeof(id)) == 0 &&
					     strcmp(id, CLI_ID) == 0,
				     1);
	conn_close(&c);

	/* The legitimate client resumes as before. */
	reused = resume_by_hand(&p, p.ctls, s, &cli_ok);
	assert_true(reused && cli_ok);
	assert_true(connect_once(&p, &reused));

	lanyard_tls_free(mt);
	peer_stop(&mallory);
	lanyard_authorizer_free(any);
	wolfSSL_SESSION_free(s);
	wolfSSL_SESSION_free(forged);
	free(der);
	pair_stop(&p);
}

static int accept_any(int preverify, WOLFSSL_X509_STORE_CTX *st)
{
	(void)preverify;
	(void)st;
	return 1;
}

/* A server of another implementation that resumes TLS 1.3 tickets (plain wolfSSL with the
 * server's SVID, accepting any client certificate): the client resumes, and still checks the
 * server again each time. */
static void test_resume_client_tls13(void **state)
{
	struct pair p;
	struct conn c;
	lanyard_x509_svid *svid;
	char *chain, *key, id[256];
	WOLFSSL_CTX *raw;
	bool reused;

	pair_start(&p, "tls13", 0);
	client_tls12 = 0;
	svid = lanyard_x509_source_svid(p.srv.src);
	assert_non_null(svid);
	chain = lanyard_x509_svid_chain_pem(svid);
	key = lanyard_x509_svid_key_pem(svid);
	raw = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	assert_non_null(raw);
	assert_int_equal(wolfSSL_CTX_use_certificate_chain_buffer(raw, (unsigned char *)chain,
								  (long)strlen(chain)),
			 WOLFSSL_SUCCESS);
	assert_int_equal(wolfSSL_CTX_use_PrivateKey_buffer(raw, (unsigned char *)key,
							   (long)strlen(key), WOLFSSL_FILETYPE_PEM),
			 WOLFSSL_SUCCESS);
	wolfSSL_CTX_set_verify(raw, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			       accept_any);
	raw_server_ctx = raw;

	/* The ticket arrives after the handshake, read by conn_echo. */
	assert_true(connect_once(&p, &reused));
	assert_false(reused);
	conn_open(&c, p.stls, p.ctls);
	assert_true(c.srv_ok && c.cli_ok && conn_echo(&c, "resumed"));
	assert_string_equal(wolfSSL_get_version(c.cli), "TLSv1.3");
	assert_true(wolfSSL_session_reused(c.cli));
	assert_int_equal(lanyard_tls_peer_id(c.cli, id, sizeof(id)), 0);
	assert_string_equal(id, SRV_ID);
	conn_close(&c);

	client_stops_allowing_server(&p);

	/* The client's SVID rotates: no resumption of the session made with the old one. */
	peer_rotate(&p.cli, &p.ca);
	assert_true(connect_once(&p, &reused));
	assert_false(reused);

	raw_server_ctx = NULL;
	wolfSSL_CTX_free(raw);
	lanyard_free(chain);
	lanyard_free_secret(key);
	lanyard_x509_svid_unref(svid);
	pair_stop(&p);
}

/* Several threads connect at once through the same two configurations and peer name: every
 * connection works, and most resume (the tables are shared under their locks). */
#define THREADS 4
#define CONNS_PER_THREAD 8

static atomic_int threads_ok, threads_reused;

static void *connect_loop(void *arg)
{
	struct pair *p = arg;

	for (int i = 0; i < CONNS_PER_THREAD; i++) {
		struct conn c;

		conn_open(&c, p->stls, p->ctls);
		if (c.srv_ok && c.cli_ok && conn_echo(&c, "threads")) {
			atomic_fetch_add(&threads_ok, 1);
			if (wolfSSL_session_reused(c.cli) && wolfSSL_session_reused(c.srv))
				atomic_fetch_add(&threads_reused, 1);
		}
		conn_close(&c);
	}
	keys_release_thread_ecc_cache();
	return NULL;
}

static void test_resume_threads(void **state)
{
	pthread_t th[THREADS];
	struct pair p;

	pair_start(&p, "threads", 0);
	atomic_store(&threads_ok, 0);
	atomic_store(&threads_reused, 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, connect_loop, &p), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	printf("# %d threads: %d connections, %d resumed\n", THREADS, atomic_load(&threads_ok),
	       atomic_load(&threads_reused));
	assert_int_equal(atomic_load(&threads_ok), THREADS * CONNS_PER_THREAD);
	assert_true(atomic_load(&threads_reused) > 0);
	pair_stop(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resume_happens),
		cmocka_unit_test(test_resume_rechecks_authorizer),
		cmocka_unit_test(test_resume_not_across_updates),
		cmocka_unit_test(test_resume_other_id_and_expiry),
		cmocka_unit_test(test_resume_replayed_session_id),
		cmocka_unit_test(test_resume_client_tls13),
		cmocka_unit_test(test_resume_threads),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
