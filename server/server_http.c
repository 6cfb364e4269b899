/* server_http.c: lanyard-server's /live, /ready, /status, /metrics and status page. */
#include "server_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "federation.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "opserver.h"
#include "procstats.h"
#include "server_config.h"
#include "status_lists.h"
#include "status_page.h"
#include "util.h"

#define PREFIX "lanyard_server"
#define TICK_MS 1000
#define PING_EVERY_S 1
#define COUNT_EVERY_S 5
/* A ping older than this means the datastore thread is stuck in a call (the counts between two
 * pings list whole tables, so leave them time). */
#define PING_STALE_US (10 * 1000 * 1000)
/* How often the data directory and a datastore write are tried; a failing datastore write is
 * retried with backoff up to STORAGE_BACKOFF_MAX_S, since the datastore logs every failure. */
#define STORAGE_EVERY_S 2
#define STORAGE_BACKOFF_MAX_S 30

/* What the datastore thread learnt last. */
struct ds_probe {
	bool checked, ok;
	double latency;          /* seconds, of the last ping */
	int64_t checked_at;      /* unix */
	int64_t checked_mono_us;
	uint64_t failures;
	bool counts_known;
	int64_t entries, agents, tokens, counts_at;
};

struct server_http {
	uv_timer_t timer;
	struct opserver *ops;
	struct oidc *oidc;            /* NULL when OIDC discovery is off */
	struct admin_tls *admin_tls;  /* NULL when admin_bind_port is off */
	struct datastore *ds;
	struct ca *ca;
	struct node_api **node;
	char *trust_domain;
	int64_t start_time;
	struct federation *fed; /* loop thread; NULL without one */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;             /* under lock */
	struct ds_probe probe; /* under lock */
	json_t *cluster;       /* under lock: the live servers, NULL when unknown */
	char *data_dir;        /* under lock; NULL until server_http_watch_storage */
	/* Conditions that decide readiness besides the checks below: storage, datastore_writes
	 * (datastore thread), descriptors (loop). */
	struct health *health;
};

/* ---- the datastore thread ---- */

static int64_t count_entries(struct datastore *ds)
{
	int64_t n;
	return ds_entry_count(ds, &n) < 0 ? -1 : n;
}

static int64_t count_agents(struct datastore *ds)
{
	int64_t n;
	return ds_agent_count(ds, &n) < 0 ? -1 : n;
}

/* Writes where the server persists: a scratch file in data_dir, then (when that works) one row of
 * the datastore. Disk full, a read-only file system and a database refusing writes all show. */
struct storage_probe {
	int64_t next, next_write, backoff;
};

static void probe_storage(struct server_http *h, struct storage_probe *sp, int64_t now)
{
	char why[512], dir[4096] = "";
	if (now < sp->next)
		return;
	sp->next = now + STORAGE_EVERY_S;
	pthread_mutex_lock(&h->lock);
	if (h->data_dir)
		snprintf(dir, sizeof(dir), "%s", h->data_dir);
	pthread_mutex_unlock(&h->lock);
	if (dir[0]) {
		bool ok = health_probe_dir(dir, why, sizeof(why)) == 0;
		health_set(h->health, "storage", ok, now, "%s", ok ? "data_dir is writable" : why);
		if (!ok)
			return;
	}
	if (now < sp->next_write)
		return;
	bool ok = ds_kv_set_int(h->ds, "health_write_probe", now) == 0;
	sp->backoff = ok ? 0 : sp->backoff ? sp->backoff * 2 : STORAGE_EVERY_S;
	if (sp->backoff > STORAGE_BACKOFF_MAX_S)
		sp->backoff = STORAGE_BACKOFF_MAX_S;
	sp->next_write = now + sp->backoff;
	health_set(h->health, "datastore_writes", ok, now, "%s",
		   ok ? "the database accepts writes"
		      : "the database refused a write (disk full or read-only? see the log)");
}

