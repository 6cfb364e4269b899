/* Unit tests for agent/attestor_k8s.c: the k8s workload attestor end to end, with callers pinned
 * in a fake proc tree (their cgroup files in every format) and a fake kubelet on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/stat.h>

#include "attestor_k8s.h"
#include "k8s_fake.h"
#include "kubelet.h"
#include "log.h"

#define CID_WEB "57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2e"
#define CID_ETCD "ce2867d4eccf235035fd650cdd77c50b78028ebbd621b1fa6911023af6bc06ad"
#define CID_WORKER "2a64d2857bdd09a25b4b3f83d354123c5d1aa0ef8c992de58e00e2cb32c2b0a1"
#define UID_WEB "8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d"
#define UID_JOB "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
#define UID_ETCD "e4f6bd5a2fb5c8e5c2d3f1a4b6c8d0e2"

struct scenario {
	char *first, *later;
	unsigned switch_after;
	int status;
	int delay_ms;
};

static void kubelet_handler(struct fake_k8s *f, const struct fake_req *req, struct fake_resp *resp)
{
	struct scenario *s = f->ud;

	resp->delay_ms = s->delay_ms;
	if (strcmp(req->url, "/pods") != 0) {
		resp->status = 404;
		resp->body = strdup("404 page not found\n");
	} else if (s->status) {
		resp->status = s->status;
		resp->body = strdup("Unauthorized\n");
	} else {
		resp->body = strdup(s->switch_after && req->n > s->switch_after ? s->later : s->first);
	}
}

struct env {
	struct scenario sc;
	struct fake_k8s *fake;
	char *proc; /* the fake proc root */
	struct attestor_k8s_opts opts;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	e->sc.first = fake_fixture("kubelet-pods.json");
	e->sc.later = fake_fixture("kubelet-pods-later.json");
	e->proc = fake_tmpdir();
	if (!e->sc.first || !e->sc.later || !e->proc)
		return -1;
	e->fake = fake_start(kubelet_handler, &e->sc, NULL, NULL);
	if (!e->fake)
		return -1;
	attestor_k8s_opts_defaults(&e->opts);
	e->opts.kubelet_url = e->fake->url;
	e->opts.token_path = NULL;
	e->opts.ca_path = NULL;
	e->opts.retries = 10;
	e->opts.retry_interval_ms = 50;
	e->opts.min_refresh_ms = 0;
	e->opts.timeout_ms = 1000;
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	fake_stop(e->fake);
	free(e->sc.first);
	free(e->sc.later);
	fake_rmdir(e->proc);
	free(e);
	return 0;
}

/* Creates <proc>/<pid>/{stat,status,cgroup}; cgroup NULL leaves it out. */
static void fake_process(struct env *e, int pid, const char *cgroup)
{
	char dir[4200], stat[256];

	snprintf(dir, sizeof(dir), "%s/%d", e->proc, pid);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(stat, sizeof(stat),
		 "%d (app) S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 12345678 100 "
		 "18446744073709551615\n",
		 pid, pid, pid, 5000 + pid);
	fake_write(dir, "stat", stat);
	fake_write(dir, "status", "Name:\tapp\nUid:\t1000\t1000\t1000\t1000\n"
				  "Gid:\t1000\t1000\t1000\t1000\nGroups:\t\n");
	if (cgroup)
		fake_write(dir, "cgroup", cgroup);
}

static struct attestor *new_attestor(struct env *e)
{
	char err[256];
	struct attestor *a = attestor_k8s_new(&e->opts, err, sizeof(err));

	if (!a)
		fail_msg("attestor_k8s_new: %s", err);
	assert_string_equal(a->ops->name, "k8s");
	return a;
}

/* Pins pid in the fake tree and attests it. */
static int attest(struct env *e, struct attestor *a, int pid, struct selector_list *out,
		  char *err, size_t errlen)
{
	struct caller c;
	char perr[256];
	int r;

	if (caller_pin(e->proc, pid, 1000, 1000, &c, perr, sizeof(perr)) < 0)
		fail_msg("caller_pin: %s", perr);
	r = a->ops->attest(a->state, &c, out, err, errlen);
	if (r == 0)
		selector_list_normalize(out);
	caller_close(&c);
	return r;
}

static bool has(const struct selector_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static size_t count_prefix(const struct selector_list *l, const char *prefix)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->v[i], prefix, strlen(prefix)) == 0)
			n++;
	return n;
}

