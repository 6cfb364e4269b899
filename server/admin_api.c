/* admin_api.c: the operator's HTTP/JSON API on a Unix socket.
 *
 * libmicrohttpd runs its own threads (one per connection); every handler runs synchronously on
 * such a thread and talks to the datastore, which serialises access itself. Authorization is
 * checked in one place (handle_request) before any route runs: only uid 0 and the server's own
 * effective uid are served. */
#include "admin_api.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "bundle.h"
#include "ca.h"
#include "entry.h"
#include "entry_bulk.h"
#include "fed_bundle.h"
#include "log.h"
#include "spiffeid.h"
#include "taint_ack.h"
#include "x509.h"
#include "unix_socket.h"
#include "util.h"

#define CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30
#define TOKEN_BYTES 32
#define TOKEN_TTL_MAX (365 * 86400)
#define DEFAULT_TOKEN_TTL 600

struct admin_api {
	struct MHD_Daemon *daemon;
	struct datastore *ds;
	struct admin_hooks hooks;
	char *trust_domain;
	char *path;
	struct stat sock_st; /* of the socket we created, for unix_socket_remove */
	uid_t euid;
	gid_t group;	/* admin_socket_group, when group_set */
	bool group_set;
};

/* Per-request state, owned by MHD's connection (freed in request_completed). */
struct request {
	char *body;
	size_t len, cap;
	bool too_big;
};

/* What a route produces: a status and either a JSON document or a text body. */
struct reply {
	unsigned int status;
	json_t *json;
	char *text;		/* malloc'd */
	const char *content_type;
	const char *allow;	/* for 405 */
};

struct call {
	struct admin_api *api;
	struct MHD_Connection *conn;
	const char *id;		/* the {id} of /v1/entries/{id}, else NULL */
	const char *body;
	size_t body_len;
};

enum method { M_GET, M_POST, M_PUT, M_DELETE, M__COUNT };
static const char *const method_names[M__COUNT] = {
	[M_GET] = "GET", [M_POST] = "POST", [M_PUT] = "PUT", [M_DELETE] = "DELETE",
};

typedef void (*handler_fn)(struct call *c, struct reply *r);

struct route {
	const char *path;
	bool prefix;		/* path is a prefix followed by an {id} */
	handler_fn by_method[M__COUNT];
};

static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(r->json);
	r->status = status;
	r->json = json_pack("{s:s}", "error", msg);
}

static void reply_json(struct reply *r, unsigned int status, json_t *j)
{
	if (!j) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	json_decref(r->json);
	r->status = status;
	r->json = j;
}

static void notify_changed(struct call *c)
{
	if (c->api->hooks.changed)
		c->api->hooks.changed(c->api->hooks.ud);
}

/* Parses the request body as a JSON object; an empty body is {} when empty_ok. */
static json_t *parse_body(struct call *c, struct reply *r, bool empty_ok)
{
	json_error_t jerr;
	if (c->body_len == 0 && empty_ok)
		return json_object();
	if (c->body_len == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "request body must be a JSON object");
		return NULL;
	}
	json_t *o = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid JSON: %s (line %d, column %d)", jerr.text,
			    jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		reply_error(r, MHD_HTTP_BAD_REQUEST, "request body must be a JSON object");
		return NULL;
	}
	return o;
}

/* Refuses keys of o that are not in allowed (NULL-terminated). */
static bool only_keys(json_t *o, const char *const *allowed, struct reply *r)
{
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(allowed[i], key) == 0;
		if (!ok) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown key \"%.64s\"", key);
			return false;
		}
	}
	return true;
}

/* A required string member of a small request object. */
static const char *body_string(json_t *o, const char *key, struct reply *r)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\" is required", key);
		return NULL;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\" must be a string", key);
		return NULL;
	}
	return json_string_value(v);
}

static const char *query(struct call *c, const char *key)
{
	return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
}

/* ---- identity namespaces ---- */

/* The one place that decides whether an ID may be handed out by an operator: as the SPIFFE ID of
 * an entry (create, update and any batch form) or as a join token's alias. Refused: IDs inside
 * spiffe://<td>/lanyard (the server's and its agents' namespace) and the ID of any attested
 * agent, whatever its path. A workload holding such an ID could impersonate the server to agents
 * or be taken for that agent. Returns true when id is assignable; otherwise r holds the error. */
static bool identity_assignable(struct admin_api *api, const char *what, const char *id,
				struct reply *r)
{
	if (spiffeid_reserved(id, api->trust_domain)) {
		reply_error(r, MHD_HTTP_FORBIDDEN,
			    "%s \"%.256s\" is reserved: spiffe://%s/%s/... belongs to the server and "
			    "its agents", what, id, api->trust_domain, SPIFFEID_RESERVED_SEGMENT);
		return false;
	}
	struct agent_record *a = NULL;
	int ret = ds_agent_get(api->ds, id, &a);
	agent_record_free(a);
	if (ret == 0) {
		reply_error(r, MHD_HTTP_FORBIDDEN,
			    "%s \"%.256s\" is the ID of an attested agent and cannot be given to "
			    "anything else", what, id);
		return false;
	}
	if (ret != -ENOENT) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
			    "cannot check %s \"%.256s\" against the attested agents", what, id);
		return false;
	}
	return true;
}

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

static void h_token_create(struct call *c, struct reply *r)
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

