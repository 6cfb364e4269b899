/* cli_json.c: the CLI prints a listing's compact JSON exactly as jansson's JSON_INDENT(2) dump
 * of the parsed document would look (nested, empty, escaped and Unicode values), whatever the
 * pieces the text arrives in (a stream), and refuses truncated or unbalanced answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli_json.h"

/* What the CLI printed before: the parsed document dumped with JSON_INDENT(2), and puts. */
static char *jansson_indented(const char *compact)
{
	json_t *j = json_loads(compact, 0, NULL);
	assert_non_null(j);
	char *s = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	assert_non_null(s);
	char *out = malloc(strlen(s) + 2);
	assert_non_null(out);
	strcpy(out, s);
	strcat(out, "\n");
	free(s);
	return out;
}

static char *reindented(const char *text)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(cli_json_print_indented(text, strlen(text), f), 0);
	fclose(f);
	return buf;
}

/* The server's text: the document as its jansson renders it (compact, UTF-8 unescaped). */
static char *server_text(const char *doc)
{
	json_t *j = json_loads(doc, 0, NULL);
	assert_non_null(j);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	assert_non_null(s);
	return s;
}

static const char *const docs[] = {
	"{\"entries\":[]}\n",
	"{}",
	"[]",
	"{\"entries\":[{\"id\":\"a\",\"selectors\":[\"unix:uid:1\",\"k8s:ns:x\"],\"ttl\":0,"
	"\"admin\":false,\"dns_names\":[],\"hint\":null,\"x\":{}}],"
	"\"next_page_token\":\"t\"}\n",
	"{\"s\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n u \\u0001 \\u00e9 "
	"\\u2026 brackets {}[],: \",\"n\":-12,\"big\":9007199254740993,\"t\":true}",
	"[[[]],[{}],{\"a\":[1,2,{\"b\":[[3]]}]}]",
};

static void same_as_jansson(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		char *text = server_text(docs[i]);
		char *want = jansson_indented(text);
		char *got = reindented(text);
		assert_string_equal(got, want);
		assert_int_equal(cli_json_check(text, strlen(text)), 0);
		free(text);
		free(want);
		free(got);
	}
	/* Whitespace between the tokens (another renderer) does not matter. */
	const char *spaced = "  {\"spaced\" : [ 1 , {} , [ ] ],\n \"e\": { } }  \n";
	char *want = jansson_indented(spaced);
	char *got = reindented(spaced);
	assert_string_equal(got, want);
	assert_int_equal(cli_json_check(spaced, strlen(spaced)), 0);
	free(want);
	free(got);
}

static const char *const bad[] = {
	"",
	"   ",
	"\"just a string\"",
	"42",
	"{\"entries\":[{\"id\":\"a\"}",       /* truncated */
	"{\"entries\":[{\"id\":\"a\"}]",      /* one bracket short */
	"{\"entries\":[{\"id\":\"a}]}",       /* the string never ends */
	"{\"entries\":[}]}",                  /* mismatched */
	"{\"a\":1}}",                         /* one too many */
	"{\"a\":1} {\"b\":2}",                /* something after it */
	"{\"a\":\"raw\nnewline\"}",           /* control character in a string */
};

static void refuses_incomplete(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cli_json_check(bad[i], strlen(bad[i])) != -1)
			fail_msg("accepted: %s", bad[i]);
}

/* Deep nesting beyond the check's limit is refused, not overflowed. */
static void deep_nesting(void **state)
{
	(void)state;
	size_t n = 5000;
	char *s = malloc(2 * n + 1);
	assert_non_null(s);
	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\0';
	assert_int_equal(cli_json_check(s, 2 * n), -1);
	free(s);
}

