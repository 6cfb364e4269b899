/* Unit tests for agent/kubelet.c: parsing the kubelet's pod list into the index, and the shared
 * table's refresh rules against a fake kubelet on loopback (k8s_fake.h): one request for many
 * lookups, a refresh on a miss, the minimum interval, one request in flight for concurrent
 * callers, stale tables, and clear errors for 401/403, timeouts, refused connections, TLS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "k8s_fake.h"
#include "kubelet.h"
#include "log.h"

#define CID_WEB "57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2e"
#define CID_ENVOY "1a4d17a559153dbf48d4493e74d9c124616ef8159c1e2a63bb4c4432c3bdcca7"
#define CID_INIT "05fbf09c207f2d58dd9eb49a3d6ed76e4e77d2d4ed69b36ac495c1bd79930e47"
#define CID_AGENT "ae2cd002fc9fcc9995388986b61c625aa80eb63981545f4de1db9f4bd51a3ca6"
#define CID_ETCD "ce2867d4eccf235035fd650cdd77c50b78028ebbd621b1fa6911023af6bc06ad"
#define CID_WORKER "2a64d2857bdd09a25b4b3f83d354123c5d1aa0ef8c992de58e00e2cb32c2b0a1"
#define CID_NONE "0000000000000000000000000000000000000000000000000000000000000001"
#define UID_WEB "8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d"
#define UID_AGENT "1b9e4c7d-2a3f-4e8b-9c1d-5f6a7b8c9d0e"
#define UID_JOB "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define UID_ETCD "e4f6bd5a2fb5c8e5c2d3f1a4b6c8d0e2"

/* ---- parsing ---- */

static struct kubelet_pods *parse_fixture(const char *name)
{
	struct kubelet_pods *p = NULL;
	char *json = fake_fixture(name), err[256];