static unsigned int ds_status(int ret)
{
	switch (ret) {
	case -ENOENT: return MHD_HTTP_NOT_FOUND;
	case -EEXIST: return MHD_HTTP_CONFLICT;
	case -EINVAL: return MHD_HTTP_BAD_REQUEST;
	case -ESTALE: return MHD_HTTP_CONFLICT;
	default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Entries kept by automatic registration follow their pods: a hand edit would be undone (or
 * would undo the server's), so the admin API refuses it and says where the rule lives. */
#define MANAGED_REFUSAL "entry %.64s is managed by the server (k8s_registration: it follows its " \
			"pod); change the rule in the server's configuration instead of the entry"

static void h_entry_create(struct call *c, struct reply *r)
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

/* page_size and page_token, when either is given: f gets the page, *paged says so. */
static bool page_args(struct call *c, struct entry_filter *f, char after_id[37], bool *paged,
		      struct reply *r)
{
	const char *size = query(c, "page_size"), *tok = query(c, "page_token");
	*paged = (size && *size) || (tok && *tok);
	if (!*paged)
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
	/* One more than asked: whether it exists says whether there is a next page. */
	f->limit = (size_t)ps + 1;
	return true;
}

/* A growing text buffer that doubles (an entry listing can be tens of MB). */
struct textbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void textbuf_add(struct textbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* {"entries":[...]} (and "next_page_token" when next is given) as compact JSON text with a
 * final newline, each entry rendered and freed in turn: a listing of 100,000 entries never
 * holds 100,000 JSON trees at once. NULL when out of memory. */
static char *entries_text(struct entry **v, size_t n, const char *next)
{
	struct textbuf b = {0};
	textbuf_add(&b, "{\"entries\":[", 12);
	for (size_t i = 0; i < n && !b.failed; i++) {
		json_t *j = entry_to_json(v[i]);
		char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		if (!t) {
			b.failed = true;
			break;
		}
		if (i)
			textbuf_add(&b, ",", 1);
		textbuf_add(&b, t, strlen(t));
		free(t);
	}
	textbuf_add(&b, "]", 1);
	if (next) {
		json_t *tok = json_string(next);
		char *t = tok ? json_dumps(tok, JSON_ENCODE_ANY) : NULL;
		json_decref(tok);
		if (!t)
			b.failed = true;
		textbuf_add(&b, ",\"next_page_token\":", 19);
		if (t)
			textbuf_add(&b, t, strlen(t));
		free(t);
	}
	textbuf_add(&b, "}\n", 2);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

static void h_entry_list(struct call *c, struct reply *r)
{
	const char *sel[ENTRY_MAX_SELECTORS];
	struct selector_args sa = { .v = sel };
	struct entry **v = NULL;
	size_t n = 0;
	char after_id[37];
	bool paged;

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
	if (!page_args(c, &f, after_id, &paged, r))
		return;
	int ret = ds_entry_list(c->api->ds, &f, &v, &n);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "cannot list entries");
		return;
	}
	char next[ENTRY_PAGE_TOKEN_MAX] = "";
	if (paged && n == f.limit) {
		n--;
		entry_page_token_encode(v[n - 1], next);
		entry_free(v[n]);
	}
	char *text = entries_text(v, n, paged ? next : NULL);
	entry_array_free(v, n);
	if (!text) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	r->status = MHD_HTTP_OK;
	r->text = text;
	r->content_type = "application/json";
}

/* {"count": N} from a datastore count (ds_entry_count, ds_agent_count). */
static void reply_count(struct call *c, struct reply *r, int (*count)(struct datastore *, int64_t *),
			const char *what)
{
	int64_t n = 0;
	if (count(c->api->ds, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot count %s", what);
		return;
	}
	reply_json(r, MHD_HTTP_OK, json_pack("{s:I}", "count", (json_int_t)n));
}

static void h_entry_count(struct call *c, struct reply *r)
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
static void h_entry_batch(struct call *c, struct reply *r)
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

static void h_entry_get(struct call *c, struct reply *r)
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

static void h_entry_update(struct call *c, struct reply *r)
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

static void h_entry_delete(struct call *c, struct reply *r)
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

/* ---- agents ---- */

static void h_agent_list(struct call *c, struct reply *r)
{
	struct agent_record **v = NULL;
	size_t n = 0;
	if (ds_agent_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list agents");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, agent_record_to_json(v[i]));
	agent_record_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "agents", a) : NULL);
}

static void h_agent_count(struct call *c, struct reply *r)
{
	reply_count(c, r, ds_agent_count, "agents");
}

static void h_server_list(struct call *c, struct reply *r)
{
	struct server_record **v = NULL;
	size_t n = 0;
	if (ds_server_list(c->api->ds, DS_SERVER_LIVE_S, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot list the servers");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, server_record_to_json(v[i]));
	server_record_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "servers", a) : NULL);
}

static void h_agent_show(struct call *c, struct reply *r)
{
	const char *id = query(c, "spiffe_id");
	struct agent_record *a = NULL;
	if (!id || !*id) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "query parameter spiffe_id is required");
		return;
	}
	int ret = ds_agent_get(c->api->ds, id, &a);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no agent %.256s" :
			    "cannot read agent %.256s", id);
		return;
	}
	reply_json(r, MHD_HTTP_OK, agent_record_to_json(a));
	agent_record_free(a);
}

