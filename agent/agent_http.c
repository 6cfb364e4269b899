/* agent_http.c: lanyard-agent's /live, /ready, /status, /metrics and status page. */
#include "agent_http.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent_config.h"
#include "grpc.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "node_client.h"
#include "opserver.h"
#include "procstats.h"
#include "status_page.h"
#include "svid_cache.h"
#include "util.h"
#include "workload_api.h"
#include "x509.h"

#define PREFIX "lanyard_agent"
#define TICK_MS 1000
/* An entry may wait this long for its first SVID (or a replacement) before it counts against
 * readiness: signing takes a moment after an entry appears. */
#define MISSING_GRACE_S 30
/* How often data_dir is tried for writing. */
#define STORAGE_EVERY_S 2

/* An entry without an SVID, and since when (as seen by this module). */
struct missing {
	char *entry_id;
	int64_t since;
};

/* One authority of the trust bundle, parsed once per bundle. */
struct bundle_ca {
	char sha256[65];
	char subject[256];
	int64_t not_before, not_after;
};

struct agent_http {
	uv_timer_t timer;
	struct opserver *ops;
	struct cache_sub *sub;
	struct svid_cache *cache;
	struct node_client *nc;
	struct workload_api *wapi;
	char *trust_domain;
	char *server;      /* the configured servers: "host:port, ..." */
	char *socket_path;
	int64_t sync_staleness;
	int64_t start_time;
	/* The last time a tick saw the agent connected: with last_sync, when it was last known
	 * to be in sync (an idle stream sends nothing, yet is in sync). */
	int64_t connected_seen;
	/* The parsed bundle, for the snapshot generation it came from. */
	uint64_t bundle_generation;
	bool bundle_parsed;
	struct bundle_ca *cas;
	size_t n_cas;
	struct missing *missing; /* sorted by entry_id */
	size_t n_missing;
	/* Conditions besides the checks below: storage and descriptors (probed on the tick),
	 * identities (every publication). */
	struct health *health;
	char *data_dir;
	int64_t next_storage;
};

/* Everything one publication needs, gathered on the loop. */
struct gathered {
	int64_t now;
	struct node_status ns;
	bool have_nc;
	struct snapshot *snap;
	struct workload_api_stats ws;
	bool have_wapi, wapi_ready;
	struct procstats ps;
	int64_t synced_at; /* last known in sync; 0 = never */
};

static void parse_bundle(struct agent_http *h, const struct snapshot *s)
{
	if (h->bundle_parsed && h->bundle_generation == s->generation)
		return;
	free(h->cas);
	h->cas = NULL;
	h->n_cas = 0;
	h->bundle_parsed = true;
	h->bundle_generation = s->generation;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	if (!s->bundle_len || x509_split_der(s->bundle, s->bundle_len, &certs, &lens, &n) < 0) {
		if (s->bundle_len)
			log_warnx("http: the trust bundle does not parse as DER certificates");
		return;
	}
	h->cas = xcalloc(n + 1, sizeof(*h->cas));
	for (size_t i = 0; i < n; i++) {
		struct x509_info xi;
		char err[128];
		if (x509_parse(certs[i], lens[i], &xi, err, sizeof(err)) < 0) {
			log_warnx("http: bundle certificate %zu does not parse: %s", i, err);
			continue;
		}
		struct bundle_ca *c = &h->cas[h->n_cas++];
		snprintf(c->sha256, sizeof(c->sha256), "%s", xi.sha256);
		snprintf(c->subject, sizeof(c->subject), "%s", xi.subject);
		c->not_before = xi.not_before;
		c->not_after = xi.not_after;
		x509_info_free(&xi);
	}
	free(certs);
	free(lens);
}

/* When renewal is overdue enough that expiry approaches: half way from renew_at to not_after. */
static int64_t degraded_at(const struct svid *v)
{
	int64_t renew = v->renew_at > 0 ? v->renew_at
					: v->not_before + (v->not_after - v->not_before) / 2;
	return renew + (v->not_after - renew) / 2;
}

static int cmp_missing(const void *a, const void *b)
{
	return strcmp(((const struct missing *)a)->entry_id, ((const struct missing *)b)->entry_id);
}

static void free_missing(struct missing *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].entry_id);
	free(m);
}

