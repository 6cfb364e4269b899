/* lanyard.h: liblanyard, a small C client of the SPIFFE Workload API.
 *
 * - An X.509 source watches the agent (FetchX509SVID) from a background thread, reconnecting
 *   with backoff, and always holds the current SVIDs and trust bundles as immutable,
 *   reference-counted snapshots ("contexts").
 * - TLS glue makes wolfSSL sessions from the CURRENT SVID: every new connection uses the newest
 *   credentials, open connections keep theirs. Peers are verified against the bundle of their
 *   own trust domain and then authorized by SPIFFE ID (exact ID, one of a set, any member of a
 *   trust domain, or a callback); a refused peer fails the handshake.
 * - A JWT source fetches JWT-SVIDs and validates them, by the agent or locally against the
 *   JWT bundles.
 *
 * Conventions: functions returning int return LANYARD_OK (0) or a negative LANYARD_E* code;
 * when they take (char *err, size_t errlen), err then holds a human-readable reason (err may be
 * NULL). Strings and buffers the library allocates for the caller are released with
 * lanyard_free (lanyard_free_secret for private keys). Free and unref functions accept NULL.
 * All objects may be used from several threads at once unless stated otherwise.
 *
 * Only this header is public; it needs no other library's headers. The wolfSSL types are
 * forward-declared: include <wolfssl/options.h> and <wolfssl/ssl.h> to use the sessions. */
#ifndef LANYARD_H
#define LANYARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LANYARD_API __attribute__((visibility("default")))
#else
#define LANYARD_API
#endif

#define LANYARD_VERSION_MAJOR 0
#define LANYARD_VERSION_MINOR 1
#define LANYARD_VERSION_PATCH 0

/* ---- errors, memory, logging ---- */

enum {
	LANYARD_OK = 0,
	LANYARD_EINVAL = -1,    /* a bad argument, or malformed data from the agent or a peer */
	LANYARD_ENOMEM = -2,
	LANYARD_EIO = -3,       /* the agent cannot be reached, or the connection broke */
	LANYARD_ETIMEDOUT = -4,
	LANYARD_EDENIED = -5,   /* the agent answered PermissionDenied: no identity for this caller */
	LANYARD_EAGENT = -6,    /* the agent answered another error (Unavailable, InvalidArgument...) */
	LANYARD_EREJECTED = -7, /* a certificate, token or peer did not pass validation */
	LANYARD_ENOTFOUND = -8, /* no such SVID or bundle */
};

/* A short description of a LANYARD_E* code. Never NULL. */
LANYARD_API const char *lanyard_strerror(int code);
/* "0.1.0": the version of the library actually loaded. */
LANYARD_API const char *lanyard_version(void);
/* Frees memory returned by the library. */
LANYARD_API void lanyard_free(void *p);
/* Wipes a NUL-terminated secret (a private key in PEM form) and frees it. */
LANYARD_API void lanyard_free_secret(char *p);

enum lanyard_log_level {
	LANYARD_LOG_DEBUG = 0,
	LANYARD_LOG_INFO = 1,
	LANYARD_LOG_WARN = 2,
	LANYARD_LOG_ERROR = 3,
	LANYARD_LOG_NONE = 4,
};
/* The library logs one line per event on stderr (agent connection lost and back, refused
 * peers). The default level is LANYARD_LOG_INFO. Key material is never logged. */
LANYARD_API void lanyard_set_log_level(enum lanyard_log_level level);
/* Routes the library's log events into the application's logging instead of stderr: fn gets
 * each event's level and message (one line, no newline, no key material) and arg. It may be
 * called from the library's threads, concurrently. NULL restores stderr. */
typedef void (*lanyard_log_func)(enum lanyard_log_level level, const char *message, void *arg);
LANYARD_API void lanyard_set_log_func(lanyard_log_func fn, void *arg);

/* 0 when id is a valid SPIFFE ID of a workload ("spiffe://td/path"), else LANYARD_EINVAL. */
LANYARD_API int lanyard_spiffeid_check(const char *id, char *err, size_t errlen);

