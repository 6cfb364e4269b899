/* agent_http.c through its header: the operator endpoints of an agent whose node client and
 * Workload API are not running. /live answers, /ready is 503 and names each failing check,
 * /status and /metrics follow what the SVID cache publishes (a bundle, an entry and its SVID),
 * and http_port 0 disables the endpoints. Requests go over real loopback HTTP (libcurl). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "agent_config.h"
#include "agent_http.h"
#include "keys.h"
#include "log.h"
#include "svid_cache.h"
#include "util.h"
#include "x509.h"

#define TD "example.org"
#define WL_ID "spiffe://example.org/web"

struct resp {
	long code;
	char *body;
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct resp *r = ud;
	r->body = xrealloc(r->body, r->len + size * n + 1);
	memcpy(r->body + r->len, p, size * n);
	r->len += size * n;
	r->body[r->len] = 0;
	return size * n;
}

static void get(int port, const char *path, struct resp *r)
{
	char url[128];
	CURL *c = curl_easy_init();
	assert_non_null(c);
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -1;
	curl_easy_cleanup(c);
}

static json_t *get_json(int port, const char *path, long want_code)
{
	struct resp r;
	get(port, path, &r);
	assert_int_equal(r.code, want_code);
	assert_non_null(r.body);
	json_t *j = json_loads(r.body, 0, NULL);
	free(r.body);
	assert_non_null(j);
	return j;
}

/* A port nothing listens on right now: the kernel's pick for a socket closed at once. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool check_ok(json_t *ready, const char *name)
{
	json_t *c = json_object_get(json_object_get(ready, "checks"), name);
	assert_non_null(c);
	return json_is_true(json_object_get(c, "ok"));
}

/* A CA, and an X509-SVID for WL_ID signed by it, as the sync thread would publish them. */
static struct snapshot *snapshot_with_svid(void)
{
	lkey *ca_key, *key;
	uint8_t *ca, *leaf, *spki;
	size_t ca_len, leaf_len, spki_len;
	int64_t now = now_unix();

	assert_int_equal(lkey_generate(KEY_EC_P256, &ca_key), 0);
	assert_int_equal(lkey_generate(KEY_EC_P256, &key), 0);
	struct x509_ca_params cp = {.spiffe_id = "spiffe://" TD, .common_name = "test CA",
				    .not_before = now - 60, .not_after = now + 86400};
	assert_int_equal(x509_make_ca(ca_key, NULL, NULL, 0, &cp, &ca, &ca_len), 0);
	assert_int_equal(lkey_public_der(key, &spki, &spki_len), 0);
	struct x509_leaf_params lp = {.spiffe_id = WL_ID, .not_before = now - 60,
				      .not_after = now + 3600, .spki = spki, .spki_len = spki_len};
	assert_int_equal(x509_sign_leaf(ca_key, ca, ca_len, &lp, &leaf, &leaf_len), 0);

	struct snapshot *s = snapshot_new();
	free(s->trust_domain);
	s->trust_domain = xstrdup(TD);
	s->bundle = ca;
	s->bundle_len = ca_len;
	s->bundle_sequence = 7;
	s->synced = true;
	char *sel[] = {"unix:uid:1000"};
	struct entry e = {.id = "e1", .spiffe_id = WL_ID, .parent_id = "spiffe://" TD "/agent",
				.hint = "", .selectors = sel, .n_selectors = 1, .revision = 1};
	s->entries = xcalloc(1, sizeof(*s->entries));
	s->entries[s->n_entries++] = cache_entry_dup(&e);
	struct svid *v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->entry_id = xstrdup("e1");
	v->spiffe_id = xstrdup(WL_ID);
	v->chain = leaf;
	v->chain_len = leaf_len;
	assert_int_equal(lkey_to_pkcs8_der(key, &v->key, &v->key_len), 0);
	snprintf(v->serial, sizeof(v->serial), "01");
	v->not_before = now - 60;
	v->not_after = now + 3600;
	v->renew_at = now + 1800;
	v->entry_revision = 1;
	s->svids = xcalloc(1, sizeof(*s->svids));
	s->svids[s->n_svids++] = v;
	free(spki);
	lkey_free(ca_key);
	lkey_free(key);
	return s;
}

static void config_for(struct agent_config *cfg, int port)
{
	char err[256];
	memset(cfg, 0, sizeof(*cfg));
	assert_int_equal(agent_config_defaults(cfg, err, sizeof(err)), 0);
	free(cfg->trust_domain);
	cfg->trust_domain = xstrdup(TD);
	cfg->http_port = port;
}