/* evict and ban: {"spiffe_id": ...} in, {"<verb>": id} out. */
static void agent_action(struct call *c, struct reply *r, bool ban)
{
	static const char *const keys[] = { "spiffe_id", NULL };
	const char *id;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)))
		goto out;
	int ret = ban ? ds_agent_set_banned(c->api->ds, id, true) : ds_agent_delete(c->api->ds, id);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no agent %.256s" :
			    "cannot update agent %.256s", id);
		goto out;
	}
	log_info("admin: agent %s %s", id, ban ? "banned" : "evicted");
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", ban ? "banned" : "evicted", id));
	notify_changed(c);
out:
	json_decref(o);
}

static void h_agent_evict(struct call *c, struct reply *r)
{
	agent_action(c, r, false);
}

static void h_agent_ban(struct call *c, struct reply *r)
{
	agent_action(c, r, true);
}

/* ---- CA authorities (ca.h; the revocation rule is taint_ack.h's) ---- */

static unsigned int ca_status(int ret)
{
	switch (ret) {
	case -ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case -EBUSY:
	case -EEXIST:
	case -EXDEV:
		return MHD_HTTP_CONFLICT;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

static bool have_ca(struct call *c, struct reply *r)
{
	if (!c->api->hooks.ca)
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the CA is not available");
	return c->api->hooks.ca != NULL;
}

static void h_authority_list(struct call *c, struct reply *r)
{
	if (have_ca(c, r))
		reply_json(r, MHD_HTTP_OK, ca_authorities_json(c->api->hooks.ca));
}

static void h_authority_prepare(struct call *c, struct reply *r)
{
	static const char *const keys[] = { NULL };
	char err[512], id[65];
	json_t *o = parse_body(c, r, true);
	if (!o || !only_keys(o, keys, r) || !have_ca(c, r))
		goto out;
	int ret = ca_prepare(c->api->hooks.ca, now_unix(), id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: authority %s prepared", id);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "prepared", id));
	notify_changed(c);
out:
	json_decref(o);
}

/* Refuses a revocation while an agent may still hold or serve an SVID of the authority. */
static bool nothing_depends(struct call *c, struct reply *r, const char *id)
{
	char err[512], **pending = NULL;
	size_t n = 0;
	int ret = ca_tainted_check(c->api->hooks.ca, id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		return false;
	}
	if (taint_ack_pending(c->api->ds, id, &pending, &n) < 0) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot read the agents");
		return false;
	}
	if (n)
		reply_error(r, MHD_HTTP_CONFLICT, "authority %s is still needed: %zu agent%s %s not "
			    "re-issued every SVID it signed (e.g. %.256s); wait for them, or evict "
			    "agents that are gone (\"agent evict\")", id, n, n == 1 ? "" : "s",
			    n == 1 ? "has" : "have", pending[0]);
	for (size_t i = 0; i < n; i++)
		free(pending[i]);
	free(pending);
	return n == 0;
}

/* activate, taint, revoke: {"id": ...} in, {"<verb>": id} out. */
static void authority_action(struct call *c, struct reply *r, const char *verb,
			     int (*fn)(struct ca *, const char *, char *, size_t))
{
	static const char *const keys[] = { "id", NULL };
	const char *id;
	char err[512];
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "id", r)) || !have_ca(c, r))
		goto out;
	if (fn == ca_revoke && !nothing_depends(c, r, id))
		goto out;
	int ret = fn(c->api->hooks.ca, id, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ca_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: authority %s %s", id, verb);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", verb, id));
	notify_changed(c);
out:
	json_decref(o);
}

static void h_authority_activate(struct call *c, struct reply *r)
{
	authority_action(c, r, "activated", ca_activate);
}

static void h_authority_taint(struct call *c, struct reply *r)
{
	authority_action(c, r, "tainted", ca_taint);
}

static void h_authority_revoke(struct call *c, struct reply *r)
{
	authority_action(c, r, "revoked", ca_revoke);
}

/* ---- federation relationships ---- */

/* The relationship document with this server's fetch state of it ("state"), when known. */
static json_t *fed_rel_json(struct call *c, const struct fed_relationship *rel)
{
	json_t *j = fed_relationship_to_json(rel);
	const struct admin_hooks *h = &c->api->hooks;
	json_t *st = h->fed_state ? h->fed_state(h->ud, rel->trust_domain) : NULL;
	if (j && st)
		json_object_set_new(j, "state", st);
	else
		json_decref(st);
	return j;
}

static void h_fed_list(struct call *c, struct reply *r)
{
	struct fed_relationship **v = NULL;
	size_t n = 0;
	if (ds_fed_rel_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list federation relationships");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, fed_rel_json(c, v[i]));
	fed_relationship_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "federations", a) : NULL);
}

