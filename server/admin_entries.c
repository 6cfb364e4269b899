/* admin_entries.c: the admin API's join token and registration entry routes (see admin_routes.h
 * for the threading contract: handlers run on libmicrohttpd's connection threads). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin_routes.h"
#include "entry.h"
#include "entry_bulk.h"
#include "entry_listing.h"
#include "spiffeid.h"
#include "log.h"
#include "util.h"

#define TOKEN_BYTES 32
#define TOKEN_TTL_MAX (365 * 86400)
#define DEFAULT_TOKEN_TTL 600

/* Everything an entry must satisfy before it is stored (create, update, batch). */
static bool entry_admissible(struct admin_api *api, const struct entry *e, struct reply *r)
{
	char err[512] = "";
	if (entry_validate(e, api->trust_domain, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		return false;
	}
	return identity_assignable(api, "spiffe_id", e->spiffe_id, r);
}

/* ---- tokens ---- */

void h_token_create(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "spiffe_id", "ttl", NULL };
	struct admin_api *api = c->api;
	uint8_t raw[TOKEN_BYTES];
	char token[2 * TOKEN_BYTES + 1];
	const char *alias = NULL;
	char why[256];
	int64_t ttl = api->hooks.default_token_ttl > 0 ? api->hooks.default_token_ttl :
		      DEFAULT_TOKEN_TTL;

	json_t *o = parse_body(c, r, true);
	if (!o || !only_keys(o, keys, r))
		goto out;
	json_t *v = json_object_get(o, "spiffe_id");
	if (v && !json_is_null(v)) {
		if (!(alias = body_string(o, "spiffe_id", r)))
			goto out;
		if (spiffeid_validate_leaf(alias, why, sizeof(why)) < 0) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid spiffe_id \"%.256s\": %s", alias,
				    why);
			goto out;
		}
		if (!spiffeid_member_of(alias, api->trust_domain)) {
			reply_error(r, MHD_HTTP_BAD_REQUEST,
				    "spiffe_id \"%.256s\" is not in trust domain \"%s\"", alias,
				    api->trust_domain);
			goto out;
		}
		if (!identity_assignable(api, "join token alias", alias, r))
			goto out;
	}
	v = json_object_get(o, "ttl");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
		    json_integer_value(v) > TOKEN_TTL_MAX) {
			reply_error(r, MHD_HTTP_BAD_REQUEST,
				    "\"ttl\" must be an integer number of seconds in [1, %d]",
				    TOKEN_TTL_MAX);
			goto out;
		}
		ttl = json_integer_value(v);
	}
	if (random_bytes(raw, sizeof(raw)) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot generate a token");
		goto out;
	}
	hex_encode(raw, sizeof(raw), token);
	int64_t expires_at = now_unix() + ttl;
	if (ds_token_create(api->ds, token, alias, expires_at) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot store the token");
		goto out;
	}
	char expires[32];
	time_format_rfc3339(expires_at, expires, sizeof(expires));
	log_info("admin: join token created (alias %s, expires at %s)", alias ? alias : "none",
		 expires);
	reply_json(r, MHD_HTTP_CREATED,
		   json_pack("{s:s, s:o, s:I}", "token", token,
			     "spiffe_id", alias ? json_string(alias) : json_null(),
			     "expires_at", (json_int_t)expires_at));
	notify_changed(c);
out:
	secure_zero(raw, sizeof(raw));
	secure_zero(token, sizeof(token));
	json_decref(o);
}

/* ---- entries ---- */

static bool entry_id_ok(const char *id)
{
	if (strlen(id) != 36)
		return false;
	for (const char *p = id; *p; p++) {
		bool dash = p - id == 8 || p - id == 13 || p - id == 18 || p - id == 23;
		if (dash ? *p != '-' : !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	}
	return true;
}

/* Entries kept by automatic registration follow their pods: a hand edit would be undone (or
 * would undo the server's), so the admin API refuses it and says where the rule lives. */
#define MANAGED_REFUSAL "entry %.64s is managed by the server (k8s_registration: it follows its " \
			"pod); change the rule in the server's configuration instead of the entry"

void h_entry_create(struct call *c, struct reply *r)
{
	struct entry *e = NULL;
	char err[512] = "";
	json_t *o = parse_body(c, r, false);
	if (!o)
		goto out;
	if (json_object_get(o, "id")) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"id\" is assigned by the server");
		goto out;
	}
	if (entry_from_json(o, &e, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		goto out;
	}
	if (e->managed) {
		reply_error(r, MHD_HTTP_FORBIDDEN, "\"managed\": only the server's k8s_registration "
			    "makes managed entries");
		goto out;
	}
	/* The datastore decides these; values fed back from an earlier output are ignored. */
	e->revision = 0;
	e->created_at = 0;
	if (!entry_admissible(c->api, e, r))
		goto out;
	int ret = ds_entry_create(c->api->ds, e, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), "%s", err);
		goto out;
	}
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("entry_id", e->id), LOG_STR("spiffe_id", e->spiffe_id),
			     LOG_STR("parent_id", e->parent_id)),
		  "admin: entry %s created (%s, parent %s)", e->id, e->spiffe_id, e->parent_id);
	reply_json(r, MHD_HTTP_CREATED, entry_to_json(e));
	notify_changed(c);
