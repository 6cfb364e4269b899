/* k8s_reg_rules.c: automatic registration rules: parsing, matching, templates (see
 * k8s_reg_rules.h). */
#include "k8s_reg_rules.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "spiffeid.h"
#include "strv.h"
#include "util.h"

#define TEMPLATE_MAX 2048

/* ---- templates ---- */

/* A piece of rendered text, grown as fields are substituted. */
struct buf {
	char s[TEMPLATE_MAX + 1];
	size_t len;
	bool full;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (n > TEMPLATE_MAX - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* Characters a substituted value may hold: those of a SPIFFE ID path segment and of a DNS
 * label, so that a value can never add a path segment, a query or a port. */
static bool value_ok(const char *v)
{
	if (!v[0])
		return false;
	for (const char *c = v; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-'))
			return false;
	return true;
}

static const char *sample_pod_value = "sample";

/* The value of field (name, n bytes) for the pod, or NULL with the reason in err. With
 * p == NULL, checks the field's name only and returns a sample value. */
static const char *field_value(const char *name, size_t n, const struct k8s_reg_ctx *ctx,
			       const struct k8s_reg_pod *p, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off;
	} pod_fields[] = {
		{"namespace", offsetof(struct k8s_reg_pod, ns)},
		{"service_account", offsetof(struct k8s_reg_pod, sa)},
		{"pod_name", offsetof(struct k8s_reg_pod, name)},
		{"pod_uid", offsetof(struct k8s_reg_pod, uid)},
		{"node_name", offsetof(struct k8s_reg_pod, node)},
	};
	if (n == strlen("trust_domain") && !memcmp(name, "trust_domain", n))
		return ctx->trust_domain;
	if (n == strlen("cluster") && !memcmp(name, "cluster", n))
		return ctx->cluster ? ctx->cluster : "";
	for (size_t i = 0; i < ARRAY_LEN(pod_fields); i++) {
		if (n == strlen(pod_fields[i].name) && !memcmp(name, pod_fields[i].name, n)) {
			if (!p)
				return sample_pod_value;
			const char *v = *(const char *const *)((const char *)p + pod_fields[i].off);
			return v ? v : "";
		}
	}
	const char *colon = memchr(name, ':', n);
	if (colon && colon > name && (size_t)(colon - name) + 1 < n) {
		size_t kl = (size_t)(colon - name);
		bool label = kl == 5 && !memcmp(name, "label", 5);
		if (label || (kl == 10 && !memcmp(name, "annotation", 10))) {
			if (!p)
				return sample_pod_value;
			char key[256];
			snprintf(key, sizeof(key), "%.*s", (int)(n - kl - 1), colon + 1);
			json_t *v = json_object_get(label ? p->labels : p->annotations, key);
			if (!json_is_string(v)) {
				errorf(err, errlen, "the pod has no %s \"%s\"",
				       label ? "label" : "annotation", key);
				return NULL;
			}
			return json_string_value(v);
		}
	}
	errorf(err, errlen, "unknown field {%.*s} (fields: {trust_domain}, {cluster}, {namespace}, "
	       "{service_account}, {pod_name}, {pod_uid}, {node_name}, {label:KEY}, "
	       "{annotation:KEY})", (int)(n > 64 ? 64 : n), name);
	return NULL;
}

/* Renders tmpl for p (NULL: a sample pod, for checking). */
static int render(const char *tmpl, const struct k8s_reg_ctx *ctx, const struct k8s_reg_pod *p,
		  char **out, char *err, size_t errlen)
{
	struct buf b = {.len = 0};
	const char *s = tmpl;
	while (*s) {
		const char *open = strchr(s, '{'), *close = strchr(s, '}');
		if (close && (!open || close < open))
			return errorf(err, errlen, "unbalanced '}'"), -EINVAL;
		if (!open) {
			buf_add(&b, s, strlen(s));
			break;
		}
		buf_add(&b, s, (size_t)(open - s));
		if (!close)
			return errorf(err, errlen, "unbalanced '{'"), -EINVAL;
		const char *v = field_value(open + 1, (size_t)(close - open - 1), ctx, p, err, errlen);
		if (!v)
			return -EINVAL;
		if (!value_ok(v))
			return errorf(err, errlen, "field {%.*s} has the value \"%.128s\", which is empty "
				      "or has characters outside [A-Za-z0-9._-]",
				      (int)(close - open - 1 > 64 ? 64 : close - open - 1), open + 1, v),
			       -EINVAL;
		buf_add(&b, v, strlen(v));
		s = close + 1;
	}
	if (b.full)
		return errorf(err, errlen, "longer than %d bytes once rendered", TEMPLATE_MAX), -EINVAL;
	*out = xstrdup(b.s);
	return 0;
}

int k8s_reg_render(const char *tmpl, const struct k8s_reg_ctx *ctx, const struct k8s_reg_pod *p,
		   char **out, char *err, size_t errlen)
{
	return render(tmpl, ctx, p, out, err, errlen);
}

/* ---- parsing ---- */

static void show(json_t *v, char *buf, size_t len)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	snprintf(buf, len, "%.200s", s ? s : "?");
	free(s);
}

/* A Kubernetes name as namespaces and label keys/values have them (a loose check: the API
 * server is the judge; this catches typos such as spaces or wildcards). */
static bool k8s_word_ok(const char *s, bool allow_slash)
{
	if (!s[0] || strlen(s) > 253)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-' ||
		      (allow_slash && *c == '/')))
			return false;
	return true;
}

