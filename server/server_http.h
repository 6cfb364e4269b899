/* server_http.h: lanyard-server's operator endpoints (/live, /ready, /status, /metrics and the
 * page at /) on http_address:http_port, and the `healthcheck` subcommand that probes them.
 *
 * A 1 s timer on the loop gathers the node API's counters and the CA's authorities, builds the
 * documents and publishes them to the HTTP thread (common/opserver.h); it is also the loop's
 * heartbeat for /live. Datastore calls (the readiness ping and the counts of entries, agents and
 * tokens) can wait on SQLite's lock, so a thread of this module makes them and the timer only
 * reads their last results: nothing here blocks the loop. */
#ifndef LANYARD_SERVER_HTTP_H
#define LANYARD_SERVER_HTTP_H

#include <stddef.h>

#include <uv.h>

#include "ca.h"
#include "datastore.h"
#include "node_api.h"
#include "admin_tls.h"
#include "oidc.h"

struct server_http;

/* Starts serving on address:port. port 0 disables the endpoints (returns 0 with *out NULL); a
 * negative port picks an ephemeral one (tests; see server_http_port). *node is read on every
 * tick, so the caller may set it to NULL once the node API is gone. ds, ca and trust_domain must
 * outlive the server_http. Loop thread. 0, or -1 with a reason in err. */
int server_http_start(uv_loop_t *loop, const char *address, int port, struct datastore *ds,
		      struct ca *ca, struct node_api **node, const char *trust_domain,
		      struct server_http **out, char *err, size_t errlen);
/* Stops serving and the datastore thread (waiting for its call in progress); h is freed once its
 * timer has closed, so the loop must run afterwards. NULL-safe. Loop thread. */
void server_http_stop(struct server_http *h);
int server_http_port(const struct server_http *h);
/* /ready also fails, with the reason, while data_dir cannot be written (a scratch file is
 * tried every few seconds, then a datastore write). NULL-safe. Any thread. */
void server_http_watch_storage(struct server_http *h, const char *data_dir);

/* Counts the OIDC discovery endpoint's answers and keys in /metrics. o must outlive h's ticks
 * (stop h first). NULL-safe. Loop thread. */
void server_http_set_oidc(struct server_http *h, struct oidc *o);
/* Counts the mutual-TLS admin listener's requests by result in /metrics; like set_oidc. */
void server_http_set_admin_tls(struct server_http *h, struct admin_tls *t);
/* Also serves /metrics, and nothing else, on address:port (a negative port: ephemeral), e.g. on
 * the pod IP for Prometheus while the other endpoints stay on loopback. Fails when h is NULL
 * (http_port 0). Loop thread. 0, or -1 with a reason in err. */
int server_http_metrics_listener(struct server_http *h, const char *address, int port, char *err,
				 size_t errlen);
/* Adds the federation fetcher's state to /status ("federation") and /metrics. f must outlive h
 * (or be unset with NULL first). Loop thread. */
struct federation;
void server_http_set_federation(struct server_http *h, struct federation *f);

/* `lanyard-server healthcheck [--config FILE]`: 0 when /ready answers 200, else 1 with the
 * reason on stderr. argv[0] is "healthcheck". */
int server_healthcheck_main(int argc, char **argv);

#endif
