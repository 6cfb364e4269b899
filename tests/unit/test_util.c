/* test_util.c: the helpers of common/util.c that other tests do not already cover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

static int cmp_int(const void *elem, const void *key)
{
	int a = *(const int *)elem, b = *(const int *)key;
	return a < b ? -1 : a > b;
}

/* Every key from below the first to above the last, against a linear scan, for every length
 * from empty to 9 (odd and even halves, duplicates-free). */
static void test_sorted_find_positions(void **state)
{
	(void)state;
	int v[9];
	for (size_t n = 0; n <= 9; n++) {
		for (size_t i = 0; i < n; i++)
			v[i] = (int)(i * 10);
		for (int key = -5; key <= (int)(n * 10) + 5; key++) {
			size_t want = 0;
			while (want < n && v[want] < key)
				want++;
			bool present = want < n && v[want] == key;
			size_t pos = 12345;
			assert_int_equal(sorted_find(v, n, sizeof(int), &key, cmp_int, &pos), present);
			assert_int_equal(pos, want);
		}
	}
}

struct named {
	const char *id;
	int value;
};

static int cmp_named_id(const void *elem, const void *key)
{
	return strcmp(((const struct named *)elem)->id, key);
}

/* The key need not be an element: here a string against structs. */
static void test_sorted_find_by_field(void **state)
{
	(void)state;
	const struct named v[] = {{"apple", 1}, {"kiwi", 2}, {"pear", 3}};
	size_t pos;
	assert_true(sorted_find(v, 3, sizeof(v[0]), "kiwi", cmp_named_id, &pos));
	assert_int_equal(v[pos].value, 2);
	assert_false(sorted_find(v, 3, sizeof(v[0]), "banana", cmp_named_id, &pos));
	assert_int_equal(pos, 1);
	assert_false(sorted_find(v, 3, sizeof(v[0]), "zucchini", cmp_named_id, &pos));
	assert_int_equal(pos, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_find_positions),
		cmocka_unit_test(test_sorted_find_by_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