/* The live servers as a JSON array, NULL when the datastore cannot tell. */
static json_t *list_cluster(struct datastore *ds)
{
	struct server_record **v = NULL;
	size_t n = 0;
	if (ds_server_list(ds, DS_SERVER_LIVE_S, &v, &n) < 0)
		return NULL;
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, server_record_to_json(v[i]));
	server_record_array_free(v, n);
	return a;
}

/* Pings every second; counts (COUNT queries) and lists the cluster every few seconds. */
static void *probe_thread(void *arg)
{
	struct server_http *h = arg;
	int64_t next_count = 0;
	struct storage_probe sp = {0};
	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		pthread_mutex_unlock(&h->lock);
		int64_t t0 = now_mono_us();
		int rc = ds_ping(h->ds);
		if (rc == 0)
			probe_storage(h, &sp, now_unix());
		int64_t t1 = now_mono_us();
		int64_t now = now_unix();
		bool count = now >= next_count;
		int64_t entries = -1, agents = -1, tokens = -1;
		json_t *cluster = NULL;
		if (count && rc == 0) {
			cluster = list_cluster(h->ds);
			entries = count_entries(h->ds);
			agents = count_agents(h->ds);
			if (ds_token_count(h->ds, now, &tokens) < 0)
				tokens = -1;
			next_count = now + COUNT_EVERY_S;
		}
		pthread_mutex_lock(&h->lock);
		struct ds_probe *p = &h->probe;
		p->checked = true;
		p->ok = rc == 0;
		p->latency = (double)(t1 - t0) / 1e6;
		p->checked_at = now;
		p->checked_mono_us = t1;
		if (rc != 0)
			p->failures++;
		if (cluster || rc != 0) {
			json_decref(h->cluster);
			h->cluster = cluster;
		}
		if (entries >= 0 && agents >= 0 && tokens >= 0) {
			p->counts_known = true;
			p->entries = entries;
			p->agents = agents;
			p->tokens = tokens;
			p->counts_at = now;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += PING_EVERY_S;
		while (!h->stop && pthread_cond_timedwait(&h->cond, &h->lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* ---- the documents ---- */

struct gathered {
	int64_t now;
	struct ds_probe probe;
	int64_t probe_age_us;
	bool have_node;
	struct node_api_stats ns;
	struct ca_authority_info *auth;
	size_t n_auth;
	bool auth_ok;
	int64_t next_rotation, bundle_sequence;
	struct procstats ps;
	json_t *cluster; /* a copy, NULL when unknown */
	bool have_oidc;
	struct oidc_stats oidc;
	bool have_admin_tls;
	struct admin_tls_stats admin_tls;
	struct ds_stats dss;
};

static const struct ca_authority_info *active_authority(const struct gathered *g)
{
	for (size_t i = 0; i < g->n_auth; i++)
		if (strcmp(g->auth[i].state, "active") == 0)
			return &g->auth[i];
	return NULL;
}

static json_t *build_ready(struct server_http *h, const struct gathered *g)
{
	char t[32];
	json_t *checks = json_object();
	const struct ds_probe *p = &g->probe;
	bool ready = true;
	if (!p->checked)
		ready &= opserver_check(checks, "datastore", false, "not checked yet");
	else if (g->probe_age_us > PING_STALE_US)
		ready &= opserver_check(checks, "datastore", false,
					"no answer for %.0f s: a query is hanging",
					(double)g->probe_age_us / 1e6);
	else if (!p->ok)
		ready &= opserver_check(checks, "datastore", false,
					"the database did not answer a query (see the log)");
	else
		opserver_check(checks, "datastore", true, "answered in %.2f ms", p->latency * 1e3);

	const struct ca_authority_info *a = active_authority(g);
	if (!g->auth_ok)
		ready &= opserver_check(checks, "ca", false, "cannot read the authorities");
	else if (!a)
		ready &= opserver_check(checks, "ca", false, "no active authority");
	else if (a->not_after <= g->now)
		ready &= opserver_check(checks, "ca", false, "the active authority %.16s expired at %s",
					a->id, opserver_time(a->not_after, t, sizeof(t)));
	else
		opserver_check(checks, "ca", true, "authority %.16s active until %s", a->id,
			       opserver_time(a->not_after, t, sizeof(t)));

	/* Saturation is shown, not failed: restarting or draining a server whose agents hold every
	 * slot would not help them. */
	if (g->have_node && g->ns.connections >= g->ns.max_connections)
		opserver_check(checks, "node_api", true,
			       "saturated: %u connections, the limit (node_api_max_connections); "
			       "new connections are refused",
			       g->ns.connections);
	else if (g->have_node)
		opserver_check(checks, "node_api", true, "serving %u of at most %u connections",
			       g->ns.connections, g->ns.max_connections);
	else
		ready &= opserver_check(checks, "node_api", false, "not serving (shutting down)");
	ready &= health_report(h->health, checks);
	return json_pack("{s:b,s:s,s:o}", "ready", ready, "status", ready ? "ready" : "not_ready",
			 "checks", checks);
}

static json_t *count_or_null(bool known, int64_t v)
{
	return known ? json_integer(v) : json_null();
}

/* The last warnings and errors this server logged (refused attestations, failed queries...). */
static json_t *recent_problems(void)
{
	static const char *const levels[] = { "debug", "info", "warn", "error" };
	struct log_recent r[LOG_RECENT_MAX];
	size_t n = log_recent_get(r, LOG_RECENT_MAX);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:I, s:s, s:s}", "at", (json_int_t)r[i].at,
						   "level", levels[r[i].level & 3], "message",
						   r[i].msg));
	return a;
}

static json_t *build_status(const struct server_http *h, const struct gathered *g, json_t *ready)
{
	json_t *auths = json_array();
	for (size_t i = 0; i < g->n_auth; i++) {
		const struct ca_authority_info *a = &g->auth[i];
		json_array_append_new(auths, json_pack("{s:s,s:s,s:b,s:I,s:I,s:s,s:o}", "id", a->id,
						       "state", a->state, "tainted", a->tainted,
						       "not_before",
						       (json_int_t)a->not_before, "not_after",
						       (json_int_t)a->not_after, "sha256", a->sha256,
						       "jwt_kid", a->jwt_kid[0] ? json_string(a->jwt_kid)
									     : json_null()));
	}
	const struct ds_probe *p = &g->probe;
	const struct node_api_stats *s = &g->ns;
	json_t *signing = json_pack(
		"{s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I}}",
		"agent_attest", "ok", (json_int_t)s->attest_ok, "error", (json_int_t)s->attest_err,
		"agent_renew", "ok", (json_int_t)s->renew_ok, "error", (json_int_t)s->renew_err,
		"x509_svid", "ok", (json_int_t)s->x509_ok, "error", (json_int_t)s->x509_err,
		"jwt_svid", "ok", (json_int_t)s->jwt_ok, "error", (json_int_t)s->jwt_err);
	json_t *doc = json_pack(
		"{s:s,s:s,s:s,s:I,s:I,s:I,s:O,"
		"s:{s:I,s:I,s:o},s:{s:o,s:o,s:o,s:o},s:{s:b,s:i,s:i,s:b,s:i},s:{s:b,s:o,s:o,s:I},s:o,"
		"s:{s:o,s:o},s:o}",
		"daemon", "lanyard-server", "version", LANYARD_VERSION, "trust_domain",
		h->trust_domain, "now", (json_int_t)g->now, "start_time", (json_int_t)h->start_time,
		"uptime_seconds", (json_int_t)(g->now - h->start_time), "ready", ready,
		"ca", "next_rotation", (json_int_t)g->next_rotation, "bundle_sequence",
		(json_int_t)g->bundle_sequence, "authorities", auths,
		"counts", "entries", count_or_null(p->counts_known, p->entries), "agents",
		count_or_null(p->counts_known, p->agents), "join_tokens",
		count_or_null(p->counts_known, p->tokens), "as_of",
		count_or_null(p->counts_known, p->counts_at),
		"node_api", "serving", g->have_node, "connections", (int)s->connections,
		"max_connections", (int)s->max_connections, "saturated",
		g->have_node && s->connections >= s->max_connections,
		"connected_agents", (int)s->streams,
		"datastore", "ok", p->checked && p->ok && g->probe_age_us <= PING_STALE_US,
		"latency_seconds", p->checked ? json_real(p->latency) : json_null(), "checked_at",
		count_or_null(p->checked, p->checked_at), "failures", (json_int_t)p->failures,
		"signing", signing, "cluster", "servers",
		g->cluster ? json_incref(g->cluster) : json_null(), "live",
		count_or_null(g->cluster != NULL, (int64_t)json_array_size(g->cluster)),
		"recent_problems", recent_problems());
	if (doc && h->fed)
		json_object_set_new(doc, "federation", federation_status_json(h->fed));
	return doc;
}

static void oidc_metrics(struct metrics *m, const struct oidc_stats *o)
{
	const char *name = PREFIX "_oidc_requests_total";
	metrics_family(m, name, METRIC_COUNTER,
		       "OIDC discovery endpoint answers by path (discovery, keys, other) and code.");
	for (int r = 0; r < OIDC_ROUTES_N; r++)
		for (int c = 0; c < OIDC_STATUS_N; c++) {
			char code[8];
			snprintf(code, sizeof(code), "%u", oidc_status_codes[c]);
			if (o->answers[r][c] || c == 0)
				metrics_sample(m, name, (double)o->answers[r][c], "path",
					       oidc_route_names[r], "code", code, NULL);
		}
	if (o->tls)
		metrics_single(m, PREFIX "_oidc_certificate_reloads_total", METRIC_COUNTER,
			       "Renewed OIDC discovery certificates taken into use.",
			       (double)o->reloads);
	metrics_single(m, PREFIX "_oidc_jwks_keys", METRIC_GAUGE,
		       "JWT keys the OIDC discovery endpoint publishes (prepared, active, old).",
		       (double)o->keys);
}

/* Per datastore operation: latency and errors; on a shared datastore, the change feed's lag. */
static void write_datastore_stats(struct metrics *m, const struct ds_stats *st)
{
	const char *name = PREFIX "_datastore_operation_duration_seconds";
	metrics_family(m, name, METRIC_HISTOGRAM,
		       "Duration of datastore operations by kind, waiting for the database included.");
	for (size_t i = 0; i < DS_OP__COUNT; i++)
		metrics_histogram(m, name, ds_latency_buckets, st->op[i].le, DS_LATENCY_BUCKETS,
				  st->op[i].sum, st->op[i].count, "op", ds_op_names[i], NULL);
	name = PREFIX "_datastore_operation_errors_total";
	metrics_family(m, name, METRIC_COUNTER,
		       "Datastore operations that failed (database errors), by kind.");
	for (size_t i = 0; i < DS_OP__COUNT; i++)
		metrics_sample(m, name, (double)st->op_errors[i], "op", ds_op_names[i], NULL);
	metrics_single(m, PREFIX "_datastore_retries_total", METRIC_COUNTER,
		       "Transactions retried after a serialization failure or deadlock.",
		       (double)st->retries);
	if (!st->has_feed)
		return;
	name = PREFIX "_change_feed_lag_seconds";
	metrics_family(m, name, METRIC_HISTOGRAM,
		       "Time from a change being written (by any server, database clock) to this "
		       "server recording it from the shared change feed.");
	metrics_histogram(m, name, ds_latency_buckets, st->feed_lag.le, DS_LATENCY_BUCKETS,
			  st->feed_lag.sum, st->feed_lag.count, NULL);
	metrics_single(m, PREFIX "_change_feed_holes_total", METRIC_COUNTER,
		       "Gaps in the change feed passed over, and reconnections (each costs a full "
		       "re-read).", (double)st->feed_holes);
}

/* Requests on the mutual-TLS admin listener by result: "ok" or the reason of the refusal. */
static void admin_tls_metrics(struct metrics *m, const struct admin_tls_stats *a)
{
	const char *name = PREFIX "_admin_tls_requests_total";
	metrics_family(m, name, METRIC_COUNTER,
		       "Requests on the mutual-TLS admin listener by result (ok or why refused).");
	for (int i = 0; i < ADMIN_TLS_RESULT_N; i++)
		metrics_sample(m, name, (double)a->requests[i], "result", admin_tls_result_names[i],
			       NULL);
}

static char *build_metrics(const struct server_http *h, const struct gathered *g, bool ready)
{
	const struct node_api_stats *s = &g->ns;
	const struct ds_probe *p = &g->probe;
	struct metrics m;
	metrics_init(&m);
	procstats_write_metrics(&m, PREFIX, &g->ps, h->start_time, g->now, LANYARD_VERSION);
	metrics_single(&m, PREFIX "_ready", METRIC_GAUGE, "1 when /ready answers 200.", ready);

	const struct {
		const char *kind;
		uint64_t ok, err;
	} kinds[] = {
		{ "agent_attest", s->attest_ok, s->attest_err },
		{ "agent_renew", s->renew_ok, s->renew_err },
		{ "x509_svid", s->x509_ok, s->x509_err },
		{ "jwt_svid", s->jwt_ok, s->jwt_err },
	};
	const char *name = PREFIX "_signing_requests_total";
	metrics_family(&m, name, METRIC_COUNTER,
		       "Signing requests from agents by kind and result (ok or error).");
	for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
		metrics_sample(&m, name, (double)kinds[i].ok, "kind", kinds[i].kind, "result", "ok",
			       NULL);
		metrics_sample(&m, name, (double)kinds[i].err, "kind", kinds[i].kind, "result",
			       "error", NULL);
	}
	name = PREFIX "_signing_duration_seconds";
	metrics_family(&m, name, METRIC_HISTOGRAM, "Time to sign an SVID (CSR check and signature).");
	metrics_histogram(&m, name, node_api_sign_buckets, s->sign_hist,
			  ARRAY_LEN(node_api_sign_buckets), s->sign_sum, s->sign_count, NULL);
	metrics_single(&m, PREFIX "_connected_agents", METRIC_GAUGE,
		       "Agents with an open entry stream.", s->streams);
	metrics_single(&m, PREFIX "_node_api_connections", METRIC_GAUGE,
		       "Open TLS connections to the node API.", s->connections);
	metrics_single(&m, PREFIX "_node_api_max_connections", METRIC_GAUGE,
		       "The node API's connection limit.", s->max_connections);
	name = PREFIX "_node_api_refused_total";
	metrics_family(&m, name, METRIC_COUNTER,
		       "Node API connections and calls turned away by admission control, by reason.");
	for (size_t i = 0; i < GRPC_REFUSED_N; i++)
		metrics_sample(&m, name, (double)s->refused[i], "reason", grpc_refusal_names[i],
			       NULL);

	metrics_single(&m, PREFIX "_datastore_up", METRIC_GAUGE,
		       "1 when the datastore answered its last readiness query.",
		       p->checked && p->ok && g->probe_age_us <= PING_STALE_US);
	if (p->checked)
		metrics_single(&m, PREFIX "_datastore_latency_seconds", METRIC_GAUGE,
			       "Duration of the last datastore readiness query.", p->latency);
	metrics_single(&m, PREFIX "_datastore_errors_total", METRIC_COUNTER,
		       "Datastore readiness queries that failed.", (double)p->failures);
	if (p->counts_known) {
		metrics_single(&m, PREFIX "_registration_entries", METRIC_GAUGE,
			       "Registration entries in the datastore.", (double)p->entries);
		metrics_single(&m, PREFIX "_attested_agents", METRIC_GAUGE,
			       "Attested agents in the datastore.", (double)p->agents);
		metrics_single(&m, PREFIX "_join_tokens", METRIC_GAUGE,
			       "Unexpired, unused join tokens.", (double)p->tokens);
	}

	write_datastore_stats(&m, &g->dss);

	if (g->cluster)
		metrics_single(&m, PREFIX "_cluster_servers", METRIC_GAUGE,
			       "Live servers sharing the datastore (this one included).",
			       (double)json_array_size(g->cluster));

	name = PREFIX "_ca_authority_expiry_timestamp_seconds";
	metrics_family(&m, name, METRIC_GAUGE, "notAfter of each CA authority, by id and state.");
	for (size_t i = 0; i < g->n_auth; i++)
		metrics_sample(&m, name, (double)g->auth[i].not_after, "id", g->auth[i].id, "state",
			       g->auth[i].state, NULL);
	const struct ca_authority_info *a = active_authority(g);
	if (a)
		metrics_single(&m, PREFIX "_ca_active_expiry_seconds", METRIC_GAUGE,
			       "Seconds until the active authority expires.",
			       (double)(a->not_after - g->now));
	federation_metrics(h->fed, &m, PREFIX);
	metrics_single(&m, PREFIX "_bundle_sequence", METRIC_GAUGE,
		       "The trust bundle's sequence number.", (double)g->bundle_sequence);
	if (g->have_oidc)
		oidc_metrics(&m, &g->oidc);
	if (g->have_admin_tls)
		admin_tls_metrics(&m, &g->admin_tls);
	return metrics_finish(&m);
}