struct where {
	size_t i;
	const char *key;
	char *err;
	size_t errlen;
};

static int bad(const struct where *w, json_t *v, const char *why)
{
	char shown[256];
	show(v, shown, sizeof(shown));
	errorf(w->err, w->errlen, "k8s_registration[%zu]: key '%s': value %s: %s", w->i, w->key,
	       shown, why);
	return -EINVAL;
}

/* Renders a template for the sample pod and checks the result as an entry would. */
static int check_template(const struct where *w, json_t *v, const struct k8s_reg_ctx *ctx,
			  bool is_id)
{
	char why[320], *out = NULL, id[300], parent[300];
	struct entry e = {.parent_id = parent};
	char *sel = "k8s:ns:sample";
	int ret;
	if (render(json_string_value(v), ctx, NULL, &out, why, sizeof(why)) < 0)
		return bad(w, v, why);
	snprintf(id, sizeof(id), "spiffe://%s/sample", ctx->trust_domain);
	snprintf(parent, sizeof(parent), "spiffe://%s/sample-agent", ctx->trust_domain);
	e.spiffe_id = is_id ? out : id;
	e.selectors = &sel;
	e.n_selectors = 1;
	if (!is_id) {
		e.dns_names = &out;
		e.n_dns_names = 1;
	}
	ret = entry_validate(&e, ctx->trust_domain, why, sizeof(why));
	free(out);
	return ret < 0 ? bad(w, v, why) : 0;
}

static int parse_strings(const struct where *w, json_t *v, char ***out, size_t *n,
			 const struct k8s_reg_ctx *ctx, bool templates)
{
	size_t i;
	json_t *e;
	if (!json_is_array(v))
		return bad(w, v, "not an array of strings");
	json_array_foreach(v, i, e) {
		if (!json_is_string(e))
			return bad(w, e, "not a string");
		if (templates ? check_template(w, e, ctx, false) < 0
			      : !k8s_word_ok(json_string_value(e), false))
			return templates ? -EINVAL : bad(w, e, "not a namespace name");
		strv_push(out, n, json_string_value(e));
	}
	return 0;
}

static int parse_labels(const struct where *w, json_t *v, struct k8s_reg_rule *r)
{
	const char *k;
	json_t *e;
	if (!json_is_object(v))
		return bad(w, v, "not an object of label names to values");
	json_object_foreach(v, k, e) {
		if (!k8s_word_ok(k, true))
			return bad(w, v, "a label name is empty or has characters outside "
				   "[A-Za-z0-9._/-]");
		if (!json_is_string(e) || (json_string_value(e)[0] &&
					   !k8s_word_ok(json_string_value(e), false)))
			return bad(w, e, "not a label value");
		size_t n = r->n_labels;
		strv_push(&r->label_keys, &n, k);
		strv_push(&r->label_values, &r->n_labels, json_string_value(e));
	}
	return 0;
}

static int parse_ttl(const struct where *w, json_t *v, int32_t *out)
{
	int64_t t = -1;
	if (json_is_integer(v))
		t = json_integer_value(v);
	else if (!json_is_string(v) || duration_parse(json_string_value(v), &t) < 0)
		return bad(w, v, "not a duration (use 90s, 5m, 1h, 2d or seconds)");
	if (t < 10 || t > ENTRY_MAX_TTL)
		return bad(w, v, "out of range (10s to 10 years)");
	*out = (int32_t)t;
	return 0;
}