	assert_non_null(json);
	if (kubelet_pods_parse(json, strlen(json), &p, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	free(json);
	return p;
}

static const char *label(const struct kubelet_pod *p, const char *key)
{
	for (size_t i = 0; i < p->n_labels; i++)
		if (strcmp(p->labels[i].key, key) == 0)
			return p->labels[i].value;
	return NULL;
}

static void parse_pod_list(void **state)
{
	struct kubelet_pods *p = parse_fixture("kubelet-pods.json");
	const struct kubelet_container *c;
	const struct kubelet_pod *pod;

	assert_int_equal(kubelet_pods_n_pods(p), 5);
	/* kube-proxy, web + envoy + the init container, the agent, etcd; the job's container is
	 * still being created and has no ID. */
	assert_int_equal(kubelet_pods_n_containers(p), 6);

	c = kubelet_pods_find_container(p, CID_WEB);
	assert_non_null(c);
	assert_string_equal(c->id, CID_WEB);
	assert_string_equal(c->name, "web");
	assert_string_equal(c->image, "registry.example.com/web:1.4.2");
	assert_true(strncmp(c->image_id, "registry.example.com/web@sha256:", 32) == 0);
	assert_string_equal(c->pod->uid, UID_WEB);
	assert_string_equal(c->pod->name, "web-7d9f8b6c5d-x2k9p");
	assert_string_equal(c->pod->ns, "prod");
	assert_string_equal(c->pod->service_account, "web");
	assert_string_equal(c->pod->node_name, "node-1");
	assert_int_equal(c->pod->n_labels, 3);
	assert_string_equal(label(c->pod, "app"), "web");
	assert_string_equal(label(c->pod, "tier"), "frontend");
	assert_int_equal(c->pod->n_owners, 1);
	assert_string_equal(c->pod->owners[0].kind, "ReplicaSet");
	assert_string_equal(c->pod->owners[0].name, "web-7d9f8b6c5d");

	/* The sidecar and the init container point at the same pod. */
	assert_ptr_equal(kubelet_pods_find_container(p, CID_ENVOY)->pod, c->pod);
	c = kubelet_pods_find_container(p, CID_INIT);
	assert_non_null(c);
	assert_string_equal(c->name, "init-config");
	assert_string_equal(c->pod->uid, UID_WEB);

	/* A static pod: 32-digit UID, no service account, owned by its Node. */
	c = kubelet_pods_find_container(p, CID_ETCD);
	assert_non_null(c);
	assert_string_equal(c->pod->uid, UID_ETCD);
	assert_string_equal(c->pod->service_account, "");
	assert_string_equal(c->pod->owners[0].kind, "Node");

	/* The starting pod is known by UID, its container not. */
	pod = kubelet_pods_find_pod(p, UID_JOB);
	assert_non_null(pod);
	assert_string_equal(pod->name, "report-28591230-q8w7z");
	assert_string_equal(pod->owners[0].kind, "Job");
	assert_null(kubelet_pods_find_container(p, CID_WORKER));
	assert_null(kubelet_pods_find_container(p, CID_NONE));
	assert_null(kubelet_pods_find_pod(p, "00000000-0000-0000-0000-000000000000"));

	/* References keep the table alive. */
	struct kubelet_pods *r = kubelet_pods_ref(p);
	kubelet_pods_unref(p);
	assert_non_null(kubelet_pods_find_container(r, CID_AGENT));
	kubelet_pods_unref(r);
	kubelet_pods_unref(NULL);

	p = parse_fixture("kubelet-pods-later.json");
	c = kubelet_pods_find_container(p, CID_WORKER);
	assert_non_null(c);
	assert_string_equal(c->pod->uid, UID_JOB);
	kubelet_pods_unref(p);
}

static void parse_bad_lists(void **state)
{
	static const char *const bad[] = {
		"", "not json", "[]", "42", "{}", "{\"kind\":\"Pod\"}", "{\"items\":{}}",
		"{\"items\":\"x\"}", "{\"kind\":\"PodList\",\"items\":[",
	};
	struct kubelet_pods *p;
	char err[256];

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		p = (struct kubelet_pods *)1;
		err[0] = '\0';
		if (kubelet_pods_parse(bad[i], strlen(bad[i]), &p, err, sizeof(err)) != -1)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_null(p);
		assert_true(err[0] != '\0');
	}

	/* A truncated real list. */
	char *json = fake_fixture("kubelet-pods.json");
	assert_int_equal(kubelet_pods_parse(json, strlen(json) / 2, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not JSON"));
	free(json);
}

static void parse_odd_but_valid(void **state)
{
	/* null items (an empty Go slice), pods without UIDs or with odd members, a container ID
	 * claimed by two pods (dropped), one without scheme (kept as it is). */
	const char *json =
		"{\"kind\":\"PodList\",\"items\":["
		"5, null, {\"metadata\":{\"name\":\"nouid\"}},"
		"{\"metadata\":{\"uid\":\"u1\",\"name\":\"a\",\"namespace\":\"n\",\"labels\":{\"x\":1,"
		"\"y\":\"z\"},\"ownerReferences\":[{\"kind\":\"ReplicaSet\"},7,{\"kind\":\"Job\","
		"\"name\":\"j\"}]},\"spec\":{\"serviceAccount\":\"old\"},"
		"\"status\":{\"containerStatuses\":[{\"name\":\"c\",\"containerID\":\"docker://dup\"},"
		"{\"name\":\"d\",\"containerID\":12},{\"name\":\"e\",\"containerID\":\"bare\"}]}},"
		"{\"metadata\":{\"uid\":\"u2\"},\"status\":{\"containerStatuses\":\"x\","
		"\"ephemeralContainerStatuses\":[{\"name\":\"dbg\",\"containerID\":\"cri-o://eph\"},"
		"{\"name\":\"c2\",\"containerID\":\"containerd://dup\"}]}}]}";
	struct kubelet_pods *p;
	const struct kubelet_container *c;
	char err[256];

	const char *empty = "{\"kind\":\"PodList\",\"items\":null}";

	assert_int_equal(kubelet_pods_parse(empty, strlen(empty), &p, err, sizeof(err)), 0);
	assert_int_equal(kubelet_pods_n_pods(p), 0);
	assert_null(kubelet_pods_find_container(p, "x"));
	kubelet_pods_unref(p);

	assert_int_equal(kubelet_pods_parse(json, strlen(json), &p, err, sizeof(err)), 0);
	assert_int_equal(kubelet_pods_n_pods(p), 2);
	assert_null(kubelet_pods_find_container(p, "dup"));
	c = kubelet_pods_find_container(p, "bare");
	assert_non_null(c);
	assert_string_equal(c->pod->service_account, "old");
	assert_int_equal(c->pod->n_labels, 1);
	assert_string_equal(c->pod->labels[0].value, "z");
	assert_int_equal(c->pod->n_owners, 1);
	assert_string_equal(c->pod->owners[0].name, "j");
	c = kubelet_pods_find_container(p, "eph");
	assert_non_null(c);
	assert_string_equal(c->pod->uid, "u2");
	assert_string_equal(c->pod->name, "");
	kubelet_pods_unref(p);
}

/* ---- the fake kubelet ---- */

struct scenario {
	char *first, *later;   /* pod lists */
	unsigned switch_after; /* serve later after this many requests; 0 = never */
	int status;            /* answer this status instead */
	int delay_ms;
};

static void kubelet_handler(struct fake_k8s *f, const struct fake_req *req, struct fake_resp *resp)
{
	struct scenario *s = f->ud;

	if (strcmp(req->method, "GET") != 0 || strcmp(req->url, "/pods") != 0) {
		resp->status = 404;
		resp->body = strdup("404 page not found\n");
		return;
	}
	resp->delay_ms = s->delay_ms;
	if (s->status == 401) {
		resp->status = 401;
		resp->body = strdup("Unauthorized\n");
	} else if (s->status == 403) {
		resp->status = 403;
		resp->body = strdup("Forbidden (user=system:serviceaccount:lanyard:lanyard-agent, "
				    "verb=get, resource=nodes, subresource=proxy)\n");
	} else if (s->status) {
		resp->status = s->status;
		resp->body = strdup("{\"oops\":true}");
	} else {
		resp->body = strdup(s->switch_after && req->n > s->switch_after ? s->later : s->first);
	}
}

struct env {
	struct scenario sc;
	struct fake_k8s *fake;
	char *dir;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->sc.first = fake_fixture("kubelet-pods.json");
	e->sc.later = fake_fixture("kubelet-pods-later.json");
	e->dir = fake_tmpdir();
	if (!e->sc.first || !e->sc.later || !e->dir)
		return -1;
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	fake_stop(e->fake);
	free(e->sc.first);
	free(e->sc.later);
	fake_rmdir(e->dir);
	free(e);
	return 0;
}

static struct kubelet *new_kubelet(const char *url, int64_t min_refresh_ms)
{
	struct kubelet_options o = {.url = url, .timeout_ms = 2000, .min_refresh_ms = min_refresh_ms};
	char err[256];
	struct kubelet *k = kubelet_new(&o, err, sizeof(err));

	if (!k)
		fail_msg("kubelet_new: %s", err);
	return k;
}

static int lookup(struct kubelet *k, const char *cid, const char *uid, int64_t max_age,
		  char *err, size_t errlen)
{
	struct kubelet_pods *t = NULL;
	const struct kubelet_container *c = NULL;
	int r = kubelet_lookup(k, cid, uid, max_age, &t, &c, err, errlen);

	if (r == KUBELET_FOUND) {
		assert_non_null(t);
		assert_non_null(c);
		assert_string_equal(c->id, cid);
	} else {
		assert_null(t);
		assert_null(c);
	}
	kubelet_pods_unref(t);
	return r;
}

static void bad_options(void **state)
{
	struct kubelet_options o = {.url = "ftp://127.0.0.1/"};
	char err[256];

	assert_null(kubelet_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "https://"));
	o.url = NULL;
	assert_null(kubelet_new(&o, err, sizeof(err)));
}

/* Many lookups of listed containers cost one request: the list is parsed once. */
static void one_request_for_many_lookups(void **state)
{
	struct env *e = *state;
	struct kubelet_stats st;
	char err[512];
	struct kubelet *k;

	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	assert_non_null(e->fake);
	k = new_kubelet(e->fake->url, 0);
	kubelet_stats(k, &st);
	assert_int_equal(st.requests, 0);
	assert_int_equal(st.table_age_ms, -1);
	for (int i = 0; i < 500; i++) {
		assert_int_equal(lookup(k, CID_WEB, UID_WEB, 0, err, sizeof(err)), KUBELET_FOUND);
		assert_int_equal(lookup(k, CID_AGENT, UID_AGENT, 0, err, sizeof(err)), KUBELET_FOUND);
		assert_int_equal(lookup(k, CID_ETCD, "", 0, err, sizeof(err)), KUBELET_FOUND);
	}
	assert_int_equal(fake_requests(e->fake), 1);
	kubelet_stats(k, &st);
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.request_errors, 0);
	assert_int_equal(st.pods, 5);
	assert_int_equal(st.containers, 6);
	assert_true(st.table_age_ms >= 0);
	/* The request went to /pods with no token over http. */
	assert_string_equal(e->fake->last_auth, "");
	kubelet_free(k);
}

/* A container not listed yet is found by a later lookup once the kubelet lists it. */
static void refresh_on_miss(void **state)
{
	struct env *e = *state;
	char err[512];
	struct kubelet *k;

	e->sc.switch_after = 2;
	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 0);
	assert_int_equal(lookup(k, CID_WORKER, UID_JOB, 0, err, sizeof(err)),
			 KUBELET_CONTAINER_NOT_FOUND);
	assert_non_null(strstr(err, "jobs/report-28591230-q8w7z"));
	assert_non_null(strstr(err, "not in the kubelet's pod list yet"));
	assert_int_equal(fake_requests(e->fake), 1);
	assert_int_equal(lookup(k, CID_WORKER, UID_JOB, 0, err, sizeof(err)),
			 KUBELET_CONTAINER_NOT_FOUND);
	assert_int_equal(fake_requests(e->fake), 2);
	assert_int_equal(lookup(k, CID_WORKER, UID_JOB, 0, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(fake_requests(e->fake), 3);
	/* Found now: no more requests. */
	assert_int_equal(lookup(k, CID_WORKER, UID_JOB, 0, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(fake_requests(e->fake), 3);

	/* An unknown pod, and an unknown container without pod UID. */
	assert_int_equal(lookup(k, CID_NONE, "00000000-1111-2222-3333-444444444444", 0, err,
				sizeof(err)),
			 KUBELET_POD_NOT_FOUND);
	assert_non_null(strstr(err, "pod 00000000-1111-2222-3333-444444444444"));
	assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)), KUBELET_POD_NOT_FOUND);
	assert_non_null(strstr(err, "container 000000000000 is not in"));
	kubelet_free(k);
}

/* Misses within the minimum interval do not reach the kubelet. */
static void min_refresh_interval(void **state)
{
	struct env *e = *state;
	char err[512];
	struct kubelet *k;

	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 400);
	assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)), KUBELET_POD_NOT_FOUND);
	for (int i = 0; i < 50; i++)
		assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)),
				 KUBELET_POD_NOT_FOUND);
	/* Listed containers are still served from the table meanwhile. */
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(fake_requests(e->fake), 1);
	usleep(450 * 1000);
	assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)), KUBELET_POD_NOT_FOUND);
	assert_int_equal(fake_requests(e->fake), 2);
	kubelet_free(k);
}

