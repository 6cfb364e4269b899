#include "entry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spiffeid.h"
#include "strv.h"
#include "util.h"

static char *strdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void entry_free(struct entry *e)
{
	if (!e)
		return;
	free(e->spiffe_id);
	free(e->parent_id);
	strv_free(e->selectors, e->n_selectors);
	strv_free(e->dns_names, e->n_dns_names);
	free(e->hint);
	strv_free(e->federates_with, e->n_federates_with);
	free(e);
}

void entry_array_free(struct entry **a, size_t n)
{
	if (!a)
		return;
	for (size_t i = 0; i < n; i++)
		entry_free(a[i]);
	free(a);
}

struct entry *entry_dup(const struct entry *e)
{
	if (!e)
		return NULL;
	struct entry *d = xcalloc(1, sizeof(*d));
	*d = *e;
	d->refs = 1;
	d->spiffe_id = strdup_or_null(e->spiffe_id);
	d->parent_id = strdup_or_null(e->parent_id);
	d->selectors = strv_dup(e->selectors, e->n_selectors);
	d->n_selectors = d->selectors ? e->n_selectors : 0;
	d->dns_names = strv_dup(e->dns_names, e->n_dns_names);
	d->n_dns_names = d->dns_names ? e->n_dns_names : 0;
	d->hint = strdup_or_null(e->hint);
	d->federates_with = strv_dup(e->federates_with, e->n_federates_with);
	d->n_federates_with = d->federates_with ? e->n_federates_with : 0;
	return d;
}

void entry_normalize(struct entry *e)
{
	if (e->selectors)
		e->n_selectors = strv_sort_unique(e->selectors, e->n_selectors);
	if (e->federates_with)
		e->n_federates_with = strv_sort_unique(e->federates_with, e->n_federates_with);
}

bool entry_has_selectors(const struct entry *e, const char *const *sel, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < e->n_selectors && !found; j++)
			found = strcmp(sel[i], e->selectors[j]) == 0;
		if (!found)
			return false;
	}
	return true;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

int entry_selector_validate(const char *s, char *err, size_t errlen)
{
	if (!s) {
		snprintf(err, errlen, "selector missing");
		return -EINVAL;
	}
	size_t len = strlen(s);
	const char *colon = strchr(s, ':');
	if (!colon || colon == s || colon[1] == '\0') {
		snprintf(err, errlen, "selector \"%.128s\" must be \"type:value\" with non-empty type and value",
			 s);
		return -EINVAL;
	}
	if (len > ENTRY_MAX_SELECTOR_LEN) {
		snprintf(err, errlen, "selector \"%.64s...\" is longer than %d bytes", s,
			 ENTRY_MAX_SELECTOR_LEN);
		return -EINVAL;
	}
	if (has_ctl(s)) {
		snprintf(err, errlen, "selector \"%.128s\" contains control characters", s);
		return -EINVAL;
	}
	for (const char *p = s; p < colon; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.')) {
			snprintf(err, errlen, "selector \"%.128s\": invalid character in type", s);
			return -EINVAL;
		}
	}
	return 0;
}

/* RFC 1123 host name, optionally "*." wildcard first label; at most 253 bytes. */
static bool dns_name_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 253)
		return false;
	if (s[0] == '*') {
		if (s[1] != '.' || s[2] == '\0')
			return false;
		s += 2;
	}
	size_t label = 0;
	char prev = '.';
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (c == '.') {
			if (label == 0 || prev == '-')
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '_' || c == '-') {
			if (c == '-' && label == 0)
				return false;
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		prev = c;
	}
	return label > 0 && prev != '-';
}

static bool is_td_id(const char *id, const char *td)
{
	char idtd[TRUST_DOMAIN_MAX + 1];
	const char *path = NULL;
	if (spiffeid_parse(id, idtd, &path, NULL, 0) < 0)
		return false;
	return *path == '\0' && strcmp(idtd, td) == 0;
}