/* Follows which entries have no SVID and since when, across publications (an expired SVID is
 * dropped from the snapshot, so only this memory tells that its entry lost its identity). */
static void track_missing(struct agent_http *h, const struct snapshot *s, int64_t now)
{
	struct missing *next = xcalloc(s->n_entries + 1, sizeof(*next));
	size_t n = 0;
	for (size_t i = 0; i < s->n_entries; i++) {
		const struct entry *e = s->entries[i];
		if (snapshot_svid(s, e->id))
			continue;
		struct missing key = { .entry_id = (char *)e->id }; /* a search key only */
		const struct missing *old = h->n_missing
			? bsearch(&key, h->missing, h->n_missing, sizeof(key), cmp_missing) : NULL;
		next[n].entry_id = xstrdup(e->id);
		next[n].since = old ? old->since : now;
		n++;
	}
	/* Snapshot entries are sorted by id; sort anyway so bsearch never depends on it. */
	qsort(next, n, sizeof(*next), cmp_missing);
	free_missing(h->missing, h->n_missing);
	h->missing = next;
	h->n_missing = n;
}

static int64_t missing_since(const struct agent_http *h, const char *entry_id)
{
	struct missing key = { .entry_id = (char *)entry_id };
	const struct missing *m = h->n_missing
		? bsearch(&key, h->missing, h->n_missing, sizeof(key), cmp_missing) : NULL;
	return m ? m->since : 0;
}

static void check_attested(const struct agent_http *h, const struct gathered *g, json_t *checks,
			   bool *ready)
{
	char t[32];
	const struct node_status *ns = &g->ns;
	if (!g->have_nc)
		*ready &= opserver_check(checks, "attested", false, "the node client is not running");
	else if (!ns->agent_id[0])
		*ready &= opserver_check(checks, "attested", false, "not attested yet (%s%s%s)",
					 node_state_name(ns->state), ns->last_error[0] ? ": " : "",
					 ns->last_error);
	else if (ns->agent_svid_not_after <= g->now)
		*ready &= opserver_check(checks, "attested", false,
					 "the agent SVID expired at %s (%s)",
					 opserver_time(ns->agent_svid_not_after, t, sizeof(t)),
					 node_state_name(ns->state));
	else
		opserver_check(checks, "attested", true, "%s, agent SVID valid until %s", ns->agent_id,
			       opserver_time(ns->agent_svid_not_after, t, sizeof(t)));
}

static void check_bundle(const struct agent_http *h, const struct gathered *g, json_t *checks,
			 bool *ready)
{
	size_t valid = 0;
	for (size_t i = 0; i < h->n_cas; i++)
		if (h->cas[i].not_before <= g->now && g->now < h->cas[i].not_after)
			valid++;
	if (!g->snap->bundle_len)
		*ready &= opserver_check(checks, "bundle", false, "no trust bundle yet");
	else if (!valid)
		*ready &= opserver_check(checks, "bundle", false,
					 "none of the %zu authorities in the bundle is valid now",
					 h->n_cas);
	else
		opserver_check(checks, "bundle", true, "%zu valid authorities, sequence %lld", valid,
			       (long long)g->snap->bundle_sequence);
}

/* The server the node client is connected to or trying, else the configured ones. */
static const char *current_server(const struct agent_http *h, const struct gathered *g)
{
	return g->have_nc && g->ns.server[0] ? g->ns.server : h->server;
}

static void check_sync(const struct agent_http *h, const struct gathered *g, json_t *checks,
		       bool *ready)
{
	char t[32];
	const struct node_status *ns = &g->ns;
	if (g->have_nc && ns->state == NODE_STATE_CONNECTED && ns->last_sync)
		opserver_check(checks, "server_sync", true, "connected to %s, last message %s",
			       current_server(h, g), opserver_time(ns->last_sync, t, sizeof(t)));
	else if (!g->synced_at)
		*ready &= opserver_check(checks, "server_sync", false,
					 "never synced with the server %s (%s)", current_server(h, g),
					 g->have_nc ? node_state_name(ns->state) : "not running");
	else if (g->now - g->synced_at > h->sync_staleness)
		*ready &= opserver_check(checks, "server_sync", false,
					 "%s from %s; last in sync %lld s ago, more than "
					 "sync_staleness (%lld s)%s%s",
					 node_state_name(ns->state), current_server(h, g),
					 (long long)(g->now - g->synced_at),
					 (long long)h->sync_staleness, ns->last_error[0] ? ": " : "",
					 ns->last_error);
	else
		opserver_check(checks, "server_sync", true,
			       "%s from %s; last in sync %lld s ago, within sync_staleness (%lld s)",
			       node_state_name(ns->state), current_server(h, g),
			       (long long)(g->now - g->synced_at), (long long)h->sync_staleness);
}

