/* kubelet.c: the shared pod table built from the kubelet's GET /pods (see kubelet.h). */
#include "kubelet.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "curl_dyn.h"
#include "k8s_http.h"
#include "log.h"
#include "refcount.h"
#include "util.h"

#define ARENA_BLOCK (64 * 1024)
#define WAIT_SLACK_MS 1000

/* ---- the table ---- */

/* Strings of one table live in a chain of blocks freed together. */
struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	char data[];
};

struct kubelet_pods {
	int refs;
	int64_t fetched_us; /* monotonic */
	struct arena_block *strings;
	struct kubelet_pod *pods; /* sorted by uid */
	size_t n_pods;
	struct kubelet_container *ctrs; /* sorted by id */
	size_t n_ctrs;
};

static const char *arena_strdup(struct kubelet_pods *p, const char *s)
{
	size_t n = strlen(s) + 1;
	struct arena_block *b = p->strings;

	if (n == 1)
		return "";
	if (!b || b->cap - b->used < n) {
		size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;

		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = p->strings;
		b->used = 0;
		b->cap = cap;
		p->strings = b;
	}
	memcpy(b->data + b->used, s, n);
	b->used += n;
	return b->data + b->used - n;
}

static void pods_free(struct kubelet_pods *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_pods; i++) {
		free((void *)p->pods[i].labels);
		free((void *)p->pods[i].owners);
	}
	free(p->pods);
	free(p->ctrs);
	while (p->strings) {
		struct arena_block *b = p->strings;

		p->strings = b->next;
		free(b);
	}
	free(p);
}

struct kubelet_pods *kubelet_pods_ref(struct kubelet_pods *p)
{
	if (p)
		ref_get(&p->refs);
	return p;
}

void kubelet_pods_unref(struct kubelet_pods *p)
{
	if (p && ref_put(&p->refs))
		pods_free(p);
}

size_t kubelet_pods_n_pods(const struct kubelet_pods *p)
{
	return p ? p->n_pods : 0;
}

size_t kubelet_pods_n_containers(const struct kubelet_pods *p)
{
	return p ? p->n_ctrs : 0;
}