struct racer {
	struct kubelet *k;
	pthread_barrier_t *barrier;
	int result;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct kubelet_pods *t = NULL;
	const struct kubelet_container *c = NULL;
	char err[512];

	pthread_barrier_wait(r->barrier);
	r->result = kubelet_lookup(r->k, CID_WEB, UID_WEB, 0, &t, &c, err, sizeof(err));
	kubelet_pods_unref(t);
	return NULL;
}

/* Concurrent misses share one request in flight. */
static void single_flight(void **state)
{
	enum { N = 8 };
	struct env *e = *state;
	pthread_barrier_t barrier;
	pthread_t th[N];
	struct racer r[N];
	struct kubelet *k;

	e->sc.delay_ms = 300;
	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 0);
	pthread_barrier_init(&barrier, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct racer){.k = k, .barrier = &barrier, .result = 99};
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].result, KUBELET_FOUND);
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(fake_requests(e->fake), 1);
	kubelet_free(k);
}

/* A table older than max_age is refreshed on use; a failed refresh still serves it. */
static void stale_table(void **state)
{
	struct env *e = *state;
	char err[512];
	struct kubelet *k;

	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 0);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 100, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 100, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(fake_requests(e->fake), 1);
	usleep(150 * 1000);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 100, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(fake_requests(e->fake), 2);

	/* The kubelet goes away: the stale entry is served, a new container gets the reason. */
	fake_stop(e->fake);
	e->fake = NULL;
	usleep(150 * 1000);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 100, err, sizeof(err)), KUBELET_FOUND);
	assert_int_equal(lookup(k, CID_NONE, NULL, 100, err, sizeof(err)), KUBELET_UNREACHABLE);
	assert_non_null(strstr(err, "kubelet unreachable"));
	kubelet_free(k);
}

