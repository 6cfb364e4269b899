/* k8s_reg.c: automatic registration from pods: informers for pods and nodes, the reconciler and
 * the lease (see k8s_reg.h). */
#include "k8s_reg.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "k8s_http.h"
#include "log.h"
#include "strv.h"
#include "util.h"

#define LIST_PAGE 500
#define BACKOFF_MIN_S 1
#define BACKOFF_MAX_S 30
#define POD_UID_SEL "k8s:pod-uid:"

struct k8s_reg;

/* One followed resource, as an informer follows it. */
struct informer {
	struct k8s_reg *r;
	const char *what; /* "pods", "nodes": for logs */
	const char *path; /* "/api/v1/pods" */
	int (*replace)(struct k8s_reg *r, json_t *items); /* 0, or -1: list again later */
	void (*apply)(struct k8s_reg *r, const char *type, json_t *obj);
	char rv[128];     /* resourceVersion to resume from */
	bool relist;      /* the next round lists first */
	bool gone;        /* the watch ended with 410 Gone */
	int64_t listed_at;
	pthread_t th;
	bool started;
};

/* The rule of one ClusterSPIFFEID object. */
struct cr_rules {
	char *name;
	struct k8s_reg_rules rules;
};

struct k8s_reg {
	char *trust_domain, *cluster, *holder;
	const struct k8s_reg_rules *rules;
	int64_t resync_s;
	int watch_timeout_s;
	struct datastore *ds;
	struct k8s_api *api;
	void (*changed)(void *ud);
	void *ud;

	atomic_bool stopping, leader;
	atomic_bool nodes_listed; /* pods wait for it: without nodes, no parent is known */
	bool crd;                 /* rules from ClusterSPIFFEID objects too */
	atomic_bool crs_listed;   /* pods wait for it too: without its rules, entries would go */
	pthread_mutex_t wait_mu; /* with wait_cv: sleeps that stop and leadership cut short */
	pthread_cond_t wait_cv;

	pthread_mutex_t mu; /* the state below */
	json_t *pods;       /* pod uid -> Pod object */
	json_t *nodes;      /* node name -> node uid (string) */
	json_t *managed;    /* pod uid -> [[entry id, key], ...]: the managed entries stored */
	json_t *logged;     /* pod uid -> true: its bad render was logged already */
	struct cr_rules *crs; /* rules from ClusterSPIFFEID objects (k8s_registration_crd) */
	size_t n_crs;
	bool pods_listed;

	struct informer pods_inf, nodes_inf, crs_inf;
	pthread_t lease_th;
	bool lease_started;
};

/* ---- small helpers ---- */

static bool should_stop(struct k8s_reg *r)
{
	return atomic_load(&r->stopping) || !atomic_load(&r->leader);
}

/* Sleeps ms milliseconds, less when the module stops or leadership changes. */
static void nap_ms(struct k8s_reg *r, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&r->wait_mu);
	if (!atomic_load(&r->stopping))
		pthread_cond_timedwait(&r->wait_cv, &r->wait_mu, &ts);
	pthread_mutex_unlock(&r->wait_mu);
}

static void nap(struct k8s_reg *r, int secs)
{
	nap_ms(r, secs * 1000);
}

static void wake_all(struct k8s_reg *r)
{
	pthread_mutex_lock(&r->wait_mu);
	pthread_cond_broadcast(&r->wait_cv);
	pthread_mutex_unlock(&r->wait_mu);
}

/* What identifies a managed entry's content: equal keys, same entry. */
static char *entry_key(const struct entry *e)
{
	size_t len = strlen(e->spiffe_id) + strlen(e->parent_id) + 32;
	for (size_t i = 0; i < e->n_selectors; i++)
		len += strlen(e->selectors[i]) + 1;
	for (size_t i = 0; i < e->n_dns_names; i++)
		len += strlen(e->dns_names[i]) + 1;
	char *k = xmalloc(len), *p = k;
	p += sprintf(p, "%s\n%s\n", e->spiffe_id, e->parent_id);
	for (size_t i = 0; i < e->n_selectors; i++)
		p += sprintf(p, "%s\x1f", e->selectors[i]);
	*p++ = '\n';
	for (size_t i = 0; i < e->n_dns_names; i++)
		p += sprintf(p, "%s\x1f", e->dns_names[i]);
	sprintf(p, "\n%d", (int)e->x509_svid_ttl);
	return k;
}

