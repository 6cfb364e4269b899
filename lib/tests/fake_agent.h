/* fake_agent.h: an in-process SPIFFE Workload API server for tests (grpc_server on a libuv loop
 * in its own thread) whose answers the test sets, plus a tiny PKI to make SVIDs with. */
#ifndef LANYARD_FAKE_AGENT_H
#define LANYARD_FAKE_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"

struct fake_agent;

/* Serves on a Unix socket at path. 0 or -1. */
int fake_agent_start(const char *path, struct fake_agent **out);
/* Ends open streams (UNAVAILABLE), stops the loop, joins its thread and frees. */
void fake_agent_stop(struct fake_agent *fa);

/* The packed X509SVIDResponse served from now on: the first message of new FetchX509SVID
 * streams, and pushed at once to the open ones. */
void fake_agent_set_x509(struct fake_agent *fa, const uint8_t *msg, size_t len);
/* Answer FetchX509SVID with this status instead, and end the open streams with it. */
void fake_agent_fail_x509(struct fake_agent *fa, int status, const char *message);
/* Number of FetchX509SVID streams open right now. */
int fake_agent_x509_streams(struct fake_agent *fa);
/* Number of FetchX509SVID calls received since the start. */
int fake_agent_x509_calls(struct fake_agent *fa);

/* JWT: tokens are signed with key (kid "k1") for sub spiffe_id; the JWT bundle maps td to
 * that key. The fake takes no ownership of key, which must outlive it. */
void fake_agent_set_jwt(struct fake_agent *fa, const lkey *key, const char *spiffe_id,
			const char *td);
/* Number of FetchJWTBundles calls received. */
int fake_agent_jwt_bundle_calls(struct fake_agent *fa);

/* ---- PKI ---- */

struct test_ca {
	lkey *key;
	uint8_t *der;
	size_t len;
};
int test_ca_new(const char *td, struct test_ca *ca);
void test_ca_free(struct test_ca *ca);

struct test_svid {
	char spiffe_id[256];
	char hint[32];
	uint8_t *chain; /* DER leaf (+ intermediates) */
	size_t chain_len;
	uint8_t *key; /* PKCS#8 */
	size_t key_len;
	const uint8_t *bundle; /* not owned */
	size_t bundle_len;
};
/* An X509-SVID for spiffe_id signed by ca, valid from now - 10 s for ttl seconds. */
int test_svid_new(const struct test_ca *ca, const char *spiffe_id, int64_t ttl,
		  struct test_svid *out);
void test_svid_free(struct test_svid *s);

/* Packs an X509SVIDResponse of the SVIDs and federated bundles (fed_ids "spiffe://td").
 * The caller frees. */
uint8_t *test_x509_response(const struct test_svid *svids, size_t n, const char *const *fed_ids,
			    const uint8_t *const *fed_der, const size_t *fed_len, size_t n_fed,
			    size_t *len);

#endif