/* ---- X.509: sources, contexts, SVIDs ---- */

typedef struct lanyard_x509_source lanyard_x509_source;
/* One Workload API update: every SVID and bundle at that moment. Immutable. */
typedef struct lanyard_x509_context lanyard_x509_context;
/* An X509-SVID inside a context. Immutable; holding a reference keeps its context alive. */
typedef struct lanyard_x509_svid lanyard_x509_svid;

struct lanyard_x509_source_options {
	/* The agent: a path or "unix:///path". NULL: $SPIFFE_ENDPOINT_SOCKET, then
	 * /run/lanyard/agent/api.sock. */
	const char *socket;
	/* The default SVID is the one with this SPIFFE ID. NULL: the first one the agent lists. */
	const char *spiffe_id;
	/* Longest wait between two reconnection attempts, in ms. 0: 10000. */
	int backoff_max_ms;
};

/* Starts watching the agent from a background thread. Fails only on bad arguments (a malformed
 * socket address): an agent that is not up yet is retried in the background. */
LANYARD_API int lanyard_x509_source_new(const char *socket, lanyard_x509_source **out, char *err,
					size_t errlen);
LANYARD_API int lanyard_x509_source_new_opts(const struct lanyard_x509_source_options *opts,
					     lanyard_x509_source **out, char *err, size_t errlen);
/* Waits until the default SVID is available (timeout_ms < 0: forever). LANYARD_ETIMEDOUT then
 * carries the last problem in err ("agent: PERMISSION_DENIED: ..."). */
LANYARD_API int lanyard_x509_source_wait_ready(lanyard_x509_source *src, int timeout_ms,
					       char *err, size_t errlen);
/* The current context with a new reference (lanyard_x509_context_unref), NULL before the
 * first update. */
LANYARD_API lanyard_x509_context *lanyard_x509_source_context(lanyard_x509_source *src);
/* The current default SVID with a new reference (lanyard_x509_svid_unref), NULL when none. */
LANYARD_API lanyard_x509_svid *lanyard_x509_source_svid(lanyard_x509_source *src);
/* Number of updates received so far (0 before the first). */
LANYARD_API uint64_t lanyard_x509_source_generation(lanyard_x509_source *src);
/* The last failure of the background watch (LANYARD_OK while it is healthy), its reason in
 * err. */
LANYARD_API int lanyard_x509_source_status(lanyard_x509_source *src, char *err, size_t errlen);

/* Called on the source's thread after every update is installed. ctx is borrowed for the
 * call (take a reference to keep it). The callback must not free the source. Replaces any
 * earlier callback; cb NULL removes it. When set while a context is already held, it is
 * also called at once (on the caller's thread) with that context, which may then race with a
 * newer update: compare lanyard_x509_context_generation to keep the newest. */
typedef void (*lanyard_x509_update_cb)(void *ud, lanyard_x509_context *ctx);
LANYARD_API void lanyard_x509_source_on_update(lanyard_x509_source *src, lanyard_x509_update_cb cb,
					       void *ud);
/* Stops the thread, closes the connection and drops the source's references. Contexts and
 * SVIDs the caller still holds stay valid. TLS objects made from src must be freed first, and
 * no other call on src may be running (nor start) meanwhile. */
LANYARD_API void lanyard_x509_source_free(lanyard_x509_source *src);

LANYARD_API lanyard_x509_context *lanyard_x509_context_ref(lanyard_x509_context *ctx);
LANYARD_API void lanyard_x509_context_unref(lanyard_x509_context *ctx);
/* The update number this context came with (1 for the first). */
LANYARD_API uint64_t lanyard_x509_context_generation(const lanyard_x509_context *ctx);
LANYARD_API size_t lanyard_x509_context_svid_count(const lanyard_x509_context *ctx);
/* Borrowed (valid while ctx is held); NULL when i is out of range. */
LANYARD_API const lanyard_x509_svid *lanyard_x509_context_svid(const lanyard_x509_context *ctx,
							      size_t i);
