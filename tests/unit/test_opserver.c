#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "opserver.h"
#include "util.h"

#define PAGE "<!doctype html><title>t</title><p>page</p>"

struct resp {
	long code;
	char *body;
	size_t len;
	char ctype[128];
	char allow[64];
	char csp[256];
	long connects;
};

static void resp_free(struct resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	char *nb = realloc(r->body, r->len + size * n + 1);
	assert_non_null(nb);
	memcpy(nb + r->len, p, size * n);
	r->body = nb;
	r->len += size * n;
	r->body[r->len] = '\0';
	return size * n;
}

static void copy_header(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	while (*v == ' ')
		v++;
	size_t vl = len - (size_t)(v - line);
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	snprintf(out, outlen, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	copy_header(p, size * n, "Content-Type", r->ctype, sizeof(r->ctype));
	copy_header(p, size * n, "Allow", r->allow, sizeof(r->allow));
	copy_header(p, size * n, "Content-Security-Policy", r->csp, sizeof(r->csp));
	return size * n;
}

/* One request on handle c (reused across calls to test keep-alive). */
static void request_on(CURL *c, int port, const char *method, const char *path,
		       const char *body, struct resp *r)
{
	char url[128];
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "HEAD") == 0 ? NULL : method);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	if (!body && strcmp(method, "GET") == 0)
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		r->code = -1;
		return;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
}

static void request(int port, const char *method, const char *path, struct resp *r)
{
	CURL *c = curl_easy_init();
	assert_non_null(c);
	request_on(c, port, method, path, NULL, r);
	curl_easy_cleanup(c);
}

static json_t *body_json(const struct resp *r)
{
	json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
	assert_non_null(j);
	return j;
}

static void assert_json_error(const struct resp *r)
{
	assert_string_equal(r->ctype, "application/json");
	json_t *j = body_json(r);
	assert_true(json_is_string(json_object_get(j, "error")));
	json_decref(j);
}

static struct opserver *start(int64_t live_ms, int64_t stale_ms, unsigned timeout_s,
			      unsigned limit)
{
	struct opserver_options o = {
		.address = "127.0.0.1",
		.port = 0,
		.name = "test",
		.index_html = PAGE,
		.live_threshold_ms = live_ms,
		.stale_after_ms = stale_ms,
		.conn_timeout_s = timeout_s,
		.conn_limit = limit,
	};
	struct opserver *s = NULL;
	char err[256] = "";
	assert_int_equal(opserver_start(&o, &s, err, sizeof(err)), 0);
	assert_non_null(s);
	assert_true(opserver_port(s) > 0);
	return s;
}

static void publish(struct opserver *s, bool ready, int gen)
{
	json_t *status = json_pack("{s:s,s:i}", "daemon", "test", "generation", gen);
	json_t *rd = json_pack("{s:b,s:s,s:{s:{s:b,s:s},s:{s:b,s:s}}}", "ready", ready, "status",
			       ready ? "ready" : "not_ready", "checks", "datastore", "ok", true,
			       "detail", "answered in 1 ms", "ca", "ok", ready, "detail",
			       ready ? "active until later" : "no active authority");
	char *metrics = NULL;
	assert_true(asprintf(&metrics, "# TYPE t_gen gauge\nt_gen %d\n", gen) > 0);
	opserver_publish(s, status, rd, metrics);
}

static void test_before_publication(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	struct resp r;
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 200);
	json_t *j = body_json(&r);
	assert_true(json_is_true(json_object_get(j, "live")));
	json_decref(j);
	resp_free(&r);

	static const char *const paths[] = { "/status", "/metrics" };
	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		request(port, "GET", paths[i], &r);
		assert_int_equal(r.code, 503);
		assert_json_error(&r);
		resp_free(&r);
	}
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 503);
	j = body_json(&r);
	assert_true(json_is_false(json_object_get(j, "ready")));
	assert_true(json_is_false(json_object_get(json_object_get(json_object_get(j, "checks"),
								   "started"), "ok")));
	json_decref(j);
	resp_free(&r);
	opserver_stop(s);
}

