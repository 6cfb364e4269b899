/* Which entries an agent may see: its own, its join-token alias's, and those of node aliases
 * whose selectors it carries; never another agent's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "datastore.h"
#include "log.h"
#include "util.h"

#define SERVER_ID "spiffe://example.org/lanyard/server"

static char dir[64];
static struct datastore *ds;

static int setup(void **state)
{
	log_setup(LOG_LEVEL_WARN, false);
	strcpy(dir, "/tmp/lanyard-authz-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	char path[128], err[256];
	snprintf(path, sizeof(path), "%s/ds.sqlite3", dir);
	return datastore_open_sqlite(path, &ds, err, sizeof(err));
}

static int teardown(void **state)
{
	datastore_close(ds);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static char *add(const char *spiffe_id, const char *parent, const char *sel1, const char *sel2,
		 int64_t expires_at)
{
	struct entry e = {0};
	char *sels[2] = {(char *)sel1, (char *)sel2};
	e.spiffe_id = (char *)spiffe_id;
	e.parent_id = (char *)parent;
	e.selectors = sels;
	e.n_selectors = sel2 ? 2 : 1;
	e.expires_at = expires_at;
	char err[256];
	struct entry *c = entry_dup(&e);
	assert_int_equal(ds_entry_create(ds, c, err, sizeof(err)), 0);
	char *id = xstrdup(c->id);
	entry_free(c);
	return id;
}

static bool has(const struct entry **v, size_t n, const char *spiffe_id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i]->spiffe_id, spiffe_id) == 0)
			return true;
	return false;
}

static void entitlements(void **state)
{
	const char *a1 = "spiffe://example.org/lanyard/agent/join_token/aaa";
	const char *a2 = "spiffe://example.org/lanyard/agent/k8s_psat/prod/node2";
	char *own = add("spiffe://example.org/own", a1, "unix:uid:1", NULL, 0);
	char *via_alias = add("spiffe://example.org/via-alias", "spiffe://example.org/node/web", "unix:uid:2", NULL, 0);
	char *other = add("spiffe://example.org/other", a2, "unix:uid:3", NULL, 0);
	/* A node alias: every agent of cluster prod, and a workload parented to it. */
	char *alias = add("spiffe://example.org/cluster/prod", SERVER_ID, "k8s_psat:cluster:prod", NULL, 0);
	char *cluster_wl = add("spiffe://example.org/cluster-wide", "spiffe://example.org/cluster/prod", "k8s:ns:default", NULL, 0);
	char *expired = add("spiffe://example.org/expired", a1, "unix:uid:4", NULL, now_unix() - 5);

	struct authz_index *ix;
	assert_int_equal(authz_index_build(ds, SERVER_ID, now_unix(), &ix), 0);

	char *aliases1[] = {"spiffe://example.org/node/web"};
	struct agent_record r1 = {.spiffe_id = (char *)a1, .aliases = aliases1, .n_aliases = 1};
	const struct entry **v;
	size_t n;
	authz_entries_for(ix, &r1, &v, &n);
	assert_int_equal(n, 2);
	assert_true(has(v, n, "spiffe://example.org/own"));
	assert_true(has(v, n, "spiffe://example.org/via-alias"));
	assert_false(has(v, n, "spiffe://example.org/other"));
	assert_false(has(v, n, "spiffe://example.org/expired"));
	free(v);
	assert_true(authz_allows(ix, &r1, authz_find(ix, own)));
	assert_false(authz_allows(ix, &r1, authz_find(ix, other)));
	assert_null(authz_find(ix, expired));

	char *sel2[] = {"k8s_psat:agent_ns:lanyard", "k8s_psat:cluster:prod"};
	struct agent_record r2 = {.spiffe_id = (char *)a2, .selectors = sel2, .n_selectors = 2};
	authz_entries_for(ix, &r2, &v, &n);
	assert_int_equal(n, 2);
	assert_true(has(v, n, "spiffe://example.org/other"));
	assert_true(has(v, n, "spiffe://example.org/cluster-wide"));
	free(v);
	assert_true(authz_allows(ix, &r2, authz_find(ix, cluster_wl)));
	assert_false(authz_allows(ix, &r1, authz_find(ix, cluster_wl)));

	/* An agent of another cluster does not get the cluster-wide workload. */
	char *sel3[] = {"k8s_psat:cluster:staging"};
	struct agent_record r3 = {.spiffe_id = "spiffe://example.org/lanyard/agent/k8s_psat/staging/n",
				  .selectors = sel3, .n_selectors = 1};
	authz_entries_for(ix, &r3, &v, &n);
	assert_int_equal(n, 0);
	free(v);
	authz_index_free(ix);
	free(own);
	free(via_alias);
	free(other);
	free(alias);
	free(cluster_wl);
	free(expired);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(entitlements),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
