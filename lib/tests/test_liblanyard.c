/* Tests of liblanyard through its public API (linked as the shared library), against in-process
 * fake agents (fake_agent.c) that the tests drive: X.509 sources (updates, rotation, rejected
 * updates, agent restarts, PermissionDenied, prompt shutdown), mutual TLS between two sources
 * over a socketpair (authorization, rotation without disturbing open connections, foreign
 * trust domains, rogue CAs, federation), authorizers, and JWT-SVIDs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lanyard.h>

#include "fake_agent.h"
#include "tls_harness.h"
#include "grpc.h"
#include "jwt.h"
#include "keys.h"
#include "util.h"
#include "x509.h"

/* ---- X.509 sources ---- */

static void test_source_context(void **state)
{
	struct test_ca ca, other;
	struct test_svid a, b;
	struct fake_agent *fa;
	const char *sock = sock_path("ctx");
	lanyard_x509_source *src = NULL;
	lanyard_x509_context *ctx;
	lanyard_x509_svid *kept;
	const lanyard_x509_svid *s;
	const uint8_t *der;
	size_t len, mlen;
	char serial[80], err[512];
	uint8_t *msg;

	assert_int_equal(test_ca_new("example.org", &ca), 0);
	assert_int_equal(test_ca_new("other.org", &other), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/b", 60, &b), 0);
	snprintf(a.hint, sizeof(a.hint), "first");
	{
		struct test_svid both[2] = {a, b};
		const char *fid[1] = {"spiffe://other.org"};
		const uint8_t *fder[1] = {other.der};
		size_t flen[1] = {other.len};

		msg = test_x509_response(both, 2, fid, fder, flen, 1, &mlen);
	}
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	fake_agent_set_x509(fa, msg, mlen);

	assert_int_equal(lanyard_x509_source_new(sock, &src, err, sizeof(err)), LANYARD_OK);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), LANYARD_OK);
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_OK);
	ctx = lanyard_x509_source_context(src);
	assert_non_null(ctx);
	assert_int_equal(lanyard_x509_context_generation(ctx), 1);
	assert_int_equal(lanyard_x509_context_svid_count(ctx), 2);
	assert_null(lanyard_x509_context_svid(ctx, 2));
	s = lanyard_x509_context_default_svid(ctx);
	assert_ptr_equal(s, lanyard_x509_context_svid(ctx, 0));
	assert_string_equal(lanyard_x509_svid_spiffe_id(s), "spiffe://example.org/a");
	assert_string_equal(lanyard_x509_svid_trust_domain(s), "example.org");
	assert_string_equal(lanyard_x509_svid_hint(s), "first");
	assert_string_equal(lanyard_x509_svid_hint(lanyard_x509_context_svid(ctx, 1)), "");
	serial_of(&a, serial, sizeof(serial));
	assert_string_equal(lanyard_x509_svid_serial(s), serial);
	assert_true(lanyard_x509_svid_not_after(s) > now_unix() + 50);
	assert_true(lanyard_x509_svid_not_before(s) < now_unix());
	der = lanyard_x509_svid_chain_der(s, &len);
	assert_int_equal(len, a.chain_len);
	assert_memory_equal(der, a.chain, len);
	assert_int_equal(lanyard_x509_svid_cert_count(s), 1);
	assert_non_null(lanyard_x509_svid_cert_der(s, 0, &len));
	assert_null(lanyard_x509_svid_cert_der(s, 1, &len));
	der = lanyard_x509_svid_key_der(s, &len);
	assert_int_equal(len, a.key_len);
	assert_memory_equal(der, a.key, len);
	der = lanyard_x509_svid_bundle_der(s, &len);
	assert_int_equal(len, ca.len);
	assert_memory_equal(der, ca.der, len);

	/* PEM forms: a key that matches the chain's leaf. */
	{
		char *chain = lanyard_x509_svid_chain_pem(s), *key = lanyard_x509_svid_key_pem(s);
		uint8_t *cder = NULL;
		size_t clen = 0;
		lkey *k = NULL;

		assert_non_null(chain);
		assert_non_null(key);
		assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
		assert_int_equal(pem_decode_concat(chain, strlen(chain), "CERTIFICATE", &cder, &clen),
				 0);
		assert_int_equal(lkey_from_pem(key, strlen(key), &k), 0);
		assert_true(lkey_matches_cert(k, cder, clen));
		lkey_free(k);
		free(cder);
		lanyard_free(chain);
		lanyard_free_secret(key);
	}

	/* Bundles: own and federated, by name or ID. */
	assert_int_equal(lanyard_x509_context_bundle_count(ctx), 2);
	assert_string_equal(lanyard_x509_context_bundle_td(ctx, 0), "example.org");
	assert_string_equal(lanyard_x509_context_bundle_td(ctx, 1), "other.org");
	assert_null(lanyard_x509_context_bundle_td(ctx, 2));
	assert_int_equal(lanyard_x509_context_bundle(ctx, "spiffe://other.org", &der, &len),
			 LANYARD_OK);
	assert_int_equal(len, other.len);
	assert_memory_equal(der, other.der, len);
	assert_int_equal(lanyard_x509_context_bundle(ctx, "example.org", &der, &len), LANYARD_OK);
	assert_memory_equal(der, ca.der, len);
	assert_int_equal(lanyard_x509_context_bundle(ctx, "nope.org", &der, &len),
			 LANYARD_ENOTFOUND);
	assert_int_equal(lanyard_x509_context_bundle(ctx, "Not A Domain", &der, &len),
			 LANYARD_EINVAL);
	{
		char *pem = lanyard_x509_context_bundle_pem(ctx, "other.org");

		assert_non_null(pem);
		assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
		lanyard_free(pem);
	}

	/* An SVID reference outlives the source and the context reference. */
	kept = lanyard_x509_source_svid(src);
	assert_non_null(kept);
	lanyard_x509_context_unref(ctx);
	lanyard_x509_source_free(src);
	assert_string_equal(lanyard_x509_svid_spiffe_id(kept), "spiffe://example.org/a");
	lanyard_x509_svid_unref(kept);

	/* Choosing the default SVID by ID. */
	{
		struct lanyard_x509_source_options o = {.socket = sock,
							.spiffe_id = "spiffe://example.org/b"};

		assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
		assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), 0);
		kept = lanyard_x509_source_svid(src);
		assert_string_equal(lanyard_x509_svid_spiffe_id(kept), "spiffe://example.org/b");
		lanyard_x509_svid_unref(kept);
		lanyard_x509_source_free(src);

		o.spiffe_id = "spiffe://example.org/absent";
		assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
		assert_int_equal(lanyard_x509_source_wait_ready(src, 500, err, sizeof(err)),
				 LANYARD_ETIMEDOUT);
		assert_non_null(strstr(err, "spiffe://example.org/absent"));
		assert_null(lanyard_x509_source_svid(src));
		/* The context is there, only without the wanted SVID. */
		ctx = lanyard_x509_source_context(src);
		assert_non_null(ctx);
		assert_null(lanyard_x509_context_default_svid(ctx));
		lanyard_x509_context_unref(ctx);
		lanyard_x509_source_free(src);

		o.spiffe_id = "not-an-id";
		assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)),
				 LANYARD_EINVAL);
		assert_null(src);
	}

	fake_agent_stop(fa);
	free(msg);
	test_svid_free(&a);
	test_svid_free(&b);
	test_ca_free(&ca);
	test_ca_free(&other);
}