static void container_in_another_pod(void **state)
{
	struct env *e = *state;
	char err[512];
	struct kubelet *k;

	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 0);
	assert_int_equal(lookup(k, CID_WEB, UID_AGENT, 0, err, sizeof(err)), KUBELET_MISMATCH);
	assert_non_null(strstr(err, "prod/web-7d9f8b6c5d-x2k9p"));
	assert_non_null(strstr(err, UID_AGENT));
	kubelet_free(k);
}

static void refused_token(void **state)
{
	struct env *e = *state;
	char err[512], token[4200];
	struct kubelet *k;
	struct kubelet_options o = {.timeout_ms = 2000, .insecure_skip_verify = true};

	assert_int_equal(fake_make_cert(e->dir, "kubelet"), 0);
	snprintf(token, sizeof(token), "%s/token", e->dir);
	fake_write(e->dir, "token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n");
	e->sc.status = 401;
	e->fake = fake_start(kubelet_handler, &e->sc, e->dir, "kubelet");
	assert_non_null(e->fake);
	o.url = e->fake->url;
	o.token_path = token;
	k = kubelet_new(&o, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 0, err, sizeof(err)), KUBELET_REFUSED);
	assert_non_null(strstr(err, "kubelet refused the agent's token"));
	assert_non_null(strstr(err, "HTTP 401"));
	assert_null(strchr(err, '\n'));
	/* The token went as a bearer token, newline trimmed. */
	assert_string_equal(e->fake->last_auth, "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");

	e->sc.status = 403;
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 0, err, sizeof(err)), KUBELET_REFUSED);
	assert_non_null(strstr(err, "HTTP 403"));
	assert_non_null(strstr(err, "nodes/proxy"));

	/* An unreadable token file is a clear error too, before any request. */
	unsigned before = fake_requests(e->fake);
	unlink(token);
	assert_int_equal(lookup(k, CID_WEB, UID_WEB, 0, err, sizeof(err)), KUBELET_ERROR);
	assert_non_null(strstr(err, "service account token"));
	assert_int_equal(fake_requests(e->fake), before);
	kubelet_free(k);
}

