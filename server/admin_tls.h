/* admin_tls.h: the admin API over mutual TLS (admin_bind_address / admin_bind_port), for
 * controllers and CI jobs that manage entries with their own X509-SVID.
 *
 * The listener is a libmicrohttpd daemon with GnuTLS (as bundle_endpoint.c) that serves the very
 * routes of the Unix socket (admin_api.c's handler): only the caller's identity differs. It
 * presents the server's own X509-SVID (spiffe://<td>/lanyard/server, minted from the CA and
 * renewed at half its life by a second daemon on the same socket) and requires a client
 * certificate in the handshake. admin_api.c's authorization asks admin_tls_authorize, on every
 * request, whether the peer is an "admin SVID peer": an X509-SVID (not a CA) of this trust domain
 * that chains to the current bundle (all live authorities), whose SPIFFE ID is not in the
 * server's and agents' namespace (spiffe://<td>/lanyard/...) and is the SPIFFE ID of an unexpired
 * entry marked admin. Removing the flag or the entry therefore refuses the next request.
 * Refusals are counted by reason (admin_tls_stats) and logged at most once per reason every
 * ADMIN_TLS_LOG_INTERVAL_S seconds.
 *
 * Threading: admin_tls_start/tick/stop on the server's loop thread; admin_tls_authorize and the
 * counters on the daemon's connection threads (the counters are atomic). */
#ifndef LANYARD_ADMIN_TLS_H
#define LANYARD_ADMIN_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

struct admin_api;
struct ca;

#define ADMIN_TLS_SVID_TTL 3600
#define ADMIN_TLS_LOG_INTERVAL_S 10

enum admin_tls_result {
	ADMIN_TLS_OK,
	ADMIN_TLS_NO_CERTIFICATE,
	ADMIN_TLS_WRONG_TRUST_DOMAIN,
	ADMIN_TLS_UNTRUSTED_CHAIN,
	ADMIN_TLS_RESERVED_ID,	/* the server's or an agent's SVID: never admin */
	ADMIN_TLS_NOT_ADMIN,
	ADMIN_TLS_INTERNAL,	/* the bundle or the datastore could not be read */
	ADMIN_TLS_RESULT_N
};
/* Metric label of each result ("ok", "no_certificate", ...). */
extern const char *const admin_tls_result_names[ADMIN_TLS_RESULT_N];

struct admin_tls_stats {
	uint64_t requests[ADMIN_TLS_RESULT_N];
};

struct admin_tls;

/* Binds address:port (port 0 only in tests: ephemeral), mints the listener's SVID from ca and
 * starts serving api's routes. api and ca must outlive the listener. 0, or -1 with a reason in err
 * (naming the address; the caller names the config keys). */
int admin_tls_start(struct admin_api *api, struct ca *ca, const char *address, int port,
		    struct admin_tls **out, char *err, size_t errlen);
/* Renews the listener's SVID when due. Call it every second or so; errors are logged here. */
void admin_tls_tick(struct admin_tls *t, int64_t now);
int admin_tls_port(const struct admin_tls *t);
void admin_tls_get_stats(const struct admin_tls *t, struct admin_tls_stats *out);
/* Stops serving (in-flight requests finish first) and frees (wipes the key). NULL-safe. */
void admin_tls_stop(struct admin_tls *t);

/* Whether the peer of conn (a connection of t's daemon) is an admin SVID peer. Counts the
 * result; on refusal writes the reason for the 403 answer into why and logs it (rate-limited). */
enum admin_tls_result admin_tls_authorize(struct admin_tls *t, struct MHD_Connection *conn,
					  char *why, size_t whylen);

#endif