static const char *pod_uid_of(const struct entry *e)
{
	for (size_t i = 0; i < e->n_selectors; i++)
		if (strncmp(e->selectors[i], POD_UID_SEL, strlen(POD_UID_SEL)) == 0)
			return e->selectors[i] + strlen(POD_UID_SEL);
	return NULL;
}

/* ---- the entries a pod should have ---- */

struct wanted {
	struct entry *v[K8S_REG_MAX_RULES];
	char *key[K8S_REG_MAX_RULES];
	size_t n;
};

static void wanted_free(struct wanted *w)
{
	for (size_t i = 0; i < w->n; i++) {
		entry_free(w->v[i]);
		free(w->key[i]);
	}
	w->n = 0;
}

/* Logs a pod's bad render once (until the pod goes). */
static void log_skip(struct k8s_reg *r, const struct k8s_reg_pod *p, const char *rule,
		     const char *why)
{
	if (json_object_get(r->logged, p->uid))
		return;
	json_object_set_new(r->logged, p->uid, json_true());
	log_warnx("k8s_registration: pod %s/%s (uid %s) skipped for %s: %s", p->ns, p->name,
		  p->uid, rule, why);
}

static struct entry *entry_for(struct k8s_reg *r, const struct k8s_reg_rule *rule,
			       const char *label, const struct k8s_reg_pod *p, const char *parent)
{
	struct k8s_reg_ctx ctx = {.trust_domain = r->trust_domain, .cluster = r->cluster};
	struct entry *e = xcalloc(1, sizeof(*e));
	char why[512], *s = NULL;
	if (k8s_reg_render(rule->spiffe_id, &ctx, p, &e->spiffe_id, why, sizeof(why)) < 0)
		goto bad;
	for (size_t i = 0; i < rule->n_dns_names; i++) {
		if (k8s_reg_render(rule->dns_names[i], &ctx, p, &s, why, sizeof(why)) < 0)
			goto bad;
		strv_push(&e->dns_names, &e->n_dns_names, s);
		free(s);
	}
	e->parent_id = xstrdup(parent);
	e->x509_svid_ttl = rule->x509_svid_ttl;
	e->managed = true;
	if (asprintf(&s, "k8s:ns:%s", p->ns) >= 0) {
		strv_push(&e->selectors, &e->n_selectors, s);
		free(s);
	}
	if (asprintf(&s, "k8s:sa:%s", p->sa) >= 0) {
		strv_push(&e->selectors, &e->n_selectors, s);
		free(s);
	}
	if (asprintf(&s, POD_UID_SEL "%s", p->uid) >= 0) {
		strv_push(&e->selectors, &e->n_selectors, s);
		free(s);
	}
	entry_normalize(e);
	if (e->n_selectors == 3 && entry_validate(e, r->trust_domain, why, sizeof(why)) == 0)
		return e;
bad:
	log_skip(r, p, label, why);
	entry_free(e);
	return NULL;
}

static bool pod_running(json_t *pod)
{
	const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"),
							      "phase"));
	return !phase || (strcmp(phase, "Succeeded") != 0 && strcmp(phase, "Failed") != 0);
}

static void want_rule(struct k8s_reg *r, struct wanted *w, const struct k8s_reg_rule *rule,
		      const char *label, const struct k8s_reg_pod *p, const char *parent)
{
	if (!k8s_reg_rule_matches(rule, p))
		return;
	if (w->n == ARRAY_LEN(w->v)) {
		log_skip(r, p, label, "too many rules match this pod");
		return;
	}
	struct entry *e = entry_for(r, rule, label, p, parent);
	if (!e)
		return;
	char *key = entry_key(e);
	for (size_t j = 0; j < w->n; j++) {
		if (strcmp(w->key[j], key) == 0) {
			entry_free(e);
			free(key);
			return;
		}
	}
	w->v[w->n] = e;
	w->key[w->n++] = key;
}