static void publish_state(struct server_http *h)
{
	struct gathered g = { .now = now_unix() };
	pthread_mutex_lock(&h->lock);
	g.probe = h->probe;
	g.cluster = h->cluster ? json_deep_copy(h->cluster) : NULL;
	pthread_mutex_unlock(&h->lock);
	g.probe_age_us = g.probe.checked ? now_mono_us() - g.probe.checked_mono_us : 0;
	ds_stats_get(h->ds, &g.dss);
	g.have_node = h->node && *h->node;
	if (g.have_node)
		node_api_stats(*h->node, &g.ns);
	g.auth_ok = ca_authorities(h->ca, &g.auth, &g.n_auth) == 0;
	g.next_rotation = ca_next_rotation(h->ca);
	g.bundle_sequence = ca_bundle_sequence(h->ca);
	procstats_read(&g.ps);
	g.have_oidc = h->oidc != NULL;
	if (g.have_oidc)
		oidc_stats(h->oidc, &g.oidc);
	g.have_admin_tls = h->admin_tls != NULL;
	if (g.have_admin_tls)
		admin_tls_get_stats(h->admin_tls, &g.admin_tls);
	char why[256];
	bool fds_ok = health_probe_fds(&g.ps, why, sizeof(why));
	health_set(h->health, "descriptors", fds_ok, g.now, "%s", why);

	json_t *ready = build_ready(h, &g);
	bool ok = json_is_true(json_object_get(ready, "ready"));
	json_t *status = build_status(h, &g, ready);
	char *metrics = build_metrics(h, &g, ok);
	/* A NULL document is served as 503; these only fail on a bug or out of memory. */
	if (!ready || !status || !metrics)
		log_error("http: cannot build the %s", !ready ? "readiness document"
						       : !status ? "status document" : "metrics text");
	opserver_publish(h->ops, status, ready, metrics);
	free(g.auth);
	json_decref(g.cluster);
}

