/* bundle_endpoint.h: the SPIFFE bundle endpoint (SPIFFE Federation): `GET /` over HTTPS answers the
 * trust domain's bundle as a SPIFFE bundle document (JWK Set with spiffe_sequence and
 * spiffe_refresh_hint); HEAD likewise, other methods 405, other paths 404.
 *
 * Profiles: https_spiffe (the server presents an X509-SVID for spiffe://<td>/lanyard/server that
 * this module mints from the CA with a key of its own and renews at half its lifetime) or
 * https_web (a certificate and key from files, e.g. from a public CA).
 *
 * Why libmicrohttpd: Debian builds it with GnuTLS, so HTTPS is a daemon option (the certificate
 * chain and key as PEM in memory), with its own thread, connection limits and timeouts, like the
 * operator endpoints (common/opserver.c). A certificate cannot be swapped in a running daemon, so
 * a renewal starts a second daemon on the same listening socket (MHD_quiesce_daemon hands it
 * over without closing it: no moment without a listener) and then stops the old one. A wolfSSL
 * responder would need its own HTTP parsing, timeouts and limits for one static document.
 *
 * Threading: bundle_endpoint_start/tick/stop on the server's loop; MHD's thread only copies the
 * published document under a mutex. */
#ifndef LANYARD_BUNDLE_ENDPOINT_H
#define LANYARD_BUNDLE_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca.h"

struct bundle_endpoint_options {
	const char *address;
	int port;            /* > 0; 0 only in tests: an ephemeral port */
	const char *trust_domain;
	int64_t refresh_hint; /* seconds, published as spiffe_refresh_hint */
	bool https_web;       /* else https_spiffe */
	const char *cert_file, *key_file; /* https_web: PEM chain and key (0600) */
};

struct bundle_endpoint;

/* Binds, mints the first SVID (https_spiffe) or reads the files (https_web) and starts serving.
 * ca must outlive the endpoint. 0, or -1 with a reason in err. */
int bundle_endpoint_start(const struct bundle_endpoint_options *o, struct ca *ca,
			  struct bundle_endpoint **out, char *err, size_t errlen);
/* Republishes the document when the bundle's sequence changed and renews the SVID when due.
 * Call it every second or so; errors are logged here (once per failing streak). */
void bundle_endpoint_tick(struct bundle_endpoint *e, int64_t now);
int bundle_endpoint_port(const struct bundle_endpoint *e);
/* The SPIFFE ID the endpoint presents (https_spiffe). */
const char *bundle_endpoint_spiffe_id(const struct bundle_endpoint *e);
/* Stops serving and frees (wipes the key). NULL-safe. */
void bundle_endpoint_stop(struct bundle_endpoint *e);

#endif