/* Every entry has an SVID (after a grace period) and none is past degraded_at(). Returns whether
 * the check passed (it alone decides "degraded"). */
static bool check_svids(const struct agent_http *h, const struct gathered *g, json_t *checks)
{
	char detail[1024] = "";
	size_t off = 0, bad = 0;
	const struct snapshot *s = g->snap;
	for (size_t i = 0; i < s->n_entries; i++) {
		const struct entry *e = s->entries[i];
		int64_t since = missing_since(h, e->id);
		if (!since || g->now - since <= MISSING_GRACE_S)
			continue;
		bad++;
		if (off < sizeof(detail))
			off += (size_t)snprintf(detail + off, sizeof(detail) - off,
						"%s%s (entry %s) has had no SVID for %lld s",
						bad > 1 ? "; " : "", e->spiffe_id, e->id,
						(long long)(g->now - since));
	}
	int64_t soonest = 0;
	for (size_t i = 0; i < s->n_svids; i++) {
		const struct svid *v = s->svids[i];
		if (!soonest || v->not_after < soonest)
			soonest = v->not_after;
		if (g->now <= degraded_at(v))
			continue;
		bad++;
		if (off < sizeof(detail))
			off += (size_t)snprintf(detail + off, sizeof(detail) - off,
						"%s%s (entry %s) %s %lld s%s, renewal overdue by "
						"%lld s", bad > 1 ? "; " : "", v->spiffe_id,
						v->entry_id,
						v->not_after > g->now ? "expires in" : "expired",
						(long long)llabs(v->not_after - g->now),
						v->not_after > g->now ? "" : " ago",
						(long long)(g->now - v->renew_at));
	}
	if (bad)
		return opserver_check(checks, "svids", false, "%zu identit%s missing or close to "
				      "expiry: %s", bad, bad > 1 ? "ies" : "y", detail);
	if (!s->n_svids)
		return opserver_check(checks, "svids", true, "no SVID held (%zu entries)",
				      s->n_entries);
	return opserver_check(checks, "svids", true, "%zu SVIDs, the soonest expires in %lld s",
			      s->n_svids, (long long)(soonest - g->now));
}

/* With the server unreachable, says whether the agent still holds any identity to serve: logged
 * once (by the registry) when the last one goes, so that callers are not left waiting silently. */
static void check_identities(const struct agent_http *h, const struct gathered *g)
{
	char t[32];
	const struct snapshot *s = g->snap;
	size_t valid = 0;
	for (size_t i = 0; i < s->n_svids; i++)
		valid += s->svids[i]->not_after > g->now;
	bool unreachable = g->have_nc && g->ns.state != NODE_STATE_CONNECTED;
	bool agent_expired = g->ns.agent_id[0] && g->ns.agent_svid_not_after <= g->now;
	const char *why = g->ns.last_error[0] ? g->ns.last_error : node_state_name(g->ns.state);
	if (unreachable && agent_expired)
		health_set(h->health, "identities", false, g->now, "the agent SVID expired at %s and "
			   "the server %s is unreachable (%s): attest again or restore the server",
			   opserver_time(g->ns.agent_svid_not_after, t, sizeof(t)), h->server, why);
	else if (unreachable && s->n_entries && !valid)
		health_set(h->health, "identities", false, g->now, "every X509-SVID has expired "
			   "(%zu entries, none with a valid SVID) and the server %s is unreachable "
			   "(%s): workloads get no identity until it is back", s->n_entries,
			   h->server, why);
	else
		health_set(h->health, "identities", true, g->now, "%zu valid SVIDs for %zu entries",
			   valid, s->n_entries);
}