static int federates_with_validate(const struct entry *e, const char *td, char *err,
				   size_t errlen)
{
	char why[256] = "";
	if (e->n_federates_with > ENTRY_MAX_FEDERATES_WITH) {
		snprintf(err, errlen, "too many federates_with trust domains (%zu, at most %d)",
			 e->n_federates_with, ENTRY_MAX_FEDERATES_WITH);
		return -EINVAL;
	}
	for (size_t i = 0; i < e->n_federates_with; i++) {
		const char *f = e->federates_with[i];
		if (trust_domain_validate(f, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "invalid federates_with trust domain \"%.256s\": %s", f,
				 why);
			return -EINVAL;
		}
		if (td && strcmp(f, td) == 0) {
			snprintf(err, errlen, "federates_with \"%s\" is the entry's own trust domain",
				 f);
			return -EINVAL;
		}
	}
	return 0;
}

int entry_validate(const struct entry *e, const char *td, char *err, size_t errlen)
{
	char why[256] = "";
	if (!e->spiffe_id || !*e->spiffe_id) {
		snprintf(err, errlen, "spiffe_id is required");
		return -EINVAL;
	}
	if (spiffeid_validate_leaf(e->spiffe_id, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "invalid spiffe_id \"%.256s\": %s", e->spiffe_id, why);
		return -EINVAL;
	}
	if (td && !spiffeid_member_of(e->spiffe_id, td)) {
		snprintf(err, errlen, "spiffe_id \"%.256s\" is not in trust domain \"%s\"",
			 e->spiffe_id, td);
		return -EINVAL;
	}
	if (!e->parent_id || !*e->parent_id) {
		snprintf(err, errlen, "parent_id is required");
		return -EINVAL;
	}
	if (spiffeid_parse(e->parent_id, NULL, NULL, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "invalid parent_id \"%.256s\": %s", e->parent_id, why);
		return -EINVAL;
	}
	if (td && !spiffeid_member_of(e->parent_id, td)) {
		snprintf(err, errlen, "parent_id \"%.256s\" is not in trust domain \"%s\"",
			 e->parent_id, td);
		return -EINVAL;
	}
	if (spiffeid_validate_leaf(e->parent_id, NULL, 0) < 0 && !(td && is_td_id(e->parent_id, td))) {
		snprintf(err, errlen, "invalid parent_id \"%.256s\": must be a workload or agent ID",
			 e->parent_id);
		return -EINVAL;
	}
	if (e->n_selectors == 0) {
		snprintf(err, errlen, "at least one selector is required");
		return -EINVAL;
	}
	if (e->n_selectors > ENTRY_MAX_SELECTORS) {
		snprintf(err, errlen, "too many selectors (%zu, at most %d)", e->n_selectors,
			 ENTRY_MAX_SELECTORS);
		return -EINVAL;
	}
	for (size_t i = 0; i < e->n_selectors; i++)
		if (entry_selector_validate(e->selectors[i], err, errlen) < 0)
			return -EINVAL;
	if (e->x509_svid_ttl < 0 || e->x509_svid_ttl > ENTRY_MAX_TTL) {
		snprintf(err, errlen, "x509_svid_ttl %d out of range [0, %d]", (int)e->x509_svid_ttl,
			 ENTRY_MAX_TTL);
		return -EINVAL;
	}
	if (e->jwt_svid_ttl < 0 || e->jwt_svid_ttl > ENTRY_MAX_TTL) {
		snprintf(err, errlen, "jwt_svid_ttl %d out of range [0, %d]", (int)e->jwt_svid_ttl,
			 ENTRY_MAX_TTL);
		return -EINVAL;
	}
	if (e->n_dns_names > ENTRY_MAX_DNS_NAMES) {
		snprintf(err, errlen, "too many dns_names (%zu, at most %d)", e->n_dns_names,
			 ENTRY_MAX_DNS_NAMES);
		return -EINVAL;
	}
	for (size_t i = 0; i < e->n_dns_names; i++) {
		if (!e->dns_names[i] || !dns_name_ok(e->dns_names[i])) {
			snprintf(err, errlen, "invalid dns name \"%.256s\"",
				 e->dns_names[i] ? e->dns_names[i] : "");
			return -EINVAL;
		}
	}
	if (e->hint && (strlen(e->hint) > ENTRY_MAX_HINT_LEN || has_ctl(e->hint))) {
		snprintf(err, errlen, "invalid hint: at most %d bytes, no control characters",
			 ENTRY_MAX_HINT_LEN);
		return -EINVAL;
	}
	if (e->expires_at < 0) {
		snprintf(err, errlen, "expires_at must not be negative");
		return -EINVAL;
	}
	return federates_with_validate(e, td, err, errlen);
}

