/* cli_http.c: the CLI's requests to the admin API (libcurl over the admin socket) and the
 * helpers that print the answers. Single-threaded. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "admin_api.h"
#include "cli_common.h"
#include "cli_json.h"
#include "cli_mtls.h"
#include "cli_table.h"
#include "curl_dyn.h"
#include "fed_bundle.h"
#include "fed_relationship.h"
#include "keys.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

/* ---- HTTP over the admin socket ---- */

struct buf {
	char *data;
	size_t len, cap;
	bool overflow;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;
	if (n > MAX_RESPONSE - b->len) {
		b->overflow = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		/* Doubling: answers of many megabytes (a batch, a large listing) arrive in pieces. */
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nd = realloc(b->data, cap);
		if (!nd)
			return 0;
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* Performs one request: over the admin socket, or with --server-url over mutual TLS with the
 * caller's X509-SVID (cli_mtls.h). Returns 0 with the HTTP status and body (malloc'd,
 * NUL-terminated), or -1 after printing why the server could not be reached. */
int http(const struct args *a, const char *method, const char *path, const char *body,
	 long *status, char **resp)
{
	const char *socket = a->socket;
	long timeout_s = a->timeout_s;
	/* Loaded by cli_main before any command runs. */
	const struct curl_fns *cu = curl_fns_load(NULL, 0);
	CURL *c = cu->easy_init();
	struct curl_slist *hdrs = NULL;
	struct buf b = { 0 };
	char url[4096];
	int ret = -1;

	*resp = NULL;
	if (!c) {
		fail("cannot initialise libcurl");
		return -1;
	}
	if (a->mtls) {
		snprintf(url, sizeof(url), "%s%s", a->server_url, path);
		socket = a->server_url; /* for the messages */
		cli_mtls_apply(a->mtls, cu, c);
	} else {
		snprintf(url, sizeof(url), "http://localhost%s", path);
		cu->easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
	}
	cu->easy_setopt(c, CURLOPT_URL, url);
	cu->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	cu->easy_setopt(c, CURLOPT_WRITEDATA, &b);
	cu->easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(c, CURLOPT_PROXY, "");
	if (body) {
		hdrs = cu->slist_append(hdrs, "Content-Type: application/json");
		cu->easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		cu->easy_setopt(c, CURLOPT_POSTFIELDS, body);
		cu->easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = cu->easy_perform(c);
	if (rc == CURLE_COULDNT_CONNECT) {
		long oserr = 0;
		cu->easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
		fail("cannot connect to %s%s: %s", a->mtls ? "" : "admin socket ", socket,
		     oserr ? strerror((int)oserr) : cu->easy_strerror(rc));
		goto out;
	}
	if (rc != CURLE_OK) {
		fail("request to %s%s failed: %s", a->mtls ? "" : "admin socket ", socket,
		     b.overflow ? "response too large" : cu->easy_strerror(rc));
		goto out;
	}
	cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	*resp = b.data ? b.data : xstrdup("");
	b.data = NULL;
	ret = 0;
out:
	free(b.data);
	cu->slist_free_all(hdrs);
	cu->easy_cleanup(c);
	return ret;
}

/* The body of a 2xx answer (caller frees), or NULL after printing the server's error; when
 * errdoc is not NULL, it also receives the server's error document (caller's reference). */
char *call_ok(struct args *a, const char *method, const char *path, const char *body,
	      json_t **errdoc)
{
	char *resp = NULL;
	long status = 0;
	if (http(a, method, path, body, &status, &resp) < 0)
		return NULL;
	if (status >= 200 && status <= 299)
		return resp;
	json_t *j = json_loads(resp, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (msg)
		fail("%s", msg);
	else
		fail("server answered HTTP %ld", status);
	if (errdoc && json_is_object(j))
		*errdoc = json_incref(j);
	json_decref(j);
	secure_zero(resp, strlen(resp));
	free(resp);
	return NULL;
}

/* A request whose answer must be a JSON object with a 2xx status (call_ok). */
json_t *call_json_err(struct args *a, const char *method, const char *path, json_t *req,
			     json_t **errdoc)
{
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	char *resp = NULL;
	json_t *out = NULL;

	if (req && !body) {
		fail("out of memory");
		return NULL;
	}
	if (!(resp = call_ok(a, method, path, body, errdoc)))
		goto out;
	out = json_loads(resp, 0, NULL);
	if (!json_is_object(out)) {
		fail("malformed answer from the server");
		json_decref(out);
		out = NULL;
	}
out:
	free(body);
	if (resp)
		secure_zero(resp, strlen(resp)); /* may hold a minted token */
	free(resp);
	return out;
}

/* --output json of a listing: the server's text re-indented without a JSON tree (100,000
 * entries: cli_json.h). */
int print_listing_json(struct args *a, const char *path)
{
	char *resp = call_ok(a, "GET", path, NULL, NULL);
	if (!resp)
		return 1;
	size_t len = strlen(resp);
	int ret = 1;
	if (cli_json_check(resp, len) < 0 || resp[strspn(resp, " \t\r\n")] != '{')
		fail("malformed answer from the server");
	else if (cli_json_print_indented(resp, len, stdout) < 0)
		fail("cannot write the answer: %s", strerror(errno));
	else
		ret = 0;
	free(resp);
	return ret;
}

json_t *call_json(struct args *a, const char *method, const char *path, json_t *req)
{
	return call_json_err(a, method, path, req, NULL);
}

void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s) {
		puts(s);
		free(s);
	}
}

void format_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld", (long long)t);
}

const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

int64_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* GET path and the array under key in the answer (borrowed from *resp, which the caller frees);
 * NULL after printing why. */
json_t *list_call(struct args *a, const char *path, const char *key, json_t **resp)
{
	*resp = call_json(a, "GET", path, NULL);
	if (!*resp)
		return NULL;
	json_t *items = json_object_get(*resp, key);
	if (!json_is_array(items)) {
		fail("malformed answer from the server");
		json_decref(*resp);
		*resp = NULL;
		return NULL;
	}
	return items;
}

/* The width of a table column: the longest member key of items, or the heading. */
int col_width(json_t *items, const char *key, const char *head)
{
	size_t w = strlen(head), i;
	json_t *it;
	json_array_foreach(items, i, it)
		if (strlen(jstr(it, key)) > w)
			w = strlen(jstr(it, key));
	return (int)w;
}