static json_t *build_ready(const struct agent_http *h, const struct gathered *g)
{
	json_t *checks = json_object();
	bool ready = true;
	check_attested(h, g, checks, &ready);
	check_bundle(h, g, checks, &ready);
	if (!g->have_wapi)
		ready &= opserver_check(checks, "workload_api", false, "not started");
	else if (!g->wapi_ready)
		ready &= opserver_check(checks, "workload_api", false,
					"not serving yet: %s", !g->snap->synced
								? "entries not synced"
								: "no trust bundle");
	else
		opserver_check(checks, "workload_api", true, "serving on %s, %u connections",
			       h->socket_path, g->ws.conns);
	check_sync(h, g, checks, &ready);
	check_identities(h, g);
	ready &= health_report(h->health, checks);
	bool svids_ok = check_svids(h, g, checks);
	const char *status = ready && svids_ok ? "ready" : ready ? "degraded" : "not_ready";
	return json_pack("{s:b,s:s,s:o}", "ready", ready && svids_ok, "status", status, "checks",
			 checks);
}

static json_t *str_or_null(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

static json_t *int_or_null(int64_t v)
{
	return v ? json_integer(v) : json_null();
}

static json_t *strings_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *selectors_json(const struct entry *e)
{
	return e ? strings_json(e->selectors, e->n_selectors) : json_array();
}

/* opserver's status_members: the "svids" member, rendered from the current snapshot when /status
 * is requested rather than on every tick (at 10,000 SVIDs the tree took some 70 ms of CPU and
 * 18 MB of heap per build). HTTP thread: svid_cache_acquire is thread-safe and the snapshot is
 * immutable; nothing else of h is read. */
static char *status_svids(void *ud)
{
	const struct agent_http *h = ud;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	struct snapshot *s = svid_cache_acquire(h->cache);
	int64_t now = now_unix();
	bool ok = fputs("\"svids\":[", f) >= 0;
	for (size_t i = 0; ok && i < s->n_svids; i++) {
		const struct svid *v = s->svids[i];
		const struct entry *e = snapshot_entry(s, v->entry_id);
		json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:I,s:I,s:I,s:b}", "spiffe_id",
				      v->spiffe_id, "entry_id", v->entry_id, "hint",
				      str_or_null(v->hint), "selectors", selectors_json(e), "dns_names",
				      e ? strings_json(e->dns_names, e->n_dns_names) : json_array(),
				      "serial",
				      v->serial, "not_before", (json_int_t)v->not_before, "not_after",
				      (json_int_t)v->not_after, "renew_at", (json_int_t)v->renew_at,
				      "degraded", now > degraded_at(v));
		ok = o && (i == 0 || fputc(',', f) != EOF) && json_dumpf(o, f, JSON_COMPACT) == 0;
		json_decref(o);
	}
	ok = ok && fputc(']', f) != EOF;
	snapshot_release(s);
	if (fclose(f) != 0 || !ok) {
		free(text);
		return NULL;
	}
	return text;
}

/* The last "no identity issued" answers, newest first: who asked and why nothing matched. */
static json_t *denials_json(const struct workload_api_stats *ws)
{
	json_t *a = json_array();
	for (size_t i = 0; i < ws->n_denials; i++) {
		const struct wl_denial *d = &ws->denials[i];
		json_array_append_new(a, json_pack("{s:I,s:s,s:i,s:I,s:I,s:s,s:s}", "at",
						   (json_int_t)d->at, "method", d->method, "pid",
						   d->pid, "uid", (json_int_t)d->uid, "gid",
						   (json_int_t)d->gid, "selectors", d->selectors,
						   "why", d->why));
	}
	return a;
}