static void wanted_for(struct k8s_reg *r, json_t *pod, struct wanted *w)
{
	struct k8s_reg_pod p;
	char parent[512];
	w->n = 0;
	if (!pod || k8s_reg_pod_from_json(pod, &p) < 0 || !p.node[0] || !pod_running(pod))
		return;
	const char *node_uid = json_string_value(json_object_get(r->nodes, p.node));
	if (!node_uid)
		return; /* its node is not known yet: the node's event brings it back */
	snprintf(parent, sizeof(parent), "spiffe://%s/lanyard/agent/k8s_psat/%s/%s",
		 r->trust_domain, r->cluster, node_uid);
	char label[300];
	for (size_t i = 0; i < r->rules->n; i++) {
		snprintf(label, sizeof(label), "rule %zu", i);
		want_rule(r, w, &r->rules->v[i], label, &p, parent);
	}
	for (size_t c = 0; c < r->n_crs; c++) {
		snprintf(label, sizeof(label), "ClusterSPIFFEID %s", r->crs[c].name);
		for (size_t i = 0; i < r->crs[c].rules.n; i++)
			want_rule(r, w, &r->crs[c].rules.v[i], label, &p, parent);
	}
}

/* ---- reconciling one pod ---- */

static bool have_key(json_t *have, const char *key, size_t before)
{
	for (size_t i = 0; i < before && i < json_array_size(have); i++)
		if (!strcmp(json_string_value(json_array_get(json_array_get(have, i), 1)), key))
			return true;
	return false;
}

/* Brings the managed entries of pod uid in line with what it should have. Returns the number of
 * entries created or deleted. Called with r->mu held. */
static int sync_pod(struct k8s_reg *r, const char *uid)
{
	struct wanted w;
	char err[512];
	int changes = 0;
	wanted_for(r, json_object_get(r->pods, uid), &w);
	json_t *have = json_object_get(r->managed, uid);
	if (!have && w.n) {
		have = json_array();
		json_object_set_new(r->managed, uid, have);
	}
	/* Unwanted (or repeated) entries go. */
	for (size_t i = json_array_size(have); i-- > 0;) {
		json_t *h = json_array_get(have, i);
		const char *id = json_string_value(json_array_get(h, 0));
		const char *key = json_string_value(json_array_get(h, 1));
		bool wanted = false;
		for (size_t j = 0; j < w.n && !wanted; j++)
			wanted = strcmp(w.key[j], key) == 0;
		if (wanted && !have_key(have, key, i))
			continue;
		int ret = ds_entry_delete(r->ds, id);
		if (ret < 0 && ret != -ENOENT) {
			log_warnx("k8s_registration: cannot delete entry %s of pod %s: %s", id, uid,
				  strerror(-ret));
			continue;
		}
		log_debug("k8s_registration: entry %s of pod %s deleted", id, uid);
		json_array_remove(have, i);
		changes++;
	}
	/* Missing entries come. */
	for (size_t j = 0; j < w.n; j++) {
		if (have_key(have, w.key[j], json_array_size(have)))
			continue;
		int ret = ds_entry_create(r->ds, w.v[j], err, sizeof(err));
		if (ret < 0) {
			log_warnx("k8s_registration: cannot create the entry %s of pod %s: %s",
				  w.v[j]->spiffe_id, uid, ret == -EEXIST ? err : strerror(-ret));
			continue;
		}
		log_debug("k8s_registration: entry %s (%s, parent %s) created for pod %s",
			  w.v[j]->id, w.v[j]->spiffe_id, w.v[j]->parent_id, uid);
		json_array_append_new(have, json_pack("[s, s]", w.v[j]->id, w.key[j]));
		changes++;
	}
	if (have && json_array_size(have) == 0)
		json_object_del(r->managed, uid);
	wanted_free(&w);
	return changes;
}