/* The SVID chosen by the source options, NULL when the context has no such SVID. */
LANYARD_API const lanyard_x509_svid *
lanyard_x509_context_default_svid(const lanyard_x509_context *ctx);
/* Bundles, one per trust domain: the SVIDs' own and the federated ones. */
LANYARD_API size_t lanyard_x509_context_bundle_count(const lanyard_x509_context *ctx);
/* The trust domain name ("example.org") of the i-th bundle, NULL when out of range. */
LANYARD_API const char *lanyard_x509_context_bundle_td(const lanyard_x509_context *ctx, size_t i);
/* The CA certificates (concatenated DER, borrowed) of trust_domain ("example.org" or
 * "spiffe://example.org"). LANYARD_ENOTFOUND when the context has none. */
LANYARD_API int lanyard_x509_context_bundle(const lanyard_x509_context *ctx,
					    const char *trust_domain, const uint8_t **der,
					    size_t *len);
/* Same as PEM "CERTIFICATE" blocks (lanyard_free), NULL when absent. */
LANYARD_API char *lanyard_x509_context_bundle_pem(const lanyard_x509_context *ctx,
						  const char *trust_domain);

/* A new reference on the SVID (and so on its context). */
LANYARD_API lanyard_x509_svid *lanyard_x509_svid_ref(const lanyard_x509_svid *svid);
LANYARD_API void lanyard_x509_svid_unref(const lanyard_x509_svid *svid);
LANYARD_API const char *lanyard_x509_svid_spiffe_id(const lanyard_x509_svid *svid);
/* "example.org" */
LANYARD_API const char *lanyard_x509_svid_trust_domain(const lanyard_x509_svid *svid);
/* The agent's hint ("" when none). */
LANYARD_API const char *lanyard_x509_svid_hint(const lanyard_x509_svid *svid);
/* The leaf's serial number in lower-case hex. */
LANYARD_API const char *lanyard_x509_svid_serial(const lanyard_x509_svid *svid);
LANYARD_API int64_t lanyard_x509_svid_not_before(const lanyard_x509_svid *svid);
LANYARD_API int64_t lanyard_x509_svid_not_after(const lanyard_x509_svid *svid);
/* The certificate chain, leaf first, as concatenated DER (borrowed). */
LANYARD_API const uint8_t *lanyard_x509_svid_chain_der(const lanyard_x509_svid *svid, size_t *len);
LANYARD_API size_t lanyard_x509_svid_cert_count(const lanyard_x509_svid *svid);
/* The i-th certificate of the chain (0 = leaf) as DER (borrowed), NULL when out of range. */
LANYARD_API const uint8_t *lanyard_x509_svid_cert_der(const lanyard_x509_svid *svid, size_t i,
						      size_t *len);
/* The chain as PEM "CERTIFICATE" blocks, leaf first (lanyard_free). */
LANYARD_API char *lanyard_x509_svid_chain_pem(const lanyard_x509_svid *svid);
/* The private key as unencrypted PKCS#8 DER (borrowed; wiped when the context is freed). */
LANYARD_API const uint8_t *lanyard_x509_svid_key_der(const lanyard_x509_svid *svid, size_t *len);
/* The private key as PEM "PRIVATE KEY" (lanyard_free_secret). */
LANYARD_API char *lanyard_x509_svid_key_pem(const lanyard_x509_svid *svid);
/* The CA certificates of the SVID's own trust domain (concatenated DER, borrowed). */
LANYARD_API const uint8_t *lanyard_x509_svid_bundle_der(const lanyard_x509_svid *svid,
							size_t *len);

/* ---- authorizers: which peer SPIFFE IDs are accepted ---- */

typedef struct lanyard_authorizer lanyard_authorizer;

