/* prev_svids: an agent's replaced SVID is matched until it expires, only for that agent, and
 * forgotten on a new attestation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "prev_svids.h"

static void remembers_until_expiry(void **state)
{
	(void)state;
	struct prev_svids *p = prev_svids_new();
	prev_svids_put(p, "spiffe://td/lanyard/agent/b", "0abc", 200, 100);
	prev_svids_put(p, "spiffe://td/lanyard/agent/a", "0def", 300, 100);
	assert_true(prev_svids_match(p, "spiffe://td/lanyard/agent/b", "0ABC", 150));
	assert_true(prev_svids_match(p, "spiffe://td/lanyard/agent/a", "0def", 150));
	/* Another agent's serial, another serial, an expired one. */
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/a", "0abc", 150));
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/b", "0abd", 150));
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/b", "0abc", 200));
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/b", "", 150));
	/* A second renewal replaces the first; expired ones are pruned on put. */
	prev_svids_put(p, "spiffe://td/lanyard/agent/a", "0fff", 400, 250);
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/a", "0def", 260));
	assert_true(prev_svids_match(p, "spiffe://td/lanyard/agent/a", "0fff", 260));
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/b", "0abc", 260));
	prev_svids_forget(p, "spiffe://td/lanyard/agent/a");
	prev_svids_forget(p, "spiffe://td/lanyard/agent/none");
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/a", "0fff", 260));
	/* Already expired or without a serial: not kept. */
	prev_svids_put(p, "spiffe://td/lanyard/agent/c", "0aaa", 250, 260);
	prev_svids_put(p, "spiffe://td/lanyard/agent/d", NULL, 500, 260);
	assert_false(prev_svids_match(p, "spiffe://td/lanyard/agent/c", "0aaa", 261));
	prev_svids_free(p);
	prev_svids_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(remembers_until_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