static void notify(struct k8s_reg *r, int changes)
{
	if (changes > 0 && r->changed)
		r->changed(r->ud);
}

/* Re-reads the managed entries from the datastore. Called with r->mu held. */
static int load_managed(struct k8s_reg *r)
{
	struct entry **v = NULL;
	size_t n = 0;
	int ret = ds_entry_list(r->ds, NULL, &v, &n);
	if (ret < 0)
		return ret;
	json_object_clear(r->managed);
	for (size_t i = 0; i < n; i++) {
		const char *uid = v[i]->managed ? pod_uid_of(v[i]) : NULL;
		if (!uid) {
			/* A managed entry without its pod's uid cannot be ours to keep. */
			if (v[i]->managed && ds_entry_delete(r->ds, v[i]->id) == 0)
				log_warnx("k8s_registration: deleted managed entry %s without a "
					  "pod uid selector", v[i]->id);
			continue;
		}
		json_t *have = json_object_get(r->managed, uid);
		if (!have) {
			have = json_array();
			json_object_set_new(r->managed, uid, have);
		}
		char *key = entry_key(v[i]);
		json_array_append_new(have, json_pack("[s, s]", v[i]->id, key));
		free(key);
	}
	entry_array_free(v, n);
	return 0;
}

/* Every pod known or with managed entries. Called with r->mu held. */
static int sync_all(struct k8s_reg *r)
{
	const char *uid;
	json_t *v;
	void *tmp;
	int changes = 0;
	json_t *uids = json_object();
	json_object_foreach(r->pods, uid, v)
		json_object_set(uids, uid, json_true());
	json_object_foreach(r->managed, uid, v)
		json_object_set(uids, uid, json_true());
	json_object_foreach_safe(uids, tmp, uid, v)
		changes += sync_pod(r, uid);
	json_decref(uids);
	return changes;
}

/* ---- pods and nodes ---- */

static const char *uid_of(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
}

static const char *name_of(json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
}

/* The parts of a pod the rules and the reconciler read (a recorded pod is ~5 kB, most of it
 * containers and status): a new reference. */
static json_t *pod_trim(json_t *pod)
{
	json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
	json_t *t = json_pack("{s:{}, s:{}, s:{}}", "metadata", "spec", "status");
	json_t *tmd = json_object_get(t, "metadata"), *tspec = json_object_get(t, "spec");
	static const char *const md_keys[] = {"name", "namespace", "uid", "labels", "annotations"};
	for (size_t i = 0; i < ARRAY_LEN(md_keys); i++)
		if (json_object_get(md, md_keys[i]))
			json_object_set(tmd, md_keys[i], json_object_get(md, md_keys[i]));
	if (json_object_get(spec, "serviceAccountName"))
		json_object_set(tspec, "serviceAccountName", json_object_get(spec, "serviceAccountName"));
	if (json_object_get(spec, "nodeName"))
		json_object_set(tspec, "nodeName", json_object_get(spec, "nodeName"));
	json_t *phase = json_object_get(json_object_get(pod, "status"), "phase");
	if (phase)
		json_object_set(json_object_get(t, "status"), "phase", phase);
	return t;
}

static int pods_replace(struct k8s_reg *r, json_t *items)
{
	int64_t t0 = now_mono_us();
	size_t i;
	json_t *pod;
	json_object_clear(r->pods);
	json_array_foreach(items, i, pod) {
		if (uid_of(pod))
			json_object_set_new(r->pods, uid_of(pod), pod_trim(pod));
	}
	if (load_managed(r) < 0) {
		log_warnx("k8s_registration: cannot read the managed entries; reconciling later");
		return -1;
	}
	size_t before = json_object_size(r->managed);
	int changes = sync_all(r);
	r->pods_listed = true;
	log_info("k8s_registration: reconciled %zu pods (%zu with entries before, %zu after, %d "
		 "entries created or deleted) in %lld ms",
		 json_object_size(r->pods), before, json_object_size(r->managed), changes,
		 (long long)(now_mono_us() - t0) / 1000);
	notify(r, changes);
	return 0;
}

