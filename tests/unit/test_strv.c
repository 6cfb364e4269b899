/* strv.c: string vectors copy what they are given, sort and deduplicate without leaking, and
 * compare as strcmp does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "strv.h"

static void push_dup_sort_unique(void **state)
{
	char **v = NULL;
	size_t n = 0;
	char word[8] = "b";
	(void)state;

	strv_push(&v, &n, word);
	word[0] = 'z'; /* the vector holds a copy */
	strv_push(&v, &n, "a");
	strv_push(&v, &n, "b");
	strv_push(&v, &n, "c");
	strv_push(&v, &n, "a");
	assert_int_equal(n, 5);
	assert_string_equal(v[0], "b");

	char **d = strv_dup(v, n);
	assert_non_null(d);
	assert_ptr_not_equal(d[0], v[0]);
	assert_string_equal(d[4], "a");

	n = strv_sort_unique(v, n); /* the repeats are freed: the leak checker would see them */
	assert_int_equal(n, 3);
	assert_string_equal(v[0], "a");
	assert_string_equal(v[1], "b");
	assert_string_equal(v[2], "c");

	assert_null(strv_dup(v, 0));
	assert_int_equal(strv_sort_unique(NULL, 0), 0);
	char *x = "x", *y = "y";
	assert_true(strv_cmp(&x, &y) < 0);
	assert_true(strv_cmp(&y, &x) > 0);
	assert_int_equal(strv_cmp(&x, &x), 0);
	strv_free(v, n);
	strv_free(d, 5);
	strv_free(NULL, 3);
}

/* The one strv -> JSON array helper (entries, agent records, state.json): every string, in
 * order; an empty vector is an empty array, not null. */
static void to_json(void **state)
{
	char *v[] = {"b", "a\"q"};
	json_t *a = strv_to_json(v, 2);
	char *text = json_dumps(a, JSON_COMPACT);
	assert_string_equal(text, "[\"b\",\"a\\\"q\"]");
	free(text);
	json_decref(a);
	a = strv_to_json(NULL, 0);
	assert_true(json_is_array(a));
	assert_int_equal(json_array_size(a), 0);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(push_dup_sort_unique),
		cmocka_unit_test(to_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