struct seen {
	atomic_int calls;
	atomic_ullong max_gen;
};

static void on_update(void *ud, lanyard_x509_context *ctx)
{
	struct seen *s = ud;
	unsigned long long g = lanyard_x509_context_generation(ctx);

	atomic_fetch_add(&s->calls, 1);
	if (g > atomic_load(&s->max_gen))
		atomic_store(&s->max_gen, g);
}

static void test_source_rotation_and_bad_updates(void **state)
{
	struct test_ca ca, rogue;
	struct test_svid a1, a2, b, r;
	struct fake_agent *fa;
	const char *sock = sock_path("rot");
	lanyard_x509_source *src;
	lanyard_x509_svid *cur;
	struct seen seen = {0};
	char s1[80], s2[80], err[512];

	assert_int_equal(test_ca_new("example.org", &ca), 0);
	assert_int_equal(test_ca_new("example.org", &rogue), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a1), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a2), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/b", 60, &b), 0);
	assert_int_equal(test_svid_new(&rogue, "spiffe://example.org/a", 60, &r), 0);
	serial_of(&a1, s1, sizeof(s1));
	serial_of(&a2, s2, sizeof(s2));
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	serve_svid(fa, &a1);

	assert_int_equal(lanyard_x509_source_new(sock, &src, err, sizeof(err)), 0);
	lanyard_x509_source_on_update(src, on_update, &seen);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), 0);
	assert_true(wait_generation(src, 1, 1000));

	/* Rotation: the new SVID replaces the old one, the callback sees it. */
	serve_svid(fa, &a2);
	assert_true(wait_generation(src, 2, 5000));
	cur = lanyard_x509_source_svid(src);
	assert_string_equal(lanyard_x509_svid_serial(cur), s2);
	lanyard_x509_svid_unref(cur);
	for (int i = 0; i < 100 && atomic_load(&seen.max_gen) < 2; i++)
		ms_sleep(10);
	assert_int_equal(atomic_load(&seen.max_gen), 2);
	assert_true(atomic_load(&seen.calls) >= 2);

	/* A key that does not match its certificate: the whole update is ignored. */
	{
		struct test_svid bad = a1;
		uint8_t *msg;
		size_t len;

		bad.key = b.key;
		bad.key_len = b.key_len;
		msg = test_x509_response(&bad, 1, NULL, NULL, NULL, 0, &len);
		fake_agent_set_x509(fa, msg, len);
		free(msg);
	}
	for (int i = 0; i < 200 && lanyard_x509_source_status(src, err, sizeof(err)) == 0; i++)
		ms_sleep(10);
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_EINVAL);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(lanyard_x509_source_generation(src), 2);
	cur = lanyard_x509_source_svid(src);
	assert_string_equal(lanyard_x509_svid_serial(cur), s2);
	lanyard_x509_svid_unref(cur);

	/* An SVID whose certificate holds another ID than announced: ignored too. */
	{
		struct test_svid bad = b;
		uint8_t *msg;
		size_t len;

		snprintf(bad.spiffe_id, sizeof(bad.spiffe_id), "spiffe://example.org/a");
		msg = test_x509_response(&bad, 1, NULL, NULL, NULL, 0, &len);
		fake_agent_set_x509(fa, msg, len);
		free(msg);
	}
	ms_sleep(200);
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_EINVAL);
	assert_non_null(strstr(err, "URI SAN"));
	assert_int_equal(lanyard_x509_source_generation(src), 2);

	/* A good update again: accepted, status healthy. */
	serve_svid(fa, &a1);
	assert_true(wait_generation(src, 3, 5000));
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_OK);

	lanyard_x509_source_on_update(src, NULL, NULL);
	lanyard_x509_source_free(src);
	fake_agent_stop(fa);
	test_svid_free(&a1);
	test_svid_free(&a2);
	test_svid_free(&b);
	test_svid_free(&r);
	test_ca_free(&ca);
	test_ca_free(&rogue);
}

