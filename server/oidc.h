/* oidc.h: the OIDC discovery endpoint, so that relying parties that speak OpenID Connect (AWS IAM
 * OIDC providers, GCP workload identity federation, Azure, Vault) accept JWT-SVIDs:
 *
 *   GET /.well-known/openid-configuration   {"issuer", "jwks_uri", "response_types_supported",
 *                                            "subject_types_supported",
 *                                            "id_token_signing_alg_values_supported"}
 *   GET /keys                               the JWK Set of the trust domain's JWT authorities
 *
 * When the issuer URL has a path (https://host/lanyard) both are also served under it
 * (/lanyard/.well-known/..., /lanyard/keys), for an ingress that does not strip the prefix.
 * HEAD is answered like GET; other methods get 405 with an Allow header, other paths 404.
 *
 * The keys are those of the CA's bundle (ca_bundle_get): prepared authorities are in it before
 * they sign, an authority leaves it only when it expires (no JWT-SVID outlives its authority),
 * and with a shared datastore it holds every server's authorities. The documents are rebuilt
 * when the bundle's sequence changes.
 *
 * Transport: HTTPS (libmicrohttpd over GnuTLS) with a PEM certificate chain and key, or plain
 * HTTP for behind a TLS-terminating ingress. A renewed certificate is picked up by
 * oidc_reload_tls, which the owner's loop calls on a timer.
 *
 * Threading: libmicrohttpd serves from its own thread and reads the CA through its thread-safe
 * functions; the owner's loop never waits for a request. oidc_stats may be called from any
 * thread (it may render the documents, a few milliseconds at most). */
#ifndef LANYARD_OIDC_H
#define LANYARD_OIDC_H

#include <stddef.h>
#include <stdint.h>

#include "ca.h"

struct oidc_options {
	const char *address;   /* listen address (numeric or a name) */
	int port;              /* > 0; a negative port picks an ephemeral one (tests) */
	const char *issuer;    /* https:// or http:// URL, no query, fragment or trailing '/' */
	const char *cert_file; /* PEM chain, leaf first; NULL (with key_file NULL): plain HTTP */
	const char *key_file;  /* PEM private key; others may not read it */
	struct ca *ca;         /* must outlive the endpoint */
	int64_t max_age_s;     /* Cache-Control max-age of the answers */
};

struct oidc;

/* Checks an issuer URL; 0, or -1 with the reason in why. */
int oidc_issuer_check(const char *issuer, char *why, size_t whylen);

/* Loads the certificate and key (when given), binds and starts serving. 0, or -1 with a reason
 * naming the file or the address in err. */
int oidc_start(const struct oidc_options *o, struct oidc **out, char *err, size_t errlen);
/* Stops serving (waiting for requests in progress), wipes the key and frees. NULL-safe. */
void oidc_stop(struct oidc *o);
int oidc_port(const struct oidc *o);
/* HTTPS: looks at the certificate and key files (every few seconds at most; cheap otherwise)
 * and, when they changed and still hold a certificate with its key, serves the new pair from
 * then on (connections in progress are closed). A bad pair is logged once and the old one kept.
 * 1 reloaded, 0 nothing to do, -1 failed. NULL-safe. Owner's loop thread only. */
int oidc_reload_tls(struct oidc *o, int64_t now);

enum oidc_route { OIDC_DISCOVERY, OIDC_KEYS, OIDC_OTHER, OIDC_ROUTES_N };
extern const char *const oidc_route_names[OIDC_ROUTES_N];
#define OIDC_STATUS_N 5
extern const unsigned int oidc_status_codes[OIDC_STATUS_N]; /* 200, 400, 404, 405, 500 */
struct oidc_stats {
	/* Answers by route and status: [route][i] counts oidc_status_codes[i] (500 also stands
	 * for any other). */
	uint64_t answers[OIDC_ROUTES_N][OIDC_STATUS_N];
	uint64_t keys;     /* JWT keys in the JWK Set (rendered again if the bundle changed) */
	int tls;           /* 1 when serving HTTPS */
	uint64_t reloads;  /* renewed certificates taken into use */
};
void oidc_stats(struct oidc *o, struct oidc_stats *out);

#endif
