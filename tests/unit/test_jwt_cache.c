/* test_jwt_cache.c: the agent's JWT-SVID request objects and token cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "jwt_cache.h"

static void no_cb(void *ud, int status, const char *token, int64_t expires_at, const char *message)
{
	(void)ud;
	(void)expires_at;
	(void)status;
	(void)token;
	(void)message;
}

static struct jwt_req *req(const char *entry, char *const *aud, size_t n, int64_t now)
{
	return jwt_cache_req_new(entry, aud, n, no_cb, NULL, now);
}

/* Caches a token for (entry, aud) requested at requested_at, the answer arriving at now. */
static void put(struct jwt_cache *c, const char *entry, char *const *aud, int64_t requested_at,
		const char *token, int64_t expires_at, int64_t now)
{
	struct jwt_req *r = req(entry, aud, 1, requested_at);
	jwt_cache_req_answer(r, GRPC_STATUS_OK, token, expires_at, NULL);
	jwt_cache_put(c, r, now);
	jwt_cache_req_free(r);
}

/* Whether the cache answers a request for (entry, aud) at now, with the token expected. */
static bool hit(struct jwt_cache *c, const char *entry, char *const *aud, int64_t now,
		const char *expected)
{
	struct jwt_req *r = req(entry, aud, 1, now);
	bool found = jwt_cache_answer(c, r);
	if (found) {
		assert_int_equal(r->status, GRPC_STATUS_OK);
		assert_string_equal(r->token, expected);
	} else {
		assert_null(r->token);
	}
	jwt_cache_req_free(r);
	return found;
}

static void audiences_sorted_into_the_key(void **state)
{
	(void)state;
	char *a[] = {"b", "a"}, *b[] = {"a", "b"};
	struct jwt_req *r1 = req("e", a, 2, 100), *r2 = req("e", b, 2, 100);
	assert_string_equal(r1->aud[0], "a");
	assert_string_equal(r1->key, r2->key);
	jwt_cache_req_free(r1);
	jwt_cache_req_free(r2);
}

static void served_until_half_life(void **state)
{
	(void)state;
	char *aud[] = {"x"}, *other[] = {"y"};
	struct jwt_cache *c = jwt_cache_new();
	put(c, "e", aud, 1000, "tok", 1100, 1000);
	struct jwt_req *r = req("e", aud, 1, 1049);
	assert_true(jwt_cache_answer(c, r));
	assert_int_equal(r->expires_at, 1100);
	jwt_cache_req_free(r);
	assert_true(hit(c, "e", aud, 1049, "tok"));
	/* At the half-life the token is no longer handed out. */
	assert_false(hit(c, "e", aud, 1050, NULL));
	/* Another audience set or entry is another key. */
	assert_false(hit(c, "e", other, 1001, NULL));
	assert_false(hit(c, "f", aud, 1001, NULL));
	jwt_cache_free(c);
}

static void newer_token_replaces_and_stale_not_kept(void **state)
{
	(void)state;
	char *aud[] = {"x"};
	struct jwt_cache *c = jwt_cache_new();
	put(c, "e", aud, 1000, "old", 1100, 1000);
	put(c, "e", aud, 1010, "new", 1110, 1010);
	assert_true(hit(c, "e", aud, 1011, "new"));
	/* A token already past its half-life when it arrives is not cached. */
	put(c, "f", aud, 1000, "late", 1100, 1060);
	assert_false(hit(c, "f", aud, 1000, NULL));
	jwt_cache_free(c);
}

static void reverse_restores_order(void **state)
{
	(void)state;
	char *aud[] = {"x"};
	struct jwt_req *head = NULL;
	const char *ids[] = {"1", "2", "3"};
	for (size_t i = 0; i < 3; i++) {
		struct jwt_req *r = req(ids[i], aud, 1, 0);
		r->next = head;
		head = r;
	}
	head = jwt_cache_req_reverse(head);
	size_t i = 0;
	for (struct jwt_req *r = head, *next; r; r = next, i++) {
		next = r->next;
		assert_string_equal(r->entry_id, ids[i]);
		jwt_cache_req_free(r);
	}
	assert_int_equal(i, 3);
	jwt_cache_free(NULL);
	jwt_cache_req_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(audiences_sorted_into_the_key),
		cmocka_unit_test(served_until_half_life),
		cmocka_unit_test(newer_token_replaces_and_stale_not_kept),
		cmocka_unit_test(reverse_restores_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
