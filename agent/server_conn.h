/* server_conn.h: the agent's connection to the server's node API (gRPC over TLS 1.3).
 *
 * It builds the TLS context for each connection (the given trust bundle, or no check at all
 * under insecure_bootstrap when there is none; the agent SVID and key for mutual TLS when
 * given), connects, and refuses any peer that is not spiffe://<trust domain>/lanyard/server.
 * Then it carries unary calls and opens server streams on that connection, and checks the trust
 * bundles the server sends over it.
 *
 * Threads: the sync thread of node_client.c makes every call but one; server_conn_abort() is
 * for any thread (node_client_stop), to cut a blocking connect or call short. The connection
 * owns its grpc_client; streams opened on it are the caller's to cancel before closing. */
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

struct server_conn *server_conn_new(const char *address, int port, const char *trust_domain,
				    bool insecure_bootstrap);
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
/* Shuts the live socket down and makes every later server_conn_open() fail. */
void server_conn_abort(struct server_conn *c);

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

#endif