/* Any SPIFFE ID whose certificate verifies against its trust domain's bundle. */
LANYARD_API lanyard_authorizer *lanyard_authorize_any(void);
/* Exactly this ID. NULL when id is not a valid SPIFFE ID (or out of memory). */
LANYARD_API lanyard_authorizer *lanyard_authorize_id(const char *id);
/* One of these n IDs (n >= 1). NULL when one is not a valid SPIFFE ID. */
LANYARD_API lanyard_authorizer *lanyard_authorize_one_of(const char *const *ids, size_t n);
/* Any ID in trust_domain ("example.org" or "spiffe://example.org"). NULL when invalid. */
LANYARD_API lanyard_authorizer *lanyard_authorize_member_of(const char *trust_domain);
/* fn returns 0 to accept peer_id, nonzero to refuse. It runs during handshakes, possibly on
 * several threads at once. */
typedef int (*lanyard_authorize_fn)(void *ud, const char *peer_id);
LANYARD_API lanyard_authorizer *lanyard_authorize_func(lanyard_authorize_fn fn, void *ud);
/* LANYARD_OK when peer_id is accepted, LANYARD_EREJECTED otherwise. */
LANYARD_API int lanyard_authorizer_check(const lanyard_authorizer *a, const char *peer_id);
LANYARD_API void lanyard_authorizer_free(lanyard_authorizer *a);

/* ---- TLS with wolfSSL ----
 *
 * wolfSSL builds with FP_ECC (Debian's) keep a cache per thread that only that thread can
 * release: a thread that made handshakes calls wc_ecc_fp_free() before it exits (the source's
 * own thread does). */

struct WOLFSSL;
struct WOLFSSL_CTX;
typedef struct lanyard_tls lanyard_tls;

/* A TLS configuration (TLS 1.2 and 1.3) that presents the source's default SVID and requires
 * the peer's: its chain must verify against the bundle of the peer's trust domain, and its
 * SPIFFE ID must pass authz (copied; the caller keeps and frees its own). Session resumption is
 * off unless lanyard_tls_set_resumption turns it on. src must outlive the returned object, and
 * the object every session made from it. */
LANYARD_API int lanyard_tls_server_new(lanyard_x509_source *src, const lanyard_authorizer *authz,
				       lanyard_tls **out, char *err, size_t errlen);
LANYARD_API int lanyard_tls_client_new(lanyard_x509_source *src, const lanyard_authorizer *authz,
				       lanyard_tls **out, char *err, size_t errlen);
/* A new wolfSSL session with the newest credentials (the caller wolfSSL_free()s it; it keeps
 * its credentials for its whole life, whatever rotates meanwhile). LANYARD_ENOTFOUND while the
 * source has no default SVID. */
LANYARD_API int lanyard_tls_ssl_new(lanyard_tls *t, struct WOLFSSL **out, char *err,
				    size_t errlen);
/* Session resumption, off by default; max_sessions 0 turns it off again. Call it before the
 * first session (or ctx) is made from t: LANYARD_EINVAL afterwards, and with a wolfSSL built
 * without SESSION_CERTS (Debian's has it), which keeps no peer chain to check again.
 * - A client remembers the last session of up to max_sessions peers, named by the caller with
 *   lanyard_tls_ssl_new_peer, and offers it when it connects to that peer again.
 * - A server keeps up to max_sessions TLS 1.2 sessions (by session ID) and resumes them; it
 *   issues no session tickets, so TLS 1.3 connections always get a full handshake (a client
 *   that wants to resume against it caps itself at TLS 1.2).
 * A resumed handshake skips the certificate exchange, so the library checks the peer again
 * when it completes: the certificate chain the session was established with must still verify
 * against the CURRENT bundle of the peer's trust domain at the current time (an expired leaf
 * fails) and its SPIFFE ID must pass the authorizer; otherwise the handshake fails like a
 * refused full one (and a client forgets that session). Sessions are forgotten whenever the
 * source delivers a new update (the local SVID or the bundles changed): nothing is resumed
 * across a rotation; a session whose peer leaf has expired is not offered. A session made with
 * lanyard_tls_ctx + wolfSSL_new gets none of this: do not wolfSSL_set_session() on one. */
