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

/* Where an answer's body goes as it arrives. put gets each piece with the answer's HTTP status
 * and returns 0, or -1 to abort the transfer (curl then fails with CURLE_WRITE_ERROR). perform
 * fills cu and c. */
struct body_sink {
	int (*put)(struct body_sink *k, long status, const char *p, size_t n);
	const struct curl_fns *cu;
	CURL *c;
};

/* The whole body in memory, at most MAX_RESPONSE bytes. */
struct buf {
	struct body_sink k;
	char *data;
	size_t len, cap;
	bool overflow;
};

static int buf_put(struct body_sink *k, long status, const char *p, size_t n)
{
	struct buf *b = (struct buf *)k;
	(void)status;
	if (n > MAX_RESPONSE - b->len) {
		b->overflow = true;
		return -1;
	}
	if (b->len + n + 1 > b->cap) {
		/* Doubling: answers of many megabytes (a batch) arrive in pieces. */
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nd = realloc(b->data, cap);
		if (!nd)
			return -1;
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body_sink *k = ud;
	long status = 0;
	k->cu->easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &status);
	return k->put(k, status, ptr, size * nmemb) < 0 ? 0 : size * nmemb;
}

/* Performs one request: over the admin socket, or with --server-url over mutual TLS with the
 * caller's X509-SVID (cli_mtls.h), the body going to k. Returns curl's result (the HTTP status
 * in *status when it is CURLE_OK), or -1 after printing why the request could not be made. */
static int perform(const struct args *a, const char *method, const char *path, const char *body,
		   struct body_sink *k, long *status)
{
	const char *socket = a->socket;
	/* Loaded by cli_main before any command runs. */
	const struct curl_fns *cu = curl_fns_load(NULL, 0);
	CURL *c = cu->easy_init();
	struct curl_slist *hdrs = NULL;
	char url[4096];
	int ret = -1;

	if (!c) {
		fail("cannot initialise libcurl");
		return -1;
	}
	k->cu = cu;
	k->c = c;
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
	cu->easy_setopt(c, CURLOPT_WRITEDATA, k);
	cu->easy_setopt(c, CURLOPT_TIMEOUT, a->timeout_s);
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
	if (rc == CURLE_OK)
		cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	ret = (int)rc;
out:
	cu->slist_free_all(hdrs);
	cu->easy_cleanup(c);
	return ret;
}

static void request_failed(const struct args *a, const char *why)
{
	fail("request to %s%s failed: %s", a->mtls ? "" : "admin socket ",
	     a->mtls ? a->server_url : a->socket, why);
}

/* Performs one request (perform). Returns 0 with the HTTP status and body (malloc'd,
 * NUL-terminated), or -1 after printing why the server could not be reached. */
int http(const struct args *a, const char *method, const char *path, const char *body,
	 long *status, char **resp)
{
	struct buf b = { .k.put = buf_put };
	int rc = perform(a, method, path, body, &b.k, status);
	*resp = NULL;
	if (rc > 0)
		request_failed(a, b.overflow ? "response too large" :
			       curl_fns_load(NULL, 0)->easy_strerror((CURLcode)rc));
	if (rc != 0) {
		free(b.data);
		return -1;
	}
	*resp = b.data ? b.data : xstrdup("");
	return 0;
}

/* The message of a failed answer (its "error" member, or its status) on stderr; errdoc as for
 * call_ok. */
static void answer_failed(long status, const char *resp, json_t **errdoc)
{
	json_t *j = json_loads(resp, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (msg)
		fail("%s", msg);
	else
		fail("server answered HTTP %ld", status);
	if (errdoc && json_is_object(j))
		*errdoc = json_incref(j);
	json_decref(j);
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
	answer_failed(status, resp, errdoc);
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

/* A listing's body: printed as it arrives when the answer is a success, else kept for the
 * error message. */
struct listing_sink {
	struct body_sink k;
	struct cli_json_stream *js;
	bool started;		/* a success: the body went to js */
	struct buf err;
};

static int listing_put(struct body_sink *k, long status, const char *p, size_t n)
{
	struct listing_sink *l = (struct listing_sink *)k;
	if (status < 200 || status > 299)
		return buf_put(&l->err.k, status, p, n);
	l->started = true;
	return cli_json_stream_feed(l->js, p, n);
}

/* Why a listing that began failed, after what was printed of it. */
static int listing_failed(struct listing_sink *l, const char *why)
{
	cli_json_stream_finish(l->js); /* flushes what it holds; fails again, harmlessly */
	fflush(stdout);
	if (cli_json_stream_write_failed(l->js))
		fail("cannot write the answer: %s", strerror(errno));
	else
		fail("the server's listing is incomplete or malformed: %s (what was printed of it is "
		     "incomplete; the server's log may say why)", why);
	return 1;
}

/* --output json of a listing: the server's text re-indented as it arrives, without a JSON tree
 * or the whole text in memory (100,000 entries: cli_json.h). */
int print_listing_json(struct args *a, const char *path)
{
	struct listing_sink l = { .k.put = listing_put, .err.k.put = buf_put };
	long status = 0;
	int ret = 1;
	if (!(l.js = cli_json_stream_new(stdout, true))) {
		fail("out of memory");
		return 1;
	}
	int rc = perform(a, "GET", path, NULL, &l.k, &status);
	if (rc < 0)
		goto out;
	if (!l.started && rc == CURLE_OK && (status < 200 || status > 299)) {
		answer_failed(status, l.err.data ? l.err.data : "", NULL);
		goto out;
	}
	if (rc == CURLE_WRITE_ERROR && *cli_json_stream_error(l.js)) {
		ret = listing_failed(&l, cli_json_stream_error(l.js));
		goto out;
	}
	if (rc != CURLE_OK) {
		const char *why = curl_fns_load(NULL, 0)->easy_strerror((CURLcode)rc);
		char msg[256];
		snprintf(msg, sizeof(msg), "the answer ended before the document did (%s)", why);
		if (l.started)
			ret = listing_failed(&l, msg);
		else
			request_failed(a, l.err.overflow ? "response too large" : why);
		goto out;
	}
	if (cli_json_stream_finish(l.js) < 0) {
		ret = listing_failed(&l, cli_json_stream_error(l.js));
		goto out;
	}
	ret = 0;
out:
	free(l.err.data);
	cli_json_stream_free(l.js);
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
