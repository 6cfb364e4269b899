/* opserver.c: the operator HTTP endpoints, served from a published snapshot on MHD's thread. */
#include "opserver.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "curl_dyn.h"
#include "log.h"
#include "util.h"

#define DEFAULT_LIVE_MS 5000
#define DEFAULT_STALE_MS 15000
#define DEFAULT_TIMEOUT_S 10
#define DEFAULT_CONN_LIMIT 64

/* One published set of documents. Immutable once published; the HTTP thread copies from it
 * under the lock, so it is freed by whoever replaces it. */
struct snap {
	char *status;
	char *ready;
	bool ready_ok;
	char *metrics;
	int64_t published_us; /* monotonic */
};

/* One libmicrohttpd daemon: the operator endpoints, or the /metrics-only listener. */
struct listener {
	struct opserver *o;
	bool metrics_only;
	struct MHD_Daemon *daemon; /* NULL when not started */
	int port;
};

struct opserver {
	struct listener main, metrics;
	char *name;
	const char *index_html;
	unsigned conn_limit, conn_timeout_s;
	char *(*status_members)(void *ud);
	void *status_ud;
	char *(*list)(void *ud, const char *name, const char *q, const char *page_token);
	int64_t live_us, stale_us;
	atomic_llong heartbeat_us; /* monotonic time of the last heartbeat */
	pthread_mutex_t lock;
	struct snap *snap; /* NULL until the first publication */
};

/* ---- publishing ---- */

static void snap_free(struct snap *s)
{
	if (!s)
		return;
	free(s->status);
	free(s->ready);
	free(s->metrics);
	free(s);
}

/* Compact JSON and a newline, or NULL. */
static char *dump_json(const json_t *j)
{
	if (!j)
		return NULL;
	/* Ten significant digits: exact for latencies and ages, without binary noise. */
	char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *nl = realloc(s, n + 2);
	if (!nl) {
		free(s);
		return NULL;
	}
	nl[n] = '\n';
	nl[n + 1] = '\0';
	return nl;
}

void opserver_heartbeat(struct opserver *o)
{
	atomic_store(&o->heartbeat_us, now_mono_us());
}

void opserver_publish(struct opserver *o, json_t *status, json_t *ready, char *metrics_text)
{
	struct snap *s = calloc(1, sizeof(*s));
	if (s) {
		s->status = dump_json(status);
		s->ready = dump_json(ready);
		s->ready_ok = json_is_true(json_object_get(ready, "ready"));
		s->metrics = metrics_text;
		metrics_text = NULL;
		s->published_us = now_mono_us();
	}
	json_decref(status);
	json_decref(ready);
	free(metrics_text);
	if (!s)
		return;
	pthread_mutex_lock(&o->lock);
	struct snap *old = o->snap;
	o->snap = s;
	pthread_mutex_unlock(&o->lock);
	snap_free(old);
}

/* ---- serving ---- */

struct reply {
	unsigned int status;
	char *body; /* owned */
	const char *content_type;
	const char *allow;
};

static void reply_json(struct reply *r, unsigned int status, json_t *j)
{
	r->status = status;
	r->body = dump_json(j);
	r->content_type = "application/json";
	json_decref(j);
}

static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(r, status, json_pack("{s:s}", "error", msg));
}

static void reply_copy(struct reply *r, unsigned int status, const char *body, const char *ctype)
{
	r->status = status;
	r->body = strdup(body);
	r->content_type = ctype;
}

static void serve_live(struct opserver *o, struct reply *r)
{
	int64_t age_us = now_mono_us() - atomic_load(&o->heartbeat_us);
	bool live = age_us <= o->live_us;
	reply_json(r, live ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		   json_pack("{s:b,s:f,s:f}", "live", live, "last_heartbeat_age_seconds",
			     (double)age_us / 1e6, "threshold_seconds", (double)o->live_us / 1e6));
}

/* A readiness failure decided here rather than by the owner: its loop stalled, or it has not
 * published recently, so the last document can no longer be trusted. */