/* The status document without "svids" (status_svids adds it when served). */
static json_t *build_status(const struct agent_http *h, const struct gathered *g, json_t *ready)
{
	const struct snapshot *s = g->snap;
	const struct node_status *ns = &g->ns;
	json_t *pending = json_array();
	for (size_t i = 0; i < s->n_entries; i++) {
		const struct entry *e = s->entries[i];
		if (!snapshot_svid(s, e->id))
			json_array_append_new(pending, json_pack("{s:s,s:s,s:o,s:I}", "entry_id", e->id,
								 "spiffe_id", e->spiffe_id,
								 "selectors", selectors_json(e),
								 "since", (json_int_t)missing_since(
									 h, e->id)));
	}
	json_t *cas = json_array();
	for (size_t i = 0; i < h->n_cas; i++)
		json_array_append_new(cas, json_pack("{s:s,s:s,s:I,s:I}", "sha256", h->cas[i].sha256,
						     "subject", h->cas[i].subject, "not_before",
						     (json_int_t)h->cas[i].not_before, "not_after",
						     (json_int_t)h->cas[i].not_after));
	json_t *agent = json_pack("{s:o,s:o,s:o}", "spiffe_id", str_or_null(ns->agent_id),
				  "svid_not_after", int_or_null(ns->agent_svid_not_after),
				  "svid_renew_at", int_or_null(ns->agent_svid_renew_at));
	/* The node client's last message is an error only while it is not connected. */
	json_t *server = json_pack(
		"{s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "address",
		current_server(h, g), "configured", h->server, "state",
		g->have_nc ? node_state_name(ns->state) : "stopped", "last_sync",
		int_or_null(ns->last_sync), "last_in_sync", int_or_null(g->synced_at),
		"sync_errors", (json_int_t)ns->sync_errors, "svids_minted",
		(json_int_t)ns->svids_minted, "rotations", (json_int_t)ns->rotations, "failovers",
		(json_int_t)ns->failovers, "attestations", (json_int_t)ns->attestations, "resumes",
		(json_int_t)ns->resumes, "last_error",
		str_or_null(ns->state != NODE_STATE_CONNECTED ? ns->last_error : NULL));
	return json_pack(
		"{s:s,s:s,s:s,s:I,s:I,s:I,s:O,s:o,s:o,s:I,s:b,s:o,"
		"s:{s:s,s:b,s:i,s:i,s:I},s:{s:i,s:I,s:I,s:I},s:{s:I,s:o},s:o}",
		"daemon", "lanyard-agent", "version", LANYARD_VERSION, "trust_domain",
		h->trust_domain, "now", (json_int_t)g->now, "start_time", (json_int_t)h->start_time,
		"uptime_seconds", (json_int_t)(g->now - h->start_time), "ready", ready, "agent",
		agent, "server", server, "entries", (json_int_t)s->n_entries, "synced", s->synced,
		"entries_without_svid", pending,
		"workload_api", "socket", h->socket_path, "serving", g->wapi_ready, "connections",
		(int)g->ws.conns, "streams", (int)g->ws.streams, "connections_refused",
		(json_int_t)g->ws.conns_refused,
		"sds", "streams", (int)g->ws.sds.streams, "responses", (json_int_t)g->ws.sds.responses,
		"pushes", (json_int_t)g->ws.sds.pushes, "nacks", (json_int_t)g->ws.sds.nacks,
		"bundle", "sequence", (json_int_t)s->bundle_sequence, "authorities", cas,
		"recent_denials", denials_json(&g->ws));
}

static void workload_metrics(struct metrics *m, const struct gathered *g)
{
	const struct workload_api_stats *w = &g->ws;
	const char *name = PREFIX "_workload_api_requests_total";
	metrics_family(m, name, METRIC_COUNTER,
		       "Workload API calls by method and final gRPC status code.");
	for (int i = 0; i < WL_METHOD_COUNT; i++)
		for (int c = 0; c < WL_STATUS_COUNT; c++)
			/* Every method's OK series always exists, other codes once seen. */
			if (c == 0 || w->requests[i][c])
				metrics_sample(m, name, (double)w->requests[i][c], "method",
					       workload_method_name(i), "code", grpc_status_camel(c),
					       NULL);
	metrics_single(m, PREFIX "_workload_api_connections", METRIC_GAUGE,
		       "Open Workload API connections.", w->conns);
	metrics_single(m, PREFIX "_workload_api_streams", METRIC_GAUGE,
		       "Open Workload API server streams.", w->streams);
	metrics_single(m, PREFIX "_workload_api_connections_refused_total", METRIC_COUNTER,
		       "Workload API connections refused (per-uid limit).",
		       (double)w->conns_refused);
	metrics_single(m, PREFIX "_workload_api_stream_updates_total", METRIC_COUNTER,
		       "Stream messages sent after the first one (rotations, changes).",
		       (double)w->updates_sent);
	metrics_single(m, PREFIX "_sds_streams", METRIC_GAUGE,
		       "Open Envoy SDS StreamSecrets streams.", w->sds.streams);
	metrics_single(m, PREFIX "_sds_responses_total", METRIC_COUNTER,
		       "Envoy SDS DiscoveryResponses sent (streams and FetchSecrets).",
		       (double)w->sds.responses);
	metrics_single(m, PREFIX "_sds_pushes_total", METRIC_COUNTER,
		       "Envoy SDS stream responses caused by a change (rotation, bundle, entries).",
		       (double)w->sds.pushes);
	metrics_single(m, PREFIX "_sds_nacks_total", METRIC_COUNTER,
		       "Envoy SDS requests rejecting the secrets last sent (NACK).",
		       (double)w->sds.nacks);
	metrics_single(m, PREFIX "_sds_stale_nonces_total", METRIC_COUNTER,
		       "Envoy SDS requests ignored for a stale response nonce.",
		       (double)w->sds.stale_nonces);
	name = PREFIX "_workload_attestation_duration_seconds";
	metrics_family(m, name, METRIC_HISTOGRAM, "Time to attest a Workload API caller.");
	metrics_histogram(m, name, workload_attest_buckets, w->attest_hist, WL_ATTEST_BUCKETS,
			  w->attest_sum, w->attest_count, NULL);
}