static void assert_web_selectors(const struct selector_list *l)
{
	static const char *const want[] = {
		"k8s:ns:prod",
		"k8s:sa:web",
		"k8s:pod-name:web-7d9f8b6c5d-x2k9p",
		"k8s:pod-uid:" UID_WEB,
		"k8s:pod-label:app:web",
		"k8s:pod-label:pod-template-hash:7d9f8b6c5d",
		"k8s:pod-label:tier:frontend",
		"k8s:pod-owner:ReplicaSet:web-7d9f8b6c5d",
		"k8s:container-name:web",
		"k8s:container-image:registry.example.com/web:1.4.2",
		"k8s:node-name:node-1",
	};

	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		if (!has(l, want[i]))
			fail_msg("selector %s missing", want[i]);
	/* The tag and the digest: two container-image selectors; nothing else. */
	assert_int_equal(count_prefix(l, "k8s:container-image:registry.example.com/web@sha256:"), 1);
	assert_int_equal(l->n, ARRAY_LEN(want) + 1);
}

/* The web container, seen through every cgroup layout, gets the same selectors from one
 * kubelet request. */
static void attest_every_cgroup_format(void **state)
{
	static const char *const files[] = {"v1-cgroupfs-containerd.txt", "v1-systemd-docker.txt",
					    "v2-systemd-containerd.txt", "v2-systemd-crio.txt",
					    "v2-cgroupns-cgroupfs.txt"};
	struct env *e = *state;
	struct attestor *a = new_attestor(e);
	char err[512];

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		char name[64];
		char *cg;
		struct selector_list l = {0};

		snprintf(name, sizeof(name), "cgroup/%s", files[i]);
		cg = fake_fixture(name);
		assert_non_null(cg);
		fake_process(e, 100 + (int)i, cg);
		free(cg);
		if (attest(e, a, 100 + (int)i, &l, err, sizeof(err)) < 0)
			fail_msg("%s: %s", files[i], err);
		assert_web_selectors(&l);
		selector_list_free(&l);
	}
	assert_int_equal(fake_requests(e->fake), 1);
	assert_non_null(attestor_k8s_kubelet(a));
	attestor_free(a);
}

static void attest_static_pod(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a = new_attestor(e);

	fake_process(e, 200, "0::/kubepods/burstable/pod" UID_ETCD "/" CID_ETCD "\n");
	assert_int_equal(attest(e, a, 200, &l, err, sizeof(err)), 0);
	assert_true(has(&l, "k8s:pod-uid:" UID_ETCD));
	assert_true(has(&l, "k8s:pod-owner:Node:node-1"));
	assert_true(has(&l, "k8s:ns:kube-system"));
	/* Static pods have no service account: no k8s:sa selector at all. */
	assert_int_equal(count_prefix(&l, "k8s:sa:"), 0);
	selector_list_free(&l);
	attestor_free(a);
}