/* The members of an entry's JSON object, in their order: the one list of them on output. */
enum {
	J_ID, J_SPIFFE_ID, J_PARENT_ID, J_SELECTORS, J_X509_TTL, J_JWT_TTL, J_DNS_NAMES, J_HINT,
	J_ADMIN, J_DOWNSTREAM, J_MANAGED, J_EXPIRES_AT, J_REVISION, J_CREATED_AT, J_FEDERATES_WITH,
	J_N
};

static const char *const json_keys[J_N] = {
	[J_ID] = "id", [J_SPIFFE_ID] = "spiffe_id", [J_PARENT_ID] = "parent_id",
	[J_SELECTORS] = "selectors", [J_X509_TTL] = "x509_svid_ttl",
	[J_JWT_TTL] = "jwt_svid_ttl", [J_DNS_NAMES] = "dns_names", [J_HINT] = "hint",
	[J_ADMIN] = "admin", [J_DOWNSTREAM] = "downstream", [J_MANAGED] = "managed",
	[J_EXPIRES_AT] = "expires_at", [J_REVISION] = "revision", [J_CREATED_AT] = "created_at",
	[J_FEDERATES_WITH] = "federates_with",
};

/* v[i] is the value of member json_keys[i] in obj (borrowed from obj), NULL before it is set.
 * Members are set in json_keys' order and a replaced member keeps its place in a jansson
 * object, so the order is json_keys' whatever the values were before. */
struct entry_json {
	json_t *obj;
	json_t *v[J_N];
};

struct entry_json *entry_json_new(void)
{
	struct entry_json *t = calloc(1, sizeof(*t));
	if (t && !(t->obj = json_object())) {
		free(t);
		return NULL;
	}
	return t;
}

void entry_json_free(struct entry_json *t)
{
	if (!t)
		return;
	json_decref(t->obj);
	free(t);
}

/* Member i becomes v (a new reference, stolen; NULL when making it failed). */
static int put(struct entry_json *t, int i, json_t *v)
{
	if (!v || json_object_set_new_nocheck(t->obj, json_keys[i], v) < 0)
		return -EINVAL;
	t->v[i] = v;
	return 0;
}

static int put_str(struct entry_json *t, int i, const char *s)
{
	if (s && json_is_string(t->v[i]))
		return json_string_set(t->v[i], s) < 0 ? -EINVAL : 0;
	return put(t, i, s ? json_string(s) : json_null());
}

static int put_strv(struct entry_json *t, int i, char *const *v, size_t n)
{
	if (!json_is_array(t->v[i]) && put(t, i, json_array()) < 0)
		return -EINVAL;
	json_array_clear(t->v[i]);
	for (size_t k = 0; k < n; k++)
		if (json_array_append_new(t->v[i], json_string(v[k])) < 0)
			return -EINVAL;
	return 0;
}

static int put_int(struct entry_json *t, int i, int64_t n)
{
	if (json_is_integer(t->v[i]))
		return json_integer_set(t->v[i], n);
	return put(t, i, json_integer(n));
}

static int put_bool(struct entry_json *t, int i, bool b)
{
	return t->v[i] == json_boolean(b) ? 0 : put(t, i, json_boolean(b));
}