out:
	entry_free(e);
	json_decref(o);
}

struct selector_args {
	const char **v;
	size_t n;
};

static enum MHD_Result collect_selectors(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	struct selector_args *a = cls;
	if (strcmp(key, "selector") == 0 && a->n < ENTRY_MAX_SELECTORS)
		a->v[a->n++] = value ? value : "";
	return MHD_YES;
}

/* page_size and page_token, when either is given: *page_size gets the page (else 0) and f
 * where it starts. */
static bool page_args(struct call *c, struct entry_filter *f, char after_id[37],
		      size_t *page_size, struct reply *r)
{
	const char *size = query(c, "page_size"), *tok = query(c, "page_token");
	*page_size = 0;
	if (!(size && *size) && !(tok && *tok))
		return true;
	long long ps = ENTRY_PAGE_SIZE_DEFAULT;
	if (size && *size) {
		char *end = NULL;
		errno = 0;
		ps = strtoll(size, &end, 10);
		if (*end || errno || ps < 1 || ps > ENTRY_PAGE_SIZE_MAX) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "page_size \"%.32s\" must be an integer "
				    "in [1, %d]", size, ENTRY_PAGE_SIZE_MAX);
			return false;
		}
	}
	if (tok && *tok) {
		if (entry_page_token_decode(tok, &f->after_created_at, after_id) < 0) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid page_token \"%.64s\": pass the "
				    "next_page_token of the previous page as it is", tok);
			return false;
		}
		f->after_id = after_id;
	}
	*page_size = (size_t)ps;
	return true;
}

/* Streamed as it is read (entry_listing.h): a listing of 100,000 entries is never one text. */
void h_entry_list(struct call *c, struct reply *r)
{
	const char *sel[ENTRY_MAX_SELECTORS];
	struct selector_args sa = { .v = sel };
	struct entry_listing *l = NULL;
	char after_id[37];
	size_t page_size;

	MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, collect_selectors, &sa);
	struct entry_filter f = {
		.spiffe_id = query(c, "spiffe_id"),
		.parent_id = query(c, "parent_id"),
		.selectors = sel,
		.n_selectors = sa.n,
	};
	if (f.spiffe_id && !*f.spiffe_id)
		f.spiffe_id = NULL;
	if (f.parent_id && !*f.parent_id)
		f.parent_id = NULL;
	if (!page_args(c, &f, after_id, &page_size, r))
		return;
	int ret = entry_listing_new(c->api->hooks.entry_fetch, c->api->hooks.entry_fetch ?
				    c->api->hooks.ud : c->api->ds, &f, page_size, &l);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "cannot list entries");
		return;
	}
	if (!(r->resp = entry_listing_response(l))) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	r->status = MHD_HTTP_OK;
}

void h_entry_count(struct call *c, struct reply *r)
{
	reply_count(c, r, ds_entry_count, "entries");
}

