/* workload_client.h: a small blocking client of the SPIFFE Workload API (SPIFFE_Workload_API.md).
 *
 * Finds the agent through an explicit address, else SPIFFE_ENDPOINT_SOCKET ("unix:///abs/path"),
 * else WORKLOAD_DEFAULT_SOCKET; sends the "workload.spiffe.io: true" header on every call.
 * One client is used by one thread at a time.
 *
 * Errors: functions return 0, or a negative value with a message in err. When the agent answered
 * with a gRPC status, WORKLOAD_ESTATUS is returned and *status holds the code (grpc.h), err the
 * agent's message; other failures (no socket, transport, malformed answer) return WORKLOAD_EIO. */
#ifndef LANYARD_WORKLOAD_CLIENT_H
#define LANYARD_WORKLOAD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define WORKLOAD_DEFAULT_SOCKET "/run/lanyard/agent/api.sock"
#define WORKLOAD_ENDPOINT_ENV "SPIFFE_ENDPOINT_SOCKET"

#define WORKLOAD_EIO -1
#define WORKLOAD_ESTATUS -2

struct workload_client;

/* The socket path to use: addr (a path or "unix://" URI) when not NULL, else the environment,
 * else the default. "tcp://" addresses are refused. Writes the path into out. 0 or -1 (err). */
int workload_resolve_socket(const char *addr, char *out, size_t outlen, char *err, size_t errlen);
/* Connects (timeout_ms bounds the connection, -1 = none). addr as in workload_resolve_socket. */
int workload_client_connect(const char *addr, int timeout_ms, struct workload_client **out,
			    char *err, size_t errlen);
/* Bounds every later call (-1 = none; the default is 30 s). */
void workload_client_set_timeout(struct workload_client *c, int timeout_ms);
void workload_client_close(struct workload_client *c);

/* A map of trust domain ID ("spiffe://example.org") to bundle bytes. */
struct workload_bundle {
	char *trust_domain_id;
	uint8_t *data; /* X.509: concatenated DER certificates; JWT: JWK Set JSON (NUL-terminated) */
	size_t len;
};

struct workload_x509_svid {
	char *spiffe_id;
	char *hint;     /* "" when none */
	uint8_t *chain; /* DER certificates, leaf first */
	size_t chain_len;
	uint8_t *key;   /* PKCS#8 DER; wiped when freed */
	size_t key_len;
	uint8_t *bundle; /* DER CA certificates of the SVID's trust domain */
	size_t bundle_len;
};

/* One FetchX509SVID message: the full X.509 context at that moment. */
struct workload_x509_context {
	struct workload_x509_svid *svids;
	size_t n_svids;
	struct workload_bundle *federated; /* federated_bundles */
	size_t n_federated;
};
void workload_x509_context_free(struct workload_x509_context *x);

/* The first message of FetchX509SVID. */
int workload_fetch_x509(struct workload_client *c, struct workload_x509_context *out, int *status,
			char *err, size_t errlen);

/* Called for each message of the stream (the context is freed after the call). Return 0 to go
 * on, nonzero to stop (workload_watch_x509 then returns that value). */
typedef int (*workload_x509_cb)(void *ud, const struct workload_x509_context *x);
/* Follows FetchX509SVID until the callback says stop, the stream ends (its status is returned as
 * WORKLOAD_ESTATUS, with OK when it ended cleanly), or no message came for idle_timeout_ms
 * (-1 = wait forever; a timeout returns WORKLOAD_EIO with err "timeout"). */
int workload_watch_x509(struct workload_client *c, workload_x509_cb cb, void *ud,
			int idle_timeout_ms, int *status, char *err, size_t errlen);

struct workload_bundles {
	struct workload_bundle *v;
	size_t n;
};
void workload_bundles_free(struct workload_bundles *b);
/* The first message of FetchX509Bundles / FetchJWTBundles. */
int workload_fetch_x509_bundles(struct workload_client *c, struct workload_bundles *out,
				int *status, char *err, size_t errlen);
int workload_fetch_jwt_bundles(struct workload_client *c, struct workload_bundles *out,
			       int *status, char *err, size_t errlen);

struct workload_jwt_svid {
	char *spiffe_id;
	char *token;
	char *hint;
};
struct workload_jwt_svids {
	struct workload_jwt_svid *v;
	size_t n;
};
void workload_jwt_svids_free(struct workload_jwt_svids *j);
/* One JWT-SVID per entitled identity, or only spiffe_id's when it is not NULL. */
int workload_fetch_jwt(struct workload_client *c, const char *const *audiences, size_t n_audiences,
		       const char *spiffe_id, struct workload_jwt_svids *out, int *status, char *err,
		       size_t errlen);

/* The agent's validation of token for audience: the subject and the claims as JSON text
 * (caller frees both). */
int workload_validate_jwt(struct workload_client *c, const char *audience, const char *token,
			  char **spiffe_id, char **claims_json, int *status, char *err,
			  size_t errlen);

#endif