/* Validates and stores o as a relationship (create or update) and replies with it. */
static void fed_store(struct call *c, struct reply *r, json_t *o, bool create)
{
	struct fed_relationship *rel = NULL;
	char err[512];
	if (fed_relationship_from_json(o, &rel, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		return;
	}
	if (strcmp(rel->trust_domain, c->api->trust_domain) == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "trust_domain %s is this server's own",
			    rel->trust_domain);
		goto out;
	}
	int ret = ds_fed_rel_put(c->api->ds, rel, create, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -EEXIST ? "trust domain %s has a federation "
			    "relationship already" : ret == -ENOENT ? "no federation relationship with "
			    "%s" : "cannot store the federation relationship with %s",
			    rel->trust_domain);
		goto out;
	}
	log_info("admin: federation relationship with %s %s (%s, %s)", rel->trust_domain,
		 create ? "created" : "updated", rel->bundle_endpoint_url,
		 fed_profile_name(rel->profile));
	reply_json(r, create ? MHD_HTTP_CREATED : MHD_HTTP_OK, fed_rel_json(c, rel));
	if (c->api->hooks.fed_refresh)
		c->api->hooks.fed_refresh(c->api->hooks.ud, rel->trust_domain);
out:
	fed_relationship_free(rel);
}

static void h_fed_create(struct call *c, struct reply *r)
{
	json_t *o = parse_body(c, r, false);
	if (o)
		fed_store(c, r, o, true);
	json_decref(o);
}

/* Members of the body replace those stored; a null member removes an optional one. */
static void h_fed_update(struct call *c, struct reply *r)
{
	struct fed_relationship *rel = NULL;
	json_t *o = parse_body(c, r, false), *cur = NULL;
	if (!o)
		return;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		goto out;
	}
	cur = fed_relationship_to_json(rel);
	if (!cur || json_object_update(cur, o) != 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		goto out;
	}
	const char *td = json_string_value(json_object_get(cur, "trust_domain"));
	if (!td || strcmp(td, c->id) != 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "the trust domain of a relationship cannot change");
		goto out;
	}
	fed_store(c, r, cur, false);
out:
	json_decref(cur);
	json_decref(o);
	fed_relationship_free(rel);
}

static void h_fed_show(struct call *c, struct reply *r)
{
	struct fed_relationship *rel = NULL;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	reply_json(r, MHD_HTTP_OK, fed_rel_json(c, rel));
	fed_relationship_free(rel);
}

static void h_fed_delete(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	int ret = ds_fed_rel_delete(c->api->ds, c->id);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	log_info("admin: federation relationship with %s deleted", c->id);
	if (h->fed_deleted)
		h->fed_deleted(h->ud, c->id);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "deleted", c->id));
	notify_changed(c);
}

/* POST /v1/federations/{td}: fetch its bundle now. */
static void h_fed_refresh(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	struct fed_relationship *rel = NULL;
	int ret = ds_fed_rel_get(c->api->ds, c->id, &rel);
	if (ret < 0) {
		reply_error(r, ds_status(ret), "no federation relationship with %.255s", c->id);
		return;
	}
	fed_relationship_free(rel);
	if (h->fed_refresh)
		h->fed_refresh(h->ud, c->id);
	reply_json(r, MHD_HTTP_ACCEPTED, json_pack("{s:s}", "refreshing", c->id));
}

/* ---- SVIDs minted by hand ("x509 mint", "jwt mint") ---- */

/* The SPIFFE ID and DNS names of a minted SVID pass the checks of an entry's (as an entry whose
 * parent is the server itself) and the identity namespaces: an admin cannot mint the server's or
 * an agent's identity. The strings stay owned by the request. */
static bool mint_id_ok(struct admin_api *api, const char *id, const char **dns, size_t n_dns,
		       struct reply *r)
{
	char parent[300], err[512] = "";
	const char *sel = "mint:admin";
	snprintf(parent, sizeof(parent), "spiffe://%s", api->trust_domain);
	struct entry e = { .spiffe_id = (char *)id, .parent_id = parent, .selectors = (char **)&sel,
			   .n_selectors = 1, .dns_names = (char **)dns, .n_dns_names = n_dns };
	if (entry_validate(&e, api->trust_domain, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", err);
		return false;
	}
	return identity_assignable(api, "spiffe_id", id, r);
}

/* "ttl": optional, in [1, MINT_TTL_MAX]. */
static bool mint_ttl(json_t *o, int64_t dflt, int64_t *ttl, struct reply *r)
{
	json_t *v = json_object_get(o, "ttl");
	*ttl = dflt;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MINT_TTL_MAX) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"ttl\" must be an integer number of seconds "
			    "in [1, %d]", MINT_TTL_MAX);
		return false;
	}
	*ttl = json_integer_value(v);
	return true;
}

/* An optional array of at most max strings under key; *v points into o. */
static bool string_array(json_t *o, const char *key, size_t max, const char **v, size_t *n,
			 struct reply *r)
{
	json_t *a = json_object_get(o, key), *x;
	size_t i;
	*n = 0;
	if (!a)
		return true;
	if (!json_is_array(a) || json_array_size(a) > max) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\" must be an array of at most %zu strings",
			    key, max);
		return false;
	}
	json_array_foreach(a, i, x) {
		if (!json_is_string(x) || !*json_string_value(x) ||
		    strlen(json_string_value(x)) != json_string_length(x)) {
			reply_error(r, MHD_HTTP_BAD_REQUEST, "\"%s\"[%zu] must be a non-empty string",
				    key, i);
			return false;
		}
		v[(*n)++] = json_string_value(x);
	}
	return true;
}

/* {"spiffe_id", "csr": base64 DER PKCS#10, "ttl"?, "dns_names"?} -> {"spiffe_id",
 * "certificate": PEM chain, "bundle": PEM, "expires_at"}. The key stays with the caller. */