/* One refused entry of a batch: {"index": i, "error": msg}. */
static void batch_error(json_t *errors, size_t i, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void batch_error(json_t *errors, size_t i, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_array_append_new(errors, json_pack("{s:I, s:s}", "index", (json_int_t)i, "error", msg));
}

/* Reads and checks every entry of a batch, as h_entry_create does one; each refusal goes to
 * errors with its index. v[i] is NULL for a refused entry. */
static void batch_parse(struct admin_api *api, json_t *arr, struct entry **v, json_t *errors)
{
	size_t i;
	json_t *item;
	json_array_foreach(arr, i, item) {
		char err[512] = "";
		struct reply scratch = { 0 };
		if (!json_is_object(item)) {
			batch_error(errors, i, "must be a JSON object");
			continue;
		}
		if (entry_from_json(item, &v[i], err, sizeof(err)) < 0) {
			batch_error(errors, i, "%s", err);
			continue;
		}
		/* As for "entry create": the server assigns these; values from "entry show" output
		 * are ignored. */
		v[i]->id[0] = '\0';
		v[i]->revision = 0;
		v[i]->created_at = 0;
		if (v[i]->managed) {
			batch_error(errors, i, "\"managed\": only the server's k8s_registration makes "
				    "managed entries");
			entry_free(v[i]);
			v[i] = NULL;
			continue;
		}
		if (!entry_admissible(api, v[i], &scratch)) {
			batch_error(errors, i, "%s", json_string_value(json_object_get(scratch.json,
										       "error")));
			entry_free(v[i]);
			v[i] = NULL;
		}
		json_decref(scratch.json);
	}
	size_t a, b;
	if (json_array_size(errors) == 0 &&
	    entry_batch_find_duplicate(v, json_array_size(arr), &a, &b))
		batch_error(errors, b, "same SPIFFE ID, parent ID and selectors as entry %zu of this "
			    "batch", a);
}

/* {"entries":[...]} in; all created in one transaction, or none, with the errors by index. */
void h_entry_batch(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "entries", NULL };
	struct entry **v = NULL;
	size_t n = 0;
	json_t *errors = json_array();
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r))
		goto out;
	json_t *arr = json_object_get(o, "entries");
	n = json_array_size(arr);
	if (!json_is_array(arr) || n == 0 || n > ENTRY_BATCH_MAX) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"entries\" must be an array of 1 to %d "
			    "entries", ENTRY_BATCH_MAX);
		goto out;
	}
	v = xcalloc(n, sizeof(*v));
	batch_parse(c->api, arr, v, errors);
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	if (json_array_size(errors) == 0) {
		char err[512] = "";
		size_t failed = SIZE_MAX;
		int ret = ds_entry_create_batch(c->api->ds, v, n, &failed, err, sizeof(err));
		if (ret == 0) {
			json_t *a = json_array();
			for (size_t i = 0; a && i < n; i++)
				json_array_append_new(a, entry_to_json(v[i]));
			log_info("admin: %zu entries created in one batch", n);
			reply_json(r, MHD_HTTP_CREATED, a ? json_pack("{s:o}", "entries", a) : NULL);
			notify_changed(c);
			goto out;
		}
		status = ds_status(ret);
		if (failed == SIZE_MAX) {
			reply_error(r, status, "cannot create the entries: %s; none was created", err);
			goto out;
		}
		batch_error(errors, failed, "%s", err);
	}
	reply_error(r, status, "%zu of %zu entries refused; none was created",
		    json_array_size(errors), n);
	json_object_set(r->json, "errors", errors);
out:
	for (size_t i = 0; v && i < n; i++)
		entry_free(v[i]);
	free(v);
	json_decref(errors);
	json_decref(o);
}

void h_entry_get(struct call *c, struct reply *r)
{
	struct entry *e = NULL;
	int ret = entry_id_ok(c->id) ? ds_entry_get(c->api->ds, c->id, &e) : -ENOENT;
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no entry with id %.64s" :
			    "cannot read entry %.64s", c->id);
		return;
	}
	reply_json(r, MHD_HTTP_OK, entry_to_json(e));
	entry_free(e);
}

void h_entry_update(struct call *c, struct reply *r)
{
	struct entry *e = NULL;
	char err[512] = "";
	json_t *o = NULL, *before = NULL;
	int ret = entry_id_ok(c->id) ? ds_entry_get(c->api->ds, c->id, &e) : -ENOENT;
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no entry with id %.64s" :
			    "cannot read entry %.64s", c->id);
		goto out;
	}
	if (e->managed) {
		reply_error(r, MHD_HTTP_FORBIDDEN, MANAGED_REFUSAL, c->id);
		goto out;
	}
	o = parse_body(c, r, false);
	if (!o)
		goto out;
	json_t *id = json_object_get(o, "id");
	if (id && !(json_is_string(id) && strcmp(json_string_value(id), c->id) == 0)) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"id\" in the body does not match the URL");
		goto out;
	}
	before = entry_to_json(e);
	if (entry_merge_json(e, o, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		goto out;
	}
	if (e->managed) {
		reply_error(r, MHD_HTTP_FORBIDDEN, "\"managed\": only the server's k8s_registration "
			    "makes managed entries");
		goto out;
	}
	if (!entry_admissible(c->api, e, r))
		goto out;
	/* Nothing changes: no new revision, no write, and agents are not told to re-sign. */
	json_t *after = entry_to_json(e);
	bool same = before && after && json_equal(before, after);
	json_decref(after);
	if (same) {
		reply_json(r, MHD_HTTP_OK, json_incref(before));
		goto out;
	}
	ret = ds_entry_update(c->api->ds, e, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: entry %s updated (%s, parent %s)", e->id, e->spiffe_id, e->parent_id);
	reply_json(r, MHD_HTTP_OK, entry_to_json(e));
	notify_changed(c);
out:
	json_decref(before);
	json_decref(o);
	entry_free(e);
}

void h_entry_delete(struct call *c, struct reply *r)
{
	struct entry *e = NULL;
	int ret = entry_id_ok(c->id) ? ds_entry_get(c->api->ds, c->id, &e) : -ENOENT;
	bool managed = ret == 0 && e->managed;
	entry_free(e);
	if (managed) {
		reply_error(r, MHD_HTTP_FORBIDDEN, MANAGED_REFUSAL, c->id);
		return;
	}
	if (ret == 0)
		ret = ds_entry_delete(c->api->ds, c->id);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no entry with id %.64s" :
			    "cannot delete entry %.64s", c->id);
		return;
	}
	log_info("admin: entry %s deleted", c->id);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "deleted", c->id));
	notify_changed(c);
}