struct log_capture {
	pthread_mutex_t lock;
	int events;
	char last[512];
};

static void capture_log(enum lanyard_log_level level, const char *message, void *arg)
{
	struct log_capture *c = arg;

	pthread_mutex_lock(&c->lock);
	c->events++;
	if (strstr(message, "X.509 watch"))
		snprintf(c->last, sizeof(c->last), "%s (level %d)", message, (int)level);
	pthread_mutex_unlock(&c->lock);
}

/* lanyard_set_log_func: the library's events reach the application's function, not stderr. */
static void test_log_func(void **state)
{
	struct log_capture c = {.lock = PTHREAD_MUTEX_INITIALIZER};
	const char *sock = sock_path("logfunc");
	struct lanyard_x509_source_options o = {.socket = sock, .backoff_max_ms = 200};
	lanyard_x509_source *src;
	char err[512], last[512];

	(void)state;
	lanyard_set_log_level(LANYARD_LOG_DEBUG);
	lanyard_set_log_func(capture_log, &c);
	assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
	for (int i = 0; i < 50; i++) {
		pthread_mutex_lock(&c.lock);
		snprintf(last, sizeof(last), "%s", c.last);
		pthread_mutex_unlock(&c.lock);
		if (last[0])
			break;
		ms_sleep(100);
	}
	lanyard_x509_source_free(src);
	lanyard_set_log_func(NULL, NULL);
	lanyard_set_log_level(getenv("LANYARD_TEST_DEBUG") ? LANYARD_LOG_DEBUG : LANYARD_LOG_ERROR);
	assert_non_null(strstr(last, "liblanyard: X.509 watch on"));
	assert_null(strchr(last, '\n'));
}

/* Freeing a source shuts its connection down: that is not a lost connection, and an
 * application freeing its source at exit must not see a warning about it. */
static void test_source_free_quiet(void **state)
{
	struct log_capture c = {.lock = PTHREAD_MUTEX_INITIALIZER};
	const char *sock = sock_path("quiet");
	struct fake_agent *fa;
	struct test_ca ca;
	struct test_svid a;
	lanyard_x509_source *src;
	char err[512];

	(void)state;
	assert_int_equal(test_ca_new("example.org", &ca), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a), 0);
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	serve_svid(fa, &a);
	assert_int_equal(lanyard_x509_source_new(sock, &src, err, sizeof(err)), LANYARD_OK);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), LANYARD_OK);
	lanyard_set_log_level(LANYARD_LOG_DEBUG);
	lanyard_set_log_func(capture_log, &c);
	lanyard_x509_source_free(src);
	lanyard_set_log_func(NULL, NULL);
	lanyard_set_log_level(getenv("LANYARD_TEST_DEBUG") ? LANYARD_LOG_DEBUG : LANYARD_LOG_ERROR);
	fake_agent_stop(fa);
	test_svid_free(&a);
	test_ca_free(&ca);
	assert_string_equal(c.last, "");
}