/* Which server, and how the agent got there: moves, attestations, resumed entry streams. */
static void server_metrics(struct metrics *m, const struct agent_http *h, const struct gathered *g)
{
	const struct node_status *ns = &g->ns;
	const char *name = PREFIX "_server_info";
	metrics_family(m, name, METRIC_GAUGE,
		       "1, labelled with the server the agent is connected to or trying.");
	metrics_sample(m, name, 1, "address", current_server(h, g), NULL);
	metrics_single(m, PREFIX "_server_failovers_total", METRIC_COUNTER,
		       "Moves from one candidate server to another.", (double)ns->failovers);
	metrics_single(m, PREFIX "_attestations_total", METRIC_COUNTER,
		       "Node attestations that gave this agent an SVID.", (double)ns->attestations);
	metrics_single(m, PREFIX "_sync_resumes_total", METRIC_COUNTER,
		       "Entry streams opened with the agent SVID alone, without attestation.",
		       (double)ns->resumes);
}

static char *build_metrics(const struct agent_http *h, const struct gathered *g, bool ready)
{
	const struct node_status *ns = &g->ns;
	const struct snapshot *s = g->snap;
	struct metrics m;
	metrics_init(&m);
	procstats_write_metrics(&m, PREFIX, &g->ps, h->start_time, g->now, LANYARD_VERSION);
	metrics_single(&m, PREFIX "_ready", METRIC_GAUGE, "1 when /ready answers 200.", ready);
	workload_metrics(&m, g);

	metrics_single(&m, PREFIX "_svids_minted_total", METRIC_COUNTER,
		       "X509-SVIDs the server signed for this agent's workloads.",
		       (double)ns->svids_minted);
	metrics_single(&m, PREFIX "_svid_rotations_total", METRIC_COUNTER,
		       "X509-SVIDs renewed before expiry (workloads' and the agent's own).",
		       (double)ns->rotations);
	metrics_single(&m, PREFIX "_sync_errors_total", METRIC_COUNTER,
		       "Failed exchanges with the server (connect, attest, sync, sign).",
		       (double)ns->sync_errors);

	static const enum node_conn_state states[] = {
		NODE_STATE_STARTING, NODE_STATE_ATTESTING, NODE_STATE_CONNECTED,
		NODE_STATE_DISCONNECTED, NODE_STATE_NEEDS_TOKEN, NODE_STATE_REFUSED,
	};
	const char *name = PREFIX "_server_connection_state";
	metrics_family(&m, name, METRIC_GAUGE,
		       "1 for the current state of the connection to the server, 0 for the others.");
	for (size_t i = 0; i < ARRAY_LEN(states); i++)
		metrics_sample(&m, name, g->have_nc && ns->state == states[i], "state",
			       node_state_name(states[i]), NULL);
	metrics_single(&m, PREFIX "_server_connected", METRIC_GAUGE,
		       "1 while the entry stream with the server is open.",
		       g->have_nc && ns->state == NODE_STATE_CONNECTED);
	server_metrics(&m, h, g);
	if (ns->last_sync)
		metrics_single(&m, PREFIX "_last_sync_timestamp_seconds", METRIC_GAUGE,
			       "Unix time of the last message from the server.",
			       (double)ns->last_sync);
	if (ns->agent_svid_not_after)
		metrics_single(&m, PREFIX "_own_svid_expiry_seconds", METRIC_GAUGE,
			       "Seconds until the agent's own SVID expires.",
			       (double)(ns->agent_svid_not_after - g->now));

	int64_t soonest = 0;
	size_t degraded_n = 0;
	for (size_t i = 0; i < s->n_svids; i++) {
		if (!soonest || s->svids[i]->not_after < soonest)
			soonest = s->svids[i]->not_after;
		degraded_n += g->now > degraded_at(s->svids[i]);
	}
	if (s->n_svids)
		metrics_single(&m, PREFIX "_svid_soonest_expiry_seconds", METRIC_GAUGE,
			       "Seconds until the soonest expiry among the X509-SVIDs served.",
			       (double)(soonest - g->now));
	metrics_single(&m, PREFIX "_svids", METRIC_GAUGE, "X509-SVIDs held and served.",
		       (double)s->n_svids);
	metrics_single(&m, PREFIX "_svids_degraded", METRIC_GAUGE,
		       "X509-SVIDs close to expiry with their renewal overdue.", (double)degraded_n);
	metrics_single(&m, PREFIX "_entries_without_svid", METRIC_GAUGE,
		       "Registration entries that have no X509-SVID at the moment.",
		       (double)h->n_missing);
	metrics_single(&m, PREFIX "_entries", METRIC_GAUGE,
		       "Registration entries this agent is authorized to serve.",
		       (double)s->n_entries);
	metrics_single(&m, PREFIX "_bundle_authorities", METRIC_GAUGE,
		       "Certificates in the trust bundle.", (double)h->n_cas);
	metrics_single(&m, PREFIX "_bundle_sequence", METRIC_GAUGE,
		       "The trust bundle's sequence number.", (double)s->bundle_sequence);
	return metrics_finish(&m);
}