#define LANYARD_TLS_RESUMPTION_MAX 65536
LANYARD_API int lanyard_tls_set_resumption(lanyard_tls *t, size_t max_sessions, char *err,
					   size_t errlen);
/* Client: like lanyard_tls_ssl_new, for a connection to peer (any stable name of the peer, up
 * to 256 bytes: "host:port", a SPIFFE ID...), offering the session last established with it
 * when resumption is on. LANYARD_EINVAL on a server configuration. */
LANYARD_API int lanyard_tls_ssl_new_peer(lanyard_tls *t, const char *peer, struct WOLFSSL **out,
					 char *err, size_t errlen);
/* The current WOLFSSL_CTX with a new reference (wolfSSL_CTX_free), for code that creates its
 * own sessions with wolfSSL_new: call it again for each new session to follow rotations. NULL
 * while the source has no default SVID. */
LANYARD_API struct WOLFSSL_CTX *lanyard_tls_ctx(lanyard_tls *t, char *err, size_t errlen);
/* Why the last peer was refused, by any session of t ("" when none was); refusals are also
 * logged at the warn level. */
LANYARD_API void lanyard_tls_last_error(lanyard_tls *t, char *buf, size_t len);
LANYARD_API void lanyard_tls_free(lanyard_tls *t);

/* After a completed handshake: the peer's SPIFFE ID, or its leaf's serial in lower-case hex.
 * LANYARD_ENOTFOUND without a peer certificate, LANYARD_EINVAL when it holds no SPIFFE ID or
 * buf is too small. */
LANYARD_API int lanyard_tls_peer_id(struct WOLFSSL *ssl, char *buf, size_t len);
LANYARD_API int lanyard_tls_peer_serial(struct WOLFSSL *ssl, char *buf, size_t len);

/* ---- JWT-SVIDs ---- */

typedef struct lanyard_jwt_source lanyard_jwt_source;

/* A connection to the agent for JWT calls, opened on first use and reopened after failures.
 * socket as in lanyard_x509_source_new. Calls are serialized. */
LANYARD_API int lanyard_jwt_source_new(const char *socket, lanyard_jwt_source **out, char *err,
				       size_t errlen);
/* A JWT-SVID for the audiences (n >= 1), of spiffe_id, or of the first identity when NULL.
 * *token is freed with lanyard_free; *spiffe_id_out (may be NULL) too. */
LANYARD_API int lanyard_jwt_source_fetch(lanyard_jwt_source *js, const char *const *audiences,
					 size_t n, const char *spiffe_id, char **token,
					 char **spiffe_id_out, char *err, size_t errlen);
/* Validation by the agent (ValidateJWTSVID): on success the subject and the claims as JSON text
 * (both lanyard_free; either pointer may be NULL). An invalid token is LANYARD_EREJECTED. */
LANYARD_API int lanyard_jwt_source_validate(lanyard_jwt_source *js, const char *token,
					    const char *audience, char **spiffe_id,
					    char **claims_json, char *err, size_t errlen);
/* Local validation against the JWT bundle of the token's trust domain, fetched from the agent
 * (FetchJWTBundles) and cached; refreshed when a key id is unknown or after 30 s. */
LANYARD_API int lanyard_jwt_source_validate_local(lanyard_jwt_source *js, const char *token,
						  const char *audience, char **spiffe_id,
						  char **claims_json, char *err, size_t errlen);
LANYARD_API void lanyard_jwt_source_free(lanyard_jwt_source *js);

/* Offline validation against a JWK Set (a JWT bundle, "{"keys":[...]}"), no agent involved. */
LANYARD_API int lanyard_jwt_validate(const char *token, const char *audience, const char *jwks_json,
				     size_t jwks_len, char **spiffe_id, char **claims_json,
				     char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