static void test_source_agent_away(void **state)
{
	struct test_ca ca;
	struct test_svid a1, a2;
	struct fake_agent *fa;
	const char *sock = sock_path("away");
	struct lanyard_x509_source_options o = {.socket = sock, .backoff_max_ms = 400};
	lanyard_x509_source *src;
	lanyard_x509_svid *cur;
	char s1[80], s2[80], err[512];
	int64_t t0;

	assert_int_equal(test_ca_new("example.org", &ca), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a1), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a2), 0);
	serial_of(&a1, s1, sizeof(s1));
	serial_of(&a2, s2, sizeof(s2));

	/* Started before the agent: it keeps trying. */
	assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 300, err, sizeof(err)),
			 LANYARD_ETIMEDOUT);
	assert_non_null(strstr(err, "cannot connect"));
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	serve_svid(fa, &a1);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), 0);

	/* The agent goes away: the last SVID stays, the status says why. */
	fake_agent_stop(fa);
	unlink(sock);
	ms_sleep(300);
	assert_int_not_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_OK);
	cur = lanyard_x509_source_svid(src);
	assert_non_null(cur);
	assert_string_equal(lanyard_x509_svid_serial(cur), s1);
	lanyard_x509_svid_unref(cur);

	/* It comes back with a rotated SVID: picked up after reconnection. */
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	serve_svid(fa, &a2);
	assert_true(wait_generation(src, 2, 5000));
	cur = lanyard_x509_source_svid(src);
	assert_string_equal(lanyard_x509_svid_serial(cur), s2);
	lanyard_x509_svid_unref(cur);

	/* Back again with the same SVID: healthy, but no new update. */
	fake_agent_stop(fa);
	unlink(sock);
	ms_sleep(200);
	assert_int_not_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_OK);
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	serve_svid(fa, &a2);
	for (int i = 0; i < 500 && lanyard_x509_source_status(src, err, sizeof(err)) != 0; i++)
		ms_sleep(10);
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_OK);
	assert_int_equal(lanyard_x509_source_generation(src), 2);

	/* Freeing wakes the thread out of its stream at once. */
	t0 = now_mono_us();
	lanyard_x509_source_free(src);
	assert_true(now_mono_us() - t0 < 1000000);

	/* PermissionDenied: not ready, and the reason is given. */
	fake_agent_fail_x509(fa, GRPC_STATUS_PERMISSION_DENIED, "no identity issued");
	assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 500, err, sizeof(err)),
			 LANYARD_ETIMEDOUT);
	assert_non_null(strstr(err, "PERMISSION_DENIED"));
	assert_int_equal(lanyard_x509_source_status(src, err, sizeof(err)), LANYARD_EDENIED);
	/* It retried meanwhile. */
	assert_true(fake_agent_x509_calls(fa) >= 3);
	/* An entry appears: served without a restart. */
	serve_svid(fa, &a1);
	assert_int_equal(lanyard_x509_source_wait_ready(src, 5000, err, sizeof(err)), 0);
	lanyard_x509_source_free(src);
	fake_agent_stop(fa);

	/* Freeing while it waits to reconnect is prompt too. */
	assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
	ms_sleep(100);
	t0 = now_mono_us();
	lanyard_x509_source_free(src);
	assert_true(now_mono_us() - t0 < 1000000);

	/* Bad addresses are refused at once. */
	assert_int_equal(lanyard_x509_source_new("tcp://127.0.0.1:1", &src, err, sizeof(err)),
			 LANYARD_EINVAL);
	assert_int_equal(lanyard_x509_source_new("unix://host/x", &src, err, sizeof(err)),
			 LANYARD_EINVAL);
	lanyard_x509_source_free(NULL);

	test_svid_free(&a1);
	test_svid_free(&a2);
	test_ca_free(&ca);
}

/* ---- TLS ---- */

static int func_calls;

static int allow_b_only(void *ud, const char *peer_id)
{
	func_calls++;
	return strcmp(peer_id, (const char *)ud) == 0 ? 0 : 1;
}