static void disabled_when_port_zero(void **state)
{
	uv_loop_t loop;
	struct agent_config cfg;
	struct agent_http *h = (struct agent_http *)&loop; /* must be overwritten */
	char err[256];
	(void)state;

	uv_loop_init(&loop);
	struct svid_cache *cache = svid_cache_new(&loop);
	config_for(&cfg, 0);
	assert_int_equal(agent_http_start(&loop, &cfg, cache, NULL, NULL, &h, err, sizeof(err)), 0);
	assert_null(h);
	assert_int_equal(agent_http_port(h), 0);
	agent_http_stop(h); /* NULL-safe */
	svid_cache_free(cache);
	uv_run(&loop, UV_RUN_DEFAULT); /* the cache's async handle closes */
	agent_config_free(&cfg);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void endpoints_follow_the_cache(void **state)
{
	uv_loop_t loop;
	struct agent_config cfg;
	struct agent_http *h;
	struct resp r;
	char err[256];
	(void)state;

	uv_loop_init(&loop);
	struct svid_cache *cache = svid_cache_new(&loop);
	config_for(&cfg, free_port());
	assert_int_equal(agent_http_start(&loop, &cfg, cache, NULL, NULL, &h, err, sizeof(err)), 0);
	assert_non_null(h);
	int port = agent_http_port(h);
	assert_int_equal(port, cfg.http_port);
	uv_run(&loop, UV_RUN_NOWAIT); /* the first tick publishes the documents */

	get(port, "/live", &r);
	assert_int_equal(r.code, 200);
	free(r.body);

	/* Nothing runs: /ready fails and says which checks failed, and why. */
	json_t *ready = get_json(port, "/ready", 503);
	assert_false(json_is_true(json_object_get(ready, "ready")));
	assert_false(check_ok(ready, "attested"));
	assert_false(check_ok(ready, "workload_api"));
	assert_false(check_ok(ready, "bundle"));
	json_decref(ready);
	json_t *st = get_json(port, "/status", 200);
	assert_string_equal(json_string_value(json_object_get(st, "daemon")), "lanyard-agent");
	assert_string_equal(json_string_value(json_object_get(st, "trust_domain")), TD);
	assert_int_equal(json_integer_value(json_object_get(st, "entries")), 0);
	assert_int_equal(json_array_size(json_object_get(st, "svids")), 0);
	json_decref(st);

	/* The sync thread publishes a bundle, an entry and its SVID: the endpoints follow without
	 * waiting for the next tick (the subscription runs on the loop). */
	svid_cache_publish(cache, snapshot_with_svid());
	json_t *svids = NULL;
	for (int i = 0; i < 100; i++) {
		uv_run(&loop, UV_RUN_NOWAIT);
		st = get_json(port, "/status", 200);
		if (json_integer_value(json_object_get(st, "entries")) == 1)
			break;
		json_decref(st);
		st = NULL;
		usleep(20 * 1000);
	}
	assert_non_null(st);
	svids = json_object_get(st, "svids");
	assert_int_equal(json_array_size(svids), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(svids, 0), "spiffe_id")),
			    WL_ID);
	json_t *bundle = json_object_get(st, "bundle");
	assert_int_equal(json_integer_value(json_object_get(bundle, "sequence")), 7);
	assert_int_equal(json_array_size(json_object_get(bundle, "authorities")), 1);
	assert_int_equal(json_array_size(json_object_get(st, "entries_without_svid")), 0);
	json_decref(st);

	ready = get_json(port, "/ready", 503);
	assert_true(check_ok(ready, "bundle"));
	assert_true(check_ok(ready, "svids"));
	assert_false(check_ok(ready, "attested")); /* still no node client */
	json_decref(ready);

	get(port, "/metrics", &r);
	assert_int_equal(r.code, 200);
	assert_non_null(r.body);
	assert_non_null(strstr(r.body, "lanyard_agent_ready 0"));
	free(r.body);

	agent_http_stop(h);
	uv_run(&loop, UV_RUN_DEFAULT); /* h is freed when its timer has closed */
	get(port, "/live", &r);
	assert_int_equal(r.code, -1); /* stopped at once */
	free(r.body);
	svid_cache_free(cache);
	uv_run(&loop, UV_RUN_DEFAULT);
	agent_config_free(&cfg);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	log_setup(LOG_LEVEL_WARN, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(disabled_when_port_zero),
		cmocka_unit_test(endpoints_follow_the_cache),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