json_t *entry_json_fill(struct entry_json *t, const struct entry *e)
{
	if (put_str(t, J_ID, e->id) < 0 || put_str(t, J_SPIFFE_ID, e->spiffe_id) < 0 ||
	    put_str(t, J_PARENT_ID, e->parent_id) < 0 ||
	    put_strv(t, J_SELECTORS, e->selectors, e->n_selectors) < 0 ||
	    put_int(t, J_X509_TTL, e->x509_svid_ttl) < 0 ||
	    put_int(t, J_JWT_TTL, e->jwt_svid_ttl) < 0 ||
	    put_strv(t, J_DNS_NAMES, e->dns_names, e->n_dns_names) < 0 ||
	    put_str(t, J_HINT, e->hint) < 0 || put_bool(t, J_ADMIN, e->admin) < 0 ||
	    put_bool(t, J_DOWNSTREAM, e->downstream) < 0 ||
	    put_bool(t, J_MANAGED, e->managed) < 0 || put_int(t, J_EXPIRES_AT, e->expires_at) < 0 ||
	    put_int(t, J_REVISION, e->revision) < 0 ||
	    put_int(t, J_CREATED_AT, e->created_at) < 0 ||
	    put_strv(t, J_FEDERATES_WITH, e->federates_with, e->n_federates_with) < 0)
		return NULL;
	return t->obj;
}

json_t *entry_to_json(const struct entry *e)
{
	struct entry_json *t = entry_json_new();
	json_t *o = t ? json_incref(entry_json_fill(t, e)) : NULL;
	entry_json_free(t);
	return o;
}

/* One JSON value into one member of an entry. Each setter checks the type and names the key. */
struct field {
	const char *key;
	int (*set)(struct entry *e, const char *key, json_t *v, char *err, size_t errlen);
};

static int set_string(char **dst, const char *key, json_t *v, bool nullable, char *err, size_t errlen)
{
	if (nullable && json_is_null(v)) {
		free(*dst);
		*dst = NULL;
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\" must be a string", key);
		return -EINVAL;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "\"%s\" must not contain NUL characters", key);
		return -EINVAL;
	}
	free(*dst);
	*dst = xstrdup(json_string_value(v));
	return 0;
}

static int set_strv(char ***dst, size_t *n, const char *key, json_t *v, char *err, size_t errlen)
{
	if (!json_is_array(v)) {
		snprintf(err, errlen, "\"%s\" must be an array of strings", key);
		return -EINVAL;
	}
	size_t len = json_array_size(v);
	if (len > 4096) {
		snprintf(err, errlen, "\"%s\" has too many elements", key);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		json_t *s = json_array_get(v, i);
		if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
			snprintf(err, errlen, "\"%s\" must be an array of strings", key);
			return -EINVAL;
		}
	}
	char **out = len ? xcalloc(len, sizeof(*out)) : NULL;
	for (size_t i = 0; i < len; i++)
		out[i] = xstrdup(json_string_value(json_array_get(v, i)));
	strv_free(*dst, *n);
	*dst = out;
	*n = len;
	return 0;
}

static int get_int(json_t *v, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
		   size_t errlen)
{
	if (!json_is_integer(v)) {
		snprintf(err, errlen, "\"%s\" must be an integer", key);
		return -EINVAL;
	}
	json_int_t i = json_integer_value(v);
	if (i < min || i > max) {
		snprintf(err, errlen, "\"%s\" out of range [%lld, %lld]", key, (long long)min,
			 (long long)max);
		return -EINVAL;
	}
	*out = i;
	return 0;
}

static int set_bool(bool *dst, const char *key, json_t *v, char *err, size_t errlen)
{
	if (!json_is_boolean(v)) {
		snprintf(err, errlen, "\"%s\" must be true or false", key);
		return -EINVAL;
	}
	*dst = json_is_true(v);
	return 0;
}

static int f_id(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	if (json_is_null(v)) {
		e->id[0] = '\0';
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= sizeof(e->id) ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "\"%s\" must be an entry id string", key);
		return -EINVAL;
	}
	snprintf(e->id, sizeof(e->id), "%s", json_string_value(v));
	return 0;
}

static int f_spiffe_id(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_string(&e->spiffe_id, key, v, false, err, errlen);
}

static int f_parent_id(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_string(&e->parent_id, key, v, false, err, errlen);
}

static int f_selectors(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	int ret = set_strv(&e->selectors, &e->n_selectors, key, v, err, errlen);
	if (ret == 0)
		entry_normalize(e);
	return ret;
}

static int f_dns_names(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_strv(&e->dns_names, &e->n_dns_names, key, v, err, errlen);
}