static void test_tls(void **state)
{
	struct test_ca ca, other, rogue;
	struct peer srv, cli, foreign, impostor;
	lanyard_authorizer *allow_cli = lanyard_authorize_id("spiffe://example.org/client");
	lanyard_authorizer *allow_srv = lanyard_authorize_id("spiffe://example.org/server");
	lanyard_authorizer *allow_x = lanyard_authorize_id("spiffe://example.org/x");
	lanyard_authorizer *any = lanyard_authorize_any();
	lanyard_tls *stls, *ctls, *t;
	struct conn c1, c2;
	char id[256], ser[80], old_srv_serial[80], err[512];

	assert_int_equal(test_ca_new("example.org", &ca), 0);
	assert_int_equal(test_ca_new("other.org", &other), 0);
	assert_int_equal(test_ca_new("example.org", &rogue), 0);
	peer_start(&srv, "tls-srv", &ca, "spiffe://example.org/server", NULL, NULL);
	peer_start(&cli, "tls-cli", &ca, "spiffe://example.org/client", NULL, NULL);
	assert_int_equal(lanyard_tls_server_new(srv.src, allow_cli, &stls, err, sizeof(err)), 0);
	assert_int_equal(lanyard_tls_client_new(cli.src, allow_srv, &ctls, err, sizeof(err)), 0);

	/* Mutual TLS, each side authorizing the other's SPIFFE ID. */
	conn_open(&c1, stls, ctls);
	assert_true(c1.srv_ok);
	assert_true(c1.cli_ok);
	assert_true(conn_echo(&c1, "one"));
	assert_int_equal(lanyard_tls_peer_id(c1.cli, id, sizeof(id)), 0);
	assert_string_equal(id, "spiffe://example.org/server");
	assert_int_equal(lanyard_tls_peer_id(c1.srv, id, sizeof(id)), 0);
	assert_string_equal(id, "spiffe://example.org/client");
	assert_int_equal(lanyard_tls_peer_id(c1.srv, id, 5), LANYARD_EINVAL);
	serial_of(&srv.svid, old_srv_serial, sizeof(old_srv_serial));
	assert_int_equal(lanyard_tls_peer_serial(c1.cli, ser, sizeof(ser)), 0);
	assert_string_equal(ser, old_srv_serial);

	/* Both rotate: a new connection uses the new SVIDs, the open one is undisturbed. */
	peer_rotate(&srv, &ca);
	peer_rotate(&cli, &ca);
	conn_open(&c2, stls, ctls);
	assert_true(c2.srv_ok && c2.cli_ok);
	assert_true(conn_echo(&c2, "two"));
	assert_int_equal(lanyard_tls_peer_serial(c2.cli, ser, sizeof(ser)), 0);
	serial_of(&srv.svid, id, sizeof(id));
	assert_string_equal(ser, id);
	assert_string_not_equal(ser, old_srv_serial);
	assert_int_equal(lanyard_tls_peer_serial(c2.srv, ser, sizeof(ser)), 0);
	serial_of(&cli.svid, id, sizeof(id));
	assert_string_equal(ser, id);
	assert_true(conn_echo(&c1, "still here"));
	assert_int_equal(lanyard_tls_peer_serial(c1.cli, ser, sizeof(ser)), 0);
	assert_string_equal(ser, old_srv_serial);
	conn_close(&c1);
	conn_close(&c2);

	/* The server allows another ID only: the client is refused. */
	assert_int_equal(lanyard_tls_server_new(srv.src, allow_x, &t, err, sizeof(err)), 0);
	conn_open(&c1, t, ctls);
	assert_false(c1.srv_ok);
	assert_true(client_read_fails(&c1));
	lanyard_tls_last_error(t, err, sizeof(err));
	assert_non_null(strstr(err, "spiffe://example.org/client is not authorized"));
	conn_close(&c1);
	lanyard_tls_free(t);

	/* The client refuses a server it does not allow: its handshake fails. */
	assert_int_equal(lanyard_tls_client_new(cli.src, allow_x, &t, err, sizeof(err)), 0);
	conn_open(&c1, stls, t);
	assert_false(c1.cli_ok);
	assert_false(c1.srv_ok);
	lanyard_tls_last_error(t, err, sizeof(err));
	assert_non_null(strstr(err, "spiffe://example.org/server is not authorized"));
	conn_close(&c1);
	lanyard_tls_free(t);

	/* A client of another trust domain (which trusts example.org): the server has no bundle
	 * for it, and refuses it even with "any". */
	peer_start(&foreign, "tls-foreign", &other, "spiffe://other.org/client", &ca,
		   "spiffe://example.org");
	assert_int_equal(lanyard_tls_server_new(srv.src, any, &t, err, sizeof(err)), 0);
	{
		lanyard_tls *fc;

		assert_int_equal(lanyard_tls_client_new(foreign.src, any, &fc, err, sizeof(err)),
				 0);
		conn_open(&c1, t, fc);
		assert_false(c1.srv_ok);
		assert_true(client_read_fails(&c1));
		conn_close(&c1);
		lanyard_tls_last_error(t, err, sizeof(err));
		assert_non_null(strstr(err, "no trust bundle for trust domain other.org"));
		lanyard_tls_free(fc);
	}

	/* An impostor: example.org's ID on a certificate of another CA (it trusts the real one,
	 * so that it completes its side of the handshake). */
	peer_start_ex(&impostor, "tls-impostor", &rogue, "spiffe://example.org/client", NULL, NULL,
		      &ca);
	{
		lanyard_tls *ic;

		assert_int_equal(lanyard_tls_client_new(impostor.src, allow_srv, &ic, err,
							sizeof(err)),
				 0);
		conn_open(&c1, stls, ic);
		assert_false(c1.srv_ok);
		assert_true(client_read_fails(&c1));
		conn_close(&c1);
		lanyard_tls_last_error(stls, err, sizeof(err));
		assert_non_null(strstr(err, "does not verify"));
		lanyard_tls_free(ic);
	}
	lanyard_tls_free(t);

	/* Federation: a server that holds other.org's bundle accepts its members. */
	{
		struct peer fsrv;
		lanyard_authorizer *members = lanyard_authorize_member_of("other.org");
		lanyard_authorizer *f = lanyard_authorize_func(allow_b_only,
							       "spiffe://example.org/server");
		lanyard_tls *fs, *fc;
		struct peer fcli;

		peer_start(&fsrv, "tls-fsrv", &ca, "spiffe://example.org/server", &other,
			   "spiffe://other.org");
		/* The foreign client trusts example.org through federation too. */
		peer_start(&fcli, "tls-fcli", &other, "spiffe://other.org/client", &ca,
			   "spiffe://example.org");
		assert_int_equal(lanyard_tls_server_new(fsrv.src, members, &fs, err, sizeof(err)),
				 0);
		assert_int_equal(lanyard_tls_client_new(fcli.src, f, &fc, err, sizeof(err)), 0);
		func_calls = 0;
		conn_open(&c1, fs, fc);
		assert_true(c1.srv_ok && c1.cli_ok);
		assert_true(conn_echo(&c1, "federated"));
		assert_int_equal(func_calls, 1);
		conn_close(&c1);
		/* member_of other.org does not admit example.org's client. */
		conn_open(&c1, fs, ctls);
		assert_false(c1.srv_ok);
		assert_true(client_read_fails(&c1));
		conn_close(&c1);
		lanyard_tls_free(fs);
		lanyard_tls_free(fc);
		lanyard_authorizer_free(members);
		lanyard_authorizer_free(f);
		peer_stop(&fsrv);
		peer_stop(&fcli);
	}

	/* TLS 1.2: the same verification (the refusal now fails the client's handshake too). */
	client_tls12 = 1;
	conn_open(&c1, stls, ctls);
	assert_true(c1.srv_ok && c1.cli_ok);
	assert_string_equal(wolfSSL_get_version(c1.cli), "TLSv1.2");
	assert_true(conn_echo(&c1, "tls12"));
	assert_int_equal(lanyard_tls_peer_id(c1.srv, id, sizeof(id)), 0);
	assert_string_equal(id, "spiffe://example.org/client");
	conn_close(&c1);
	assert_int_equal(lanyard_tls_server_new(srv.src, allow_x, &t, err, sizeof(err)), 0);
	conn_open(&c1, t, ctls);
	assert_false(c1.srv_ok);
	assert_false(c1.cli_ok);
	conn_close(&c1);
	lanyard_tls_free(t);
	/* Resumption is off by default (test_tls_resume.c tests it on): a client offering its
	 * previous session gets a full handshake (with verification) again, in TLS 1.2 and 1.3. */
	for (int v = 0; v < 2; v++) {
		client_tls12 = v;
		conn_open(&c1, stls, ctls);
		assert_true(conn_echo(&c1, "first"));
		client_session = wolfSSL_get1_session(c1.cli);
		assert_non_null(client_session);
		conn_close(&c1);
		conn_open(&c2, stls, ctls);
		assert_true(c2.srv_ok && c2.cli_ok);
		assert_true(conn_echo(&c2, "second"));
		assert_int_equal(wolfSSL_session_reused(c2.cli), 0);
		assert_int_equal(wolfSSL_session_reused(c2.srv), 0);
		conn_close(&c2);
		wolfSSL_SESSION_free(client_session);
		client_session = NULL;
	}
	client_tls12 = 0;

	/* The ctx handle follows rotations too. */
	{
		WOLFSSL_CTX *x1 = lanyard_tls_ctx(stls, err, sizeof(err)), *x2, *x3;

		assert_non_null(x1);
		x2 = lanyard_tls_ctx(stls, err, sizeof(err));
		assert_ptr_equal(x1, x2);
		peer_rotate(&srv, &ca);
		x3 = lanyard_tls_ctx(stls, err, sizeof(err));
		assert_ptr_not_equal(x1, x3);
		wolfSSL_CTX_free(x1);
		wolfSSL_CTX_free(x2);
		wolfSSL_CTX_free(x3);
	}

	lanyard_tls_free(stls);
	lanyard_tls_free(ctls);
	peer_stop(&srv);
	peer_stop(&cli);
	peer_stop(&foreign);
	peer_stop(&impostor);
	lanyard_authorizer_free(allow_cli);
	lanyard_authorizer_free(allow_srv);
	lanyard_authorizer_free(allow_x);
	lanyard_authorizer_free(any);
	test_ca_free(&ca);
	test_ca_free(&other);
	test_ca_free(&rogue);
}

