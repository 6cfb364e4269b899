/* server_svid.h: an X509-SVID for the server's own TLS listeners (the bundle endpoint's
 * https_spiffe profile, the admin listener): a fresh P-256 key and a certificate from the CA,
 * both as PEM, as libmicrohttpd takes them. Stateless; thread-safe as ca_sign_x509 is. */
#ifndef LANYARD_SERVER_SVID_H
#define LANYARD_SERVER_SVID_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "ca.h"

struct MHD_Daemon;

/* A TLS daemon of libmicrohttpd and the PEM it was started with (MHD reads them while it runs). */
struct svid_daemon {
	struct MHD_Daemon *mhd;
	char *cert_pem, *key_pem;
};
/* Stops the daemon (joining its threads), wipes the key, frees both PEMs and zeroes d. */
void svid_daemon_stop(struct svid_daemon *d);

/* Mints spiffe_id (e.g. spiffe://<td>/lanyard/server) for ttl seconds (the CA caps it). The
 * caller frees *cert_pem and wipes and frees *key_pem. 0, or -1 with a reason in err. */
int server_svid_mint(struct ca *ca, const char *spiffe_id, int64_t ttl, int64_t now,
		     char **cert_pem, char **key_pem, int64_t *not_after, char *err, size_t errlen);

/* A listener that renews its SVID: the running daemon and when to renew it. */
struct svid_renewal {
	struct svid_daemon cur;
	int64_t renew_at;
	bool failing;
};
/* Starts a daemon on the owner's listening socket with d's PEM: 0, or -1. */
typedef int (*svid_daemon_start_fn)(void *owner, struct svid_daemon *d);

/* When r is due: mints spiffe_id for ttl seconds, quiesces the running daemon (the socket stays
 * open) and starts a new one with start(), the old one serving until then; the next renewal at
 * half the new lifetime, or a few seconds later after a failure, logged once per run of
 * failures with `what` naming the listener. Loop thread. */
void svid_renewal_tick(struct svid_renewal *r, struct ca *ca, const char *spiffe_id, int64_t ttl,
		       int64_t now, const char *what, svid_daemon_start_fn start, void *owner);

#endif