/* Trust domain IDs are taken as their names: both spellings name the same trust domain. */
static int f_federates_with(struct entry *e, const char *key, json_t *v, char *err,
			    size_t errlen)
{
	int ret = set_strv(&e->federates_with, &e->n_federates_with, key, v, err, errlen);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < e->n_federates_with; i++) {
		char *f = e->federates_with[i];
		if (strncmp(f, "spiffe://", 9) == 0)
			memmove(f, f + 9, strlen(f + 9) + 1);
	}
	entry_normalize(e);
	return 0;
}

static int f_hint(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_string(&e->hint, key, v, true, err, errlen);
}

static int f_x509_ttl(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	int64_t i;
	if (get_int(v, key, 0, ENTRY_MAX_TTL, &i, err, errlen) < 0)
		return -EINVAL;
	e->x509_svid_ttl = (int32_t)i;
	return 0;
}

static int f_jwt_ttl(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	int64_t i;
	if (get_int(v, key, 0, ENTRY_MAX_TTL, &i, err, errlen) < 0)
		return -EINVAL;
	e->jwt_svid_ttl = (int32_t)i;
	return 0;
}

static int f_admin(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_bool(&e->admin, key, v, err, errlen);
}

/* Nested servers do not exist: an entry that claims to be one would be stored and do nothing. */
static int f_downstream(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	if (json_is_true(v)) {
		snprintf(err, errlen, "%s: downstream entries are not supported (no nested servers)",
			 key);
		return -EINVAL;
	}
	return set_bool(&e->downstream, key, v, err, errlen);
}

static int f_managed(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return set_bool(&e->managed, key, v, err, errlen);
}

static int f_expires_at(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return get_int(v, key, 0, INT64_MAX, &e->expires_at, err, errlen);
}

static int f_revision(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return get_int(v, key, 0, INT64_MAX, &e->revision, err, errlen);
}

static int f_created_at(struct entry *e, const char *key, json_t *v, char *err, size_t errlen)
{
	return get_int(v, key, 0, INT64_MAX, &e->created_at, err, errlen);
}

static const struct field fields[] = {
	{ .key = "id", .set = f_id },
	{ .key = "spiffe_id", .set = f_spiffe_id },
	{ .key = "parent_id", .set = f_parent_id },
	{ .key = "selectors", .set = f_selectors },
	{ .key = "x509_svid_ttl", .set = f_x509_ttl },
	{ .key = "jwt_svid_ttl", .set = f_jwt_ttl },
	{ .key = "dns_names", .set = f_dns_names },
	{ .key = "hint", .set = f_hint },
	{ .key = "admin", .set = f_admin },
	{ .key = "downstream", .set = f_downstream },
	{ .key = "managed", .set = f_managed },
	{ .key = "expires_at", .set = f_expires_at },
	{ .key = "revision", .set = f_revision },
	{ .key = "created_at", .set = f_created_at },
	{ .key = "federates_with", .set = f_federates_with },
};

int entry_merge_json(struct entry *dst, json_t *o, char *err, size_t errlen)
{
	if (!json_is_object(o)) {
		snprintf(err, errlen, "an entry must be a JSON object");
		return -EINVAL;
	}
	/* Work on a copy so that dst stays untouched when a later key is bad. */
	struct entry *tmp = entry_dup(dst);
	const char *key;
	json_t *v;
	int ret = 0;
	json_object_foreach(o, key, v) {
		const struct field *f = NULL;
		for (size_t i = 0; i < ARRAY_LEN(fields) && !f; i++)
			if (strcmp(fields[i].key, key) == 0)
				f = &fields[i];
		if (!f) {
			snprintf(err, errlen, "unknown key \"%.64s\"", key);
			ret = -EINVAL;
			goto out;
		}
		ret = f->set(tmp, key, v, err, errlen);
		if (ret < 0)
			goto out;
	}
	/* Swap the members in: dst gets tmp's, tmp (freed below) gets dst's old ones. */
	struct entry old = *dst;
	*dst = *tmp;
	*tmp = old;
out:
	entry_free(tmp);
	return ret;
}

int entry_from_json(json_t *o, struct entry **out, char *err, size_t errlen)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	e->refs = 1;
	int ret = entry_merge_json(e, o, err, errlen);
	if (ret < 0) {
		entry_free(e);
		return ret;
	}
	*out = e;
	return 0;
}
