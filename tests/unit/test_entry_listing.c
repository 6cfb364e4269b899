/* Tests of entry_listing.c: the streamed GET /v1/entries against the rendering it replaced (one
 * jansson tree per entry, json_dumps of the whole document), over several datastore chunks, with
 * pages, filters and awkward strings; a datastore error in the middle of the stream, both from
 * entry_listing_next and through the admin API over HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "admin_api.h"
#include "datastore.h"
#include "entry.h"
#include "entry_bulk.h"
#include "entry_listing.h"
#include "util.h"

#define TD "example.org"
/* Several datastore chunks and a partial last one. */
#define N_ENTRIES (3 * ENTRY_LISTING_CHUNK + 37)

struct fixture {
	char dir[64];
	char db[128];
	char sock[160];
	struct datastore *ds;
	/* The failing fetch: calls left before it fails (-1: never). */
	int fetch_ok_calls;
	int fetch_calls;
};

static char *awkward(size_t i)
{
	/* Quotes, backslashes, control characters, non-ASCII UTF-8 (2, 3 and 4 bytes), U+2028 and
	 * a slash: jansson escapes some of them; the listing must do exactly as it does. */
	static const char *const v[] = { "plain", "quote \" and \\ backslash", "tab\tnl\ncr\r",
		"ctl \x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "sep\xe2\x80\xa8",
		"a/b</script>" };
	return xstrdup(v[i % (sizeof(v) / sizeof(v[0]))]);
}

static struct entry *make_entry(size_t i)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	char buf[128];
	e->refs = 1;
	snprintf(buf, sizeof(buf), "spiffe://" TD "/w/%zu", i);
	e->spiffe_id = xstrdup(buf);
	snprintf(buf, sizeof(buf), "spiffe://" TD "/node/%zu", i % 3);
	e->parent_id = xstrdup(buf);
	e->n_selectors = 1 + i % 3;
	e->selectors = xcalloc(e->n_selectors, sizeof(char *));
	for (size_t k = 0; k < e->n_selectors; k++) {
		snprintf(buf, sizeof(buf), "unix:%s:%zu", k == 0 ? "uid" : k == 1 ? "gid" : "path",
			 k == 0 ? i : 7 * k);
		e->selectors[k] = xstrdup(buf);
	}
	if (i % 5 == 0) {
		e->n_dns_names = 2;
		e->dns_names = xcalloc(2, sizeof(char *));
		e->dns_names[0] = xstrdup("a.example.org");
		e->dns_names[1] = xstrdup("*.b.example.org");
	}
	if (i % 2)
		e->hint = awkward(i / 2);
	if (i % 7 == 0) {
		e->n_federates_with = 1;
		e->federates_with = xcalloc(1, sizeof(char *));
		e->federates_with[0] = xstrdup("two.test");
	}
	e->x509_svid_ttl = (int32_t)(i % 4) * 3600;
	e->jwt_svid_ttl = (int32_t)(i % 3) * 300;
	e->admin = i % 11 == 0;
	e->downstream = i % 13 == 0;
	e->expires_at = i % 17 == 0 ? 4102444800 : 0;
	/* Several entries per second, as a batch makes them: the order falls back to the id. */
	e->created_at = 1700000000 + (int64_t)(i / 10);
	return e;
}

static int group_setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char err[256] = "";
	snprintf(f->dir, sizeof(f->dir), "/tmp/lanyard-listing-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/server.db", f->dir);
	snprintf(f->sock, sizeof(f->sock), "%s/admin.sock", f->dir);
	if (datastore_open_sqlite(f->db, &f->ds, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	struct entry **v = xcalloc(N_ENTRIES, sizeof(*v));
	for (size_t i = 0; i < N_ENTRIES; i++)
		v[i] = make_entry(i);
	size_t failed = 0;
	int ret = ds_entry_create_batch(f->ds, v, N_ENTRIES, &failed, err, sizeof(err));
	entry_array_free(v, N_ENTRIES);
	if (ret < 0) {
		fprintf(stderr, "batch: %s (entry %zu)\n", err, failed);
		return -1;
	}
	f->fetch_ok_calls = -1;
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *f = *state;
	datastore_close(f->ds);
	unlink(f->db);
	char p[160];
	snprintf(p, sizeof(p), "%s-wal", f->db);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->db);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* The rendering the listing replaced: every matching entry read at once, one jansson tree per
 * entry, the whole document dumped compact, with a newline (page_size 0: no page). */
static char *old_rendering(struct datastore *ds, const struct entry_filter *filter,
			   size_t page_size)
{
	struct entry_filter f = *filter;
	struct entry **v = NULL;
	size_t n = 0;
	char next[ENTRY_PAGE_TOKEN_MAX] = "";
	f.limit = page_size ? page_size + 1 : 0;
	assert_int_equal(ds_entry_list(ds, &f, &v, &n), 0);
	if (page_size && n == page_size + 1) {
		entry_page_token_encode(v[page_size - 1], next);
		entry_free(v[page_size]);
		n = page_size;
	}
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_array_append_new(a, entry_to_json(v[i])), 0);
	entry_array_free(v, n);
	json_t *doc = json_pack("{s:o}", "entries", a);
	if (page_size)
		json_object_set_new(doc, "next_page_token", json_string(next));
	char *t = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	size_t len = strlen(t);
	t = xrealloc(t, len + 2);
	memcpy(t + len, "\n", 2);
	return t;
}

