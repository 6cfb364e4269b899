/* admin_api.c: the operator's HTTP/JSON API on a Unix socket (and, through admin_tls.c, on the
 * mutual-TLS listener: the same routes and handler).
 *
 * libmicrohttpd runs its own threads (one per connection); every handler runs synchronously on
 * such a thread and talks to the datastore, which serialises access itself. Authorization is
 * checked in one place (caller_allowed, from admin_api_handle_request) before any route runs: on
 * the socket only uid 0, the server's own effective uid and admin_socket_group are served; on
 * the TLS listener only admin SVID peers. The routes live in admin_entries.c, admin_agents.c and
 * admin_federation.c (admin_routes.h). */
#include "admin_api.h"
#include "admin_routes.h"
#include "admin_tls.h"

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

#include "log.h"
#include "spiffeid.h"
#include "unix_socket.h"
#include "util.h"

#define CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30
/* A request body this large (an entry batch) gives the heap back when the request is done. */
#define TRIM_AFTER_BODY (256 * 1024)

/* Per-request state, owned by MHD's connection (freed in admin_api_request_completed). */
struct request {
	char *body;
	size_t len, cap;
	bool too_big;
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

void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
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

void reply_json(struct reply *r, unsigned int status, json_t *j)
{
	if (!j) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	json_decref(r->json);
	r->status = status;
	r->json = j;
}

void notify_changed(struct call *c)
{
	if (c->api->hooks.changed)
		c->api->hooks.changed(c->api->hooks.ud);
}

/* Parses the request body as a JSON object; an empty body is {} when empty_ok. */
json_t *parse_body(struct call *c, struct reply *r, bool empty_ok)
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
bool only_keys(json_t *o, const char *const *allowed, struct reply *r)
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
const char *body_string(json_t *o, const char *key, struct reply *r)
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

const char *query(struct call *c, const char *key)
{
	return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, key);
}

/* ---- identity namespaces ---- */

/* The one place that decides whether an ID may be handed out by an operator: as the SPIFFE ID of
 * an entry (create, update and any batch form) or as a join token's alias. Refused: IDs inside
 * spiffe://<td>/lanyard (the server's and its agents' namespace) and the ID of any attested
 * agent, whatever its path. A workload holding such an ID could impersonate the server to agents
 * or be taken for that agent. Returns true when id is assignable; otherwise r holds the error. */
bool identity_assignable(struct admin_api *api, const char *what, const char *id,
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

unsigned int ds_status(int ret)
{
	switch (ret) {
	case -ENOENT: return MHD_HTTP_NOT_FOUND;
	case -EEXIST: return MHD_HTTP_CONFLICT;
	case -EINVAL: return MHD_HTTP_BAD_REQUEST;
	case -ESTALE: return MHD_HTTP_CONFLICT;
	default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* {"count": N} from a datastore count (ds_entry_count, ds_agent_count). */
void reply_count(struct call *c, struct reply *r, int (*count)(struct datastore *, int64_t *),
			const char *what)
{
	int64_t n = 0;
	if (count(c->api->ds, &n) < 0) {
		reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot count %s", what);
		return;
	}
	reply_json(r, MHD_HTTP_OK, json_pack("{s:I}", "count", (json_int_t)n));
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

static enum MHD_Result send_made(struct MHD_Connection *conn, struct reply *r)
{
	enum MHD_Result ret = MHD_queue_response(conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ret;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct reply *r)
{
	if (r->resp)
		return send_made(conn, r);
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

static bool uid_allowed(struct admin_api *api, struct MHD_Connection *conn, uid_t *uid)
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

/* The one place that decides who is served. Two kinds of callers: on the Unix socket a process
 * by its uid (root, the server's own, or admin_socket_group's members); on the mutual-TLS
 * listener an admin SVID peer (admin_tls.h: an X509-SVID of this trust domain, chaining to the
 * current bundle, of an entry marked admin), checked again on every request. On refusal, why
 * holds the reason for the 403 answer. */
static bool caller_allowed(struct admin_listener *l, struct MHD_Connection *conn, char *why,
			   size_t whylen)
{
	if (l->tls)
		return admin_tls_authorize(l->tls, conn, why, whylen) == ADMIN_TLS_OK;
	uid_t uid;
	if (uid_allowed(l->api, conn, &uid))
		return true;
	log_warnx("admin: refused a request from uid %d", (int)uid);
	snprintf(why, whylen, "permission denied");
	return false;
}

/* A batch of entries may be large; anything else is small. */
static size_t body_limit(const char *url)
{
	return strcmp(url, "/v1/entries/batch") == 0 ? ADMIN_MAX_BATCH_BODY : ADMIN_MAX_BODY;
}

enum MHD_Result admin_api_handle_request(void *cls, struct MHD_Connection *conn, const char *url,
					 const char *method, const char *version,
					 const char *upload_data, size_t *upload_data_size,
					 void **con_cls)
{
	struct admin_listener *l = cls;
	struct admin_api *api = l->api;
	struct request *req = *con_cls;

	if (!req) {
		char why[640];
		if (!caller_allowed(l, conn, why, sizeof(why)))
			return send_error_now(conn, MHD_HTTP_FORBIDDEN, why);
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

void admin_api_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				 enum MHD_RequestTerminationCode toe)
{
	struct request *req = *con_cls;
	if (!req)
		return;
	bool big = req->cap >= TRIM_AFTER_BODY;
	free(req->body);
	free(req);
	*con_cls = NULL;
	/* A batch of 10,000 entries leaves ~15 MB of freed JSON, entries and answer in this
	 * thread's malloc arena, spread so that glibc returns none of it by itself: resident for
	 * the server's lifetime otherwise. */
	if (big)
		heap_trim();
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
	api->unix_listener.api = api;

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
		0, NULL, NULL, admin_api_handle_request, &api->unix_listener,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
		MHD_OPTION_NOTIFY_COMPLETED, admin_api_request_completed, NULL,
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