static void test_routes(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	struct resp r;
	publish(s, true, 7);

	request(port, "GET", "/status", &r);
	assert_int_equal(r.code, 200);
	assert_string_equal(r.ctype, "application/json");
	json_t *j = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "generation")), 7);
	json_decref(j);
	resp_free(&r);

	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 200);
	assert_string_equal(r.ctype, "application/json");
	j = body_json(&r);
	assert_true(json_is_true(json_object_get(j, "ready")));
	json_decref(j);
	resp_free(&r);

	request(port, "GET", "/metrics", &r);
	assert_int_equal(r.code, 200);
	assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(r.body, "# TYPE t_gen gauge\nt_gen 7\n");
	resp_free(&r);

	request(port, "GET", "/", &r);
	assert_int_equal(r.code, 200);
	assert_string_equal(r.ctype, "text/html; charset=utf-8");
	assert_string_equal(r.body, PAGE);
	assert_non_null(strstr(r.csp, "default-src 'none'"));
	assert_non_null(strstr(r.csp, "connect-src 'self'"));
	resp_free(&r);

	request(port, "HEAD", "/status", &r);
	assert_int_equal(r.code, 200);
	assert_null(r.body);
	resp_free(&r);

	/* A new publication replaces every document at once. */
	publish(s, false, 8);
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 503);
	j = body_json(&r);
	assert_true(json_is_false(json_object_get(j, "ready")));
	assert_string_equal(json_string_value(json_object_get(j, "status")), "not_ready");
	json_decref(j);
	resp_free(&r);
	request(port, "GET", "/metrics", &r);
	assert_int_equal(r.code, 200);
	assert_non_null(strstr(r.body, "t_gen 8\n"));
	resp_free(&r);

	/* NULL documents answer 503. */
	opserver_publish(s, NULL, NULL, NULL);
	request(port, "GET", "/status", &r);
	assert_int_equal(r.code, 503);
	resp_free(&r);
	opserver_stop(s);
}

/* status_members: rendered per request from the owner's current data and spliced into the
 * published document; NULL adds nothing. */
struct members_src {
	atomic_int calls;
	int value; /* < 0: answer NULL */
};

static char *members_cb(void *ud)
{
	struct members_src *m = ud;
	atomic_fetch_add(&m->calls, 1);
	if (m->value < 0)
		return NULL;
	char *t = NULL;
	assert_true(asprintf(&t, "\"items\":[%d,%d],\"note\":\"x\"", m->value, m->value + 1) > 0);
	return t;
}

static void test_status_members(void **state)
{
	(void)state;
	struct members_src m = {.value = 41};
	struct opserver_options o = {
		.address = "127.0.0.1",
		.name = "test",
		.status_members = members_cb,
		.status_ud = &m,
	};
	struct opserver *s = NULL;
	char err[256] = "";
	assert_int_equal(opserver_start(&o, &s, err, sizeof(err)), 0);
	int port = opserver_port(s);
	struct resp r;

	/* Nothing published yet: 503, whatever the members. */
	request(port, "GET", "/status", &r);
	assert_int_equal(r.code, 503);
	resp_free(&r);

	publish(s, true, 3);
	request(port, "GET", "/status", &r);
	assert_int_equal(r.code, 200);
	json_t *j = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "items"), 1)), 42);
	assert_string_equal(json_string_value(json_object_get(j, "note")), "x");
	json_decref(j);
	resp_free(&r);

	/* Rendered per request, not at publication. */
	m.value = 9;
	request(port, "GET", "/status", &r);
	j = body_json(&r);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "items"), 0)), 9);
	json_decref(j);
	resp_free(&r);
	assert_true(atomic_load(&m.calls) >= 2);

	/* NULL members: the published document alone. */
	m.value = -1;
	request(port, "GET", "/status", &r);
	assert_int_equal(r.code, 200);
	j = body_json(&r);
	assert_null(json_object_get(j, "items"));
	assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
	json_decref(j);
	resp_free(&r);

	/* An empty published object still gives valid JSON. */
	m.value = 1;
	opserver_publish(s, json_object(), NULL, NULL);
	request(port, "GET", "/status", &r);
	j = body_json(&r);
	assert_int_equal(json_object_size(j), 2);
	json_decref(j);
	resp_free(&r);

	/* The other documents never call it. */
	int before = atomic_load(&m.calls);
	request(port, "GET", "/metrics", &r);
	resp_free(&r);
	assert_int_equal(atomic_load(&m.calls), before);
	opserver_stop(s);
}

