/* tls_harness.h: helpers shared by liblanyard's tests (test_liblanyard.c, test_tls_resume.c):
 * fake agents serving one SVID each with an X.509 source on them ("peers"), and mutual TLS
 * between two lanyard_tls configurations over a socketpair, the server side on a thread.
 * Everything asserts with cmocka. Single-threaded use by one test at a time. */
#ifndef LANYARD_TLS_HARNESS_H
#define LANYARD_TLS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <lanyard.h>

#include "fake_agent.h"

/* The test's scratch directory (the sockets live there); the test's setup fills it. */
extern char harness_dir[64];

/* cmocka group setup and teardown: makes harness_dir and sets the library's log level (errors
 * only, all with $LANYARD_TEST_DEBUG); removes harness_dir. */
int harness_setup(void **state);
int harness_teardown(void **state);
/* harness_dir/name.sock (one of 8 rotating static buffers). */
const char *sock_path(const char *name);
void ms_sleep(int ms);
/* Waits (bounded) until the source's generation reaches gen. */
bool wait_generation(lanyard_x509_source *src, uint64_t gen, int timeout_ms);
/* Serves one SVID (with its CA as bundle) from fa. */
void serve_svid(struct fake_agent *fa, const struct test_svid *s);
void serial_of(const struct test_svid *s, char *out, size_t outlen);

struct peer {
	lanyard_x509_source *src;
	struct fake_agent *fa;
	struct test_svid svid;
};

/* A fake agent serving spiffe_id signed by ca, with trust (ca when NULL) as the bundle of its
 * trust domain and an optional federated bundle, and a source on it. */
void peer_start_ex(struct peer *p, const char *name, const struct test_ca *ca,
		   const char *spiffe_id, const struct test_ca *fed, const char *fed_id,
		   const struct test_ca *trust);
void peer_start(struct peer *p, const char *name, const struct test_ca *ca,
		const char *spiffe_id, const struct test_ca *fed, const char *fed_id);
/* A new SVID from ca with the same ID, waited for. */
void peer_rotate(struct peer *p, const struct test_ca *ca);
void peer_stop(struct peer *p);

/* What the client of conn_open does: TLS 1.2 when client_tls12 (else 1.3), offering
 * client_session when set, and through lanyard_tls_ssl_new_peer(client_peer) when set. */
extern int client_tls12;
extern WOLFSSL_SESSION *client_session;
extern const char *client_peer;
/* When set, the server side of conn_open is a plain wolfSSL session of this ctx instead. */
extern WOLFSSL_CTX *raw_server_ctx;

struct conn {
	WOLFSSL *cli, *srv;
	int fds[2];
	int srv_ok, cli_ok;
	lanyard_tls *stls;
};

/* Handshake between the two configurations over a socketpair. */
void conn_open(struct conn *c, lanyard_tls *stls, lanyard_tls *ctls);
/* One round trip; true when the message came back. */
bool conn_echo(struct conn *c, const char *msg);
/* The client's view when the server refused it after the client's handshake completed (TLS
 * 1.3): its first read fails. */
bool client_read_fails(struct conn *c);
void conn_close(struct conn *c);

#endif
