/* Packed entry IDs: what uuid_v4 makes packs and comes back byte for byte, packed IDs sort as
 * their texts, and every other text is refused (not half packed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "entry_id.h"
#include "util.h"

static void round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < 1000; i++) {
		char id[ENTRY_ID_TEXT], back[ENTRY_ID_TEXT];
		uint8_t b[ENTRY_ID_BYTES];
		assert_int_equal(uuid_v4(id), 0);
		assert_true(entry_id_pack(id, b));
		entry_id_unpack(b, back);
		assert_string_equal(back, id);
	}
	uint8_t b[ENTRY_ID_BYTES];
	char back[ENTRY_ID_TEXT];
	assert_true(entry_id_pack("00000000-0000-0000-0000-000000000000", b));
	entry_id_unpack(b, back);
	assert_string_equal(back, "00000000-0000-0000-0000-000000000000");
	assert_true(entry_id_pack("ffffffff-ffff-ffff-ffff-ffffffffffff", b));
	for (size_t i = 0; i < sizeof(b); i++)
		assert_int_equal(b[i], 0xff);
}

static int sign(int c)
{
	return (c > 0) - (c < 0);
}

static void order_is_the_texts(void **state)
{
	(void)state;
	char a[ENTRY_ID_TEXT], b[ENTRY_ID_TEXT];
	uint8_t pa[ENTRY_ID_BYTES], pb[ENTRY_ID_BYTES];
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(uuid_v4(a), 0);
		assert_int_equal(uuid_v4(b), 0);
		if (i % 10 == 0)
			memcpy(b, a, 20); /* a long common prefix now and then */
		assert_true(entry_id_pack(a, pa));
		assert_true(entry_id_pack(b, pb));
		assert_int_equal(sign(memcmp(pa, pb, sizeof(pa))), sign(strcmp(a, b)));
	}
}

static void other_texts_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"0123",
		"01234567-89ab-cdef-0123-456789abcde",   /* one digit short */
		"01234567-89ab-cdef-0123-456789abcdef0", /* one too many */
		"01234567-89AB-cdef-0123-456789abcdef",  /* upper case */
		"0123456789ab-cdef-0123-456789abcdef-",  /* hyphens moved */
		"01234567-89ab-cdef-0123+456789abcdef",
		"01234567-89ab-cdeg-0123-456789abcdef",
		"entry-1",
	};
	uint8_t b[ENTRY_ID_BYTES];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (entry_id_pack(bad[i], b))
			fail_msg("packed \"%s\"", bad[i]);
	}
	assert_true(entry_id_pack("01234567-89ab-cdef-0123-456789abcdef", b));
	assert_int_equal(b[0], 0x01);
	assert_int_equal(b[15], 0xef);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(order_is_the_texts),
		cmocka_unit_test(other_texts_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