static void test_errors(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	publish(s, true, 1);
	struct resp r;

	static const char *const methods[] = { "POST", "PUT", "DELETE", "PATCH", "OPTIONS" };
	for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
		CURL *c = curl_easy_init();
		request_on(c, port, methods[i], "/status", i == 0 ? "{\"x\":1}" : NULL, &r);
		curl_easy_cleanup(c);
		assert_int_equal(r.code, 405);
		assert_string_equal(r.allow, "GET, HEAD");
		assert_json_error(&r);
		resp_free(&r);
	}
	request(port, "POST", "/ready", &r);
	assert_int_equal(r.code, 405);
	resp_free(&r);

	static const char *const missing[] = { "/nope", "/status/", "/live/x", "/metrics.txt",
					       "//", "/READY" };
	for (size_t i = 0; i < ARRAY_LEN(missing); i++) {
		request(port, "GET", missing[i], &r);
		assert_int_equal(r.code, 404);
		assert_json_error(&r);
		resp_free(&r);
	}
	request(port, "DELETE", "/nope", &r);
	assert_int_equal(r.code, 404);
	resp_free(&r);

	/* A GET with a body is refused, not read. */
	CURL *c = curl_easy_init();
	request_on(c, port, "GET", "/status", "some body", &r);
	curl_easy_cleanup(c);
	assert_int_equal(r.code, 400);
	assert_json_error(&r);
	resp_free(&r);
	opserver_stop(s);
}

static void test_keep_alive(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	publish(s, true, 1);
	CURL *c = curl_easy_init();
	struct resp r;
	request_on(c, port, "GET", "/metrics", NULL, &r);
	assert_int_equal(r.code, 200);
	assert_int_equal(r.connects, 1);
	resp_free(&r);
	for (int i = 0; i < 3; i++) {
		request_on(c, port, "GET", i % 2 ? "/status" : "/live", NULL, &r);
		assert_int_equal(r.code, 200);
		/* The same connection served it. */
		assert_int_equal(r.connects, 0);
		resp_free(&r);
	}
	curl_easy_cleanup(c);
	opserver_stop(s);
}

static void test_live_follows_heartbeats(void **state)
{
	struct opserver *s = start(300, 0, 0, 0);
	int port = opserver_port(s);
	publish(s, true, 1);
	struct resp r;
	opserver_heartbeat(s);
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);

	/* The loop stops beating: /live and /ready fail. */
	usleep(500 * 1000);
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 503);
	json_t *j = body_json(&r);
	assert_true(json_is_false(json_object_get(j, "live")));
	assert_true(json_real_value(json_object_get(j, "last_heartbeat_age_seconds")) >= 0.3);
	json_decref(j);
	resp_free(&r);
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 503);
	j = body_json(&r);
	assert_non_null(json_object_get(json_object_get(j, "checks"), "event_loop"));
	json_decref(j);
	resp_free(&r);
	char reason[512];
	assert_int_equal(opserver_probe("127.0.0.1", port, "/ready", 2000, reason, sizeof(reason)),
			 1);
	assert_non_null(strstr(reason, "event_loop"));

	/* It beats again: both recover. */
	opserver_heartbeat(s);
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);
	opserver_stop(s);
}

static void test_stale_state(void **state)
{
	struct opserver *s = start(0, 300, 0, 0);
	int port = opserver_port(s);
	publish(s, true, 1);
	struct resp r;
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);
	usleep(500 * 1000);
	opserver_heartbeat(s);
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 503);
	json_t *j = body_json(&r);
	const char *d = json_string_value(json_object_get(
		json_object_get(json_object_get(j, "checks"), "state"), "detail"));
	assert_non_null(d);
	assert_non_null(strstr(d, "refreshed"));
	json_decref(j);
	resp_free(&r);
	publish(s, true, 2);
	request(port, "GET", "/ready", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);
	opserver_stop(s);
}