static void publish_state(struct agent_http *h)
{
	struct gathered g = { .now = now_unix() };
	g.have_nc = h->nc != NULL;
	if (g.have_nc)
		node_client_status(h->nc, &g.ns);
	if (g.have_nc && g.ns.state == NODE_STATE_CONNECTED)
		h->connected_seen = g.now;
	g.synced_at = g.ns.last_sync > h->connected_seen ? g.ns.last_sync : h->connected_seen;
	g.snap = svid_cache_acquire(h->cache);
	g.have_wapi = h->wapi != NULL;
	if (g.have_wapi) {
		workload_api_stats(h->wapi, &g.ws);
		g.wapi_ready = workload_api_ready(h->wapi);
	}
	procstats_read(&g.ps);
	parse_bundle(h, g.snap);
	track_missing(h, g.snap, g.now);

	json_t *ready = build_ready(h, &g);
	bool ok = json_is_true(json_object_get(ready, "ready"));
	json_t *status = build_status(h, &g, ready);
	char *metrics = build_metrics(h, &g, ok);
	/* A NULL document is served as 503; these only fail on a bug or out of memory. */
	if (!ready || !status || !metrics)
		log_error("http: cannot build the %s", !ready ? "readiness document"
						       : !status ? "status document" : "metrics text");
	opserver_publish(h->ops, status, ready, metrics);
	snapshot_release(g.snap);
}

/* Loop thread (the tick): the data directory (where identities are persisted) and descriptors
 * (the Workload API refuses callers without one). */
static void probe_resources(struct agent_http *h)
{
	char why[512];
	int64_t now = now_unix();
	struct procstats ps;
	procstats_read(&ps);
	bool ok = health_probe_fds(&ps, why, sizeof(why));
	health_set(h->health, "descriptors", ok, now, "%s", why);
	if (!h->data_dir || now < h->next_storage)
		return;
	h->next_storage = now + STORAGE_EVERY_S;
	ok = health_probe_dir(h->data_dir, why, sizeof(why)) == 0;
	health_set(h->health, "storage", ok, now, "%s",
		   ok ? "data_dir is writable" : why);
}

