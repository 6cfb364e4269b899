/* agent_pack: the packed copy of an agent record reads the same as the original (every field
 * the node API keeps), lives in one block of agent_pack_size bytes (freed with free(), which
 * ASan checks), and leaves out what it is told to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "agent_pack.h"

#define ID "spiffe://example.org/lanyard/agent/join_token/abc"

/* Whether s lies wholly inside the block [p, p + size). */
static bool inside(const void *p, size_t size, const char *s)
{
	const char *b = p;
	return s >= b && s + strlen(s) + 1 <= b + size;
}

static void copies_every_kept_field_in_one_block(void **state)
{
	(void)state;
	char *sels[2] = {"join_token:abc", "unix:uid:0"};
	char *aliases[1] = {"spiffe://example.org/node/alias"};
	struct agent_record a = {.spiffe_id = ID, .attestor = "join_token", .selectors = sels,
				 .n_selectors = 2, .aliases = aliases, .n_aliases = 1,
				 .serial = "0a1b2c", .not_after = 2000, .created_at = 1000,
				 .last_seen = 1500, .banned = true};
	size_t size = agent_pack_size(&a, true);
	struct agent_record *p = agent_pack(&a, true);
	assert_string_equal(p->spiffe_id, ID);
	assert_int_equal(p->n_selectors, 2);
	assert_string_equal(p->selectors[0], sels[0]);
	assert_string_equal(p->selectors[1], sels[1]);
	assert_int_equal(p->n_aliases, 1);
	assert_string_equal(p->aliases[0], aliases[0]);
	assert_string_equal(p->serial, "0a1b2c");
	assert_null(p->attestor);
	assert_int_equal(p->not_after, 2000);
	assert_int_equal(p->created_at, 1000);
	assert_int_equal(p->last_seen, 1500);
	assert_true(p->banned);
	/* Every piece is in the block, not shared with the original. */
	assert_true(inside(p, size, p->spiffe_id) && p->spiffe_id != a.spiffe_id);
	assert_true(inside(p, size, p->selectors[1]) && inside(p, size, p->aliases[0]));
	assert_true(inside(p, size, p->serial));
	free(p);

	/* Without the serial, and with no aliases: smaller, NULL pointers. */
	a.n_aliases = 0;
	a.aliases = NULL;
	assert_true(agent_pack_size(&a, false) < size);
	p = agent_pack(&a, false);
	assert_null(p->serial);
	assert_null(p->aliases);
	assert_int_equal(p->n_aliases, 0);
	assert_string_equal(p->selectors[0], sels[0]);
	free(p);

	/* A record without a serial asked to keep it: NULL, not a crash. */
	a.serial = NULL;
	p = agent_pack(&a, true);
	assert_null(p->serial);
	assert_string_equal(p->spiffe_id, ID);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(copies_every_kept_field_in_one_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
