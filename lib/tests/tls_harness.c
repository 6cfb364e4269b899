/* tls_harness.c: the pieces of liblanyard's tests that run mutual TLS between two X.509
 * sources, each fed by an in-process fake agent, over a socketpair (see tls_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"
#include "tls_harness.h"
#include "x509.h"

char harness_dir[64];

int harness_setup(void **state)
{
	(void)state;
	snprintf(harness_dir, sizeof(harness_dir), "/tmp/lanyard-lib-XXXXXX");
	if (!mkdtemp(harness_dir))
		return -1;
	lanyard_set_log_level(getenv("LANYARD_TEST_DEBUG") ? LANYARD_LOG_DEBUG : LANYARD_LOG_ERROR);
	return 0;
}

int harness_teardown(void **state)
{
	char cmd[128];

	(void)state;
	keys_release_thread_ecc_cache();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", harness_dir);
	return system(cmd) == 0 ? 0 : -1;
}

const char *sock_path(const char *name)
{
	static char p[8][128];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s.sock", harness_dir, name);
	return p[i];
}

void ms_sleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Waits (bounded) until the source's generation reaches gen. */
bool wait_generation(lanyard_x509_source *src, uint64_t gen, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (lanyard_x509_source_generation(src) >= gen)
			return true;
		ms_sleep(10);
	}
	return lanyard_x509_source_generation(src) >= gen;
}

/* Serves one SVID (with its CA as bundle) from fa. */
void serve_svid(struct fake_agent *fa, const struct test_svid *s)
{
	size_t len;
	uint8_t *msg = test_x509_response(s, 1, NULL, NULL, NULL, 0, &len);

	assert_non_null(msg);
	fake_agent_set_x509(fa, msg, len);
	free(msg);
}

void serial_of(const struct test_svid *s, char *out, size_t outlen)
{
	struct x509_info info;
	const uint8_t **certs;
	size_t *lens, n;

	assert_int_equal(x509_split_der(s->chain, s->chain_len, &certs, &lens, &n), 0);
	assert_int_equal(x509_parse(certs[0], lens[0], &info, NULL, 0), 0);
	snprintf(out, outlen, "%s", info.serial);
	x509_info_free(&info);
	free(certs);
	free(lens);
}


/* A fake agent serving spiffe_id signed by ca, with trust (ca when NULL) as the bundle of its
 * trust domain and an optional federated bundle, and a source on it. */
void peer_start_ex(struct peer *p, const char *name, const struct test_ca *ca,
			  const char *spiffe_id, const struct test_ca *fed, const char *fed_id,
			  const struct test_ca *trust)
{
	const char *sock = sock_path(name);
	char err[512];
	uint8_t *msg;
	size_t len;

	memset(p, 0, sizeof(*p));
	assert_int_equal(test_svid_new(ca, spiffe_id, 60, &p->svid), 0);
	if (trust) {
		p->svid.bundle = trust->der;
		p->svid.bundle_len = trust->len;
	}
	msg = test_x509_response(&p->svid, 1, fed ? &fed_id : NULL,
				 fed ? (const uint8_t *const *)&fed->der : NULL,
				 fed ? &fed->len : NULL, fed ? 1 : 0, &len);
	assert_int_equal(fake_agent_start(sock, &p->fa), 0);
	fake_agent_set_x509(p->fa, msg, len);
	free(msg);
	assert_int_equal(lanyard_x509_source_new(sock, &p->src, err, sizeof(err)), 0);
	assert_int_equal(lanyard_x509_source_wait_ready(p->src, 5000, err, sizeof(err)), 0);
}

void peer_start(struct peer *p, const char *name, const struct test_ca *ca,
		       const char *spiffe_id, const struct test_ca *fed, const char *fed_id)
{
	peer_start_ex(p, name, ca, spiffe_id, fed, fed_id, NULL);
}

void peer_rotate(struct peer *p, const struct test_ca *ca)
{
	uint64_t g = lanyard_x509_source_generation(p->src);
	char id[256];

	snprintf(id, sizeof(id), "%s", p->svid.spiffe_id);
	test_svid_free(&p->svid);
	assert_int_equal(test_svid_new(ca, id, 60, &p->svid), 0);
	serve_svid(p->fa, &p->svid);
	assert_true(wait_generation(p->src, g + 1, 5000));
}