static void h_mint_x509(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "spiffe_id", "csr", "ttl", "dns_names", NULL };
	const struct admin_hooks *h = &c->api->hooks;
	const char *id, *csr_b64, *dns[ENTRY_MAX_DNS_NAMES];
	size_t n_dns = 0, der_len = 0, chain_len = 0;
	uint8_t *der = NULL, *chain = NULL;
	char *cert = NULL, *bundle = NULL, err[256] = "";
	struct csr_info ci = { 0 };
	int64_t ttl, not_after = 0;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)) ||
	    !(csr_b64 = body_string(o, "csr", r)) ||
	    !string_array(o, "dns_names", ENTRY_MAX_DNS_NAMES, dns, &n_dns, r) ||
	    !mint_ttl(o, MINT_X509_TTL_DEFAULT, &ttl, r) || !mint_id_ok(c->api, id, dns, n_dns, r))
		goto out;
	if (base64_decode(csr_b64, strlen(csr_b64), &der, &der_len) < 0 ||
	    x509_csr_parse(der, der_len, &ci, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid \"csr\": %s",
			    *err ? err : "not base64");
		goto out;
	}
	if (!h->mint_x509 || !h->bundle_pem) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "minting is not available");
		goto out;
	}
	if (h->mint_x509(h->ud, id, dns, n_dns, ci.spki, ci.spki_len, ttl, &chain, &chain_len,
			 &not_after, err, sizeof(err)) < 0 ||
	    !(cert = bundle_to_pem(chain, chain_len)) || h->bundle_pem(h->ud, &bundle) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot mint: %s",
			    *err ? err : "out of memory");
		goto out;
	}
	char t[32];
	time_format_rfc3339(not_after, t, sizeof(t));
	log_info("admin: X509-SVID minted by hand for %s (expires at %s)", id, t);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s, s:s, s:s, s:I}", "spiffe_id", id,
					     "certificate", cert, "bundle", bundle ? bundle : "",
					     "expires_at", (json_int_t)not_after));
out:
	csr_info_free(&ci);
	free(der);
	free(chain);
	free(cert);
	free(bundle);
	json_decref(o);
}

/* {"spiffe_id", "audience": [...], "ttl"?} -> {"spiffe_id", "token", "expires_at"}. */
static void h_mint_jwt(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "spiffe_id", "audience", "ttl", NULL };
	const struct admin_hooks *h = &c->api->hooks;
	const char *id, *aud[MINT_MAX_AUDIENCES];
	size_t n_aud = 0;
	char *token = NULL, err[256] = "";
	int64_t ttl, exp = 0;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(id = body_string(o, "spiffe_id", r)) ||
	    !string_array(o, "audience", MINT_MAX_AUDIENCES, aud, &n_aud, r) ||
	    !mint_ttl(o, MINT_JWT_TTL_DEFAULT, &ttl, r) || !mint_id_ok(c->api, id, NULL, 0, r))
		goto out;
	if (n_aud == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "\"audience\" needs at least one audience");
		goto out;
	}
	if (!h->mint_jwt) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "minting is not available");
		goto out;
	}
	if (h->mint_jwt(h->ud, id, aud, n_aud, ttl, &token, &exp, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot mint: %s", err);
		goto out;
	}
	char t[32];
	time_format_rfc3339(exp, t, sizeof(t));
	log_info("admin: JWT-SVID minted by hand for %s (audience %s%s, expires at %s)", id, aud[0],
		 n_aud > 1 ? ", ..." : "", t);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s, s:s, s:I}", "spiffe_id", id, "token", token,
					     "expires_at", (json_int_t)exp));
out:
	if (token)
		secure_zero(token, strlen(token));
	free(token);
	json_decref(o);
}

/* ---- bundle, health ---- */

static void h_bundle(struct call *c, struct reply *r)
{
	const struct admin_hooks *h = &c->api->hooks;
	const char *format = query(c, "format");
	bool pem = !format || !*format || strcmp(format, "pem") == 0;
	char *out = NULL;
	if (!pem && strcmp(format, "spiffe") != 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown format \"%.32s\" (pem or spiffe)", format);
		return;
	}
	int (*fn)(void *, char **) = pem ? h->bundle_pem : h->bundle_spiffe_json;
	if (!fn) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the bundle is not available");
		return;
	}
	if (fn(h->ud, &out) < 0 || !out) {
		free(out);
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot build the bundle");
		return;
	}
	r->status = MHD_HTTP_OK;
	r->text = out;
	r->content_type = pem ? "text/plain" : "application/json";
}

/* ---- federated bundles ---- */

/* The trust domain a federated bundle call names ("td" or "spiffe://td"), validated and not our
 * own; NULL with r set otherwise. Points into s. */
static const char *foreign_td(struct admin_api *api, const char *s, struct reply *r)
{
	char why[256];
	if (!s || !*s) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "trust_domain is required");
		return NULL;
	}
	const char *td = strncmp(s, "spiffe://", 9) == 0 ? s + 9 : s;
	if (trust_domain_validate(td, why, sizeof(why)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid trust domain \"%.256s\": %s", s, why);
		return NULL;
	}
	if (strcmp(td, api->trust_domain) == 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "%s is this server's own trust domain: its bundle "
			    "is managed by the CA, not set by hand", td);
		return NULL;
	}
	return td;
}