static void test_probe(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	char reason[512];
	publish(s, true, 1);
	assert_int_equal(opserver_probe("127.0.0.1", port, "/ready", 2000, reason, sizeof(reason)),
			 0);
	/* An unspecified listen address is probed on loopback. */
	assert_int_equal(opserver_probe("0.0.0.0", port, "/ready", 2000, reason, sizeof(reason)), 0);
	publish(s, false, 2);
	assert_int_equal(opserver_probe("127.0.0.1", port, "/ready", 2000, reason, sizeof(reason)),
			 1);
	assert_non_null(strstr(reason, "not ready (HTTP 503)"));
	assert_non_null(strstr(reason, "ca: no active authority"));
	/* Passing checks are not named. */
	assert_null(strstr(reason, "datastore"));
	assert_int_equal(opserver_probe("127.0.0.1", port, "/nope", 2000, reason, sizeof(reason)),
			 1);
	assert_non_null(strstr(reason, "404"));
	opserver_stop(s);
	assert_int_equal(opserver_probe("127.0.0.1", port, "/ready", 2000, reason, sizeof(reason)),
			 1);
	assert_non_null(strstr(reason, "cannot get"));
}

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* True when the server closed fd within ms milliseconds. */
static bool closed_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t end = now_mono_us() + (int64_t)ms * 1000;
	while (now_mono_us() < end) {
		if (poll(&p, 1, 100) == 1) {
			char buf[256];
			ssize_t n = recv(fd, buf, sizeof(buf), 0);
			if (n <= 0)
				return true;
		}
	}
	return false;
}

static void test_slow_clients(void **state)
{
	struct opserver *s = start(0, 0, 1, 4);
	int port = opserver_port(s);
	publish(s, true, 1);
	struct resp r;

	/* A client that sends half a request and stalls does not hold up the others... */
	int slow = raw_connect(port);
	const char *half = "GET /status HTTP/1.1\r\nHost: x\r\n";
	assert_int_equal(send(slow, half, strlen(half), 0), (ssize_t)strlen(half));
	int64_t t0 = now_mono_us();
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 200);
	assert_true(now_mono_us() - t0 < 500 * 1000);
	resp_free(&r);
	/* ...and is dropped once idle for the connection timeout. */
	assert_true(closed_within(slow, 4000));
	close(slow);

	/* The number of connections is bounded: past the limit, a client waits in the listen
	 * backlog until idle connections expire, then it is served. */
	int idle[4];
	for (int i = 0; i < 4; i++)
		idle[i] = raw_connect(port);
	usleep(200 * 1000);
	int extra = raw_connect(port);
	const char *full = "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	assert_int_equal(send(extra, full, strlen(full), 0), (ssize_t)strlen(full));
	struct pollfd p = { .fd = extra, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 300), 0);
	assert_int_equal(poll(&p, 1, 4000), 1);
	char buf[512] = "";
	assert_true(recv(extra, buf, sizeof(buf) - 1, 0) > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	close(extra);
	for (int i = 0; i < 4; i++)
		assert_true(closed_within(idle[i], 4000));
	for (int i = 0; i < 4; i++)
		close(idle[i]);
	request(port, "GET", "/live", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);
	opserver_stop(s);
}

struct publisher {
	struct opserver *s;
	atomic_bool stop;
};

static void *publish_loop(void *arg)
{
	struct publisher *p = arg;
	for (int gen = 0; !atomic_load(&p->stop); gen++) {
		publish(p->s, gen % 2 == 0, gen);
		opserver_heartbeat(p->s);
	}
	return NULL;
}