static void pods_apply(struct k8s_reg *r, const char *type, json_t *pod)
{
	const char *uid = uid_of(pod);
	if (!uid)
		return;
	if (!strcmp(type, "DELETED")) {
		json_object_del(r->pods, uid);
		json_object_del(r->logged, uid);
	} else {
		json_object_set_new(r->pods, uid, pod_trim(pod));
	}
	notify(r, sync_pod(r, uid));
}

/* The pods on node name (NULL: all) again, after its uid changed. */
static void sync_node_pods(struct k8s_reg *r, const char *name)
{
	const char *uid;
	json_t *pod;
	void *tmp;
	int changes = 0;
	if (!r->pods_listed)
		return;
	json_object_foreach_safe(r->pods, tmp, uid, pod) {
		const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"),
								     "nodeName"));
		if (node && !strcmp(node, name))
			changes += sync_pod(r, uid);
	}
	notify(r, changes);
}

static int nodes_replace(struct k8s_reg *r, json_t *items)
{
	size_t i;
	json_t *node;
	json_object_clear(r->nodes);
	json_array_foreach(items, i, node) {
		if (name_of(node) && uid_of(node))
			json_object_set_new(r->nodes, name_of(node), json_string(uid_of(node)));
	}
	log_info("k8s_registration: %zu nodes listed", json_object_size(r->nodes));
	if (r->pods_listed)
		notify(r, sync_all(r));
	return 0;
}

static void nodes_apply(struct k8s_reg *r, const char *type, json_t *node)
{
	const char *name = name_of(node), *uid = uid_of(node);
	if (!name || !uid)
		return;
	const char *old = json_string_value(json_object_get(r->nodes, name));
	if (!strcmp(type, "DELETED")) {
		if (!old || strcmp(old, uid) != 0)
			return;
		json_object_del(r->nodes, name);
	} else {
		if (old && !strcmp(old, uid))
			return;
		json_object_set_new(r->nodes, name, json_string(uid));
	}
	sync_node_pods(r, name);
}

/* ---- ClusterSPIFFEID objects (k8s_registration_crd) ---- */

static void cr_remove(struct k8s_reg *r, const char *name)
{
	for (size_t i = 0; i < r->n_crs; i++) {
		if (strcmp(r->crs[i].name, name) != 0)
			continue;
		free(r->crs[i].name);
		k8s_reg_rules_free(&r->crs[i].rules);
		r->crs[i] = r->crs[--r->n_crs];
		return;
	}
}

/* A ClusterSPIFFEID's spec is one rule, as in the server's configuration; a bad one is logged
 * and ignored (the API server checked only its schema). */
static void cr_add(struct k8s_reg *r, json_t *obj)
{
	const char *name = name_of(obj);
	struct k8s_reg_ctx ctx = {.trust_domain = r->trust_domain, .cluster = r->cluster};
	struct k8s_reg_rules rules;
	char err[512];
	if (!name)
		return;
	json_t *arr = json_pack("[O]", json_object_get(obj, "spec") ? json_object_get(obj, "spec")
								      : json_null());
	int ret = k8s_reg_rules_parse(arr, &ctx, &rules, err, sizeof(err));
	json_decref(arr);
	if (ret < 0) {
		log_warnx("k8s_registration: ClusterSPIFFEID %s ignored: %s", name, err);
		return;
	}
	r->crs = xrealloc(r->crs, (r->n_crs + 1) * sizeof(*r->crs));
	r->crs[r->n_crs].name = xstrdup(name);
	r->crs[r->n_crs++].rules = rules;
}

static void crs_free(struct k8s_reg *r)
{
	while (r->n_crs)
		cr_remove(r, r->crs[0].name);
	free(r->crs);
	r->crs = NULL;
}

static int crs_replace(struct k8s_reg *r, json_t *items)
{
	size_t i;
	json_t *obj;
	crs_free(r);
	json_array_foreach(items, i, obj)
		cr_add(r, obj);
	log_info("k8s_registration: %zu ClusterSPIFFEID rules listed", r->n_crs);
	if (r->pods_listed)
		notify(r, sync_all(r));
	return 0;
}