static void h_fed_bundle_list(struct call *c, struct reply *r)
{
	struct fed_bundle **v = NULL;
	size_t n = 0;
	if (ds_fed_bundle_list(c->api->ds, &v, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot list federated bundles");
		return;
	}
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, fed_bundle_summary_json(v[i]));
	fed_bundle_array_free(v, n);
	reply_json(r, MHD_HTTP_OK, a ? json_pack("{s:o}", "bundles", a) : NULL);
}

/* The summary, the SPIFFE bundle document ("spiffe_bundle") and the PEM of the X.509
 * authorities ("pem"). */
static void h_fed_bundle_show(struct call *c, struct reply *r)
{
	const char *td = foreign_td(c->api, query(c, "trust_domain"), r);
	struct fed_bundle *b = NULL;
	if (!td)
		return;
	int ret = ds_fed_bundle_get(c->api->ds, td, &b);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no federated bundle for %s" :
			    "cannot read the federated bundle of %s", td);
		return;
	}
	json_t *j = fed_bundle_summary_json(b);
	char *doc = fed_bundle_to_spiffe_json(b);
	char *pem = b->x509_len ? bundle_to_pem(b->x509, b->x509_len) : xstrdup("");
	json_t *docj = doc ? json_loads(doc, 0, NULL) : NULL;
	if (j && docj && pem && json_object_set_new(j, "spiffe_bundle", docj) == 0 &&
	    json_object_set_new(j, "pem", json_string(pem)) == 0) {
		reply_json(r, MHD_HTTP_OK, j);
	} else {
		json_decref(j);
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot encode the bundle of %s", td);
	}
	free(doc);
	free(pem);
	fed_bundle_free(b);
}

/* {"trust_domain", "bundle": PEM or SPIFFE bundle document text}. Without a sequence in the
 * document, the stored one plus one: workloads see a new version. */
static void h_fed_bundle_set(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "trust_domain", "bundle", NULL };
	struct fed_bundle *b = NULL, *old = NULL;
	const char *td, *doc;
	char err[512];
	bool has_seq = false;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(td = body_string(o, "trust_domain", r)) ||
	    !(td = foreign_td(c->api, td, r)) || !(doc = body_string(o, "bundle", r)))
		goto out;
	if (fed_bundle_parse(td, doc, strlen(doc), &b, &has_seq, err, sizeof(err)) < 0) {
		reply_error(r, MHD_HTTP_BAD_REQUEST, "bundle for %s: %s", td, err);
		goto out;
	}
	if (!has_seq && ds_fed_bundle_get(c->api->ds, td, &old) == 0)
		b->sequence = old->sequence + 1;
	int ret = ds_fed_bundle_put(c->api->ds, b, err, sizeof(err));
	if (ret < 0) {
		reply_error(r, ds_status(ret), "%s", err);
		goto out;
	}
	log_info("admin: federated bundle of %s set (sequence %lld, %zu X.509 and %zu JWT "
		 "authorities)", td, (long long)b->sequence, fed_bundle_x509_count(b),
		 jwks_count(b->jwt));
	struct fed_bundle *stored = NULL;
	if (ds_fed_bundle_get(c->api->ds, td, &stored) == 0)
		reply_json(r, MHD_HTTP_OK, fed_bundle_summary_json(stored));
	else
		reply_json(r, MHD_HTTP_OK, fed_bundle_summary_json(b));
	fed_bundle_free(stored);
	notify_changed(c);
out:
	fed_bundle_free(b);
	fed_bundle_free(old);
	json_decref(o);
}

static void h_fed_bundle_delete(struct call *c, struct reply *r)
{
	static const char *const keys[] = { "trust_domain", NULL };
	const char *td;
	json_t *o = parse_body(c, r, false);
	if (!o || !only_keys(o, keys, r) || !(td = body_string(o, "trust_domain", r)) ||
	    !(td = foreign_td(c->api, td, r)))
		goto out;
	int ret = ds_fed_bundle_delete(c->api->ds, td);
	if (ret < 0) {
		reply_error(r, ds_status(ret), ret == -ENOENT ? "no federated bundle for %s" :
			    "cannot delete the federated bundle of %s", td);
		goto out;
	}
	log_info("admin: federated bundle of %s deleted", td);
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "deleted", td));
	notify_changed(c);
out:
	json_decref(o);
}