static void on_tick(uv_timer_t *t)
{
	struct server_http *h = t->data;
	opserver_heartbeat(h->ops);
	publish_state(h);
}

/* ---- start and stop ---- */

static void on_closed(uv_handle_t *handle)
{
	struct server_http *h = handle->data;
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	json_decref(h->cluster);
	health_free(h->health);
	free(h->data_dir);
	free(h->trust_domain);
	free(h);
}

int server_http_start(uv_loop_t *loop, const char *address, int port, struct datastore *ds,
		      struct ca *ca, struct node_api **node, const char *trust_domain,
		      struct server_http **out, char *err, size_t errlen)
{
	*out = NULL;
	if (port == 0) {
		log_info("http: operator endpoints disabled (http_port is 0)");
		return 0;
	}
	struct opserver_options oo = {
		.address = address,
		.port = port < 0 ? 0 : port,
		.name = "server",
		.index_html = status_page_html,
		.list = status_lists_page,
		.status_ud = ds,
	};
	struct opserver *ops = NULL;
	if (opserver_start(&oo, &ops, err, errlen) < 0)
		return -1;
	struct server_http *h = xcalloc(1, sizeof(*h));
	h->ops = ops;
	h->ds = ds;
	h->ca = ca;
	h->node = node;
	h->trust_domain = xstrdup(trust_domain);
	h->health = health_new();
	h->start_time = now_unix();
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_t ca_attr;
	pthread_condattr_init(&ca_attr);
	pthread_condattr_setclock(&ca_attr, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca_attr);
	pthread_condattr_destroy(&ca_attr);
	int rc = pthread_create(&h->thread, NULL, probe_thread, h);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the datastore probe thread: %s", strerror(rc));
		opserver_stop(ops);
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		health_free(h->health);
		free(h->trust_domain);
		free(h);
		return -1;
	}
	h->thread_started = true;
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	uv_timer_start(&h->timer, on_tick, 0, TICK_MS);
	log_info("http: operator endpoints on http://%s:%d/ (live, ready, status, metrics)",
		 address ? address : "127.0.0.1", opserver_port(ops));
	*out = h;
	return 0;
}