static void crs_apply(struct k8s_reg *r, const char *type, json_t *obj)
{
	if (!name_of(obj))
		return;
	cr_remove(r, name_of(obj));
	if (strcmp(type, "DELETED") != 0)
		cr_add(r, obj);
	log_info("k8s_registration: ClusterSPIFFEID %s %s", name_of(obj),
		 !strcmp(type, "DELETED") ? "deleted" : "applied");
	if (r->pods_listed)
		notify(r, sync_all(r));
}

/* ---- the informer loop ---- */

static bool rv_ok(const char *rv)
{
	if (!rv || !rv[0] || strlen(rv) >= 128)
		return false;
	for (const char *c = rv; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_' || *c == '.'))
			return false;
	return true;
}

/* Lists the resource in pages; on success replaces the state. 0 or -1 (logged). */
static int inf_list(struct informer *inf)
{
	struct k8s_reg *r = inf->r;
	json_t *items = json_array(), *resp = NULL;
	char path[1024], err[512], cont[1024] = "", rv[128] = "";
	long status;
	int ret = -1;
	for (int page = 0; !should_stop(r); page++) {
		size_t pos;
		snprintf(path, sizeof(path), "%s?limit=%d%s", inf->path, LIST_PAGE,
			 cont[0] ? "&continue=" : "");
		pos = strlen(path);
		if (cont[0] && !k8s_http_path_escape(path, sizeof(path), &pos, cont)) {
			log_warnx("k8s_registration: listing %s: continue token too long", inf->what);
			goto out;
		}
		if (k8s_api_call(r->api, "GET", path, NULL, NULL, &status, &resp, err,
				 sizeof(err)) < 0) {
			log_warnx("k8s_registration: cannot list %s: %s", inf->what, err);
			goto out;
		}
		if (status != 200 || !json_is_array(json_object_get(resp, "items"))) {
			log_warnx("k8s_registration: listing %s: HTTP %ld %s%s", inf->what, status,
				  k8s_api_status_message(resp),
				  status == 403 ? " (the server's service account needs list and "
				  "watch on pods and nodes: deploy/kubernetes has the ClusterRole)" : "");
			goto out;
		}
		json_array_extend(items, json_object_get(resp, "items"));
		json_t *md = json_object_get(resp, "metadata");
		const char *c = json_string_value(json_object_get(md, "continue"));
		snprintf(rv, sizeof(rv), "%s",
			 json_string_value(json_object_get(md, "resourceVersion")) ?
			 json_string_value(json_object_get(md, "resourceVersion")) : "");
		snprintf(cont, sizeof(cont), "%s", c ? c : "");
		json_decref(resp);
		resp = NULL;
		if (!cont[0])
			break;
	}
	if (should_stop(r))
		goto out;
	if (!rv_ok(rv)) {
		log_warnx("k8s_registration: the %s list has no usable resourceVersion", inf->what);
		goto out;
	}
	snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
	pthread_mutex_lock(&r->mu);
	ret = inf->replace(r, items);
	pthread_mutex_unlock(&r->mu);
	if (ret == 0)
		inf->listed_at = now_unix();
out:
	json_decref(resp);
	json_decref(items);
	return ret;
}

static int inf_event(const char *type, json_t *obj, void *ud)
{
	struct informer *inf = ud;
	struct k8s_reg *r = inf->r;
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));
	if (!strcmp(type, "ERROR")) {
		json_t *code = json_object_get(obj, "code");
		inf->gone = json_integer_value(code) == 410;
		if (!inf->gone)
			log_warnx("k8s_registration: watch of %s: error %lld: %s", inf->what,
				  (long long)json_integer_value(code), k8s_api_status_message(obj));
		return -1;
	}
	if (strcmp(type, "BOOKMARK") != 0) {
		if (strcmp(type, "ADDED") && strcmp(type, "MODIFIED") && strcmp(type, "DELETED"))
			return 0;
		pthread_mutex_lock(&r->mu);
		inf->apply(r, type, obj);
		pthread_mutex_unlock(&r->mu);
	}
	if (rv_ok(rv))
		snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
	return 0;
}