static void h_health(struct call *c, struct reply *r)
{
	if (ds_ping(c->api->ds) < 0) {
		reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "datastore not ready");
		return;
	}
	reply_json(r, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static const struct route routes[] = {
	{ .path = "/v1/tokens", .by_method = { [M_POST] = h_token_create } },
	{ .path = "/v1/entries", .by_method = { [M_GET] = h_entry_list, [M_POST] = h_entry_create } },
	/* Before the {id} route, which would take "count" and "batch" for ids. */
	{ .path = "/v1/entries/count", .by_method = { [M_GET] = h_entry_count } },
	{ .path = "/v1/entries/batch", .by_method = { [M_POST] = h_entry_batch } },
	{ .path = "/v1/entries/", .prefix = true,
	  .by_method = { [M_GET] = h_entry_get, [M_PUT] = h_entry_update,
			 [M_DELETE] = h_entry_delete } },
	{ .path = "/v1/agents", .by_method = { [M_GET] = h_agent_list } },
	{ .path = "/v1/agents/count", .by_method = { [M_GET] = h_agent_count } },
	{ .path = "/v1/agents/show", .by_method = { [M_GET] = h_agent_show } },
	{ .path = "/v1/agents/evict", .by_method = { [M_POST] = h_agent_evict } },
	{ .path = "/v1/agents/ban", .by_method = { [M_POST] = h_agent_ban } },
	{ .path = "/v1/svids/x509", .by_method = { [M_POST] = h_mint_x509 } },
	{ .path = "/v1/svids/jwt", .by_method = { [M_POST] = h_mint_jwt } },
	{ .path = "/v1/bundle", .by_method = { [M_GET] = h_bundle } },
	{ .path = "/v1/authorities", .by_method = { [M_GET] = h_authority_list } },
	{ .path = "/v1/authorities/prepare", .by_method = { [M_POST] = h_authority_prepare } },
	{ .path = "/v1/authorities/activate", .by_method = { [M_POST] = h_authority_activate } },
	{ .path = "/v1/authorities/taint", .by_method = { [M_POST] = h_authority_taint } },
	{ .path = "/v1/authorities/revoke", .by_method = { [M_POST] = h_authority_revoke } },
	{ .path = "/v1/federated_bundles", .by_method = { [M_GET] = h_fed_bundle_list } },
	{ .path = "/v1/federated_bundles/show", .by_method = { [M_GET] = h_fed_bundle_show } },
	{ .path = "/v1/federated_bundles/set", .by_method = { [M_POST] = h_fed_bundle_set } },
	{ .path = "/v1/federated_bundles/delete",
	  .by_method = { [M_POST] = h_fed_bundle_delete } },
	{ .path = "/v1/federations", .by_method = { [M_GET] = h_fed_list, [M_POST] = h_fed_create } },
	{ .path = "/v1/federations/", .prefix = true,
	  .by_method = { [M_GET] = h_fed_show, [M_POST] = h_fed_refresh, [M_PUT] = h_fed_update,
			 [M_DELETE] = h_fed_delete } },
	{ .path = "/v1/servers", .by_method = { [M_GET] = h_server_list } },
	{ .path = "/v1/health", .by_method = { [M_GET] = h_health } },
};

static void dispatch(struct call *c, const char *url, const char *method, struct reply *r)
{
	const struct route *rt = NULL;
	for (size_t i = 0; i < ARRAY_LEN(routes) && !rt; i++) {
		size_t plen = strlen(routes[i].path);
		if (routes[i].prefix) {
			if (strncmp(url, routes[i].path, plen) == 0 && url[plen] &&
			    !strchr(url + plen, '/')) {
				rt = &routes[i];
				c->id = url + plen;
			}
		} else if (strcmp(url, routes[i].path) == 0) {
			rt = &routes[i];
		}
	}
	if (!rt) {
		reply_error(r, MHD_HTTP_NOT_FOUND, "no such resource: %.128s", url);
		return;
	}
	for (int m = 0; m < M__COUNT; m++) {
		if (strcmp(method, method_names[m]) == 0 && rt->by_method[m]) {
			rt->by_method[m](c, r);
			return;
		}
	}
	/* Allow lists the methods of this route; the string table is small and static. */
	static const char *const allow_for[] = { "GET", "POST", "GET, POST", "PUT", "GET, PUT",
		"POST, PUT", "GET, POST, PUT", "DELETE", "GET, DELETE", "POST, DELETE",
		"GET, POST, DELETE", "PUT, DELETE", "GET, PUT, DELETE", "POST, PUT, DELETE",
		"GET, POST, PUT, DELETE" };
	unsigned int mask = 0;
	for (int m = 0; m < M__COUNT; m++)
		if (rt->by_method[m])
			mask |= 1u << m;
	r->allow = mask ? allow_for[mask - 1] : NULL;
	reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method %.16s not allowed on %.128s", method, url);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct reply *r)
{
	char *body = NULL;
	size_t len = 0;
	const char *ctype = "application/json";
	if (r->text) {
		body = r->text;
		r->text = NULL;
		len = strlen(body);
		ctype = r->content_type ? r->content_type : "text/plain";
	} else {
		if (!r->json) {
			r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
			r->json = json_pack("{s:s}", "error", "internal error");
		}
		body = r->json ? json_dumps(r->json, JSON_COMPACT) : NULL;
		if (body) {
			len = strlen(body);
			char *nl = realloc(body, len + 2);
			if (nl) {
				body = nl;
				body[len++] = '\n';
				body[len] = '\0';
			}
		}
	}
	json_decref(r->json);
	r->json = NULL;
	if (!body)
		return MHD_NO;
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (r->allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_error_now(struct MHD_Connection *conn, unsigned int status,
				      const char *msg)
{
	struct reply r = { 0 };
	reply_error(&r, status, "%s", msg);
	return send_reply(conn, &r);
}

/* Whether process pid (the peer, gid its primary group) is in group g: primary or supplementary
 * (the "Groups:" line of /proc/<pid>/status). */
static bool peer_in_group(pid_t pid, gid_t gid, gid_t g)
{
	if (gid == g)
		return true;
	char path[64], line[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	bool in = false;
	if (!f)
		return false;
	while (!in && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		char *p = line + 7, *end;
		for (;;) {
			errno = 0;
			unsigned long v = strtoul(p, &end, 10);
			if (end == p || errno)
				break;
			if ((gid_t)v == g)
				in = true;
			p = end;
		}
		break;
	}
	fclose(f);
	return in;
}

static bool peer_allowed(struct admin_api *api, struct MHD_Connection *conn, uid_t *uid)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct ucred cred;
	socklen_t len = sizeof(cred);
	*uid = (uid_t)-1;
	if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    len != sizeof(cred))
		return false;
	*uid = cred.uid;
	return cred.uid == 0 || cred.uid == api->euid ||
	       (api->group_set && peer_in_group(cred.pid, cred.gid, api->group));
}

/* A batch of entries may be large; anything else is small. */
static size_t body_limit(const char *url)
{
	return strcmp(url, "/v1/entries/batch") == 0 ? ADMIN_MAX_BATCH_BODY : ADMIN_MAX_BODY;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct admin_api *api = cls;
	struct request *req = *con_cls;

	if (!req) {
		uid_t uid;
		if (!peer_allowed(api, conn, &uid)) {
			log_warnx("admin: refused a request from uid %d", (int)uid);
			return send_error_now(conn, MHD_HTTP_FORBIDDEN, "permission denied");
		}
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > body_limit(url))
			return send_error_now(conn, MHD_HTTP_CONTENT_TOO_LARGE,
					      "request body too large");
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		/* Queuing on the first call would force "Connection: close" in 0.9.75. */
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->too_big || n > body_limit(url) - req->len) {
			req->too_big = true;
			free(req->body);
			req->body = NULL;
			return MHD_YES;
		}
		if (req->len + n + 1 > req->cap) {
			/* Doubling: a batch of many megabytes arrives in small pieces. */
			size_t cap = req->cap ? req->cap : 4096;
			while (cap < req->len + n + 1)
				cap *= 2;
			char *nb = realloc(req->body, cap);
			if (!nb)
				return MHD_NO;
			req->body = nb;
			req->cap = cap;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		req->body[req->len] = '\0';
		return MHD_YES;
	}
	if (req->too_big)
		return send_error_now(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");

	struct call c = { .api = api, .conn = conn, .body = req->body, .body_len = req->len };
	struct reply r = { 0 };
	dispatch(&c, url, method, &r);
	return send_reply(conn, &r);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct request *req = *con_cls;
	if (!req)
		return;
	free(req->body);
	free(req);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warnx("admin: %s", msg);
}

/* ---- socket setup ---- */

/* Only the server's own uid may connect (root can anyway), or with admin_socket_group the
 * group's members too; handlers check the caller's credentials too. */
static const struct unix_socket_opts sock_opts = {
	.who = "lanyard-server",
	.log_prefix = "admin",
	.dir_mode = 0700,
	.mode = 0600,
	.backlog = 64,
	.nonblock = false,
};

static int resolve_group(const char *name, gid_t *gid, char *err, size_t errlen)
{
	struct group gr, *res = NULL;
	char buf[16384];
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res) {
		snprintf(err, errlen, "admin_socket_group '%.64s': no such group", name);
		return -1;
	}
	*gid = res->gr_gid;
	return 0;
}

int admin_api_start(const char *socket_path, struct datastore *ds, const struct admin_hooks *hooks,
		    struct admin_api **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!socket_path || !*socket_path || !ds || !hooks || !hooks->trust_domain) {
		snprintf(err, errlen, "admin API: socket path, datastore and trust domain are required");
		return -EINVAL;
	}
	struct admin_api *api = xcalloc(1, sizeof(*api));
	api->ds = ds;
	api->hooks = *hooks;
	api->trust_domain = xstrdup(hooks->trust_domain);
	api->hooks.trust_domain = api->trust_domain;
	api->path = xstrdup(socket_path);
	api->euid = geteuid();

	struct unix_socket_opts so = sock_opts;
	if (hooks->socket_group) {
		if (resolve_group(hooks->socket_group, &api->group, err, errlen) < 0) {
			free(api->trust_domain);
			free(api->path);
			free(api);
			return -EINVAL;
		}
		api->group_set = true;
		so.mode = 0660;
		so.dir_mode = 0750;
		so.group = api->group;
		so.set_group = true;
	}
	int fd = unix_socket_listen(socket_path, &so, &api->sock_st, err, errlen);
	if (fd < 0) {
		free(api->trust_domain);
		free(api->path);
		free(api);
		return fd;
	}
	api->daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
			MHD_USE_ERROR_LOG,
		0, NULL, NULL, handle_request, api,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
		MHD_OPTION_END);
	if (!api->daemon) {
		snprintf(err, errlen, "cannot start the admin API on %s", socket_path);
		close(fd);
		unlink(socket_path);
		free(api->trust_domain);
		free(api->path);
		free(api);
		return -EIO;
	}
	log_info("admin: API listening on %s", socket_path);
	*out = api;
	return 0;
}

void admin_api_stop(struct admin_api *api)
{
	if (!api)
		return;
	/* Joins the connection threads, so no handler runs after this; closes the listen socket. */
	MHD_stop_daemon(api->daemon);
	/* Unlink only our own socket, not one a later instance may have put there. */
	unix_socket_remove(api->path, &api->sock_st);
	free(api->trust_domain);
	free(api->path);
	free(api);
}