void server_http_watch_storage(struct server_http *h, const char *data_dir)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	free(h->data_dir);
	h->data_dir = xstrdup(data_dir);
	pthread_mutex_unlock(&h->lock);
}

void server_http_set_oidc(struct server_http *h, struct oidc *o)
{
	if (h)
		h->oidc = o;
}

void server_http_set_admin_tls(struct server_http *h, struct admin_tls *t)
{
	if (h)
		h->admin_tls = t;
}

int server_http_metrics_listener(struct server_http *h, const char *address, int port, char *err,
				 size_t errlen)
{
	if (!h)
		return errorf(err, errlen, "needs the operator endpoint (http_port is 0)");
	if (opserver_listen_metrics(h->ops, address, port < 0 ? 0 : port, err, errlen) < 0)
		return -1;
	log_info("http: /metrics also on http://%s:%d/metrics", address,
		 opserver_metrics_port(h->ops));
	return 0;
}

int server_http_port(const struct server_http *h)
{
	return h ? opserver_port(h->ops) : 0;
}

void server_http_stop(struct server_http *h)
{
	if (!h)
		return;
	if (h->thread_started) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_cond_signal(&h->cond);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
		h->thread_started = false;
	}
	opserver_stop(h->ops);
	h->ops = NULL;
	h->oidc = NULL;
	h->admin_tls = NULL;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, on_closed);
}

/* ---- healthcheck ---- */

static int endpoint_of(const char *config_path, char *addr, size_t addrlen, int *port, char *err,
		       size_t errlen)
{
	struct server_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	int r = server_config_load(config_path, &cfg, err, errlen);
	if (r == 0) {
		snprintf(addr, addrlen, "%s", cfg.http_address);
		*port = (int)cfg.http_port;
	}
	server_config_free(&cfg);
	return r < 0 ? -1 : 0;
}

int server_healthcheck_main(int argc, char **argv)
{
	return opserver_healthcheck_main("lanyard-server", "/etc/lanyard/server.json", endpoint_of, argc, argv);
}

void server_http_set_federation(struct server_http *h, struct federation *f)
{
	if (h)
		h->fed = f;
}