static int parse_rule(json_t *o, size_t i, const struct k8s_reg_ctx *ctx, struct k8s_reg_rule *r,
		      char *err, size_t errlen)
{
	struct where w = {.i = i, .key = "", .err = err, .errlen = errlen};
	const char *k;
	json_t *v;
	if (!json_is_object(o))
		return bad(&w, o, "a rule must be an object");
	json_object_foreach(o, k, v) {
		w.key = k;
		int ret;
		if (!strcmp(k, "spiffe_id")) {
			if (!json_is_string(v))
				return bad(&w, v, "not a string");
			if ((ret = check_template(&w, v, ctx, true)) < 0)
				return ret;
			r->spiffe_id = xstrdup(json_string_value(v));
		} else if (!strcmp(k, "namespaces")) {
			ret = parse_strings(&w, v, &r->namespaces, &r->n_namespaces, ctx, false);
		} else if (!strcmp(k, "pod_labels")) {
			ret = parse_labels(&w, v, r);
		} else if (!strcmp(k, "dns_names")) {
			ret = parse_strings(&w, v, &r->dns_names, &r->n_dns_names, ctx, true);
		} else if (!strcmp(k, "x509_svid_ttl")) {
			ret = parse_ttl(&w, v, &r->x509_svid_ttl);
		} else {
			return bad(&w, v, "unknown key (keys: spiffe_id, namespaces, pod_labels, "
				   "dns_names, x509_svid_ttl)");
		}
		if (ret < 0)
			return ret;
	}
	if (!r->spiffe_id)
		return errorf(err, errlen, "k8s_registration[%zu]: key 'spiffe_id' is required", i),
		       -EINVAL;
	return 0;
}

int k8s_reg_rules_parse(json_t *arr, const struct k8s_reg_ctx *ctx, struct k8s_reg_rules *out,
			char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return errorf(err, errlen, "k8s_registration: not an array of rules"), -EINVAL;
	if (json_array_size(arr) > K8S_REG_MAX_RULES)
		return errorf(err, errlen, "k8s_registration: %zu rules, at most %d",
			      json_array_size(arr), K8S_REG_MAX_RULES), -EINVAL;
	if (json_array_size(arr) == 0)
		return 0;
	out->v = xcalloc(json_array_size(arr), sizeof(*out->v));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		out->n = i + 1;
		if (parse_rule(json_array_get(arr, i), i, ctx, &out->v[i], err, errlen) < 0) {
			k8s_reg_rules_free(out);
			return -EINVAL;
		}
	}
	return 0;
}

void k8s_reg_rules_free(struct k8s_reg_rules *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct k8s_reg_rule *x = &r->v[i];
		free(x->spiffe_id);
		strv_free(x->namespaces, x->n_namespaces);
		strv_free(x->label_keys, x->n_labels);
		strv_free(x->label_values, x->n_labels);
		strv_free(x->dns_names, x->n_dns_names);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* ---- pods ---- */

int k8s_reg_pod_from_json(json_t *pod, struct k8s_reg_pod *p)
{
	json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
	memset(p, 0, sizeof(*p));
	p->ns = json_string_value(json_object_get(md, "namespace"));
	p->name = json_string_value(json_object_get(md, "name"));
	p->uid = json_string_value(json_object_get(md, "uid"));
	p->sa = json_string_value(json_object_get(spec, "serviceAccountName"));
	p->node = json_string_value(json_object_get(spec, "nodeName"));
	if (!p->sa)
		p->sa = "default";
	if (!p->node)
		p->node = "";
	p->labels = json_object_get(md, "labels");
	p->annotations = json_object_get(md, "annotations");
	return p->ns && p->name && p->uid && p->uid[0] ? 0 : -EINVAL;
}

bool k8s_reg_rule_matches(const struct k8s_reg_rule *r, const struct k8s_reg_pod *p)
{
	bool ns_ok = r->n_namespaces == 0;
	for (size_t i = 0; i < r->n_namespaces && !ns_ok; i++)
		ns_ok = strcmp(r->namespaces[i], p->ns) == 0;
	if (!ns_ok)
		return false;
	for (size_t i = 0; i < r->n_labels; i++) {
		const char *v = json_string_value(json_object_get(p->labels, r->label_keys[i]));
		if (!v || strcmp(v, r->label_values[i]) != 0)
			return false;
	}
	return true;
}