static void serve_not_ready(struct reply *r, const char *check, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void serve_not_ready(struct reply *r, const char *check, const char *fmt, ...)
{
	char detail[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	reply_json(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		   json_pack("{s:b,s:s,s:{s:{s:b,s:s}}}", "ready", false, "status", "not_ready",
			     "checks", check, "ok", false, "detail", detail));
}

static void serve_ready(struct opserver *o, struct reply *r)
{
	int64_t now = now_mono_us();
	int64_t hb_age = now - atomic_load(&o->heartbeat_us);
	pthread_mutex_lock(&o->lock);
	const struct snap *s = o->snap;
	if (!s || !s->ready)
		serve_not_ready(r, "started", "%s", s ? "no readiness document"
						       : "starting: no state published yet");
	else if (hb_age > o->live_us)
		serve_not_ready(r, "event_loop", "the event loop has not answered for %.1f s",
				(double)hb_age / 1e6);
	else if (now - s->published_us > o->stale_us)
		serve_not_ready(r, "state", "the state was last refreshed %.1f s ago",
				(double)(now - s->published_us) / 1e6);
	else
		reply_copy(r, s->ready_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, s->ready,
			   "application/json");
	pthread_mutex_unlock(&o->lock);
}

/* /status and /metrics: a copy of the document as last published. */
static void serve_document(struct opserver *o, struct reply *r, bool metrics)
{
	pthread_mutex_lock(&o->lock);
	const char *doc = !o->snap ? NULL : metrics ? o->snap->metrics : o->snap->status;
	if (!doc)
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "starting: no state published yet");
	else if (metrics)
		reply_copy(r, MHD_HTTP_OK, doc, "text/plain; version=0.0.4; charset=utf-8");
	else
		reply_copy(r, MHD_HTTP_OK, doc, "application/json");
	pthread_mutex_unlock(&o->lock);
}

/* The published document ({...}\n) with the owner's request-time members spliced in before its
 * closing brace, or NULL when out of memory. */
static char *with_members(const char *doc, const char *members)
{
	size_t n = strlen(doc);
	while (n && (doc[n - 1] == '\n' || doc[n - 1] == ' '))
		n--;
	if (n < 2 || doc[n - 1] != '}')
		return strdup(doc); /* not an object: serve it as it is */
	size_t m = strlen(members);
	bool empty = n == 2; /* "{}" */
	char *out = malloc(n + m + 3);
	if (!out)
		return NULL;
	memcpy(out, doc, n - 1);
	size_t p = n - 1;
	if (!empty)
		out[p++] = ',';
	memcpy(out + p, members, m);
	p += m;
	out[p++] = '}';
	out[p++] = '\n';
	out[p] = '\0';
	return out;
}

static void serve_status(struct opserver *o, struct reply *r)
{
	if (!o->status_members) {
		serve_document(o, r, false);
		return;
	}
	/* Rendered before taking the lock: it may take milliseconds, and publications must not
	 * wait for it. */
	char *members = o->status_members(o->status_ud);
	pthread_mutex_lock(&o->lock);
	const char *doc = o->snap ? o->snap->status : NULL;
	if (!doc) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "starting: no state published yet");
	} else if (!members || !members[0]) {
		reply_copy(r, MHD_HTTP_OK, doc, "application/json");
	} else {
		r->status = MHD_HTTP_OK;
		r->body = with_members(doc, members);
		r->content_type = "application/json";
	}
	pthread_mutex_unlock(&o->lock);
	free(members);
}

static void serve_metrics(struct opserver *o, struct reply *r)
{
	serve_document(o, r, true);
}

static void serve_index(struct opserver *o, struct reply *r)
{
	reply_copy(r, MHD_HTTP_OK, o->index_html, "text/html; charset=utf-8");
}

static const struct {
	const char *path;
	void (*serve)(struct opserver *o, struct reply *r);
} routes[] = {
	{ "/", serve_index },
	{ "/live", serve_live },
	{ "/ready", serve_ready },
	{ "/status", serve_status },
	{ "/metrics", serve_metrics },
};