static bool inf_stop(void *ud)
{
	struct informer *inf = ud;
	return should_stop(inf->r) || now_unix() - inf->listed_at >= inf->r->resync_s;
}

/* One watch from inf->rv. 0: it ended normally; 1: relist; -1: back off and watch again. */
static int inf_watch(struct informer *inf)
{
	struct k8s_reg *r = inf->r;
	struct k8s_watch_cb cb = {.event = inf_event, .stop = inf_stop, .ud = inf};
	char path[512], err[512];
	long status = 0;
	json_t *body = NULL;
	snprintf(path, sizeof(path), "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s"
		 "&timeoutSeconds=%d", inf->path, inf->rv, r->watch_timeout_s);
	inf->gone = false;
	int ret = k8s_api_watch(r->api, path, r->watch_timeout_s + 30, &cb, &status, &body, err,
				sizeof(err));
	if (ret == K8S_API_STOPPED) {
		ret = inf->gone || !should_stop(r) ? 1 : 0;
		if (inf->gone)
			log_info("k8s_registration: watch of %s from resourceVersion %s expired (410 "
				 "Gone): listing again", inf->what, inf->rv);
	} else if (ret < 0) {
		log_warnx("k8s_registration: watch of %s dropped (%s); resuming from "
			  "resourceVersion %s", inf->what, err, inf->rv);
		ret = -1;
	} else if (status != 200) {
		log_warnx("k8s_registration: watch of %s: HTTP %ld %s; listing again", inf->what,
			  status, k8s_api_status_message(body));
		ret = status == 410 ? 1 : -1;
		inf->relist = true;
	}
	json_decref(body);
	return ret;
}

static void *inf_main(void *arg)
{
	struct informer *inf = arg;
	struct k8s_reg *r = inf->r;
	int backoff = BACKOFF_MIN_S;
	inf->relist = true;
	while (!atomic_load(&r->stopping)) {
		if (!atomic_load(&r->leader)) {
			inf->relist = true;
			if (inf == &r->nodes_inf)
				atomic_store(&r->nodes_listed, false);
			if (inf == &r->crs_inf)
				atomic_store(&r->crs_listed, false);
			nap(r, 1);
			continue;
		}
		/* Pods are reconciled once their nodes are known: a pod whose node is unknown has
		 * no parent, and its entries would be deleted. */
		if (inf == &r->pods_inf && (!atomic_load(&r->nodes_listed) ||
					    (r->crd && !atomic_load(&r->crs_listed)))) {
			nap_ms(r, 50);
			continue;
		}
		if (inf->relist || now_unix() - inf->listed_at >= r->resync_s) {
			if (inf_list(inf) < 0) {
				nap(r, backoff);
				backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
				continue;
			}
			inf->relist = false;
			if (inf == &r->nodes_inf)
				atomic_store(&r->nodes_listed, true);
			if (inf == &r->crs_inf)
				atomic_store(&r->crs_listed, true);
		}
		int w = inf_watch(inf);
		if (w == 1) {
			inf->relist = true;
		} else if (w < 0) {
			nap(r, backoff);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
			continue;
		}
		backoff = BACKOFF_MIN_S;
	}
	return NULL;
}

/* ---- the lease ---- */

static void *lease_main(void *arg)
{
	struct k8s_reg *r = arg;
	bool first = true;
	while (!atomic_load(&r->stopping)) {
		int ret = ds_lease_acquire(r->ds, K8S_REG_LEASE, r->holder, K8S_REG_LEASE_TTL_S);
		bool was = atomic_load(&r->leader), now = ret == 1;
		if (ret < 0)
			log_warnx("k8s_registration: cannot renew the lease: %s", strerror(-ret));
		if (first && !now)
			log_info("k8s_registration: another server holds the lease; standing by");
		first = false;
		if (now != was) {
			atomic_store(&r->leader, now);
			if (now)
				log_info("k8s_registration: this server holds the lease and keeps "
					 "the entries of pods");
			else
				log_info("k8s_registration: %s; another server keeps the entries of pods",
					 ret < 0 ? "lease lost" : "the lease is held elsewhere");
			wake_all(r);
		}
		nap(r, K8S_REG_LEASE_RENEW_S);
	}
	if (atomic_load(&r->leader))
		ds_lease_release(r->ds, K8S_REG_LEASE, r->holder);
	return NULL;
}

