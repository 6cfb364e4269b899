#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "admin_api.h"
#include "cli.h"
#include "datastore.h"
#include "entry.h"
#include "util.h"

#define TD "example.org"
#define PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

struct fixture {
	char dir[64];
	char sock[160];
	char db[128];
	struct datastore *ds;
	struct admin_api *api;
	atomic_int changed;
};

static int fake_pem(void *ud, char **out)
{
	*out = xstrdup(PEM);
	return 0;
}

static int fake_spiffe(void *ud, char **out)
{
	*out = xstrdup("{\"keys\":[],\"spiffe_sequence\":1}");
	return 0;
}

static void fake_changed(void *ud)
{
	struct fixture *f = ud;
	atomic_fetch_add(&f->changed, 1);
}

static struct admin_hooks hooks_for(struct fixture *f)
{
	return (struct admin_hooks){
		.ud = f,
		.trust_domain = TD,
		.bundle_pem = fake_pem,
		.bundle_spiffe_json = fake_spiffe,
		.changed = fake_changed,
		.default_token_ttl = 600,
	};
}

static void rm_rf(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "";
	snprintf(f->dir, sizeof(f->dir), "/tmp/lanyard-admin-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	/* A parent directory that does not exist yet: admin_api_start creates it 0700. */
	snprintf(f->sock, sizeof(f->sock), "%s/run/admin.sock", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/server.db", f->dir);
	if (datastore_open_sqlite(f->db, &f->ds, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	struct admin_hooks h = hooks_for(f);
	if (admin_api_start(f->sock, f->ds, &h, &f->api, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	admin_api_stop(f->api);
	datastore_close(f->ds);
	rm_rf(f->dir);
	free(f);
	return 0;
}

struct body {
	char *data;
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	b->data = xrealloc(b->data, b->len + n + 1);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* One request over the admin socket. Returns the status; *json gets the parsed body (or NULL),
 * *raw (when not NULL) the body text. */
static long request(struct fixture *f, const char *method, const char *path, const char *body,
		    json_t **json, char **raw)
{
	CURL *c = curl_easy_init();
	struct body b = { 0 };
	struct curl_slist *h = NULL;
	char url[2048];
	long status = -1;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, f->sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (json)
		*json = b.data ? json_loads(b.data, 0, NULL) : NULL;
	if (raw)
		*raw = b.data;
	else
		free(b.data);
	return status;
}

/* Asserts the status and that the body is {"error": "...<needle>..."}. */
static void expect_error(struct fixture *f, const char *method, const char *path, const char *body,
			 long status, const char *needle)
{
	json_t *j = NULL;
	long st = request(f, method, path, body, &j, NULL);
	if (st != status)
		fprintf(stderr, "%s %s: got %ld, want %ld\n", method, path, st, status);
	assert_int_equal(st, status);
	const char *msg = json_string_value(json_object_get(j, "error"));
	assert_non_null(msg);
	if (needle && !strstr(msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", msg, needle);
	json_decref(j);
}

static json_t *create_entry(struct fixture *f, const char *body)
{
	json_t *j = NULL;
	long st = request(f, "POST", "/v1/entries", body, &j, NULL);
	assert_int_equal(st, 201);
	assert_non_null(j);
	return j;
}

/* ---- socket handling ---- */

static void socket_mode_and_dir(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char dir[160];
	assert_int_equal(stat(f->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(dir, sizeof(dir), "%s/run", f->dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	json_t *j = NULL;
	assert_int_equal(request(f, "GET", "/v1/health", NULL, &j, NULL), 200);
	json_decref(j);
}

static void second_start_refused(void **state)
{
	struct fixture *f = *state;
	struct admin_api *again = NULL;
	struct admin_hooks h = hooks_for(f);
	char err[256] = "";
	assert_int_equal(admin_api_start(f->sock, f->ds, &h, &again, err, sizeof(err)), -EADDRINUSE);
	assert_null(again);
	assert_non_null(strstr(err, "another lanyard-server is already serving on"));
	assert_non_null(strstr(err, f->sock));
	/* The running instance still serves, its socket untouched. */
	json_t *j = NULL;
	assert_int_equal(request(f, "GET", "/v1/health", NULL, &j, NULL), 200);
	json_decref(j);
}

static void stale_socket_replaced(void **state)
{
	struct fixture *f = *state;
	char path[160], err[256] = "";
	struct admin_api *api = NULL;
	struct admin_hooks h = hooks_for(f);
	snprintf(path, sizeof(path), "%s/stale.sock", f->dir);

	/* A socket file nobody listens on any more, as a crashed server leaves it. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	struct stat before;
	assert_int_equal(stat(path, &before), 0);

	assert_int_equal(admin_api_start(path, f->ds, &h, &api, err, sizeof(err)), 0);
	struct stat after;
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(after.st_mode & 0777, 0600);
	/* The new instance answers on the replaced socket. */
	char *saved = xstrdup(f->sock);
	snprintf(f->sock, sizeof(f->sock), "%s", path);
	json_t *j = NULL;
	assert_int_equal(request(f, "GET", "/v1/health", NULL, &j, NULL), 200);
	json_decref(j);
	snprintf(f->sock, sizeof(f->sock), "%s", saved);
	free(saved);
	admin_api_stop(api);
	/* Stop removes the socket. */
	assert_int_equal(stat(path, &after), -1);

	/* A regular file in the way is not removed. */
	int rf = open(path, O_CREAT | O_WRONLY, 0600);
	close(rf);
	assert_true(admin_api_start(path, f->ds, &h, &api, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(stat(path, &after), 0);
}

static void other_users_forbidden(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	/* Open the mode so that only the SO_PEERCRED check stands in the way. */
	assert_int_equal(chmod(f->sock, 0666), 0);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run", f->dir);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(f->dir, 0755), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", f->sock);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(3);
		const char *rq = "GET /v1/agents HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
		if (write(fd, rq, strlen(rq)) != (ssize_t)strlen(rq))
			_exit(4);
		char buf[512] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n <= 0)
			_exit(5);
		_exit(strncmp(buf, "HTTP/1.1 403", 12) == 0 ? 0 : 6);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- tokens ---- */

static void tokens(void **state)
{
	struct fixture *f = *state;
	json_t *j = NULL;
	int before = atomic_load(&f->changed);
	int64_t now = now_unix();

	assert_int_equal(request(f, "POST", "/v1/tokens", NULL, &j, NULL), 201);
	const char *tok = json_string_value(json_object_get(j, "token"));
	assert_non_null(tok);
	assert_int_equal(strlen(tok), 64);
	assert_true(json_is_null(json_object_get(j, "spiffe_id")));
	int64_t exp = json_integer_value(json_object_get(j, "expires_at"));
	assert_true(exp >= now + 600 && exp <= now_unix() + 600);
	char *alias = (char *)1;
	assert_int_equal(ds_token_consume(f->ds, tok, now_unix(), &alias), 0);
	assert_null(alias);
	json_decref(j);
	assert_true(atomic_load(&f->changed) > before);

	assert_int_equal(request(f, "POST", "/v1/tokens",
				 "{\"spiffe_id\":\"spiffe://" TD "/node/n1\",\"ttl\":60}", &j, NULL), 201);
	assert_string_equal(json_string_value(json_object_get(j, "spiffe_id")), "spiffe://" TD "/node/n1");
	exp = json_integer_value(json_object_get(j, "expires_at"));
	assert_true(exp >= now + 60 && exp <= now_unix() + 60);
	char *tok2 = xstrdup(json_string_value(json_object_get(j, "token")));
	json_decref(j);
	/* Two tokens differ. */
	assert_int_equal(request(f, "POST", "/v1/tokens", "{}", &j, NULL), 201);
	assert_string_not_equal(json_string_value(json_object_get(j, "token")), tok2);
	json_decref(j);
	assert_int_equal(ds_token_consume(f->ds, tok2, now_unix(), &alias), 0);
	assert_string_equal(alias, "spiffe://" TD "/node/n1");
	free(alias);
	free(tok2);

	expect_error(f, "POST", "/v1/tokens", "{\"spiffe_id\":\"spiffe://other.org/n\"}", 400, "trust domain");
	expect_error(f, "POST", "/v1/tokens", "{\"spiffe_id\":\"not-an-id\"}", 400, "invalid spiffe_id");
	expect_error(f, "POST", "/v1/tokens", "{\"spiffe_id\":\"spiffe://" TD "\"}", 400, "invalid spiffe_id");
	expect_error(f, "POST", "/v1/tokens", "{\"spiffe_id\":7}", 400, "string");
	expect_error(f, "POST", "/v1/tokens", "{\"ttl\":-5}", 400, "ttl");
	expect_error(f, "POST", "/v1/tokens", "{\"ttl\":\"1h\"}", 400, "ttl");
	expect_error(f, "POST", "/v1/tokens", "{\"bogus\":1}", 400, "unknown key \"bogus\"");
	expect_error(f, "POST", "/v1/tokens", "{\"ttl\":", 400, "invalid JSON");
	expect_error(f, "POST", "/v1/tokens", "[1]", 400, "object");
	expect_error(f, "GET", "/v1/tokens", NULL, 405, "not allowed");
}

/* ---- entries ---- */

#define E1 "{\"spiffe_id\":\"spiffe://" TD "/web\",\"parent_id\":\"spiffe://" TD "/agent/a\"," \
	   "\"selectors\":[\"unix:uid:1000\",\"unix:gid:50\"],\"x509_svid_ttl\":3600," \
	   "\"dns_names\":[\"web.example.org\"],\"hint\":\"web\"}"

static void entry_create_get_list(void **state)
{
	struct fixture *f = *state;
	int before = atomic_load(&f->changed);
	json_t *e = create_entry(f, E1);
	assert_true(atomic_load(&f->changed) > before);
	const char *id = json_string_value(json_object_get(e, "id"));
	assert_non_null(id);
	assert_int_equal(strlen(id), 36);
	assert_string_equal(json_string_value(json_object_get(e, "spiffe_id")), "spiffe://" TD "/web");
	json_t *sel = json_object_get(e, "selectors");
	assert_int_equal(json_array_size(sel), 2);
	assert_string_equal(json_string_value(json_array_get(sel, 0)), "unix:gid:50");
	assert_int_equal(json_integer_value(json_object_get(e, "x509_svid_ttl")), 3600);
	assert_int_equal(json_integer_value(json_object_get(e, "jwt_svid_ttl")), 0);
	assert_true(json_integer_value(json_object_get(e, "revision")) > 0);
	assert_true(json_integer_value(json_object_get(e, "created_at")) > 0);
	assert_true(json_is_false(json_object_get(e, "admin")));

	json_t *e2 = create_entry(f, "{\"spiffe_id\":\"spiffe://" TD "/db\",\"parent_id\":\"spiffe://"
				  TD "/agent/b\",\"selectors\":[\"unix:uid:1000\"]}");

	char path[128];
	json_t *g = NULL;
	snprintf(path, sizeof(path), "/v1/entries/%s", id);
	assert_int_equal(request(f, "GET", path, NULL, &g, NULL), 200);
	assert_true(json_equal(g, e));
	json_decref(g);

	assert_int_equal(request(f, "GET", "/v1/entries", NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 2);
	json_decref(g);

	assert_int_equal(request(f, "GET", "/v1/entries?parent_id=spiffe%3A%2F%2F" TD "%2Fagent%2Fb",
				 NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(g, "entries"), 0), "spiffe_id")),
			    "spiffe://" TD "/db");
	json_decref(g);

	assert_int_equal(request(f, "GET", "/v1/entries?spiffe_id=spiffe://" TD "/web", NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 1);
	json_decref(g);

	assert_int_equal(request(f, "GET", "/v1/entries?selector=unix:uid:1000", NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 2);
	json_decref(g);
	assert_int_equal(request(f, "GET", "/v1/entries?selector=unix:uid:1000&selector=unix:gid:50",
				 NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 1);
	json_decref(g);
	assert_int_equal(request(f, "GET", "/v1/entries?selector=unix:uid:9", NULL, &g, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(g, "entries")), 0);
	json_decref(g);

	expect_error(f, "GET", "/v1/entries/00000000-0000-4000-8000-000000000000", NULL, 404, "no entry");
	expect_error(f, "GET", "/v1/entries/not-a-uuid", NULL, 404, "no entry");
	expect_error(f, "GET", "/v1/entries/a/b", NULL, 404, "no such resource");
	expect_error(f, "PATCH", "/v1/entries", NULL, 405, "not allowed");
	expect_error(f, "GET", "/v1/nothing", NULL, 404, "no such resource");
	json_decref(e);
	json_decref(e2);
}

static void entry_create_errors(void **state)
{
	struct fixture *f = *state;
	json_t *e = create_entry(f, E1);
	int before = atomic_load(&f->changed);
	expect_error(f, "POST", "/v1/entries", E1, 409, "already exists");
	expect_error(f, "POST", "/v1/entries", E1, 409, json_string_value(json_object_get(e, "id")));
	expect_error(f, "POST", "/v1/entries", "{\"spiffe_id\":", 400, "invalid JSON");
	expect_error(f, "POST", "/v1/entries", NULL, 400, "JSON object");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"],\"colour\":\"red\"}", 400, "unknown key \"colour\"");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x/\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"]}", 400, "invalid spiffe_id");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://other.org/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"]}", 400, "trust domain");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://other.org/a\","
		     "\"selectors\":[\"a:b\"]}", 400, "trust domain");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[]}", 400, "selector");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"novalue:\"]}", 400, "type:value");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"],\"x509_svid_ttl\":\"1h\"}", 400, "x509_svid_ttl");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"],\"jwt_svid_ttl\":-1}", 400, "jwt_svid_ttl");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"],\"dns_names\":[\"bad name\"]}", 400, "dns");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD "/a\","
		     "\"selectors\":[\"a:b\"],\"admin\":\"yes\"}", 400, "admin");
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"selectors\":[\"a:b\"]}", 400, "parent_id");
	expect_error(f, "POST", "/v1/entries",
		     "{\"id\":\"x\",\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":\"spiffe://" TD
		     "/a\",\"selectors\":[\"a:b\"]}", 400, "id");
	/* Duplicate keys are bad input too. */
	expect_error(f, "POST", "/v1/entries",
		     "{\"spiffe_id\":\"spiffe://" TD "/x\",\"spiffe_id\":\"spiffe://" TD "/y\"}", 400, NULL);
	assert_int_equal(atomic_load(&f->changed), before);

	struct entry **all = NULL;
	size_t n = 0;
	assert_int_equal(ds_entry_list(f->ds, NULL, &all, &n), 0);
	assert_int_equal(n, 1);
	entry_array_free(all, n);
	json_decref(e);
}

static void entry_update_delete(void **state)
{
	struct fixture *f = *state;
	json_t *e = create_entry(f, E1);
	json_t *other = create_entry(f, "{\"spiffe_id\":\"spiffe://" TD "/db\",\"parent_id\":\"spiffe://"
				     TD "/agent/a\",\"selectors\":[\"unix:uid:1000\"]}");
	const char *id = json_string_value(json_object_get(e, "id"));
	int64_t rev = json_integer_value(json_object_get(e, "revision"));
	char path[128];
	snprintf(path, sizeof(path), "/v1/entries/%s", id);

	/* Partial: only the hint and admin change. */
	json_t *u = NULL;
	int before = atomic_load(&f->changed);
	assert_int_equal(request(f, "PUT", path, "{\"hint\":null,\"admin\":true}", &u, NULL), 200);
	assert_true(atomic_load(&f->changed) > before);
	assert_true(json_is_null(json_object_get(u, "hint")));
	assert_true(json_is_true(json_object_get(u, "admin")));
	assert_true(json_integer_value(json_object_get(u, "revision")) > rev);
	assert_true(json_equal(json_object_get(u, "selectors"), json_object_get(e, "selectors")));
	assert_int_equal(json_integer_value(json_object_get(u, "x509_svid_ttl")), 3600);
	assert_int_equal(json_integer_value(json_object_get(u, "created_at")),
			 json_integer_value(json_object_get(e, "created_at")));
	json_decref(u);

	/* Full: feeding back the GET output works (id matches, revision ignored). */
	json_t *g = NULL;
	assert_int_equal(request(f, "GET", path, NULL, &g, NULL), 200);
	json_object_set_new(g, "selectors", json_pack("[s]", "unix:uid:2000"));
	char *txt = json_dumps(g, 0);
	assert_int_equal(request(f, "PUT", path, txt, &u, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(u, "selectors")), 1);
	free(txt);
	json_decref(u);
	json_decref(g);

	/* Errors. */
	expect_error(f, "PUT", path, "{\"selectors\":[]}", 400, "selector");
	expect_error(f, "PUT", path, "{\"spiffe_id\":\"spiffe://other.org/x\"}", 400, "trust domain");
	expect_error(f, "PUT", path, "{\"nope\":1}", 400, "unknown key");
	expect_error(f, "PUT", path, "{\"id\":\"00000000-0000-4000-8000-000000000000\"}", 400, "id");
	expect_error(f, "PUT", path, "not json", 400, "invalid JSON");
	/* Turning it into a copy of the other entry. */
	expect_error(f, "PUT", path, "{\"spiffe_id\":\"spiffe://" TD "/db\",\"selectors\":[\"unix:uid:1000\"]}",
		     409, json_string_value(json_object_get(other, "id")));
	expect_error(f, "PUT", "/v1/entries/00000000-0000-4000-8000-000000000000", "{}", 404, "no entry");
	expect_error(f, "POST", path, "{}", 405, "not allowed");

	json_t *d = NULL;
	assert_int_equal(request(f, "DELETE", path, NULL, &d, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(d, "deleted")), id);
	json_decref(d);
	expect_error(f, "DELETE", path, NULL, 404, "no entry");
	expect_error(f, "GET", path, NULL, 404, "no entry");
	json_decref(e);
	json_decref(other);
}

/* Entries the server keeps for pods (k8s_registration) are not editable by hand: the attack is
 * an operator tool editing or deleting one, or minting one that looks managed. Unmanaged
 * entries stay editable. */
static void managed_entries_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", path[128];
	struct entry *e = xcalloc(1, sizeof(*e)), *g = NULL;
	e->spiffe_id = xstrdup("spiffe://" TD "/ns/prod/sa/web");
	e->parent_id = xstrdup("spiffe://" TD "/agent/a");
	e->selectors = xcalloc(1, sizeof(char *));
	e->selectors[0] = xstrdup("k8s:pod-uid:1");
	e->n_selectors = 1;
	e->managed = true;
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "/v1/entries/%s", e->id);

	expect_error(f, "PUT", path, "{\"x509_svid_ttl\":60}", 403, "managed by the server");
	expect_error(f, "PUT", path, "{\"managed\":false}", 403, "managed by the server");
	expect_error(f, "DELETE", path, NULL, 403, "managed by the server");
	assert_int_equal(ds_entry_get(f->ds, e->id, &g), 0);
	assert_true(g->managed);
	assert_int_equal(g->revision, e->revision);
	entry_free(g);
	expect_error(f, "POST", "/v1/entries", "{\"spiffe_id\":\"spiffe://" TD "/x\",\"parent_id\":"
		     "\"spiffe://" TD "/agent/a\",\"selectors\":[\"unix:uid:1\"],\"managed\":true}",
		     403, "k8s_registration");

	/* An unmanaged entry cannot be turned into a managed one, and stays editable. */
	json_t *u = create_entry(f, E1);
	snprintf(path, sizeof(path), "/v1/entries/%s", json_string_value(json_object_get(u, "id")));
	expect_error(f, "PUT", path, "{\"managed\":true}", 403, "k8s_registration");
	json_t *d = NULL;
	assert_int_equal(request(f, "DELETE", path, NULL, &d, NULL), 200);
	json_decref(d);
	json_decref(u);
	entry_free(e);
}

static void body_too_large(void **state)
{
	struct fixture *f = *state;
	size_t len = ADMIN_MAX_BODY + 100;
	char *big = xmalloc(len + 1);
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	big[len] = '\0';
	json_t *j = NULL;
	assert_int_equal(request(f, "POST", "/v1/entries", big, &j, NULL), 413);
	json_decref(j);
	free(big);
	/* The server still works afterwards. */
	assert_int_equal(request(f, "GET", "/v1/health", NULL, &j, NULL), 200);
	json_decref(j);
}

/* ---- agents ---- */

static void put_agent(struct fixture *f, const char *id)
{
	char *sel = xstrdup("join_token:x");
	struct agent_record a = { .spiffe_id = (char *)id, .attestor = "join_token",
				  .selectors = &sel, .n_selectors = 1, .not_after = 2000000000 };
	assert_int_equal(ds_agent_upsert(f->ds, &a), 0);
	free(sel);
}

static void agents(void **state)
{
	struct fixture *f = *state;
	json_t *j = NULL;
	put_agent(f, "spiffe://" TD "/agent/one");
	put_agent(f, "spiffe://" TD "/agent/two");

	assert_int_equal(request(f, "GET", "/v1/agents", NULL, &j, NULL), 200);
	assert_int_equal(json_array_size(json_object_get(j, "agents")), 2);
	json_decref(j);

	assert_int_equal(request(f, "GET", "/v1/agents/show?spiffe_id=spiffe://" TD "/agent/one", NULL,
				 &j, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(j, "attestor")), "join_token");
	assert_true(json_is_false(json_object_get(j, "banned")));
	json_decref(j);
	expect_error(f, "GET", "/v1/agents/show?spiffe_id=spiffe://" TD "/agent/none", NULL, 404, "no agent");
	expect_error(f, "GET", "/v1/agents/show", NULL, 400, "spiffe_id");

	int before = atomic_load(&f->changed);
	assert_int_equal(request(f, "POST", "/v1/agents/ban", "{\"spiffe_id\":\"spiffe://" TD "/agent/two\"}",
				 &j, NULL), 200);
	json_decref(j);
	assert_true(atomic_load(&f->changed) > before);
	struct agent_record *a = NULL;
	assert_int_equal(ds_agent_get(f->ds, "spiffe://" TD "/agent/two", &a), 0);
	assert_true(a->banned);
	agent_record_free(a);

	assert_int_equal(request(f, "POST", "/v1/agents/evict", "{\"spiffe_id\":\"spiffe://" TD "/agent/one\"}",
				 &j, NULL), 200);
	assert_string_equal(json_string_value(json_object_get(j, "evicted")), "spiffe://" TD "/agent/one");
	json_decref(j);
	assert_int_equal(ds_agent_get(f->ds, "spiffe://" TD "/agent/one", &a), -ENOENT);

	expect_error(f, "POST", "/v1/agents/evict", "{\"spiffe_id\":\"spiffe://" TD "/agent/one\"}", 404, "no agent");
	expect_error(f, "POST", "/v1/agents/ban", "{\"spiffe_id\":\"spiffe://" TD "/agent/zzz\"}", 404, "no agent");
	expect_error(f, "POST", "/v1/agents/ban", "{}", 400, "spiffe_id");
	expect_error(f, "POST", "/v1/agents/ban", "{\"spiffe_id\":1}", 400, "string");
	expect_error(f, "POST", "/v1/agents/ban", "{\"spiffe_id\":\"x\",\"why\":1}", 400, "unknown key");
	expect_error(f, "GET", "/v1/agents/evict", NULL, 405, "not allowed");
	expect_error(f, "DELETE", "/v1/agents", NULL, 405, "not allowed");
}

/* ---- bundle ---- */

static void bundle(void **state)
{
	struct fixture *f = *state;
	char *raw = NULL;
	assert_int_equal(request(f, "GET", "/v1/bundle", NULL, NULL, &raw), 200);
	assert_string_equal(raw, PEM);
	free(raw);
	assert_int_equal(request(f, "GET", "/v1/bundle?format=pem", NULL, NULL, &raw), 200);
	assert_string_equal(raw, PEM);
	free(raw);
	json_t *j = NULL;
	assert_int_equal(request(f, "GET", "/v1/bundle?format=spiffe", NULL, &j, NULL), 200);
	assert_int_equal(json_integer_value(json_object_get(j, "spiffe_sequence")), 1);
	json_decref(j);
	expect_error(f, "GET", "/v1/bundle?format=der", NULL, 400, "format");
	expect_error(f, "POST", "/v1/bundle", "{}", 405, "not allowed");
}

/* ---- CLI (cli_main against the live API) ---- */

/* Runs cli_main with stdout and stderr captured into malloc'd strings. */
static int run_cli(char **out, char **errout, ...)
{
	char *argv[64];
	va_list ap;
	int argc = 0;
	va_start(ap, errout);
	while (argc < 63 && (argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	argv[argc] = NULL;

	FILE *fo = tmpfile(), *fe = tmpfile();
	fflush(stdout);
	fflush(stderr);
	int so = dup(1), se = dup(2);
	dup2(fileno(fo), 1);
	dup2(fileno(fe), 2);
	int rc = cli_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	FILE *fs[2] = { fo, fe };
	char **dst[2] = { out, errout };
	for (int k = 0; k < 2; k++) {
		long len = ftell(fs[k]);
		char *s = xcalloc(1, (size_t)(len > 0 ? len : 0) + 1);
		rewind(fs[k]);
		if (len > 0 && fread(s, 1, (size_t)len, fs[k]) != (size_t)len)
			s[0] = '\0';
		fclose(fs[k]);
		*dst[k] = s;
	}
	/* Shown so that a failing assertion below comes with the command's own words. */
	fprintf(stderr, "cli %s %s -> %d%s%s", argv[0], argc > 1 ? argv[1] : "", rc,
		**errout ? ": " : "\n", *errout);
	return rc;
}

static void cli_commands(void **state)
{
	struct fixture *f = *state;
	char *out = NULL, *err = NULL;
	json_t *j;

	/* token generate, JSON and text. */
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--output",
				 "json", "--ttl", "1h", NULL), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "token"))), 64);
	int64_t exp = json_integer_value(json_object_get(j, "expires_at"));
	assert_true(exp > now_unix() + 3500 && exp <= now_unix() + 3600);
	json_decref(j);
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--spiffe-id",
				 "spiffe://" TD "/node/cli", NULL), 0);
	assert_non_null(strstr(out, "Token: "));
	assert_non_null(strstr(out, "spiffe://" TD "/node/cli"));
	free(out);
	free(err);

	/* entry create / show / update / delete. */
	assert_int_equal(run_cli(&out, &err, "entry", "create", "--socket", f->sock, "--output", "json",
				 "--spiffe-id", "spiffe://" TD "/cli", "--parent-id", "spiffe://" TD "/agent/a",
				 "--selector", "unix:uid:0", "--selector=unix:gid:0", "--x509-svid-ttl", "30m", NULL), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "x509_svid_ttl")), 1800);
	assert_int_equal(json_array_size(json_object_get(j, "selectors")), 2);
	char *id = xstrdup(json_string_value(json_object_get(j, "id")));
	json_decref(j);
	free(out);
	free(err);

	/* Duplicate: exit 1 with the server's message. */
	assert_int_equal(run_cli(&out, &err, "entry", "create", "--socket", f->sock,
				 "--spiffe-id", "spiffe://" TD "/cli", "--parent-id", "spiffe://" TD "/agent/a",
				 "--selector", "unix:uid:0", NULL), 0);
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "create", "--socket", f->sock,
				 "--spiffe-id", "spiffe://" TD "/cli", "--parent-id", "spiffe://" TD "/agent/a",
				 "--selector", "unix:gid:0", "--selector", "unix:uid:0", NULL), 1);
	assert_non_null(strstr(err, "already exists"));
	free(out);
	free(err);

	assert_int_equal(run_cli(&out, &err, "entry", "show", "--socket", f->sock, "--selector",
				 "unix:gid:0", NULL), 0);
	assert_non_null(strstr(out, id));
	assert_non_null(strstr(out, "1 entry"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "show", "--socket", f->sock, "--id", id,
				 "--output", "json", NULL), 0);
	j = json_loads(out, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "entries")), 1);
	json_decref(j);
	free(out);
	free(err);

	assert_int_equal(run_cli(&out, &err, "entry", "update", "--socket", f->sock, "--id", id,
				 "--hint", "cli-hint", "--admin", NULL), 0);
	assert_non_null(strstr(out, "cli-hint"));
	assert_non_null(strstr(out, "Admin"));
	free(out);
	free(err);

	assert_int_equal(run_cli(&out, &err, "entry", "delete", "--socket", f->sock, "--id", id, NULL), 0);
	assert_non_null(strstr(out, id));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "delete", "--socket", f->sock, "--id", id, NULL), 1);
	assert_non_null(strstr(err, "no entry"));
	free(out);
	free(err);
	free(id);

	/* bundle and agents. */
	assert_int_equal(run_cli(&out, &err, "bundle", "show", "--socket", f->sock, NULL), 0);
	assert_string_equal(out, PEM);
	free(out);
	free(err);
	put_agent(f, "spiffe://" TD "/agent/cli");
	assert_int_equal(run_cli(&out, &err, "agent", "list", "--socket", f->sock, NULL), 0);
	assert_non_null(strstr(out, "spiffe://" TD "/agent/cli"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "agent", "ban", "--socket", f->sock, "--spiffe-id",
				 "spiffe://" TD "/agent/cli", NULL), 0);
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "agent", "show", "--socket", f->sock, "--spiffe-id",
				 "spiffe://" TD "/agent/cli", "--output", "json", NULL), 0);
	j = json_loads(out, 0, NULL);
	assert_true(json_is_true(json_object_get(j, "banned")));
	json_decref(j);
	free(out);
	free(err);
}