/* text through a stream in pieces of at most step bytes, the first one first bytes long. */
static char *streamed(const char *text, size_t len, size_t first, size_t step, int *ret)
{
	char *buf = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&buf, &blen);
	assert_non_null(f);
	struct cli_json_stream *s = cli_json_stream_new(f, false);
	assert_non_null(s);
	*ret = 0;
	for (size_t off = 0, n = first; off < len && *ret == 0; off += n, n = step) {
		if (n > len - off)
			n = len - off;
		*ret = cli_json_stream_feed(s, text + off, n);
	}
	if (*ret == 0)
		*ret = cli_json_stream_finish(s);
	if (*ret == 0)
		assert_string_equal(cli_json_stream_error(s), "");
	else
		assert_true(strlen(cli_json_stream_error(s)) > 0);
	cli_json_stream_free(s);
	fclose(f);
	return buf;
}

/* Every split of each document in two, and byte by byte: the same output as in one piece. */
static void stream_pieces(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		char *text = server_text(docs[i]);
		size_t len = strlen(text);
		char *want = jansson_indented(text);
		int ret;
		for (size_t cut = 0; cut <= len; cut++) {
			char *got = streamed(text, len, cut, len, &ret);
			assert_int_equal(ret, 0);
			assert_string_equal(got, want);
			free(got);
		}
		char *got = streamed(text, len, 1, 1, &ret);
		assert_int_equal(ret, 0);
		assert_string_equal(got, want);
		free(got);
		free(text);
		free(want);
	}
}

/* A truncated, unbalanced or trailing text fails in a stream too, fed byte by byte. */
static void stream_refuses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret;
		free(streamed(bad[i], strlen(bad[i]), 1, 1, &ret));
		if (ret != -1)
			fail_msg("accepted: %s", bad[i]);
	}
	/* A listing must be an object: an array is refused before anything is printed. */
	char *buf = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&buf, &blen);
	struct cli_json_stream *s = cli_json_stream_new(f, true);
	assert_int_equal(cli_json_stream_feed(s, " [{}]", 5), -1);
	assert_int_equal(cli_json_stream_finish(s), -1);
	assert_non_null(strstr(cli_json_stream_error(s), "not a JSON object"));
	cli_json_stream_free(s);
	fclose(f);
	assert_int_equal(blen, 0);
	free(buf);
}

/* A listing of thousands of entries with awkward strings, in pieces of an odd size (pieces
 * split strings, escapes and UTF-8 sequences): byte for byte what jansson prints. */
static void stream_large(void **state)
{
	(void)state;
	json_t *a = json_array();
	for (int i = 0; i < 20000; i++) {
		char id[64];
		snprintf(id, sizeof(id), "spiffe://example.org/w/%d", i);
		json_array_append_new(a, json_pack("{s:s, s:[s, s], s:s?, s:[], s:I, s:b, s:{}}",
						   "spiffe_id", id, "selectors", "unix:uid:1",
						   "k8s:ns:\"q\"\\", "hint",
						   i % 3 ? "caf\xc3\xa9 \xe2\x80\xa8 \x01\t/" : NULL,
						   "dns_names", "n", (json_int_t)i * -7, "admin", i % 2,
						   "o"));
	}
	json_t *doc = json_pack("{s:o, s:s}", "entries", a, "next_page_token", "");
	char *text = json_dumps(doc, JSON_COMPACT);
	char *want = json_dumps(doc, JSON_INDENT(2));
	json_decref(doc);
	assert_non_null(text);
	assert_non_null(want);
	want = realloc(want, strlen(want) + 2);
	strcat(want, "\n");
	int ret;
	char *got = streamed(text, strlen(text), 4093, 4093, &ret);
	assert_int_equal(ret, 0);
	assert_int_equal(strlen(got), strlen(want));
	assert_true(strcmp(got, want) == 0);
	free(got);
	/* Cut anywhere before its end, it is refused. */
	free(streamed(text, strlen(text) - 2, 4093, 4093, &ret));
	assert_int_equal(ret, -1);
	free(text);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_as_jansson),
		cmocka_unit_test(refuses_incomplete),
		cmocka_unit_test(deep_nesting),
		cmocka_unit_test(stream_pieces),
		cmocka_unit_test(stream_refuses),
		cmocka_unit_test(stream_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