/* A process outside any pod gets no k8s selectors, and the kubelet is not asked. */
static void attest_host_process(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a = new_attestor(e);

	fake_process(e, 300, "0::/user.slice/user-1000.slice/session-3.scope\n");
	assert_int_equal(attest(e, a, 300, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	fake_process(e, 301, "12:pids:/docker/" CID_WEB "\n");
	assert_int_equal(attest(e, a, 301, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(fake_requests(e->fake), 0);
	attestor_free(a);
}

/* A container that is still starting is found within the retry budget. */
static void attest_container_starting(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a;

	e->sc.switch_after = 2;
	a = new_attestor(e);
	fake_process(e, 400, "0::/kubepods/besteffort/pod" UID_JOB "/" CID_WORKER "\n");
	if (attest(e, a, 400, &l, err, sizeof(err)) < 0)
		fail_msg("attest: %s", err);
	assert_true(has(&l, "k8s:pod-owner:Job:report-28591230"));
	assert_true(has(&l, "k8s:sa:report-writer"));
	assert_true(has(&l, "k8s:container-name:worker"));
	assert_int_equal(fake_requests(e->fake), 3);
	selector_list_free(&l);
	attestor_free(a);
}

/* The budget is bounded, and the error says what was missing. */
static void attest_gives_up(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a;
	int64_t t0, ms;

	e->opts.retries = 3;
	a = new_attestor(e);
	/* The pod is listed, its container never gets an ID. */
	fake_process(e, 500, "0::/kubepods/besteffort/pod" UID_JOB "/" CID_WORKER "\n");
	t0 = now_mono_us();
	assert_int_equal(attest(e, a, 500, &l, err, sizeof(err)), -1);
	ms = (now_mono_us() - t0) / 1000;
	assert_true(ms >= 150 && ms < 2000);
	assert_non_null(strstr(err, "container 2a64d2857bdd of pod jobs/report-28591230-q8w7z"));
	assert_non_null(strstr(err, "not in the kubelet's pod list yet"));
	assert_non_null(strstr(err, "after 4 attempts in"));
	assert_int_equal(fake_requests(e->fake), 4);

	/* An unknown pod. */
	fake_process(e, 501, "0::/kubepods/besteffort/pod00000000-1111-2222-3333-444444444444/" CID_WEB
			     "\n");
	assert_int_equal(attest(e, a, 501, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "container " "57ad2393e04a" " is in pod prod/web-7d9f8b6c5d-x2k9p"));
	fake_process(e, 502, "0::/kubepods/besteffort/pod00000000-1111-2222-3333-444444444444/"
			     "0000000000000000000000000000000000000000000000000000000000000001\n");
	assert_int_equal(attest(e, a, 502, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "pod 00000000-1111-2222-3333-444444444444"));
	assert_non_null(strstr(err, "is not in the kubelet's pod list"));
	assert_int_equal(l.n, 0);
	attestor_free(a);
}

static void attest_kubelet_refuses(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a;

	e->sc.status = 401;
	a = new_attestor(e);
	fake_process(e, 600, "0::/kubepods/burstable/pod" UID_WEB "/" CID_WEB "\n");
	assert_int_equal(attest(e, a, 600, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "kubelet refused the agent's token"));
	assert_non_null(strstr(err, "HTTP 401"));
	/* No retries: a refused token will not mend within the budget. */
	assert_int_equal(fake_requests(e->fake), 1);
	attestor_free(a);
}

static void attest_kubelet_unreachable(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512], url[64];
	struct attestor *a;
	int64_t t0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)fake_closed_port());
	e->opts.kubelet_url = url;
	e->opts.retries = 4;
	a = new_attestor(e);
	fake_process(e, 700, "0::/kubepods/burstable/pod" UID_WEB "/" CID_WEB "\n");
	t0 = now_mono_us();
	assert_int_equal(attest(e, a, 700, &l, err, sizeof(err)), -1);
	assert_true(now_mono_us() - t0 < 3000 * 1000);
	assert_non_null(strstr(err, "kubelet unreachable"));
	assert_non_null(strstr(err, "after 5 attempts"));
	attestor_free(a);
}

/* A kubelet that never answers: the budget bounds the time, not only the attempts. */
static void attest_kubelet_hangs(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	char err[512];
	struct attestor *a;
	int64_t t0, ms;

	e->sc.delay_ms = 1500;
	e->opts.timeout_ms = 300;
	e->opts.retries = 10;
	e->opts.retry_interval_ms = 50; /* a budget of 550 ms */
	a = new_attestor(e);
	fake_process(e, 650, "0::/kubepods/burstable/pod" UID_WEB "/" CID_WEB "\n");
	t0 = now_mono_us();
	assert_int_equal(attest(e, a, 650, &l, err, sizeof(err)), -1);
	ms = (now_mono_us() - t0) / 1000;
	assert_true(ms >= 550 && ms < 1400);
	assert_non_null(strstr(err, "kubelet unreachable"));
	assert_non_null(strstr(err, "imed out"));
	assert_true(fake_requests(e->fake) <= 3);
	attestor_free(a);
}

static void attest_bad_proc(void **state)
{
	struct env *e = *state;
	struct selector_list l = {0};
	struct caller c = {.pid = 1, .proc_fd = -1, .pidfd = -1};
	char err[512];
	struct attestor *a = new_attestor(e);

	fake_process(e, 800, "0::/\nnonsense\n");
	assert_int_equal(attest(e, a, 800, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "pid 800"));
	assert_non_null(strstr(err, "line 2 is malformed"));
	fake_process(e, 801, NULL);
	assert_int_equal(attest(e, a, 801, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/proc/801/cgroup"));
	assert_int_equal(a->ops->attest(a->state, &c, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not pinned"));
	assert_int_equal(fake_requests(e->fake), 0);
	attestor_free(a);
}

static void new_rejects_bad_options(void **state)
{
	struct attestor_k8s_opts o;
	struct attestor_unix_opts uo = {0};
	struct attestor *u;
	char err[256];

	attestor_k8s_opts_defaults(&o);
	assert_string_equal(o.kubelet_url, "https://127.0.0.1:10250");
	assert_int_equal(o.retries, 10);
	assert_int_equal(o.retry_interval_ms, 250);
	o.kubelet_url = "127.0.0.1:10250";
	assert_null(attestor_k8s_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "https://"));
	attestor_k8s_opts_defaults(&o);
	o.retry_interval_ms = -1;
	assert_null(attestor_k8s_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "retry interval"));
	attestor_k8s_opts_defaults(&o);
	o.retries = 100000;
	assert_null(attestor_k8s_new(&o, err, sizeof(err)));
	u = attestor_unix_new(&uo);
	assert_null(attestor_k8s_kubelet(u));
	attestor_free(u);
	assert_null(attestor_k8s_kubelet(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(attest_every_cgroup_format, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_static_pod, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_host_process, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_container_starting, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_gives_up, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_kubelet_refuses, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_kubelet_unreachable, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_kubelet_hangs, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(attest_bad_proc, env_setup, env_teardown),
		cmocka_unit_test(new_rejects_bad_options),
	};

	log_setup(LOG_LEVEL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