#define LIST_PREFIX "/list/"

static void serve_list(struct opserver *o, struct MHD_Connection *conn, const char *name,
		       struct reply *r)
{
	const char *q = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "q");
	const char *tok = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "page_token");
	char *text = o->list(o->status_ud, name, q, tok);
	if (!text) {
		reply_error(r, MHD_HTTP_NOT_FOUND, "no such list: %.64s", name);
		return;
	}
	r->status = MHD_HTTP_OK;
	r->body = text;
	r->content_type = "application/json";
}

/* Every route answers GET and HEAD only. */
static void dispatch(const struct listener *l, struct MHD_Connection *conn, const char *url,
		     const char *method, struct reply *r)
{
	struct opserver *o = l->o;
	size_t i = 0;
	bool list = !l->metrics_only && o->list &&
		    strncmp(url, LIST_PREFIX, strlen(LIST_PREFIX)) == 0;
	while (!list && i < ARRAY_LEN(routes) && strcmp(url, routes[i].path) != 0)
		i++;
	if (!list && (i == ARRAY_LEN(routes) || (routes[i].serve == serve_index && !o->index_html) ||
		      (l->metrics_only && routes[i].serve != serve_metrics))) {
		reply_error(r, MHD_HTTP_NOT_FOUND, "no such resource: %.128s", url);
		return;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		r->allow = "GET, HEAD";
		reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method %.16s not allowed on %.128s",
			    method, url);
		return;
	}
	if (list)
		serve_list(o, conn, url + strlen(LIST_PREFIX), r);
	else
		routes[i].serve(o, r);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct reply *r)
{
	if (!r->body)
		return MHD_NO;
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(r->body), r->body,
								    MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(r->body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (strncmp(r->content_type, "text/html", 9) == 0) {
		/* The page is self-contained: its inline script may only call back to this origin. */
		MHD_add_response_header(resp, "Content-Security-Policy",
					"default-src 'none'; script-src 'unsafe-inline'; "
					"style-src 'unsafe-inline'; connect-src 'self'; "
					"img-src data:; frame-ancestors 'none'");
	}
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

bool opserver_request_has_body(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_TRANSFER_ENCODING);
	return te || (cl && strspn(cl, "0") != strlen(cl));
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	const struct listener *l = cls;
	struct reply r = { 0 };
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

	if (!*con_cls) {
		*con_cls = cls; /* marks the first call as seen */
		/* Errors are answered at once, before any body is read (MHD then closes the
		 * connection); good answers wait for the second call, since queuing on the first
		 * one forces "Connection: close" in 0.9.75 and scrapers keep connections open. */
		if (get && !opserver_request_has_body(conn))
			return MHD_YES;
		dispatch(l, conn, url, method, &r);
		if (r.status < 400) {
			free(r.body);
			reply_error(&r, MHD_HTTP_BAD_REQUEST, "a %s request takes no body", method);
		}
		return send_reply(conn, &r);
	}
	dispatch(l, conn, url, method, &r);
	return send_reply(conn, &r);
}

void opserver_mhd_log(void *cls, const char *fmt, va_list ap)
{
	const char *name = cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_debug("%s http: %s", name, msg);
}

/* ---- start and stop ---- */

int opserver_listen_tcp(const char *address, int port, const char *key, int *family, char *err,
			size_t errlen)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *ai = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	int rc = getaddrinfo(address, portstr, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s '%.200s': %s", key, address,
			 gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen: %s", strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	*family = ai->ai_family;
	freeaddrinfo(ai);
	return fd;
}

int opserver_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* Binds address:port and starts l's daemon. 0, or -1 with a reason in err. */
static int listener_start(struct opserver *o, struct listener *l, const char *address,
			  const char *key, int port, char *err, size_t errlen)
{
	if (port < 0 || port > 65535) {
		snprintf(err, errlen, "invalid port %d", port);
		return -1;
	}
	int family = AF_INET;
	int fd = opserver_listen_tcp(address, port, key, &family, err, errlen);
	if (fd < 0)
		return -1;
	l->o = o;
	l->port = opserver_bound_port(fd);
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
	l->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, handle_request, l,
		MHD_OPTION_EXTERNAL_LOGGER, opserver_mhd_log, o->name,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, o->conn_limit,
		MHD_OPTION_CONNECTION_TIMEOUT, o->conn_timeout_s,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
		MHD_OPTION_END);
	if (!l->daemon) {
		snprintf(err, errlen, "cannot start the HTTP server on %.200s port %d", address,
			 l->port);
		close(fd);
		return -1;
	}
	return 0;
}

