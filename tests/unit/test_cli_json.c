/* cli_json.c: the CLI prints a listing's compact JSON exactly as jansson's JSON_INDENT(2) dump
 * of the parsed document would look (nested, empty, escaped and Unicode values), and refuses
 * truncated or unbalanced answers. */
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

static void same_as_jansson(void **state)
{
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

static void refuses_incomplete(void **state)
{
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_as_jansson),
		cmocka_unit_test(refuses_incomplete),
		cmocka_unit_test(deep_nesting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
