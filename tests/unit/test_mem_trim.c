/* mem_trim.c: trims only when the memory between resident and in use has grown by the slack over
 * its level after the last trim, on two samples in a row; a trim resets that level, so memory
 * that a trim cannot give back does not make it trim again and again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mem_trim.h"
#include "procstats.h"

#define MB (1ull << 20)

static void test_settled_growth_trims_once(void **state)
{
	struct mem_trim t;
	(void)state;
	memset(&t, 0, sizeof(t));
	assert_false(mem_trim_decide(&t, 100 * MB, 90 * MB)); /* baseline 10 MB */
	assert_false(mem_trim_decide(&t, 200 * MB, 180 * MB)); /* 20 MB: 10 over, first sample */
	assert_true(mem_trim_decide(&t, 200 * MB, 180 * MB));  /* second in a row: trim */
	/* The trim gave nothing back (say, thread stacks): that level becomes the baseline. */
	assert_false(mem_trim_decide(&t, 200 * MB, 180 * MB));
	for (int i = 0; i < 5; i++)
		assert_false(mem_trim_decide(&t, 200 * MB, 180 * MB));
	assert_int_equal(t.baseline, 20 * MB);
}

static void test_small_or_passing_growth_does_not_trim(void **state)
{
	struct mem_trim t;
	(void)state;
	memset(&t, 0, sizeof(t));
	assert_false(mem_trim_decide(&t, 100 * MB, 90 * MB));
	/* Below the slack, however long. */
	for (int i = 0; i < 5; i++)
		assert_false(mem_trim_decide(&t, 100 * MB + MEM_TRIM_SLACK_BYTES - 1, 90 * MB));
	/* Over it once, then back under: a burst that passed, nothing to do. */
	assert_false(mem_trim_decide(&t, 130 * MB, 90 * MB));
	assert_false(mem_trim_decide(&t, 100 * MB, 90 * MB));
	assert_false(mem_trim_decide(&t, 130 * MB, 90 * MB));
	/* In use above resident (heap not touched yet) counts as no slack, never as a wrap. */
	assert_false(mem_trim_decide(&t, 50 * MB, 90 * MB));
	assert_int_equal(t.baseline, 0);
	assert_false(mem_trim_decide(&t, 50 * MB, 45 * MB));
}

static void test_tick_samples_at_most_every_interval(void **state)
{
	struct mem_trim t;
	(void)state;
	memset(&t, 0, sizeof(t));
	assert_true(procstats_resident() > 0);
	assert_int_equal(mem_trim_tick(&t, 1000), 0); /* first sample: the baseline */
	assert_true(t.have_baseline);
	t.baseline = 0;
	t.over = 1;
	/* Within the interval nothing is sampled, even with everything over the slack. */
	assert_int_equal(mem_trim_tick(&t, 1000 + MEM_TRIM_INTERVAL_S - 1), 0);
	assert_int_equal(t.trims, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settled_growth_trims_once),
		cmocka_unit_test(test_small_or_passing_growth_does_not_trim),
		cmocka_unit_test(test_tick_samples_at_most_every_interval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
