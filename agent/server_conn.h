/* server_conn.h: the agent's connection to the server's node API (gRPC over TLS 1.3).
 *
 * It builds the TLS context for each connection (the given trust bundle, or no check at all
 * under insecure_bootstrap when there is none; the agent SVID and key for mutual TLS when
 * given), connects, and refuses any peer that is not spiffe://<trust domain>/lanyard/server.
 * Then it carries unary calls and opens server streams on that connection, and checks the trust
 * bundles the server sends over it.
 *
 * Failover: the connection is made from a list of configured endpoints ("host:port"). Every
 * address a host name resolves to is a candidate of its own; the list is resolved at the first
 * connect and again each time the rotation wraps around, so DNS changes are picked up. The first
 * candidate is drawn at random, so that a fleet of agents spreads over the servers; after a
 * failure the caller asks server_conn_failover() to move to the next one and waits the jittered
 * exponential backoff that server_conn_backoff_ms() hands out (from 0.5 s, doubling after each
 * full round over the candidates, at most 30 s), until server_conn_connected() says a session
 * worked. Any server of the trust domain accepts the
 * agent's SVID, so moving never needs a new attestation.
 *
 * Threads: the sync thread of node_client.c makes every call but one; server_conn_abort() is
 * for any thread (node_client_stop), to cut a blocking connect or call short. The connection
 * owns its grpc_client and its candidate list; streams opened on it are the caller's to cancel
 * before closing. */
#ifndef LANYARD_SERVER_CONN_H
#define LANYARD_SERVER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "keys.h"
#include "node.pb-c.h"

struct server_conn;
struct grpc_stream;

/* A configured address of the node API: a host name or an IP literal (IPv6 without brackets)
 * and a port. */
struct server_endpoint {
	char *host;
	int port;
};

/* The longest candidate label: "host:port (address)". */
#define SERVER_LABEL_MAX 320
#define SERVER_ENDPOINTS_MAX 64

/* Parses "host:port" strictly ("[v6]:port" for IPv6; a decimal port 1-65535; a host name of
 * letters, digits, '-' and '.', or an IP literal). 0 with out->host (the caller's), or -1 with
 * why. */
int server_endpoint_parse(const char *text, struct server_endpoint *out, char *why, size_t whylen);
/* Checks a bare host name or IP literal (the server_address key). 0, or -1 with why. */
int server_host_check(const char *host, char *why, size_t whylen);
/* Frees the hosts of n endpoints and the array. NULL-safe. */
void server_endpoints_free(struct server_endpoint *eps, size_t n);

/* eps: n >= 1 endpoints, copied. */
struct server_conn *server_conn_new(const struct server_endpoint *eps, size_t n,
				    const char *trust_domain, bool insecure_bootstrap);
/* Closes the connection, if any, and frees. Only once no other thread can abort it. */
void server_conn_free(struct server_conn *c);

/* Connects (closing any previous connection) and checks the server's identity. roots: the DER
 * CA certificates to check the server with; NULL only under insecure_bootstrap. chain and key:
 * the agent SVID (DER, leaf first) for mutual TLS, or NULL to connect without one (attestation).
 * 0, or -1 with err (also after server_conn_abort: "stopping"). */
int server_conn_open(struct server_conn *c, const uint8_t *roots, size_t roots_len,
		     const uint8_t *chain, size_t chain_len, const lkey *key, char *err,
		     size_t errlen);
void server_conn_close(struct server_conn *c);
/* Every connection opened from now on ends its waits for server messages early when fd
 * becomes readable (grpc_client_set_wake_fd). Sync thread, before the first open. */
void server_conn_set_wake_fd(struct server_conn *c, int fd);
/* Shuts the live socket down and makes every later server_conn_open() fail. */
void server_conn_abort(struct server_conn *c);

/* Resolves the endpoints and draws the first candidate, unless done already (server_conn_open()
 * does it too). Blocks on the resolver. */
void server_conn_resolve(struct server_conn *c);
/* The candidate connected to, or the one the next server_conn_open() tries: "host:port", or
 * "name:port (address)" for a resolved host name; "" before the first resolution. */
const char *server_conn_current(const struct server_conn *c);
/* How many candidates the last resolution found (0 before the first resolution). */
size_t server_conn_candidates(const struct server_conn *c);
/* After a failure of the current candidate: moves to the next one (resolving the endpoints again
 * when the rotation wraps). Returns true when the candidate changed (false with one candidate). */
bool server_conn_failover(struct server_conn *c);
/* The failure streak grows by one: returns the milliseconds to wait before the next attempt,
 * drawn uniformly from 100 ms to min(500 ms * 2^rounds, 30 s) (full jitter), rounds = (streak - 1)
 * / candidates. */
int64_t server_conn_backoff_ms(struct server_conn *c);
/* A session with the current candidate worked: the failure streak ends. */
void server_conn_connected(struct server_conn *c);

/* A unary call of a node API method ("Attest"). 0 when the call completed (*status set; on OK
 * *resp holds the answer, the caller's to free), -1 on a transport failure (the connection is
 * then unusable). */
int server_conn_call(struct server_conn *c, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *rdesc, ProtobufCMessage **resp, int *status,
		     char *err, size_t errlen);
/* Opens a server stream of a node API method. 0, or -1 with err. */
int server_conn_stream(struct server_conn *c, const char *method, const ProtobufCMessage *req,
		       struct grpc_stream **out, char *err, size_t errlen);

/* Checks a bundle the server sent (its trust domain, its X.509 authorities) and converts it:
 * *der_out gets the CA certificates as concatenated DER, *jwt_out the JWT authorities as a JWK
 * Set (unusable keys are left out with a warning); both are the caller's. 0, or -1 with err. */
int server_conn_decode_bundle(const struct server_conn *c, const Lanyard__Node__V1__Bundle *b,
			      uint8_t **der_out, size_t *len_out, char **jwt_out, char *err,
			      size_t errlen);
/* The same for a federated bundle: a valid trust domain other than ours, with X.509 or JWT
 * authorities (*len_out may be 0). */
int server_conn_decode_foreign_bundle(const struct server_conn *c,
				      const Lanyard__Node__V1__Bundle *b, uint8_t **der_out,
				      size_t *len_out, char **jwt_out, char *err, size_t errlen);

#endif