static void cli_errors(void **state)
{
	struct fixture *f = *state;
	char *out = NULL, *err = NULL;
	char missing[192];
	snprintf(missing, sizeof(missing), "%s/none.sock", f->dir);

	assert_int_equal(run_cli(&out, &err, "agent", "list", "--socket", missing, NULL), 1);
	assert_non_null(strstr(err, "cannot connect to admin socket"));
	assert_non_null(strstr(err, missing));
	free(out);
	free(err);

	assert_int_equal(run_cli(&out, &err, "entry", "create", "--bogus", NULL), 1);
	assert_non_null(strstr(err, "--bogus"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "create", "--spiffe-id", "spiffe://" TD "/x",
				 "--parent-id", "spiffe://" TD "/y", NULL), 1);
	assert_non_null(strstr(err, "--selector is required"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--ttl", NULL), 1);
	assert_non_null(strstr(err, "needs a value"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--ttl", "soon", NULL), 1);
	assert_non_null(strstr(err, "soon"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--output", "yaml", NULL), 1);
	assert_non_null(strstr(err, "yaml"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "token", "generate", "--socket", f->sock, "--spiffe-id",
				 "spiffe://elsewhere.org/n", NULL), 1);
	assert_non_null(strstr(err, "trust domain"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "frobnicate", NULL), 1);
	assert_non_null(strstr(err, "frobnicate"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", NULL), 1);
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "--help", NULL), 0);
	assert_non_null(strstr(out, "create"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "create", "--help", NULL), 0);
	assert_non_null(strstr(out, "--selector"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "entry", "delete", "--socket", f->sock, "--id", "../x", NULL), 1);
	assert_non_null(strstr(err, "--id"));
	free(out);
	free(err);
	assert_int_equal(run_cli(&out, &err, "bundle", "show", "--socket", f->sock, "--format", "der", NULL), 1);
	free(out);
	free(err);
	assert_true(cli_is_command("entry"));
	assert_false(cli_is_command("run"));
}

/* ---- entry module ---- */

static void entry_json_roundtrip(void **state)
{
	char err[256] = "";
	json_t *in = json_loads(E1, 0, NULL);
	struct entry *e = NULL;
	assert_int_equal(entry_from_json(in, &e, err, sizeof(err)), 0);
	assert_int_equal(entry_validate(e, TD, err, sizeof(err)), 0);
	assert_int_equal(e->n_selectors, 2);
	assert_string_equal(e->selectors[0], "unix:gid:50");
	json_t *out = entry_to_json(e);
	struct entry *e2 = NULL;
	assert_int_equal(entry_from_json(out, &e2, err, sizeof(err)), 0);
	json_t *out2 = entry_to_json(e2);
	assert_true(json_equal(out, out2));
	json_decref(out2);
	json_decref(out);
	json_decref(in);

	/* A failed merge leaves the entry untouched. */
	json_t *bad = json_pack("{s:s, s:i}", "hint", "changed", "x509_svid_ttl", -3);
	assert_int_not_equal(entry_merge_json(e2, bad, err, sizeof(err)), 0);
	assert_string_equal(e2->hint, "web");
	json_decref(bad);

	struct entry *d = entry_dup(e);
	assert_string_equal(d->dns_names[0], "web.example.org");
	entry_free(d);
	entry_free(e2);
	entry_free(e);
}

static void entry_validation(void **state)
{
	static const struct { const char *json; const char *why; } bad[] = {
		{ "{\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"a:b\"]}", "spiffe_id is required" },
		{ "{\"spiffe_id\":\"spiffe://" TD "\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"a:b\"]}", "spiffe_id" },
		{ "{\"spiffe_id\":\"spiffe://" TD "/w\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\":b\"]}", "type:value" },
		{ "{\"spiffe_id\":\"spiffe://" TD "/w\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"ab\"]}", "type:value" },
		{ "{\"spiffe_id\":\"spiffe://" TD "/w\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"a:b\"],\"dns_names\":[\"-x.org\"]}", "dns" },
		{ "{\"spiffe_id\":\"spiffe://" TD "/w\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"a:b\"],\"dns_names\":[\"a..b\"]}", "dns" },
		{ "{\"spiffe_id\":\"spiffe://" TD "/w\",\"parent_id\":\"spiffe://" TD "/a\",\"selectors\":[\"a:b\"],\"hint\":\"a\\nb\"}", "hint" },
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char err[256] = "";
		json_t *j = json_loads(bad[i].json, 0, NULL);
		assert_non_null(j);
		struct entry *e = NULL;
		int rc = entry_from_json(j, &e, err, sizeof(err));
		if (rc == 0)
			rc = entry_validate(e, TD, err, sizeof(err));
		if (rc == 0 || !strstr(err, bad[i].why))
			fail_msg("case %zu: rc %d, err \"%s\"", i, rc, err);
		entry_free(e);
		json_decref(j);
	}
	/* The trust domain's own ID is a valid parent (node entries); wildcard DNS names pass. */
	char err[256] = "";
	json_t *j = json_loads("{\"spiffe_id\":\"spiffe://" TD "/node\",\"parent_id\":\"spiffe://" TD
			       "\",\"selectors\":[\"join_token:t\"],\"dns_names\":[\"*.svc.example.org\"]}", 0, NULL);
	struct entry *e = NULL;
	assert_int_equal(entry_from_json(j, &e, err, sizeof(err)), 0);
	assert_int_equal(entry_validate(e, TD, err, sizeof(err)), 0);
	entry_free(e);
	json_decref(j);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(socket_mode_and_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(second_start_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_socket_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(other_users_forbidden, setup, teardown),
		cmocka_unit_test_setup_teardown(tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_create_get_list, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_create_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_update_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(managed_entries_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(body_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(agents, setup, teardown),
		cmocka_unit_test_setup_teardown(bundle, setup, teardown),
		cmocka_unit_test_setup_teardown(cli_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(cli_errors, setup, teardown),
		cmocka_unit_test(entry_json_roundtrip),
		cmocka_unit_test(entry_validation),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
