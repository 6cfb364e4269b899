/* opserver.h: the operator endpoints both daemons serve over plain HTTP (libmicrohttpd):
 *
 *   GET /live     200 while the owner's event loop calls opserver_heartbeat() often enough,
 *                 else 503
 *   GET /ready    the published readiness document; 200 when its "ready" member is true, else
 *                 503 (also 503 while the loop is stalled or the document has gone stale)
 *   GET /status   the published status document (JSON)
 *   GET /metrics  the published Prometheus text
 *   GET /         the HTML page given in the options
 *
 * HEAD is answered like GET; other methods get 405 with an Allow header, unknown paths 404, and
 * every error body is {"error": "..."}.
 *
 * Threading: MHD serves from its own thread and only ever copies the latest published snapshot,
 * so a request never waits for the daemon's event loop and a slow client never stalls it (idle
 * connections time out, their number is bounded). The owner's loop builds the documents and
 * publishes them with opserver_publish(); opserver_heartbeat() and opserver_publish() may be
 * called from any thread. */
#ifndef LANYARD_OPSERVER_H
#define LANYARD_OPSERVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct opserver_options {
	const char *address;       /* numeric IPv4/IPv6 address or host name; NULL: 127.0.0.1 */
	int port;                  /* 0: an ephemeral port (see opserver_port) */
	const char *name;          /* for log lines, e.g. "agent" */
	const char *index_html;    /* the page served at /; NULL: 404 */
	int64_t live_threshold_ms; /* /live fails when the last heartbeat is older; 0: 5000 */
	int64_t stale_after_ms;    /* /ready fails when the last publication is older; 0: 15000 */
	unsigned conn_timeout_s;   /* idle connections are closed after this; 0: 10 */
	unsigned conn_limit;       /* concurrent connections; 0: 64 */
	/* Optional: members added to the published status document each time /status is served,
	 * for what is too large to rebuild on every publication (an agent's 10,000 SVIDs). Runs on
	 * the HTTP thread, so it must be thread-safe and must not wait for the owner's loop. It
	 * returns a malloc'd text of JSON object members ("name":value, comma-separated, no
	 * braces), or NULL to add nothing. */
	char *(*status_members)(void *ud);
	void *status_ud;
	/* Optional: GET /list/<name>?q=...&page_token=... (q and page_token NULL when absent) is
	 * answered with the JSON text list() returns (malloc'd), or 404 when it returns NULL. For
	 * lists too long for /status (a server's entries and agents), read a page at a time. HTTP
	 * thread, like status_members (same ud). */
	char *(*list)(void *ud, const char *name, const char *q, const char *page_token);
};

struct opserver;

/* Binds and starts serving. Until the first publication /ready, /status and /metrics answer
 * 503. 0, or -1 with a reason in err (e.g. the address is in use). */
int opserver_start(const struct opserver_options *o, struct opserver **out, char *err,
		   size_t errlen);
/* Stops the HTTP thread (waiting for requests in progress) and frees. NULL-safe. */
void opserver_stop(struct opserver *o);
/* The bound TCP port. */
int opserver_port(const struct opserver *o);
/* Also serves /metrics, and nothing else (every other path 404), on address:port (0: an
 * ephemeral port), from the same publications: a listener Prometheus can reach on the pod or
 * host IP while the other endpoints stay on loopback. Errors name metrics_bind_address. Stopped
 * with o. Owner's thread, once. 0, or -1 with a reason in err. */
int opserver_listen_metrics(struct opserver *o, const char *address, int port, char *err,
			    size_t errlen);
/* Its bound port, 0 when not listening. */
int opserver_metrics_port(const struct opserver *o);

/* The owner's event loop is alive: call it from a timer on that loop (every second or so). */
void opserver_heartbeat(struct opserver *o);

/* Replaces the served documents at once (requests see either the old set or the new one). All
 * three are stolen (freed here even on failure); any may be NULL, which serves 503 for it.
 * ready must be an object {"ready": bool, ...}; its "ready" member sets the /ready status code. */
void opserver_publish(struct opserver *o, json_t *status, json_t *ready, char *metrics_text);

/* Helpers for the owners' documents. Adds checks[name] = {"ok": ok, "detail": "..."} and
 * returns ok. */
bool opserver_check(json_t *checks, const char *name, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "2024-05-01T12:00:00Z" (UTC) into buf; "never" for 0. Returns buf. */
const char *opserver_time(int64_t t, char *buf, size_t len);

/* For other HTTP listeners of the daemons: a listening TCP socket (SOCK_CLOEXEC, SO_REUSEADDR)
 * on address:port, its address family in *family. key names the config key of the address in
 * the error. The fd, or -1 with a reason in err. */
int opserver_listen_tcp(const char *address, int port, const char *key, int *family, char *err,
			size_t errlen);
/* An MHD_OPTION_EXTERNAL_LOGGER that logs at debug level as "<cls> http: message", cls being a
 * NUL-terminated name that outlives the daemon. */
void opserver_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* True when the request announces a body (Content-Length other than 0, or Transfer-Encoding):
 * none of the daemons' GET endpoints takes one. */
struct MHD_Connection;
bool opserver_request_has_body(struct MHD_Connection *conn);
/* The local port a socket is bound to, or -1. */
int opserver_bound_port(int fd);

/* The client side, for `healthcheck` subcommands: GETs http://address:port/path with a timeout.
 * Returns 0 when the answer is 200, 1 otherwise with a one-line reason in reason (the failing
 * checks of a readiness document, the HTTP status, or why it could not connect). An unspecified
 * listen address (0.0.0.0, ::) is probed on loopback. */
int opserver_probe(const char *address, int port, const char *path, long timeout_ms,
		   char *reason, size_t reasonlen);

/* Reads the operator endpoint's address and port from a daemon's config file. 0, or -1 with a
 * reason in err. A port of 0 means the endpoint is disabled. */
typedef int (*opserver_endpoint_fn)(const char *config_path, char *addr, size_t addrlen, int *port,
				    char *err, size_t errlen);
/* The `<daemon> healthcheck [--config FILE]` command shared by both daemons: finds the endpoint
 * with endpoint(), probes /ready, prints "ready" or the reason on stderr. Returns the exit
 * status (0 ready, 1 otherwise). name is "lanyard-agent" or "lanyard-server". */
int opserver_healthcheck_main(const char *name, const char *default_config,
			      opserver_endpoint_fn endpoint, int argc, char **argv);

#endif