/* A string member, "" when absent or not a string. */
static const char *jstr(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static int cmp_pod(const void *a, const void *b)
{
	return strcmp(((const struct kubelet_pod *)a)->uid, ((const struct kubelet_pod *)b)->uid);
}

static int cmp_ctr(const void *a, const void *b)
{
	return strcmp(((const struct kubelet_container *)a)->id,
		      ((const struct kubelet_container *)b)->id);
}

/* "containerd://<id>" -> "<id>"; IDs without a scheme are taken as they are. */
static const char *strip_runtime(const char *id)
{
	const char *s = strstr(id, "://");

	return s ? s + 3 : id;
}

static int parse_pod(struct kubelet_pods *p, json_t *item, struct kubelet_pod *pod,
		     size_t pod_index, struct kubelet_container **ctrs, size_t *n_ctrs,
		     size_t *cap_ctrs)
{
	static const char *const status_lists[] = {"containerStatuses", "initContainerStatuses",
						   "ephemeralContainerStatuses"};
	json_t *md = json_object_get(item, "metadata");
	json_t *spec = json_object_get(item, "spec");
	json_t *status = json_object_get(item, "status");
	json_t *labels = json_object_get(md, "labels");
	json_t *owners = json_object_get(md, "ownerReferences");
	const char *sa, *key;
	json_t *v;
	size_t i;

	sa = jstr(spec, "serviceAccountName");
	if (!*sa)
		sa = jstr(spec, "serviceAccount"); /* the deprecated name, still filled */
	if (!(pod->uid = arena_strdup(p, jstr(md, "uid"))) ||
	    !(pod->name = arena_strdup(p, jstr(md, "name"))) ||
	    !(pod->ns = arena_strdup(p, jstr(md, "namespace"))) ||
	    !(pod->service_account = arena_strdup(p, sa)) ||
	    !(pod->node_name = arena_strdup(p, jstr(spec, "nodeName"))))
		return -1;

	if (json_is_object(labels) && json_object_size(labels)) {
		struct kubelet_label *l = calloc(json_object_size(labels), sizeof(*l));

		if (!l)
			return -1;
		pod->labels = l;
		json_object_foreach(labels, key, v) {
			if (!json_is_string(v))
				continue;
			l[pod->n_labels].key = arena_strdup(p, key);
			l[pod->n_labels].value = arena_strdup(p, json_string_value(v));
			if (!l[pod->n_labels].key || !l[pod->n_labels].value)
				return -1;
			pod->n_labels++;
		}
	}
	if (json_is_array(owners) && json_array_size(owners)) {
		struct kubelet_owner *o = calloc(json_array_size(owners), sizeof(*o));

		if (!o)
			return -1;
		pod->owners = o;
		json_array_foreach(owners, i, v) {
			if (!*jstr(v, "kind") || !*jstr(v, "name"))
				continue;
			o[pod->n_owners].kind = arena_strdup(p, jstr(v, "kind"));
			o[pod->n_owners].name = arena_strdup(p, jstr(v, "name"));
			if (!o[pod->n_owners].kind || !o[pod->n_owners].name)
				return -1;
			pod->n_owners++;
		}
	}

	for (size_t l = 0; l < ARRAY_LEN(status_lists); l++) {
		json_t *list = json_object_get(status, status_lists[l]);

		if (!json_is_array(list))
			continue;
		json_array_foreach(list, i, v) {
			const char *id = strip_runtime(jstr(v, "containerID"));
			struct kubelet_container *c;

			/* A container being created has no ID yet: the lookup then reports "not
			 * in the pod list yet" and the caller retries. */
			if (!*id)
				continue;
			if (*n_ctrs == *cap_ctrs) {
				size_t cap = *cap_ctrs ? *cap_ctrs * 2 : 64;
				struct kubelet_container *nc = realloc(*ctrs, cap * sizeof(*nc));

				if (!nc)
					return -1;
				*ctrs = nc;
				*cap_ctrs = cap;
			}
			c = &(*ctrs)[(*n_ctrs)++];
			c->id = arena_strdup(p, id);
			c->name = arena_strdup(p, jstr(v, "name"));
			c->image = arena_strdup(p, jstr(v, "image"));
			c->image_id = arena_strdup(p, jstr(v, "imageID"));
			/* The pods array is sorted afterwards: remember the index for now. */
			c->pod = (const struct kubelet_pod *)(uintptr_t)pod_index;
			if (!c->id || !c->name || !c->image || !c->image_id)
				return -1;
		}
	}
	return 0;
}

int kubelet_pods_parse(const char *json, size_t len, struct kubelet_pods **out, char *err,
		       size_t errlen)
{
	struct kubelet_pods *p = NULL;
	struct kubelet_container *ctrs = NULL;
	size_t n_ctrs = 0, cap_ctrs = 0, i, *order = NULL;
	json_error_t jerr;
	json_t *root, *items, *item;
	int ret = -1;

	*out = NULL;
	root = json_loadb(json, len, 0, &jerr);
	if (!root) {
		snprintf(err, errlen, "pod list is not JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	items = json_object_get(root, "items");
	if (!json_is_object(root) || (items && !json_is_array(items) && !json_is_null(items))) {
		snprintf(err, errlen, "pod list is not a PodList (no \"items\" array)");
		goto out;
	}
	if (!items && strcmp(jstr(root, "kind"), "PodList") != 0) {
		snprintf(err, errlen, "pod list is not a PodList (kind \"%.32s\")", jstr(root, "kind"));
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto nomem;
	p->refs = 1;
	p->fetched_us = now_mono_us();
	if (json_array_size(items)) {
		p->pods = calloc(json_array_size(items), sizeof(*p->pods));
		if (!p->pods)
			goto nomem;
	}
	json_array_foreach(items, i, item) {
		struct kubelet_pod *pod = &p->pods[p->n_pods];

		if (!json_is_object(item) || !*jstr(json_object_get(item, "metadata"), "uid"))
			continue;
		if (parse_pod(p, item, pod, p->n_pods, &ctrs, &n_ctrs, &cap_ctrs) < 0) {
			p->n_pods++; /* so its labels and owners are freed */
			goto nomem;
		}
		p->n_pods++;
	}

	/* Sort the pods, then point each container at its pod's new place. */
	order = calloc(p->n_pods ? p->n_pods : 1, sizeof(*order));
	if (!order)
		goto nomem;
	{
		/* Pods are tagged with their original index through a temporary array of pairs so
		 * qsort can move them. */
		struct tagged {
			struct kubelet_pod pod;
			size_t orig;
		} *t = calloc(p->n_pods ? p->n_pods : 1, sizeof(*t));

		if (!t)
			goto nomem;
		for (i = 0; i < p->n_pods; i++) {
			t[i].pod = p->pods[i];
			t[i].orig = i;
		}
		qsort(t, p->n_pods, sizeof(*t), cmp_pod);
		for (i = 0; i < p->n_pods; i++) {
			p->pods[i] = t[i].pod;
			order[t[i].orig] = i;
		}
		free(t);
	}
	for (i = 0; i < n_ctrs; i++)
		ctrs[i].pod = &p->pods[order[(uintptr_t)ctrs[i].pod]];
	if (n_ctrs)
		qsort(ctrs, n_ctrs, sizeof(*ctrs), cmp_ctr);

	/* A container ID listed twice for different pods cannot be attributed: drop every copy. */
	{
		size_t w = 0, j;

		for (i = 0; i < n_ctrs; i = j) {
			bool conflict = false;

			for (j = i + 1; j < n_ctrs && strcmp(ctrs[j].id, ctrs[i].id) == 0; j++)
				if (ctrs[j].pod != ctrs[i].pod)
					conflict = true;
			if (conflict) {
				log_warnx("kubelet: container %s is listed in several pods: ignored",
					 ctrs[i].id);
				continue;
			}
			ctrs[w++] = ctrs[i];
		}
		n_ctrs = w;
	}
	p->ctrs = ctrs;
	p->n_ctrs = n_ctrs;
	ctrs = NULL;
	*out = p;
	p = NULL;
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	free(order);
	free(ctrs);
	pods_free(p);
	json_decref(root);
	return ret;
}

const struct kubelet_container *kubelet_pods_find_container(const struct kubelet_pods *p,
							    const char *id)
{
	struct kubelet_container key = {.id = id};

	if (!p || !p->n_ctrs)
		return NULL;
	return bsearch(&key, p->ctrs, p->n_ctrs, sizeof(key), cmp_ctr);
}

const struct kubelet_pod *kubelet_pods_find_pod(const struct kubelet_pods *p, const char *uid)
{
	struct kubelet_pod key = {.uid = uid};

	if (!p || !p->n_pods)
		return NULL;
	return bsearch(&key, p->pods, p->n_pods, sizeof(key), cmp_pod);
}

/* ---- the shared, refreshed table ---- */

struct kubelet {
	char *url; /* <base>/pods */
	char *token_path, *ca_path;
	struct k8s_http_opts http;
	int64_t min_refresh_us;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when a request ends */
	struct kubelet_pods *table;
	uint64_t generation;     /* bumped when table is replaced */
	bool fetching;           /* a request is in flight */
	int64_t last_start_us;   /* monotonic start of the last request, 0 = never */
	int last_rc;             /* kubelet_result of the last request (0 = it worked) */
	char last_err[512];
	uint64_t requests, request_errors;
	CURL *curl;              /* used by the one thread with fetching set */
};

const char *kubelet_result_name(int r)
{
	switch (r) {
	case KUBELET_FOUND:
		return "found";
	case KUBELET_POD_NOT_FOUND:
		return "pod not found";
	case KUBELET_CONTAINER_NOT_FOUND:
		return "container not in the pod list yet";
	case KUBELET_REFUSED:
		return "kubelet refused the token";
	case KUBELET_UNREACHABLE:
		return "kubelet unreachable";
	case KUBELET_MISMATCH:
		return "container in another pod";
	default:
		return "kubelet error";
	}
}

struct kubelet *kubelet_new(const struct kubelet_options *o, char *err, size_t errlen)
{
	struct kubelet *k;
	pthread_condattr_t ca;
	size_t n;

	if (!o->url || (strncmp(o->url, "https://", 8) != 0 && strncmp(o->url, "http://", 7) != 0)) {
		snprintf(err, errlen, "kubelet URL \"%s\" must start with https:// or http://",
			 o->url ? o->url : "");
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		goto nomem;
	n = strlen(o->url);
	while (n && o->url[n - 1] == '/')
		n--;
	if (asprintf(&k->url, "%.*s/pods", (int)n, o->url) < 0) {
		k->url = NULL;
		goto nomem;
	}
	if ((o->token_path && o->token_path[0] && !(k->token_path = strdup(o->token_path))) ||
	    (o->ca_path && o->ca_path[0] && !(k->ca_path = strdup(o->ca_path))))
		goto nomem;
	k->http.token_path = k->token_path;
	k->http.ca_path = k->ca_path;
	k->http.insecure_skip_verify = o->insecure_skip_verify;
	k->http.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : K8S_HTTP_DEFAULT_TIMEOUT_MS;
	k->min_refresh_us = o->min_refresh_ms > 0 ? o->min_refresh_ms * 1000 : 0;
	if (k8s_http_global_init(err, errlen) < 0)
		goto fail_free;
	k->curl = curl_fns_load(NULL, 0)->easy_init();
	if (!k->curl)
		goto nomem;
	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cond, &ca);
	pthread_condattr_destroy(&ca);
	return k;
nomem:
	snprintf(err, errlen, "out of memory");
fail_free:
	if (k) {
		free(k->url);
		free(k->token_path);
		free(k->ca_path);
		free(k);
	}
	return NULL;
}

void kubelet_free(struct kubelet *k)
{
	if (!k)
		return;
	kubelet_pods_unref(k->table);
	if (k->curl)
		curl_fns_load(NULL, 0)->easy_cleanup(k->curl);
	pthread_cond_destroy(&k->cond);
	pthread_mutex_destroy(&k->lock);
	free(k->url);
	free(k->token_path);
	free(k->ca_path);
	free(k);
}

/* One GET /pods. Called with fetching set and the lock released. */
static int fetch(struct kubelet *k, struct kubelet_pods **out, char *err, size_t errlen)
{
	struct k8s_http_resp resp;
	char why[200];
	int r;

	r = k8s_http_request(k->curl, &k->http, "GET", k->url, NULL, NULL, &resp, why, sizeof(why));
	if (r == K8S_HTTP_ERR_TRANSPORT) {
		snprintf(err, errlen, "kubelet unreachable: %s", why);
		return KUBELET_UNREACHABLE;
	}
	if (r < 0) {
		snprintf(err, errlen, "kubelet request failed: %s", why);
		return KUBELET_ERROR;
	}
	if (resp.status == 401 || resp.status == 403) {
		/* The kubelet answers 401 for a token it cannot authenticate and 403 when the
		 * service account lacks nodes/proxy. */
		snprintf(err, errlen,
			 "kubelet refused the agent's token: %s answered HTTP %ld (%.80s)%s", k->url,
			 resp.status, resp.len ? resp.body : "",
			 resp.status == 403 ? "; the agent's service account needs get on nodes/proxy"
					    : "");
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		k8s_http_resp_free(&resp);
		return KUBELET_REFUSED;
	}
	if (resp.status != 200) {
		snprintf(err, errlen, "kubelet error: %s answered HTTP %ld", k->url, resp.status);
		k8s_http_resp_free(&resp);
		return KUBELET_ERROR;
	}
	r = kubelet_pods_parse(resp.body, resp.len, out, why, sizeof(why));
	k8s_http_resp_free(&resp);
	if (r < 0) {
		snprintf(err, errlen, "kubelet error: %s: %s", k->url, why);
		return KUBELET_ERROR;
	}
	return 0;
}

/* Searches the current table (lock held). */
static int search(struct kubelet *k, const char *cid, const char *pod_uid,
		  const struct kubelet_container **ctr, char *err, size_t errlen)
{
	const struct kubelet_container *c = kubelet_pods_find_container(k->table, cid);
	const struct kubelet_pod *pod;

	*ctr = NULL;
	if (c) {
		if (pod_uid && *pod_uid && strcmp(c->pod->uid, pod_uid) != 0) {
			snprintf(err, errlen,
				 "container %.12s is in pod %s/%s (%s) in the kubelet's list, but its "
				 "cgroup names pod %s",
				 cid, c->pod->ns, c->pod->name, c->pod->uid, pod_uid);
			return KUBELET_MISMATCH;
		}
		*ctr = c;
		return KUBELET_FOUND;
	}
	pod = pod_uid && *pod_uid ? kubelet_pods_find_pod(k->table, pod_uid) : NULL;
	if (pod) {
		snprintf(err, errlen,
			 "container %.12s of pod %s/%s is not in the kubelet's pod list yet (still "
			 "starting?)",
			 cid, pod->ns, pod->name);
		return KUBELET_CONTAINER_NOT_FOUND;
	}
	if (pod_uid && *pod_uid)
		snprintf(err, errlen, "pod %s (container %.12s) is not in the kubelet's pod list",
			 pod_uid, cid);
	else
		snprintf(err, errlen, "container %.12s is not in the kubelet's pod list", cid);
	return KUBELET_POD_NOT_FOUND;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int kubelet_lookup(struct kubelet *k, const char *container_id, const char *pod_uid,
		   int64_t max_age_ms, struct kubelet_pods **table,
		   const struct kubelet_container **ctr, char *err, size_t errlen)
{
	struct kubelet_pods *old = NULL;
	bool refreshed = false;
	int r;

	*table = NULL;
	*ctr = NULL;
	pthread_mutex_lock(&k->lock);
	for (;;) {
		int64_t now = now_mono_us();
		bool stale;

		r = search(k, container_id, pod_uid, ctr, err, errlen);
		stale = k->table && max_age_ms > 0 && now - k->table->fetched_us > max_age_ms * 1000;
		if (r == KUBELET_MISMATCH || (r == KUBELET_FOUND && !stale) || refreshed)
			break;
		refreshed = true;
		if (k->fetching) {
			/* Someone else's request will answer for us too. */
			uint64_t gen = k->generation;
			struct timespec ts;

			deadline_after(&ts, k->http.timeout_ms + WAIT_SLACK_MS);
			while (k->fetching && k->generation == gen)
				if (pthread_cond_timedwait(&k->cond, &k->lock, &ts) == ETIMEDOUT)
					break;
			continue;
		}
		if (k->last_start_us && now - k->last_start_us < k->min_refresh_us)
			break; /* too soon for another request: answer from what we have */

		struct kubelet_pods *fresh = NULL;
		char ferr[512];
		int fr;

		k->fetching = true;
		k->last_start_us = now;
		k->requests++;
		pthread_mutex_unlock(&k->lock);
		fr = fetch(k, &fresh, ferr, sizeof(ferr));
		pthread_mutex_lock(&k->lock);
		k->fetching = false;
		k->last_rc = fr;
		if (fr == 0) {
			old = k->table; /* dropped after the lock is released */
			k->table = fresh;
			k->generation++;
			k->last_err[0] = '\0';
			log_debug("kubelet: pod list: %zu pods, %zu containers", fresh->n_pods,
				  fresh->n_ctrs);
		} else {
			k->request_errors++;
			snprintf(k->last_err, sizeof(k->last_err), "%s", ferr);
		}
		pthread_cond_broadcast(&k->cond);
	}
	if (r == KUBELET_FOUND) {
		*table = kubelet_pods_ref(k->table);
	} else if (r != KUBELET_MISMATCH && k->last_rc != 0) {
		/* The table could not be refreshed: the reason is the request's failure, not
		 * the container's absence from an old list. */
		r = k->last_rc;
		snprintf(err, errlen, "%s", k->last_err);
	}
	pthread_mutex_unlock(&k->lock);
	kubelet_pods_unref(old);
	return r;
}

void kubelet_stats(struct kubelet *k, struct kubelet_stats *out)
{
	pthread_mutex_lock(&k->lock);
	out->requests = k->requests;
	out->request_errors = k->request_errors;
	out->pods = kubelet_pods_n_pods(k->table);
	out->containers = kubelet_pods_n_containers(k->table);
	out->table_age_ms = k->table ? (now_mono_us() - k->table->fetched_us) / 1000 : -1;
	pthread_mutex_unlock(&k->lock);
}
