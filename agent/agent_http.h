/* agent_http.h: lanyard-agent's operator endpoints (/live, /ready, /status, /metrics and the
 * page at /) on http_address:http_port, and the `healthcheck` subcommand that probes them.
 *
 * Everything is gathered on the loop (a 1 s timer, which is also the heartbeat behind /live, and
 * every svid_cache publication) from copies the other modules hand out cheaply, and published to
 * the HTTP thread (common/opserver.h); a request never touches the agent's state.
 *
 * /ready is 200 when all of these hold, else 503 with each check named:
 *   attested      the agent holds an unexpired agent SVID
 *   bundle        a trust bundle with at least one unexpired authority
 *   workload_api  the Workload API is serving (entries synced, bundle present)
 *   server_sync   connected to the server, or last in sync within sync_staleness
 *   svids         no served SVID is past renew_at + (not_after - renew_at) / 2, i.e. renewal is
 *                 overdue and expiry approaches, and no entry has been without an SVID for more
 *                 than 30 s (an SVID that expired unrenewed leaves its entry without one); when
 *                 this is the only failure the status is "degraded" and the detail names the
 *                 SPIFFE IDs and entries. */
#ifndef LANYARD_AGENT_HTTP_H
#define LANYARD_AGENT_HTTP_H

#include <stddef.h>

#include <uv.h>

struct agent_config;
struct svid_cache;
struct node_client;
struct workload_api;
struct agent_http;

/* Starts serving on cfg->http_address:cfg->http_port (http_port 0 disables: returns 0 with *out
 * NULL). nc and wapi may be NULL (their checks then fail). cfg, cache, nc and wapi must stay
 * valid until agent_http_stop(): call it before stopping any of them. Loop thread. 0, or -1 with
 * a reason in err. */
int agent_http_start(uv_loop_t *loop, const struct agent_config *cfg, struct svid_cache *cache,
		     struct node_client *nc, struct workload_api *wapi, struct agent_http **out,
		     char *err, size_t errlen);
/* Stops serving at once; h is freed when its timer has closed (the loop must run). NULL-safe.
 * Loop thread. */
void agent_http_stop(struct agent_http *h);
int agent_http_port(const struct agent_http *h);

/* `lanyard-agent healthcheck [--config FILE]`: 0 when /ready answers 200, else 1 with the reason
 * on stderr. argv[0] is "healthcheck". */
int agent_healthcheck_main(int argc, char **argv);

#endif