int opserver_start(const struct opserver_options *opt, struct opserver **out, char *err,
		   size_t errlen)
{
	struct opserver *o = xcalloc(1, sizeof(*o));
	o->name = xstrdup(opt->name ? opt->name : "daemon");
	o->index_html = opt->index_html;
	o->status_members = opt->status_members;
	o->status_ud = opt->status_ud;
	o->list = opt->list;
	o->live_us = (opt->live_threshold_ms > 0 ? opt->live_threshold_ms : DEFAULT_LIVE_MS) * 1000;
	o->stale_us = (opt->stale_after_ms > 0 ? opt->stale_after_ms : DEFAULT_STALE_MS) * 1000;
	o->conn_limit = opt->conn_limit ? opt->conn_limit : DEFAULT_CONN_LIMIT;
	o->conn_timeout_s = opt->conn_timeout_s ? opt->conn_timeout_s : DEFAULT_TIMEOUT_S;
	atomic_store(&o->heartbeat_us, now_mono_us());
	pthread_mutex_init(&o->lock, NULL);
	if (listener_start(o, &o->main, opt->address ? opt->address : "127.0.0.1",
			   "http_address", opt->port, err, errlen) < 0) {
		pthread_mutex_destroy(&o->lock);
		free(o->name);
		free(o);
		return -1;
	}
	*out = o;
	return 0;
}

int opserver_listen_metrics(struct opserver *o, const char *address, int port, char *err,
			    size_t errlen)
{
	if (o->metrics.daemon)
		return errorf(err, errlen, "the metrics listener is already running");
	o->metrics.metrics_only = true;
	return listener_start(o, &o->metrics, address, "metrics_bind_address", port, err, errlen);
}

int opserver_metrics_port(const struct opserver *o)
{
	return o->metrics.daemon ? o->metrics.port : 0;
}

void opserver_stop(struct opserver *o)
{
	if (!o)
		return;
	if (o->metrics.daemon)
		MHD_stop_daemon(o->metrics.daemon);
	MHD_stop_daemon(o->main.daemon);
	snap_free(o->snap);
	pthread_mutex_destroy(&o->lock);
	free(o->name);
	free(o);
}

int opserver_port(const struct opserver *o)
{
	return o->main.port;
}

/* ---- document helpers ---- */

bool opserver_check(json_t *checks, const char *name, bool ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	json_object_set_new(checks, name, json_pack("{s:b,s:s}", "ok", ok, "detail", detail));
	return ok;
}

const char *opserver_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%s", t == 0 ? "never" : "?");
	return buf;
}

/* ---- the probe client ---- */