void peer_stop(struct peer *p)
{
	lanyard_x509_source_free(p->src);
	fake_agent_stop(p->fa);
	test_svid_free(&p->svid);
}

/* The TLS version the client of conn_open offers: 0 = TLS 1.3 (the default), else 1.2; and a
 * session it offers to resume. */
int client_tls12;
WOLFSSL_SESSION *client_session;
const char *client_peer;
WOLFSSL_CTX *raw_server_ctx;

static void *accept_main(void *arg)
{
	struct conn *c = arg;

	if (raw_server_ctx)
		c->srv = wolfSSL_new(raw_server_ctx);
	c->srv_ok = (raw_server_ctx ? c->srv != NULL
				    : lanyard_tls_ssl_new(c->stls, &c->srv, NULL, 0) == 0) &&
		    wolfSSL_set_fd(c->srv, c->fds[0]) == WOLFSSL_SUCCESS &&
		    wolfSSL_accept(c->srv) == WOLFSSL_SUCCESS;
	if (!c->srv_ok) {
		/* Let the client see the alert and the end of the stream. */
		wolfSSL_free(c->srv);
		c->srv = NULL;
		shutdown(c->fds[0], SHUT_RDWR);
	}
	/* wolfSSL's per-thread ECC cache (FP_ECC) is freed only by its own thread. */
	keys_release_thread_ecc_cache();
	return NULL;
}

/* Handshake between the two configurations over a socketpair. */
void conn_open(struct conn *c, lanyard_tls *stls, lanyard_tls *ctls)
{
	pthread_t t;

	memset(c, 0, sizeof(*c));
	c->stls = stls;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fds), 0);
	assert_int_equal(pthread_create(&t, NULL, accept_main, c), 0);
	c->cli_ok = (client_peer ? lanyard_tls_ssl_new_peer(ctls, client_peer, &c->cli, NULL, 0)
				   : lanyard_tls_ssl_new(ctls, &c->cli, NULL, 0)) == 0 &&
		    (!client_tls12 ||
		     wolfSSL_set_max_proto_version(c->cli, TLS1_2_VERSION) == WOLFSSL_SUCCESS) &&
		    /* wolfSSL refuses a session it knows cannot be resumed: fine too. */
		    (!client_session || wolfSSL_set_session(c->cli, client_session) || 1) &&
		    wolfSSL_set_fd(c->cli, c->fds[1]) == WOLFSSL_SUCCESS &&
		    wolfSSL_connect(c->cli) == WOLFSSL_SUCCESS;
	if (!c->cli_ok) {
		if (getenv("LANYARD_TEST_DEBUG") && c->cli)
			fprintf(stderr, "client handshake (tls12=%d, session=%d): wolfSSL error %d\n",
				client_tls12, client_session != NULL, wolfSSL_get_error(c->cli, -1));
		shutdown(c->fds[1], SHUT_RDWR);
	}
	pthread_join(t, NULL);
}

/* One round trip; true when the message came back. */
bool conn_echo(struct conn *c, const char *msg)
{
	char buf[64];
	int n = (int)strlen(msg);

	if (!c->cli || !c->srv || wolfSSL_write(c->cli, msg, n) != n)
		return false;
	if (wolfSSL_read(c->srv, buf, sizeof(buf)) != n || wolfSSL_write(c->srv, buf, n) != n)
		return false;
	return wolfSSL_read(c->cli, buf, sizeof(buf)) == n && memcmp(buf, msg, (size_t)n) == 0;
}

/* The client's view when the server refused it after the client's handshake completed (TLS
 * 1.3): its first read fails. */
bool client_read_fails(struct conn *c)
{
	char buf[8];

	if (!c->cli_ok)
		return true;
	wolfSSL_write(c->cli, "x", 1);
	return wolfSSL_read(c->cli, buf, sizeof(buf)) <= 0;
}

void conn_close(struct conn *c)
{
	wolfSSL_free(c->cli);
	wolfSSL_free(c->srv);
	close(c->fds[0]);
	close(c->fds[1]);
}