/* ---- start / stop ---- */

static void inf_init(struct informer *inf, struct k8s_reg *r, const char *what, const char *path,
		     int (*replace)(struct k8s_reg *, json_t *),
		     void (*apply)(struct k8s_reg *, const char *, json_t *))
{
	inf->r = r;
	inf->what = what;
	inf->path = path;
	inf->replace = replace;
	inf->apply = apply;
}

int k8s_reg_start(const struct k8s_reg_options *o, struct k8s_reg **out, char *err,
		  size_t errlen)
{
	struct k8s_reg *r = xcalloc(1, sizeof(*r));
	r->trust_domain = xstrdup(o->trust_domain);
	r->cluster = xstrdup(o->cluster);
	r->holder = xstrdup(o->holder);
	r->rules = o->rules;
	r->resync_s = o->resync_s > 0 ? o->resync_s : 600;
	r->watch_timeout_s = o->watch_timeout_s > 0 ? o->watch_timeout_s : 300;
	r->ds = o->ds;
	r->changed = o->changed;
	r->ud = o->ud;
	r->pods = json_object();
	r->nodes = json_object();
	r->managed = json_object();
	r->logged = json_object();
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->wait_mu, NULL);
	pthread_cond_init(&r->wait_cv, NULL);
	inf_init(&r->nodes_inf, r, "nodes", "/api/v1/nodes", nodes_replace, nodes_apply);
	inf_init(&r->pods_inf, r, "pods", "/api/v1/pods", pods_replace, pods_apply);
	inf_init(&r->crs_inf, r, "clusterspiffeids", K8S_REG_CRD_PATH, crs_replace, crs_apply);
	r->crd = o->crd;
	r->api = k8s_api_new(&o->api, err, errlen);
	if (!r->api)
		goto fail;
	if (pthread_create(&r->lease_th, NULL, lease_main, r) != 0)
		goto threads;
	r->lease_started = true;
	if (pthread_create(&r->nodes_inf.th, NULL, inf_main, &r->nodes_inf) != 0)
		goto threads;
	r->nodes_inf.started = true;
	if (r->crd) {
		if (pthread_create(&r->crs_inf.th, NULL, inf_main, &r->crs_inf) != 0)
			goto threads;
		r->crs_inf.started = true;
	}
	if (pthread_create(&r->pods_inf.th, NULL, inf_main, &r->pods_inf) != 0)
		goto threads;
	r->pods_inf.started = true;
	log_info("k8s_registration: %zu rules%s; following pods and nodes at %s", r->rules->n,
		 r->crd ? " and the ClusterSPIFFEID objects" : "", k8s_api_url(r->api));
	*out = r;
	return 0;
threads:
	snprintf(err, errlen, "cannot start a thread");
fail:
	k8s_reg_stop(r);
	return -1;
}

void k8s_reg_stop(struct k8s_reg *r)
{
	if (!r)
		return;
	atomic_store(&r->stopping, true);
	wake_all(r);
	if (r->pods_inf.started)
		pthread_join(r->pods_inf.th, NULL);
	if (r->nodes_inf.started)
		pthread_join(r->nodes_inf.th, NULL);
	if (r->crs_inf.started)
		pthread_join(r->crs_inf.th, NULL);
	if (r->lease_started)
		pthread_join(r->lease_th, NULL);
	k8s_api_free(r->api);
	json_decref(r->pods);
	json_decref(r->nodes);
	json_decref(r->managed);
	json_decref(r->logged);
	crs_free(r);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->wait_mu);
	pthread_cond_destroy(&r->wait_cv);
	free(r->trust_domain);
	free(r->cluster);
	free(r->holder);
	free(r);
}
