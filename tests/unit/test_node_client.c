/* Unit tests of node_client.c's internals: what the sync thread makes of the entry stream
 * (the entry set itself is tested through entry_set.h in test_entry_set.c), the memory of used
 * join tokens and JWT cache keys. The .c is included to reach its statics; nothing here talks
 * to a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/node_client.c"
#include "../../agent/node_identity.c"
#include "../../agent/node_sync.c"

static struct node_client *new_client(void)
{
	struct node_client *n = xcalloc(1, sizeof(*n));
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cond, NULL);
	n->trust_domain = xstrdup("example.org");
	const struct server_endpoint ep = {.host = "127.0.0.1", .port = 8081};
	n->conn = server_conn_new(&ep, 1, n->trust_domain, true);
	n->data_dir = xstrdup("/nonexistent");
	n->rotation_fraction = 0.5;
	return n;
}

/* Applies a SyncResponse with at most one upsert. */
static void deliver(struct node_client *n, bool reset, bool complete, Lanyard__Node__V1__Entry *up,
		    char **rm, size_t n_rm)
{
	Lanyard__Node__V1__SyncResponse m = LANYARD__NODE__V1__SYNC_RESPONSE__INIT;
	m.reset = reset;
	m.complete = complete;
	m.upserts = up ? &up : NULL;
	m.n_upserts = up != NULL;
	m.removed_ids = rm;
	m.n_removed_ids = n_rm;
	apply_sync(n, &m);
}

static void free_client_test(struct node_client *n)
{
	free_client(n);
}

static void stream_state(void **state)
{
	struct node_client *n = new_client();
	/* The first part of a snapshot changes nothing yet. */
	deliver(n, true, false, NULL, NULL, 0);
	assert_false(n->synced || n->connected || n->publish_needed || n->state_dirty);
	/* Its last part makes the session connected and everything due. */
	Lanyard__Node__V1__Entry e = LANYARD__NODE__V1__ENTRY__INIT;
	e.id = "a";
	e.spiffe_id = "spiffe://example.org/a";
	deliver(n, false, true, &e, NULL, 0);
	assert_true(n->synced && n->connected);
	assert_true(n->publish_needed && n->state_dirty && n->plan_dirty && n->trim_needed);
	assert_int_equal(n->es.n, 1);
	assert_int_equal(n->st.state, NODE_STATE_CONNECTED);
	assert_true(n->st.last_sync > 0);
	/* No attestation came before this session: it resumed with the agent SVID. */
	assert_int_equal(n->st.resumes, 1);
	/* A delta sets the flags again; an empty message does not. */
	n->publish_needed = n->state_dirty = n->plan_dirty = false;
	deliver(n, false, true, NULL, NULL, 0);
	assert_false(n->publish_needed || n->state_dirty || n->plan_dirty);
	deliver(n, false, true, NULL, (char *[]){"a"}, 1);
	assert_true(n->publish_needed && n->state_dirty && n->plan_dirty);
	assert_int_equal(n->es.n, 0);
	free_client_test(n);
}

static void jwt_keys_are_unambiguous(void **state)
{
	char *a1[] = {"x|y"}, *a2[] = {"x", "y"}, *a3[] = {"y", "x"};
	char *k1 = jwt_cache_key("e", a1, 1), *k2 = jwt_cache_key("e", a2, 2), *k3 = jwt_cache_key("e", a3, 2);
	char *k4 = jwt_cache_key("e:x", a1, 1);
	assert_string_not_equal(k1, k2);
	assert_string_not_equal(k2, k3); /* callers sort first; the key itself keeps order */
	assert_string_not_equal(k1, k4);
	free(k1);
	free(k2);
	free(k3);
	free(k4);
}

static void token_memory(void **state)
{
	struct node_client *n = new_client();
	assert_false(token_usable(n));
	n->join_token = xstrdup("tok-1");
	assert_true(token_usable(n));
	remember_token(n);
	assert_false(token_usable(n));
	assert_int_equal(strlen(n->used_tokens[0]), 64);
	/* The hash, never the token, is kept. */
	assert_null(strstr(n->used_tokens[0], "tok-1"));
	free(n->join_token);
	n->join_token = xstrdup("tok-2");
	assert_true(token_usable(n));
	for (int i = 0; i < MAX_USED_TOKENS + 5; i++)
		remember_token(n);
	assert_int_equal(n->n_used_tokens, MAX_USED_TOKENS);
	free_client_test(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stream_state),
		cmocka_unit_test(jwt_keys_are_unambiguous),
		cmocka_unit_test(token_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