static void test_tls_without_svid(void **state)
{
	struct lanyard_x509_source_options o = {.socket = sock_path("none")};
	lanyard_authorizer *any = lanyard_authorize_any();
	lanyard_x509_source *src;
	lanyard_tls *t;
	WOLFSSL *ssl = (WOLFSSL *)1;
	char err[512];

	assert_int_equal(lanyard_x509_source_new_opts(&o, &src, err, sizeof(err)), 0);
	assert_int_equal(lanyard_tls_server_new(src, any, &t, err, sizeof(err)), 0);
	assert_int_equal(lanyard_tls_ssl_new(t, &ssl, err, sizeof(err)), LANYARD_ENOTFOUND);
	assert_null(ssl);
	assert_null(lanyard_tls_ctx(t, err, sizeof(err)));
	{
		lanyard_tls *t2 = (lanyard_tls *)1;

		assert_int_equal(lanyard_tls_server_new(src, NULL, &t2, err, sizeof(err)),
				 LANYARD_EINVAL);
		assert_null(t2);
	}
	assert_int_equal(lanyard_tls_peer_id(NULL, err, sizeof(err)), LANYARD_EINVAL);
	lanyard_tls_free(t);
	lanyard_x509_source_free(src);
	lanyard_authorizer_free(any);
}