static void server_errors(void **state)
{
	struct env *e = *state;
	char err[512];
	struct kubelet *k;

	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	k = new_kubelet(e->fake->url, 0);
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_FOUND);
	/* A 500, then a body that is not a pod list: errors for new containers, while the
	 * containers already known are still found. */
	e->sc.status = 500;
	assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)), KUBELET_ERROR);
	assert_non_null(strstr(err, "HTTP 500"));
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_FOUND);
	e->sc.status = 0;
	free(e->sc.first);
	e->sc.first = strdup("{\"kind\":\"Status\"}");
	assert_int_equal(lookup(k, CID_NONE, NULL, 0, err, sizeof(err)), KUBELET_ERROR);
	assert_non_null(strstr(err, "not a PodList"));
	assert_int_equal(lookup(k, CID_AGENT, NULL, 0, err, sizeof(err)), KUBELET_FOUND);

	struct kubelet_stats st;
	kubelet_stats(k, &st);
	assert_int_equal(st.requests, 3);
	assert_int_equal(st.request_errors, 2);
	kubelet_free(k);
}

static void timeout_and_refused_connection(void **state)
{
	struct env *e = *state;
	struct kubelet_options o = {.timeout_ms = 300};
	char err[512], url[64];
	struct kubelet *k;
	int64_t t0;

	e->sc.delay_ms = 1500;
	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	o.url = e->fake->url;
	k = kubelet_new(&o, err, sizeof(err));
	t0 = now_mono_us();
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_UNREACHABLE);
	assert_true(now_mono_us() - t0 < 1200 * 1000);
	assert_non_null(strstr(err, "kubelet unreachable"));
	assert_non_null(strstr(err, "imed out"));
	kubelet_free(k);

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)fake_closed_port());
	o.url = url;
	k = kubelet_new(&o, err, sizeof(err));
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_UNREACHABLE);
	assert_non_null(strstr(err, "kubelet unreachable"));
	assert_non_null(strstr(err, url));
	kubelet_free(k);
}