static void on_tick(uv_timer_t *t)
{
	struct agent_http *h = t->data;
	opserver_heartbeat(h->ops);
	probe_resources(h);
	publish_state(h);
}

/* A new snapshot (SVIDs renewed, entries changed): show it without waiting for the tick. */
static void on_cache_changed(void *ud)
{
	publish_state(ud);
}

static void on_closed(uv_handle_t *handle)
{
	struct agent_http *h = handle->data;
	free(h->cas);
	free_missing(h->missing, h->n_missing);
	free(h->trust_domain);
	free(h->server);
	free(h->socket_path);
	free(h->data_dir);
	health_free(h->health);
	free(h);
}

int agent_http_start(uv_loop_t *loop, const struct agent_config *cfg, struct svid_cache *cache,
		     struct node_client *nc, struct workload_api *wapi, struct agent_http **out,
		     char *err, size_t errlen)
{
	*out = NULL;
	if (cfg->http_port == 0) {
		log_info("http: operator endpoints disabled (http_port is 0)");
		return 0;
	}
	struct agent_http *h = xcalloc(1, sizeof(*h));
	h->cache = cache;
	struct opserver_options oo = {
		.address = cfg->http_address,
		.port = (int)cfg->http_port,
		.name = "agent",
		.index_html = status_page_html,
		.status_members = status_svids,
		.status_ud = h,
	};
	struct opserver *ops = NULL;
	char why[384];
	if (opserver_start(&oo, &ops, why, sizeof(why)) < 0) {
		errorf(err, errlen, "http_address:http_port %s:%lld: %s", cfg->http_address,
		       (long long)cfg->http_port, why);
		free(h);
		return -1;
	}
	if (cfg->metrics_bind_port &&
	    opserver_listen_metrics(ops, cfg->metrics_bind_address, (int)cfg->metrics_bind_port,
				    why, sizeof(why)) < 0) {
		errorf(err, errlen, "metrics_bind_address:metrics_bind_port %s:%lld: %s",
		       cfg->metrics_bind_address, (long long)cfg->metrics_bind_port, why);
		opserver_stop(ops);
		free(h);
		return -1;
	}
	h->ops = ops;
	h->nc = nc;
	h->wapi = wapi;
	h->trust_domain = xstrdup(cfg->trust_domain ? cfg->trust_domain : "");
	h->server = agent_config_servers_text(cfg);
	h->socket_path = xstrdup(cfg->socket_path ? cfg->socket_path : "");
	h->data_dir = cfg->data_dir ? xstrdup(cfg->data_dir) : NULL;
	h->health = health_new();
	h->sync_staleness = cfg->sync_staleness;
	h->start_time = now_unix();
	h->sub = svid_cache_subscribe(cache, on_cache_changed, h);
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	uv_timer_start(&h->timer, on_tick, 0, TICK_MS);
	log_info("http: operator endpoints on http://%s:%d/ (live, ready, status, metrics)",
		 cfg->http_address ? cfg->http_address : "127.0.0.1", opserver_port(ops));
	if (opserver_metrics_port(ops))
		log_info("http: /metrics also on http://%s:%d/metrics", cfg->metrics_bind_address,
			 opserver_metrics_port(ops));
	*out = h;
	return 0;
}

int agent_http_port(const struct agent_http *h)
{
	return h ? opserver_port(h->ops) : 0;
}

void agent_http_stop(struct agent_http *h)
{
	if (!h)
		return;
	if (h->sub)
		svid_cache_unsubscribe(h->cache, h->sub);
	h->sub = NULL;
	opserver_stop(h->ops);
	h->ops = NULL;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, on_closed);
}

static int endpoint_of(const char *config_path, char *addr, size_t addrlen, int *port, char *err,
		       size_t errlen)
{
	struct agent_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	int r = agent_config_load(config_path, &cfg, err, errlen);
	if (r == 0) {
		snprintf(addr, addrlen, "%s", cfg.http_address);
		*port = (int)cfg.http_port;
	}
	agent_config_free(&cfg);
	return r < 0 ? -1 : 0;
}

int agent_healthcheck_main(int argc, char **argv)
{
	return opserver_healthcheck_main("lanyard-agent", "/etc/lanyard/agent.json", endpoint_of, argc, argv);
}