/* ---- authorizers ---- */

static void test_authorizers(void **state)
{
	const char *ids[] = {"spiffe://example.org/a", "spiffe://example.org/b"};
	const char *bad[] = {"spiffe://example.org/a", "http://example.org/b"};
	lanyard_authorizer *a;

	a = lanyard_authorize_one_of(ids, 2);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org/a"), LANYARD_OK);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org/b"), LANYARD_OK);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org/c"), LANYARD_EREJECTED);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org/a/b"),
			 LANYARD_EREJECTED);
	assert_int_equal(lanyard_authorizer_check(a, NULL), LANYARD_EREJECTED);
	lanyard_authorizer_free(a);

	a = lanyard_authorize_member_of("spiffe://Example.org");
	assert_non_null(a);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org/any/path"), LANYARD_OK);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://example.org.evil/x"),
			 LANYARD_EREJECTED);
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://other.org/x"), LANYARD_EREJECTED);
	assert_int_equal(lanyard_authorizer_check(a, "garbage"), LANYARD_EREJECTED);
	lanyard_authorizer_free(a);

	a = lanyard_authorize_any();
	assert_int_equal(lanyard_authorizer_check(a, "spiffe://x.org/y"), LANYARD_OK);
	assert_int_equal(lanyard_authorizer_check(a, "not an id"), LANYARD_EREJECTED);
	lanyard_authorizer_free(a);

	assert_null(lanyard_authorize_id("spiffe://EXAMPLE.org/a"));
	assert_null(lanyard_authorize_id("spiffe://example.org/a/../b"));
	assert_null(lanyard_authorize_id(NULL));
	assert_null(lanyard_authorize_one_of(bad, 2));
	assert_null(lanyard_authorize_one_of(ids, 0));
	assert_null(lanyard_authorize_member_of("exa mple.org"));
	assert_null(lanyard_authorize_member_of(""));
	assert_null(lanyard_authorize_func(NULL, NULL));
	lanyard_authorizer_free(NULL);
}

/* ---- JWT ---- */

