/* Page tokens, duplicates within a batch and table shortening: the pure helpers of bulk entry
 * handling (entry_bulk.c, cli_table.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_table.h"
#include "entry_bulk.h"
#include "util.h"

static void page_token_roundtrip(void **state)
{
	struct entry e = { .created_at = 1733300000 };
	snprintf(e.id, sizeof(e.id), "0f8e2a34-1b2c-4d5e-8f90-a1b2c3d4e5f6");
	char tok[ENTRY_PAGE_TOKEN_MAX], id[37];
	int64_t t = 0;
	entry_page_token_encode(&e, tok);
	assert_int_equal(entry_page_token_decode(tok, &t, id), 0);
	assert_int_equal(t, e.created_at);
	assert_string_equal(id, e.id);
	/* The token does not show its content as text. */
	assert_null(strstr(tok, e.id));
}

static void page_token_garbage_refused(void **state)
{
	static const char *const bad[] = {
		"", "not-a-token", "MTox", /* "1:1" without an id */
		"MjoxOmFiYw", /* "2:1:abc": unknown version */
		"MTp4OmFiYw", /* "1:x:abc" */
		"MToxOkFCQw", /* "1:1:ABC": not an entry id */
		"MToxOmFiYyc7IGRyb3A", /* "1:1:abc'; drop" */
	};
	char id[37];
	int64_t t;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		assert_int_not_equal(entry_page_token_decode(bad[i], &t, id), 0);
	char huge[400];
	memset(huge, 'A', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	assert_int_not_equal(entry_page_token_decode(huge, &t, id), 0);
}

static struct entry *mk(const char *spiffe, const char *sel)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	e->spiffe_id = xstrdup(spiffe);
	e->parent_id = xstrdup("spiffe://example.org/agent");
	e->selectors = xcalloc(1, sizeof(char *));
	e->selectors[0] = xstrdup(sel);
	e->n_selectors = 1;
	return e;
}

static void batch_duplicates(void **state)
{
	struct entry *v[] = {
		mk("spiffe://example.org/a", "unix:uid:1"), mk("spiffe://example.org/b", "unix:uid:1"),
		mk("spiffe://example.org/a", "unix:uid:2"), mk("spiffe://example.org/b", "unix:uid:1"),
		mk("spiffe://example.org/a", "unix:uid:1"),
	};
	size_t a = 0, b = 0;
	assert_false(entry_batch_find_duplicate(v, 3, &a, &b));
	assert_true(entry_batch_find_duplicate(v, 5, &a, &b));
	assert_int_equal(a, 1); /* the first pair by the later index: 1 and 3 */
	assert_int_equal(b, 3);
	/* Separators matter: "a" + "bc" is not "ab" + "c". */
	struct entry *w[] = { mk("spiffe://example.org/x", "k:ab"), mk("spiffe://example.org/x", "k:a") };
	assert_false(entry_batch_find_duplicate(w, 2, &a, &b));
	for (size_t i = 0; i < ARRAY_LEN(v); i++)
		entry_free(v[i]);
	entry_free(w[0]);
	entry_free(w[1]);
}

static void table_shortens_to_width(void **state)
{
	char buf[256];
	assert_string_equal(cli_table_shorten("short", 10, buf, sizeof(buf)), "short");
	cli_table_shorten("spiffe://example.org/ns/prod/sa/payments-api", 20, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\xe2\x80\xa6"));
	assert_int_equal(strlen(buf), 19 + 3); /* 19 characters and the 3-byte ellipsis */
	assert_int_equal(strncmp(buf, "spiffe", 6), 0);
	assert_non_null(strstr(buf, "payments-api"));

	static const char *const heads[] = { "ID", "NAME" };
	static const size_t mins[] = { 0, 8 };
	struct cli_table *t = cli_table_new(heads, mins, 2);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	const char *row[] = { "0f8e2a34-1b2c-4d5e-8f90-a1b2c3d4e5f6", longname };
	cli_table_add(t, row);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	cli_table_print(t, f, 60);
	fclose(f);
	cli_table_free(t);
	/* Every line fits 60 columns (the ellipsis counts as one); the ID is whole. */
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		size_t cols = 0;
		for (const char *p = line; *p; p++)
			cols += ((unsigned char)*p & 0xc0) != 0x80;
		assert_true(cols <= 60);
	}
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(page_token_roundtrip),
		cmocka_unit_test(page_token_garbage_refused),
		cmocka_unit_test(batch_duplicates),
		cmocka_unit_test(table_shortens_to_width),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