/* Readers see whole documents while a writer publishes as fast as it can. */
static void test_concurrent_publication(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	int port = opserver_port(s);
	publish(s, true, 0);
	struct publisher p = { .s = s };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, publish_loop, &p), 0);
	CURL *c = curl_easy_init();
	for (int i = 0; i < 200; i++) {
		struct resp r;
		request_on(c, port, "GET", i % 2 ? "/status" : "/ready", NULL, &r);
		assert_true(r.code == 200 || (i % 2 == 0 && r.code == 503));
		json_t *j = body_json(&r);
		if (i % 2 == 0)
			assert_int_equal(r.code == 200,
					 json_is_true(json_object_get(j, "ready")));
		else
			assert_true(json_is_integer(json_object_get(j, "generation")));
		json_decref(j);
		resp_free(&r);
	}
	curl_easy_cleanup(c);
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	opserver_stop(s);
}

static void test_bind_errors(void **state)
{
	struct opserver *s = start(0, 0, 0, 0);
	struct opserver_options o = { .address = "127.0.0.1", .port = opserver_port(s) };
	struct opserver *t = NULL;
	char err[256] = "";
	assert_int_equal(opserver_start(&o, &t, err, sizeof(err)), -1);
	assert_null(t);
	assert_non_null(strstr(err, "cannot listen"));
	opserver_stop(s);

	o.address = "no-such-host.invalid";
	o.port = 0;
	assert_int_equal(opserver_start(&o, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no-such-host.invalid"));
	o.address = "127.0.0.1";
	o.port = 70000;
	assert_int_equal(opserver_start(&o, &t, err, sizeof(err)), -1);
	opserver_stop(NULL);
}

/* The /metrics-only listener, bound to every address and reached over loopback: the published
 * metrics, nothing else; a busy port is an error naming metrics_bind_address. */
static void test_metrics_listener(void **state)
{
	(void)state;
	struct opserver *s = start(0, 0, 0, 0);
	char err[256] = "";
	assert_int_equal(opserver_metrics_port(s), 0);
	assert_int_equal(opserver_listen_metrics(s, "0.0.0.0", 0, err, sizeof(err)), 0);
	int mport = opserver_metrics_port(s);
	assert_true(mport > 0 && mport != opserver_port(s));
	opserver_heartbeat(s);
	publish(s, true, 7);
	struct resp r;
	request(mport, "GET", "/metrics", &r);
	assert_int_equal(r.code, 200);
	assert_non_null(strstr(r.body, "t_gen 7"));
	resp_free(&r);
	static const char *const hidden[] = { "/", "/live", "/ready", "/status", "/nope" };
	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++) {
		request(mport, "GET", hidden[i], &r);
		assert_int_equal(r.code, 404);
		assert_json_error(&r);
		resp_free(&r);
	}
	request(mport, "POST", "/metrics", &r);
	assert_int_equal(r.code, 405);
	resp_free(&r);
	/* The operator endpoints still serve everything. */
	request(opserver_port(s), "GET", "/status", &r);
	assert_int_equal(r.code, 200);
	resp_free(&r);

	struct opserver *t = start(0, 0, 0, 0);
	assert_int_equal(opserver_listen_metrics(t, "127.0.0.1", mport, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot listen"));
	assert_int_equal(opserver_listen_metrics(t, "no-such-host.invalid", 0, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "metrics_bind_address"));
	opserver_stop(t);
	opserver_stop(s);
}

static void test_ipv6(void **state)
{
	struct opserver_options o = { .address = "::1", .port = 0, .index_html = PAGE };
	struct opserver *s = NULL;
	char err[256] = "";
	if (opserver_start(&o, &s, err, sizeof(err)) < 0) {
		/* Hosts without IPv6 loopback. */
		skip();
	}
	publish(s, true, 1);
	char reason[256];
	assert_int_equal(opserver_probe("::1", opserver_port(s), "/ready", 2000, reason,
					sizeof(reason)), 0);
	opserver_stop(s);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_before_publication),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_status_members),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_live_follows_heartbeats),
		cmocka_unit_test(test_stale_state),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_slow_clients),
		cmocka_unit_test(test_concurrent_publication),
		cmocka_unit_test(test_bind_errors),
		cmocka_unit_test(test_metrics_listener),
		cmocka_unit_test(test_ipv6),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