/* https: the kubelet's certificate checked against the configured CA, or not at all. */
static void tls_verification(void **state)
{
	struct env *e = *state;
	struct kubelet_options o = {.timeout_ms = 2000};
	char err[512], ca[4200], other[4200];
	struct kubelet *k;

	assert_int_equal(fake_make_cert(e->dir, "kubelet"), 0);
	assert_int_equal(fake_make_cert(e->dir, "other"), 0);
	snprintf(ca, sizeof(ca), "%s/kubelet.crt", e->dir);
	snprintf(other, sizeof(other), "%s/other.crt", e->dir);
	e->fake = fake_start(kubelet_handler, &e->sc, e->dir, "kubelet");
	assert_non_null(e->fake);
	o.url = e->fake->url;

	o.ca_path = ca;
	k = kubelet_new(&o, err, sizeof(err));
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_FOUND);
	kubelet_free(k);

	o.ca_path = other;
	k = kubelet_new(&o, err, sizeof(err));
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_UNREACHABLE);
	assert_non_null(strstr(err, "certificate"));
	kubelet_free(k);

	o.insecure_skip_verify = true;
	k = kubelet_new(&o, err, sizeof(err));
	assert_int_equal(lookup(k, CID_WEB, NULL, 0, err, sizeof(err)), KUBELET_FOUND);
	kubelet_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_pod_list),
		cmocka_unit_test(parse_bad_lists),
		cmocka_unit_test(parse_odd_but_valid),
		cmocka_unit_test(bad_options),
		cmocka_unit_test_setup_teardown(one_request_for_many_lookups, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(refresh_on_miss, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(min_refresh_interval, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(single_flight, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(stale_table, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(container_in_another_pod, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(refused_token, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(server_errors, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(timeout_and_refused_connection, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(tls_verification, env_setup, env_teardown),
	};

	log_setup(LOG_LEVEL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