struct body {
	char *data;
	size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	if (b->len + n > 1 << 20)
		return 0;
	char *nb = realloc(b->data, b->len + n + 1);
	if (!nb)
		return 0;
	memcpy(nb + b->len, ptr, n);
	b->data = nb;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* "check: detail; check: detail" for the failing checks of a readiness document. */
static void ready_reason(const json_t *ready, char *reason, size_t reasonlen)
{
	size_t off = 0;
	const json_t *checks = json_object_get(ready, "checks");
	const char *name;
	const json_t *c;
	reason[0] = '\0';
	json_object_foreach((json_t *)checks, name, c) {
		if (json_is_true(json_object_get(c, "ok")) || off >= reasonlen)
			continue;
		const char *detail = json_string_value(json_object_get(c, "detail"));
		off += (size_t)snprintf(reason + off, reasonlen - off, "%s%s: %s", off ? "; " : "",
					name, detail ? detail : "failed");
	}
	if (!off)
		snprintf(reason, reasonlen, "no failing check named");
}

/* Where to connect for a listen address: the unspecified ones mean "every interface", of which
 * loopback is one. A literal IPv6 address needs brackets in a URL. */
static void probe_host(const char *address, char *out, size_t len)
{
	if (!address || !*address || strcmp(address, "0.0.0.0") == 0)
		snprintf(out, len, "127.0.0.1");
	else if (strcmp(address, "::") == 0 || strcmp(address, "[::]") == 0)
		snprintf(out, len, "[::1]");
	else if (strchr(address, ':') && address[0] != '[')
		snprintf(out, len, "[%s]", address);
	else
		snprintf(out, len, "%s", address);
}

int opserver_probe(const char *address, int port, const char *path, long timeout_ms,
		   char *reason, size_t reasonlen)
{
	char host[300], url[400], curl_err[CURL_ERROR_SIZE] = "";
	struct body b = { 0 };
	int ret = 1;
	long code = 0;
	probe_host(address, host, sizeof(host));
	snprintf(url, sizeof(url), "http://%s:%d%s", host, port, path);
	const struct curl_fns *cu = curl_fns_load(reason, reasonlen);
	if (!cu)
		return 1;
	CURL *c = cu->easy_init();
	if (!c) {
		snprintf(reason, reasonlen, "cannot initialise libcurl");
		return 1;
	}
	cu->easy_setopt(c, CURLOPT_URL, url);
	cu->easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	cu->easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(c, CURLOPT_NOPROXY, "*");
	cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	cu->easy_setopt(c, CURLOPT_WRITEDATA, &b);
	cu->easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	CURLcode rc = cu->easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(reason, reasonlen, "cannot get %s: %s", url,
			 curl_err[0] ? curl_err : cu->easy_strerror(rc));
		goto out;
	}
	cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code == 200) {
		snprintf(reason, reasonlen, "%s answered 200", url);
		ret = 0;
		goto out;
	}
	json_t *j = b.data ? json_loads(b.data, 0, NULL) : NULL;
	if (json_is_object(json_object_get(j, "checks"))) {
		char why[768];
		ready_reason(j, why, sizeof(why));
		const char *st = json_string_value(json_object_get(j, "status"));
		snprintf(reason, reasonlen, "%s (HTTP %ld): %s",
			 st && strcmp(st, "degraded") == 0 ? "degraded" : "not ready", code, why);
	} else if (json_is_string(json_object_get(j, "error"))) {
		snprintf(reason, reasonlen, "%s answered HTTP %ld: %s", url, code,
			 json_string_value(json_object_get(j, "error")));
	} else {
		snprintf(reason, reasonlen, "%s answered HTTP %ld", url, code);
	}
	json_decref(j);
out:
	cu->easy_cleanup(c);
	free(b.data);
	return ret;
}

int opserver_healthcheck_main(const char *name, const char *default_config,
			      opserver_endpoint_fn endpoint, int argc, char **argv)
{
	const char *config_path = default_config;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: %s healthcheck [--config FILE]\n"
			       "Exits 0 when the /ready endpoint answers 200, else 1.\n", name);
			return 0;
		} else {
			fprintf(stderr, "%s healthcheck: unknown argument '%s'\n"
					"usage: %s healthcheck [--config FILE]\n", name, argv[i], name);
			return 1;
		}
	}
	char addr[256], err[1024], reason[1536];
	int port = 0;
	if (endpoint(config_path, addr, sizeof(addr), &port, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s healthcheck: %s\n", name, err);
		return 1;
	}
	if (port == 0) {
		fprintf(stderr, "%s healthcheck: the HTTP endpoints are disabled (http_port is 0 in "
				"%s)\n", name, config_path);
		return 1;
	}
	if (opserver_probe(addr, port, "/ready", 2000, reason, sizeof(reason)) != 0) {
		fprintf(stderr, "%s healthcheck: %s\n", name, reason);
		return 1;
	}
	printf("ready\n");
	return 0;
}