/* The whole document entry_listing_next gives; *ret: 0, or its error. */
static char *drain(struct entry_listing *l, int *ret)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	const char *p;
	ssize_t n;
	*ret = 0;
	/* Bounded: a listing of N_ENTRIES gives fewer pieces than this. */
	for (int i = 0; i < 4 * N_ENTRIES; i++) {
		if ((n = entry_listing_next(l, &p)) <= 0) {
			*ret = (int)n;
			break;
		}
		if (len + (size_t)n + 1 > cap) {
			cap = 2 * (len + (size_t)n + 1);
			out = xrealloc(out, cap);
		}
		memcpy(out + len, p, (size_t)n);
		len += (size_t)n;
		out[len] = '\0';
	}
	return out ? out : xstrdup("");
}

static char *listing(struct fixture *f, const struct entry_filter *filter, size_t page_size)
{
	struct entry_listing *l = NULL;
	int ret;
	assert_int_equal(entry_listing_new(NULL, f->ds, filter, page_size, &l), 0);
	char *t = drain(l, &ret);
	assert_int_equal(ret, 0);
	/* After the end it stays at the end. */
	const char *p;
	assert_int_equal(entry_listing_next(l, &p), 0);
	entry_listing_free(l);
	return t;
}

static void expect_same(struct fixture *f, const struct entry_filter *filter, size_t page_size)
{
	char *want = old_rendering(f->ds, filter, page_size);
	char *got = listing(f, filter, page_size);
	if (strcmp(want, got) != 0)
		fail_msg("page_size %zu: the streamed listing (%zu bytes) differs from the old "
			 "rendering (%zu bytes)", page_size, strlen(got), strlen(want));
	free(want);
	free(got);
}

static void test_all_entries_as_before(void **state)
{
	struct fixture *f = *state;
	struct entry_filter all = { 0 };
	expect_same(f, &all, 0);
	char *t = listing(f, &all, 0);
	json_t *j = json_loads(t, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "entries")), N_ENTRIES);
	json_decref(j);
	free(t);
}

static void test_filters_as_before(void **state)
{
	struct fixture *f = *state;
	const char *sel[] = { "unix:gid:7" };
	const char *sel_none[] = { "unix:uid:999999" };
	struct entry_filter by_parent = { .parent_id = "spiffe://" TD "/node/1" };
	struct entry_filter by_sel = { .selectors = sel, .n_selectors = 1 };
	struct entry_filter both = { .parent_id = "spiffe://" TD "/node/2", .selectors = sel,
				     .n_selectors = 1 };
	struct entry_filter by_id = { .spiffe_id = "spiffe://" TD "/w/600" };
	struct entry_filter none = { .selectors = sel_none, .n_selectors = 1 };
	expect_same(f, &by_parent, 0);
	expect_same(f, &by_sel, 0);
	expect_same(f, &both, 0);
	expect_same(f, &by_id, 0);
	expect_same(f, &none, 0);
	expect_same(f, &by_sel, 100);
	expect_same(f, &none, 10);
}

/* Pages of sizes around the chunk, followed to the end: as before, and every entry once (small
 * pages: the first few only). */
static void test_pages_as_before(void **state)
{
	struct fixture *f = *state;
	const size_t sizes[] = { 1, 7, ENTRY_LISTING_CHUNK - 1, ENTRY_LISTING_CHUNK,
				 ENTRY_LISTING_CHUNK + 1, 1000, N_ENTRIES - 1, N_ENTRIES,
				 N_ENTRIES + 1 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct entry_filter pf = { 0 };
		char after[37];
		size_t seen = 0;
		bool whole = sizes[s] >= 100;
		for (int page = 0; page < (whole ? N_ENTRIES : 5); page++) {
			expect_same(f, &pf, sizes[s]);
			char *t = listing(f, &pf, sizes[s]);
			json_t *j = json_loads(t, 0, NULL);
			free(t);
			assert_non_null(j);
			seen += json_array_size(json_object_get(j, "entries"));
			const char *tok = json_string_value(json_object_get(j, "next_page_token"));
			assert_non_null(tok);
			if (!*tok) {
				json_decref(j);
				break;
			}
			assert_int_equal(entry_page_token_decode(tok, &pf.after_created_at, after), 0);
			pf.after_id = after;
			json_decref(j);
		}
		if (whole)
			assert_int_equal(seen, N_ENTRIES);
	}
}

