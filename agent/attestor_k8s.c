/* attestor_k8s.c: the Kubernetes workload attestor (see attestor_k8s.h). */
#include "attestor_k8s.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "kubelet.h"
#include "log.h"
#include "util.h"

#define CGROUP_FILE_MAX (64 * 1024)

struct k8s_state {
	struct kubelet *kubelet;
	char *node_name;
	unsigned retries;
	int64_t retry_interval_ms;
	int64_t max_table_age_ms;
};

void attestor_k8s_opts_defaults(struct attestor_k8s_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->kubelet_url = K8S_DEFAULT_KUBELET_URL;
	o->token_path = K8S_DEFAULT_SA_TOKEN;
	o->ca_path = K8S_DEFAULT_SA_CA;
	o->retries = 10;
	o->retry_interval_ms = 250;
	o->timeout_ms = 5000;
	o->min_refresh_ms = 250;
	o->max_table_age_ms = 30000;
}

/* Reads <pinned proc dir>/cgroup. 0 or -errno. */
static int read_cgroup(int dirfd, char **out, size_t *outlen)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fd = openat(dirfd, "cgroup", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	for (;;) {
		ssize_t r;

		if (len + 1 >= cap) {
			char *nb;

			if (cap >= CGROUP_FILE_MAX) {
				ret = -EFBIG;
				break;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int add_selectors(struct k8s_state *s, const struct kubelet_container *c,
			 struct selector_list *out)
{
	const struct kubelet_pod *p = c->pod;
	const char *node = p->node_name[0] ? p->node_name : s->node_name;

	if (selector_list_addf(out, "k8s:ns:%s", p->ns) < 0 ||
	    selector_list_addf(out, "k8s:pod-name:%s", p->name) < 0 ||
	    selector_list_addf(out, "k8s:pod-uid:%s", p->uid) < 0 ||
	    selector_list_addf(out, "k8s:container-name:%s", c->name) < 0)
		return -1;
	/* Static pods run without a service account: no k8s:sa selector rather than an empty
	 * one an entry could name by mistake. */
	if (p->service_account[0] &&
	    selector_list_addf(out, "k8s:sa:%s", p->service_account) < 0)
		return -1;
	for (size_t i = 0; i < p->n_labels; i++)
		if (selector_list_addf(out, "k8s:pod-label:%s:%s", p->labels[i].key,
				       p->labels[i].value) < 0)
			return -1;
	for (size_t i = 0; i < p->n_owners; i++)
		if (selector_list_addf(out, "k8s:pod-owner:%s:%s", p->owners[i].kind,
				       p->owners[i].name) < 0)
			return -1;
	if (c->image[0] && selector_list_addf(out, "k8s:container-image:%s", c->image) < 0)
		return -1;
	if (c->image_id[0] && strcmp(c->image_id, c->image) != 0 &&
	    selector_list_addf(out, "k8s:container-image:%s", c->image_id) < 0)
		return -1;
	if (node && node[0] && selector_list_addf(out, "k8s:node-name:%s", node) < 0)
		return -1;
	return 0;
}

static int k8s_attest(void *state, const struct caller *c, struct selector_list *out, char *err,
		      size_t errlen)
{
	struct k8s_state *s = state;
	struct kubelet_pods *table = NULL;
	const struct kubelet_container *ctr = NULL;
	struct cgroup_k8s id;
	char *text = NULL, why[384] = "";
	size_t len = 0;
	unsigned attempt;
	int64_t t0, budget_us;
	int r, ret = -1;

	if (c->proc_fd < 0) {
		snprintf(err, errlen, "caller process not pinned");
		return -1;
	}
	r = read_cgroup(c->proc_fd, &text, &len);
	if (r < 0) {
		snprintf(err, errlen, "read /proc/%d/cgroup: %s", (int)c->pid, strerror(-r));
		return -1;
	}
	r = cgroup_k8s_parse(text, len, &id, why, sizeof(why));
	free(text);
	if (r < 0) {
		snprintf(err, errlen, "pid %d: %s", (int)c->pid, why);
		return -1;
	}
	if (r == 0) {
		log_debug("k8s attestor: pid %d is not in a pod container: no k8s selectors",
			  (int)c->pid);
		return 0;
	}

	/* The budget bounds the time as well as the attempts: a kubelet that lets requests time
	 * out would otherwise hold this worker thread for retries times the request timeout. */
	t0 = now_mono_us();
	budget_us = ((int64_t)s->retries + 1) * s->retry_interval_ms * 1000;
	for (attempt = 0;; attempt++) {
		r = kubelet_lookup(s->kubelet, id.container_id, id.pod_uid, s->max_table_age_ms,
				   &table, &ctr, why, sizeof(why));
		if (r == KUBELET_FOUND)
			break;
		/* Pods and containers appear in the kubelet's list shortly after their processes
		 * start, and a restarting kubelet answers again soon: those are worth waiting for.
		 * A refused token or a malformed answer will not mend within the budget. */
		if (r == KUBELET_REFUSED || r == KUBELET_ERROR || r == KUBELET_MISMATCH ||
		    attempt >= s->retries ||
		    (s->retry_interval_ms > 0 && now_mono_us() - t0 >= budget_us))
			break;
		log_debug("k8s attestor: pid %d container %.12s: %s; retrying in %lld ms",
			  (int)c->pid, id.container_id, why, (long long)s->retry_interval_ms);
		sleep_ms(s->retry_interval_ms);
	}
	if (r != KUBELET_FOUND) {
		if (attempt > 0)
			snprintf(err, errlen, "%s (after %u attempts in %lld ms)", why, attempt + 1,
				 (long long)((now_mono_us() - t0) / 1000));
		else
			snprintf(err, errlen, "%s", why);
		goto out;
	}
	if (add_selectors(s, ctr, out) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ret = 0;
out:
	kubelet_pods_unref(table);
	return ret;
}

static void k8s_free(void *state)
{
	struct k8s_state *s = state;

	if (!s)
		return;
	kubelet_free(s->kubelet);
	free(s->node_name);
	free(s);
}

static const struct attestor_ops k8s_ops = {
	.name = "k8s",
	.attest = k8s_attest,
	.free = k8s_free,
};

struct attestor *attestor_k8s_new(const struct attestor_k8s_opts *o, char *err, size_t errlen)
{
	struct kubelet_options ko = {
		.url = o->kubelet_url && o->kubelet_url[0] ? o->kubelet_url : K8S_DEFAULT_KUBELET_URL,
		.token_path = o->token_path,
		.ca_path = o->ca_path,
		.insecure_skip_verify = o->insecure_skip_verify,
		.timeout_ms = o->timeout_ms,
		.min_refresh_ms = o->min_refresh_ms,
	};
	struct attestor *a = NULL;
	struct k8s_state *s = NULL;

	if (o->retry_interval_ms < 0 || o->retry_interval_ms > 60000) {
		snprintf(err, errlen, "kubelet retry interval %lld ms is out of range (0..60000)",
			 (long long)o->retry_interval_ms);
		return NULL;
	}
	if (o->retries > 1000) {
		snprintf(err, errlen, "kubelet retries %u is out of range (0..1000)", o->retries);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	s = calloc(1, sizeof(*s));
	if (!a || !s)
		goto nomem;
	s->kubelet = kubelet_new(&ko, err, errlen);
	if (!s->kubelet)
		goto fail;
	if (o->node_name && o->node_name[0] && !(s->node_name = strdup(o->node_name)))
		goto nomem;
	s->retries = o->retries;
	s->retry_interval_ms = o->retry_interval_ms;
	s->max_table_age_ms = o->max_table_age_ms;
	if (o->insecure_skip_verify && strncmp(ko.url, "https://", 8) == 0)
		log_warnx("k8s attestor: the kubelet's certificate at %s is NOT verified "
			 "(kubelet_insecure_skip_verify)",
			 ko.url);
	a->ops = &k8s_ops;
	a->state = s;
	return a;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	k8s_free(s);
	free(a);
	return NULL;
}

struct kubelet *attestor_k8s_kubelet(struct attestor *a)
{
	if (!a || a->ops != &k8s_ops)
		return NULL;
	return ((struct k8s_state *)a->state)->kubelet;
}