static void test_jwt(void **state)
{
	const char *sock = sock_path("jwt");
	const char *aud[] = {"svc-a", "svc-b"};
	struct fake_agent *fa;
	lanyard_jwt_source *js;
	lkey *key, *other;
	char *token = NULL, *id = NULL, *claims = NULL, *forged = NULL, err[512];

	assert_int_equal(lkey_generate(KEY_EC_P256, &key), 0);
	assert_int_equal(lkey_generate(KEY_EC_P256, &other), 0);
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	fake_agent_set_jwt(fa, key, "spiffe://example.org/jwt", "example.org");
	assert_int_equal(lanyard_jwt_source_new(sock, &js, err, sizeof(err)), 0);

	assert_int_equal(lanyard_jwt_source_fetch(js, aud, 2, NULL, &token, &id, err, sizeof(err)),
			 LANYARD_OK);
	assert_string_equal(id, "spiffe://example.org/jwt");
	lanyard_free(id);
	id = NULL;
	assert_int_equal(lanyard_jwt_source_fetch(js, aud, 0, NULL, &forged, NULL, err, sizeof(err)),
			 LANYARD_EINVAL);

	/* By the agent. */
	assert_int_equal(lanyard_jwt_source_validate(js, token, "svc-b", &id, &claims, err,
						     sizeof(err)),
			 LANYARD_OK);
	assert_string_equal(id, "spiffe://example.org/jwt");
	assert_non_null(strstr(claims, "\"sub\""));
	lanyard_free(id);
	lanyard_free(claims);
	assert_int_equal(lanyard_jwt_source_validate(js, token, "svc-c", NULL, NULL, err,
						     sizeof(err)),
			 LANYARD_EREJECTED);
	assert_non_null(strstr(err, "audience"));

	/* Locally, with the bundle fetched once and cached. */
	assert_int_equal(lanyard_jwt_source_validate_local(js, token, "svc-a", &id, &claims, err,
							   sizeof(err)),
			 LANYARD_OK);
	assert_string_equal(id, "spiffe://example.org/jwt");
	assert_non_null(strstr(claims, "\"aud\":[\"svc-a\",\"svc-b\"]"));
	lanyard_free(id);
	lanyard_free(claims);
	assert_int_equal(fake_agent_jwt_bundle_calls(fa), 1);
	assert_int_equal(lanyard_jwt_source_validate_local(js, token, "svc-b", NULL, NULL, err,
							   sizeof(err)),
			 LANYARD_OK);
	assert_int_equal(fake_agent_jwt_bundle_calls(fa), 1);
	assert_int_equal(lanyard_jwt_source_validate_local(js, token, "svc-z", NULL, NULL, err,
							   sizeof(err)),
			 LANYARD_EREJECTED);

	/* A token signed by another key under the same kid: rejected both ways. */
	{
		const char *a1[] = {"svc-a"};

		assert_int_equal(jwt_sign(other, "k1", "spiffe://example.org/jwt", a1, 1,
					  now_unix(), now_unix() + 60, &forged),
				 0);
	}
	assert_int_equal(lanyard_jwt_source_validate_local(js, forged, "svc-a", NULL, NULL, err,
							   sizeof(err)),
			 LANYARD_EREJECTED);
	assert_non_null(strstr(err, "signature"));
	assert_int_equal(lanyard_jwt_source_validate(js, forged, "svc-a", NULL, NULL, err,
						     sizeof(err)),
			 LANYARD_EREJECTED);
	assert_int_equal(lanyard_jwt_source_validate_local(js, "a.b.c", "svc-a", NULL, NULL, err,
							   sizeof(err)),
			 LANYARD_EREJECTED);

	/* Offline, against a JWK Set. */
	{
		struct jwks *s = jwks_new();
		uint8_t *spki;
		size_t spki_len;
		char *json;

		assert_int_equal(lkey_public_der(key, &spki, &spki_len), 0);
		assert_int_equal(jwks_add(s, "k1", spki, spki_len), 0);
		json = jwks_to_json(s);
		assert_int_equal(lanyard_jwt_validate(token, "svc-a", json, strlen(json), &id, NULL,
						      err, sizeof(err)),
				 LANYARD_OK);
		assert_string_equal(id, "spiffe://example.org/jwt");
		lanyard_free(id);
		assert_int_equal(lanyard_jwt_validate(forged, "svc-a", json, strlen(json), NULL,
						      NULL, err, sizeof(err)),
				 LANYARD_EREJECTED);
		assert_int_equal(lanyard_jwt_validate(token, "svc-a", "{not json", 9, NULL, NULL,
						      err, sizeof(err)),
				 LANYARD_EINVAL);
		free(json);
		free(spki);
		jwks_free(s);
	}

	/* The agent restarts: the next call reconnects by itself. */
	fake_agent_stop(fa);
	unlink(sock);
	assert_int_equal(lanyard_jwt_source_fetch(js, aud, 1, NULL, &id, NULL, err, sizeof(err)),
			 LANYARD_EIO);
	assert_null(id);
	assert_int_equal(fake_agent_start(sock, &fa), 0);
	fake_agent_set_jwt(fa, key, "spiffe://example.org/jwt", "example.org");
	lanyard_free(token);
	assert_int_equal(lanyard_jwt_source_fetch(js, aud, 1, NULL, &token, NULL, err, sizeof(err)),
			 LANYARD_OK);
	lanyard_free(token);
	fake_agent_stop(fa);
	free(forged);
	lanyard_jwt_source_free(js);
	lkey_free(key);
	lkey_free(other);
}

static void test_misc(void **state)
{
	assert_string_equal(lanyard_version(), LANYARD_VERSION);
	assert_string_equal(lanyard_strerror(LANYARD_EDENIED),
			    "the agent has no identity for this process");
	assert_string_equal(lanyard_strerror(12345), "unknown error");
	assert_int_equal(lanyard_spiffeid_check("spiffe://example.org/x", NULL, 0), LANYARD_OK);
	assert_int_equal(lanyard_spiffeid_check("spiffe://example.org", NULL, 0), LANYARD_EINVAL);
	lanyard_free(NULL);
	lanyard_free_secret(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_misc),
		cmocka_unit_test(test_authorizers),
		cmocka_unit_test(test_source_context),
		cmocka_unit_test(test_source_rotation_and_bad_updates),
		cmocka_unit_test(test_source_agent_away),
		cmocka_unit_test(test_log_func),
		cmocka_unit_test(test_source_free_quiet),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_tls_without_svid),
		cmocka_unit_test(test_jwt),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