/* ds_entry_list, failing after fetch_ok_calls calls. */
static int failing_fetch(void *ud, const struct entry_filter *flt, struct entry ***out, size_t *n)
{
	struct fixture *f = ud;
	if (f->fetch_ok_calls >= 0 && f->fetch_calls++ >= f->fetch_ok_calls)
		return -EIO;
	return ds_entry_list(f->ds, flt, out, n);
}

static void test_error_mid_stream(void **state)
{
	struct fixture *f = *state;
	struct entry_listing *l = NULL;
	struct entry_filter all = { 0 };
	int ret;

	/* The first chunk fails: nothing sent, the caller answers with an error status. */
	f->fetch_ok_calls = 0;
	f->fetch_calls = 0;
	assert_int_equal(entry_listing_new(failing_fetch, f, &all, 0, &l), -EIO);

	/* The third: two chunks of entries, then an error and a document that does not parse. */
	f->fetch_ok_calls = 2;
	f->fetch_calls = 0;
	assert_int_equal(entry_listing_new(failing_fetch, f, &all, 0, &l), 0);
	char *t = drain(l, &ret);
	assert_true(ret < 0);
	const char *p;
	assert_true(entry_listing_next(l, &p) < 0);
	entry_listing_free(l);
	size_t len = strlen(t);
	assert_true(len > 2 * ENTRY_LISTING_CHUNK * 100);
	assert_true(t[len - 1] == '}'); /* the last entry complete, the document not */
	json_error_t je;
	json_t *j = json_loads(t, 0, &je);
	assert_null(j);
	free(t);
}

/* GET path over the admin socket: curl's result, the status, the body. */
static CURLcode get(struct fixture *f, const char *path, long *status, char **body)
{
	CURL *c = curl_easy_init();
	char url[512];
	size_t len = 0;
	/* libcurl's own write function (fwrite) into a memory stream. */
	FILE *out = open_memstream(body, &len);
	assert_non_null(out);
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, f->sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	CURLcode rc = curl_easy_perform(c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	assert_int_equal(fclose(out), 0);
	return rc;
}

/* Through the admin API over HTTP: the listing as before; an error in the middle ends the
 * response with an error the client sees; an error at once is a 500 with a message. */
static void test_over_http(void **state)
{
	struct fixture *f = *state;
	struct admin_api *api = NULL;
	char err[256] = "";
	struct admin_hooks h = { .ud = f, .trust_domain = TD, .entry_fetch = failing_fetch };
	struct entry_filter all = { 0 };
	long status;
	char *body;

	assert_int_equal(admin_api_start(f->sock, f->ds, &h, &api, err, sizeof(err)), 0);
	f->fetch_ok_calls = -1;
	assert_int_equal(get(f, "/v1/entries", &status, &body), CURLE_OK);
	assert_int_equal(status, 200);
	char *want = old_rendering(f->ds, &all, 0);
	assert_string_equal(body, want);
	free(want);
	free(body);

	f->fetch_ok_calls = 2;
	f->fetch_calls = 0;
	CURLcode rc = get(f, "/v1/entries", &status, &body);
	printf("# a listing cut short by the datastore: curl says \"%s\" after %zu bytes\n",
	       curl_easy_strerror(rc), strlen(body));
	assert_int_not_equal(rc, CURLE_OK);
	assert_true(strlen(body) > 0);
	assert_null(json_loads(body, 0, NULL));
	free(body);

	f->fetch_ok_calls = 0;
	f->fetch_calls = 0;
	assert_int_equal(get(f, "/v1/entries?page_size=10", &status, &body), CURLE_OK);
	assert_int_equal(status, 500);
	assert_non_null(strstr(body, "cannot list entries"));
	free(body);

	/* The server still answers afterwards. */
	f->fetch_ok_calls = -1;
	assert_int_equal(get(f, "/v1/entries?page_size=3", &status, &body), CURLE_OK);
	assert_int_equal(status, 200);
	json_t *j = json_loads(body, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "entries")), 3);
	json_decref(j);
	free(body);
	admin_api_stop(api);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_entries_as_before),
		cmocka_unit_test(test_filters_as_before),
		cmocka_unit_test(test_pages_as_before),
		cmocka_unit_test(test_error_mid_stream),
		cmocka_unit_test(test_over_http),
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int ret = cmocka_run_group_tests(tests, group_setup, group_teardown);
	curl_global_cleanup();
	return ret;
}
