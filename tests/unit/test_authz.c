/* Which entries an agent may see: its own, its join-token alias's, and those of node aliases
 * whose selectors it carries; never another agent's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
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

/* Views the index fills (authz.h): up to three at once per check. */
static struct entry tv[3];

static bool has(const struct entry *v, size_t n, const char *spiffe_id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].spiffe_id, spiffe_id) == 0)
			return true;
	return false;
}

/* No entry at all (a new server): an empty index that answers. Runs first, on the empty
 * datastore. */
static void empty_datastore(void **state)
{
	(void)state;
	struct authz_index *ix;
	assert_int_equal(authz_index_build(ds, SERVER_ID, now_unix(), &ix), 0);
	assert_int_equal(authz_index_count(ix), 0);
	assert_null(authz_find(ix, "0b6f6e34-3c2e-4c55-9d8c-2b0e1f3a4d5e", &tv[0]));
	struct agent_record r = {.spiffe_id = (char *)"spiffe://example.org/lanyard/agent/x"};
	struct entry *v;
	size_t n;
	authz_entries_for(ix, &r, &v, &n);
	assert_int_equal(n, 0);
	free(v);
	authz_index_free(ix);
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
	struct entry *v;
	size_t n;
	authz_entries_for(ix, &r1, &v, &n);
	assert_int_equal(n, 2);
	assert_true(has(v, n, "spiffe://example.org/own"));
	assert_true(has(v, n, "spiffe://example.org/via-alias"));
	assert_false(has(v, n, "spiffe://example.org/other"));
	assert_false(has(v, n, "spiffe://example.org/expired"));
	free(v);
	assert_true(authz_allows(ix, &r1, authz_find(ix, own, &tv[0])));
	assert_false(authz_allows(ix, &r1, authz_find(ix, other, &tv[0])));
	assert_null(authz_find(ix, expired, &tv[0]));

	char *sel2[] = {"k8s_psat:agent_ns:lanyard", "k8s_psat:cluster:prod"};
	struct agent_record r2 = {.spiffe_id = (char *)a2, .selectors = sel2, .n_selectors = 2};
	authz_entries_for(ix, &r2, &v, &n);
	assert_int_equal(n, 2);
	assert_true(has(v, n, "spiffe://example.org/other"));
	assert_true(has(v, n, "spiffe://example.org/cluster-wide"));
	free(v);
	assert_true(authz_allows(ix, &r2, authz_find(ix, cluster_wl, &tv[0])));
	assert_false(authz_allows(ix, &r1, authz_find(ix, cluster_wl, &tv[0])));

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

/* ---- the incremental index against a full rebuild ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	/* xorshift64*: fixed seed, so a failure replays identically. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

#define TD "spiffe://example.org"
static const char *const p_agents[] = {TD "/lanyard/agent/join_token/a0",
				       TD "/lanyard/agent/join_token/a1",
				       TD "/lanyard/agent/k8s_psat/prod/n1",
				       TD "/lanyard/agent/k8s_psat/prod/n2",
				       TD "/lanyard/agent/k8s_psat/staging/n3"};
static const char *const p_groups[] = {TD "/node/g0", TD "/node/g1"};
static const char *const p_clusters[] = {TD "/cluster/prod", TD "/cluster/staging",
					 TD "/cluster/ns-a"};
static const char *const p_sels[] = {"k8s_psat:cluster:prod", "k8s_psat:cluster:staging",
				     "k8s_psat:agent_ns:a", "k8s_psat:agent_ns:b"};
static const char *const p_wl[] = {TD "/w0", TD "/w1", TD "/w2", TD "/w3"};

static const char *pick(const char *const *v, size_t n)
{
	return v[rnd((uint32_t)n)];
}

/* A random entry: parented to an agent, a join-token group, a node alias's ID, or the server
 * itself (then it is a node alias, named by one of p_clusters). */
static void random_entry(struct entry *e, char **sels, int64_t now)
{
	switch (rnd(4)) {
	case 0:
		e->parent_id = (char *)pick(p_agents, ARRAY_LEN(p_agents));
		break;
	case 1:
		e->parent_id = (char *)pick(p_groups, ARRAY_LEN(p_groups));
		break;
	case 2:
		e->parent_id = (char *)pick(p_clusters, ARRAY_LEN(p_clusters));
		break;
	default:
		e->parent_id = (char *)SERVER_ID;
		break;
	}
	e->spiffe_id = (char *)(strcmp(e->parent_id, SERVER_ID) == 0
					? pick(p_clusters, ARRAY_LEN(p_clusters))
					: pick(p_wl, ARRAY_LEN(p_wl)));
	/* Selector subsets: one or two of the pool, so that aliases match some agents only. */
	size_t ns = 1 + rnd(2);
	for (size_t i = 0; i < ns; i++)
		sels[i] = (char *)pick(p_sels, ARRAY_LEN(p_sels));
	e->selectors = sels;
	e->n_selectors = ns;
	/* Some entries expire soon (the clock moves during the run), some are expired already. */
	uint32_t x = rnd(10);
	e->expires_at = x == 0 ? now - 1 : x <= 2 ? now + 1 + rnd(5) : 0;
}

static void agents_init(struct agent_record *r)
{
	static char *al0[] = {(char *)TD "/node/g0"};
	static char *al1[] = {(char *)TD "/node/g1", (char *)TD "/cluster/prod"};
	static char *s2[] = {(char *)"k8s_psat:agent_ns:a", (char *)"k8s_psat:cluster:prod"};
	static char *s3[] = {(char *)"k8s_psat:agent_ns:b", (char *)"k8s_psat:cluster:prod"};
	static char *s4[] = {(char *)"k8s_psat:agent_ns:a", (char *)"k8s_psat:cluster:staging"};
	memset(r, 0, 5 * sizeof(*r));
	for (size_t i = 0; i < 5; i++)
		r[i].spiffe_id = (char *)p_agents[i];
	r[0].aliases = al0;
	r[0].n_aliases = 1;
	r[1].aliases = al1; /* a join-token alias equal to a node alias's ID */
	r[1].n_aliases = 2;
	r[2].selectors = s2;
	r[2].n_selectors = 2;
	r[3].selectors = s3;
	r[3].n_selectors = 2;
	r[4].selectors = s4;
	r[4].n_selectors = 2;
}

static bool parents_equal(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static void strv_free_n(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Everything a reader can observe is the same in both indexes. */
static void assert_same_index(const struct authz_index *inc, const struct authz_index *full,
			      const struct agent_record *agents, size_t n_agents)
{
	assert_int_equal(authz_index_count(inc), authz_index_count(full));
	for (size_t i = 0; i < authz_index_count(full); i++) {
		const struct entry *a = authz_index_at(inc, i, &tv[0]);
		const struct entry *b = authz_index_at(full, i, &tv[1]);
		assert_string_equal(a->id, b->id);
		assert_int_equal(a->revision, b->revision);
		assert_string_equal(a->parent_id, b->parent_id);
		const struct entry *f = authz_find(inc, b->id, &tv[2]);
		assert_non_null(f);
		assert_string_equal(f->id, a->id);
		assert_string_equal(f->spiffe_id, a->spiffe_id);
	}
	for (size_t k = 0; k < n_agents; k++) {
		struct entry *va, *vb;
		size_t na, nb;
		authz_entries_for(inc, &agents[k], &va, &na);
		authz_entries_for(full, &agents[k], &vb, &nb);
		assert_int_equal(na, nb);
		for (size_t i = 0; i < na; i++) {
			assert_string_equal(va[i].id, vb[i].id);
			assert_int_equal(va[i].revision, vb[i].revision);
		}
		free(va);
		free(vb);
		for (size_t i = 0; i < authz_index_count(full); i++)
			assert_int_equal(authz_allows(inc, &agents[k], authz_index_at(inc, i, &tv[0])),
					 authz_allows(full, &agents[k], authz_index_at(full, i, &tv[1])));
		char **pa, **pb;
		size_t npa = authz_agent_parents(inc, &agents[k], &pa);
		size_t npb = authz_agent_parents(full, &agents[k], &pb);
		assert_true(parents_equal(pa, npa, pb, npb));
		strv_free_n(pa, npa);
		strv_free_n(pb, npb);
	}
}

static void incremental_matches_rebuild(void **state)
{
	struct agent_record agents[5];
	agents_init(agents);
	int64_t now = now_unix();
	char **ids = NULL;
	size_t n_ids = 0;
	struct authz_index *inc;
	int64_t counter = ds_change_counter(ds);
	assert_int_equal(authz_index_build(ds, SERVER_ID, now, &inc), 0);
	/* Each agent's parents at the previous step: when they move, the index must have said
	 * that a node alias changed. */
	char **prev[5];
	size_t n_prev[5];
	for (size_t k = 0; k < 5; k++)
		n_prev[k] = authz_agent_parents(inc, &agents[k], &prev[k]);
	size_t creates = 0, updates = 0, deletes = 0, expiries = 0;

	for (int step = 0; step < 600; step++) {
		char err[256];
		uint32_t op = rnd(10);
		if (n_ids == 0 || op < 4) {
			struct entry e = {0};
			char *sels[2];
			random_entry(&e, sels, now);
			struct entry *c = entry_dup(&e);
			if (ds_entry_create(ds, c, err, sizeof(err)) == 0) {
				ids = xrealloc(ids, (n_ids + 1) * sizeof(*ids));
				ids[n_ids++] = xstrdup(c->id);
				creates++;
			}
			entry_free(c);
		} else if (op < 8) {
			struct entry *c;
			const char *id = ids[rnd((uint32_t)n_ids)];
			assert_int_equal(ds_entry_get(ds, id, &c), 0);
			uint32_t how = rnd(3);
			if (how == 0) {
				/* A change that moves nothing but the revision. */
				free(c->hint);
				c->hint = xstrdup("changed");
			} else if (how == 1) {
				/* Same parent, other selectors: for a node alias, other agents. */
				for (size_t i = 0; i < c->n_selectors; i++)
					free(c->selectors[i]);
				c->n_selectors = 1 + rnd(2);
				c->selectors = xrealloc(c->selectors, 2 * sizeof(char *));
				for (size_t i = 0; i < c->n_selectors; i++)
					c->selectors[i] = xstrdup(pick(p_sels, ARRAY_LEN(p_sels)));
			} else {
				struct entry e = {0};
				char *sels[2];
				random_entry(&e, sels, now);
				struct entry *d = entry_dup(&e);
				memcpy(d->id, c->id, sizeof(d->id));
				entry_free(c);
				c = d;
			}
			if (ds_entry_update(ds, c, err, sizeof(err)) == 0)
				updates++;
			entry_free(c);
		} else {
			size_t i = rnd((uint32_t)n_ids);
			assert_int_equal(ds_entry_delete(ds, ids[i]), 0);
			free(ids[i]);
			ids[i] = ids[--n_ids];
			deletes++;
		}
		if (rnd(8) == 0)
			now++; /* entries reach their expires_at */

		/* The node API's way: apply what the journal names, then expire. */
		struct ds_change *ch;
		size_t nch;
		int64_t cur;
		assert_int_equal(ds_changes_since(ds, counter, &ch, &nch, &cur), 0);
		assert_int_equal(cur - counter, (int64_t)nch);
		bool alias_changed = false;
		for (size_t i = 0; i < nch; i++) {
			assert_int_equal(ch[i].kind, DS_CHANGE_ENTRY);
			assert_int_equal(
				authz_index_update(inc, ds, ch[i].id, now, &alias_changed), 0);
		}
		ds_change_array_free(ch, nch);
		counter = cur;
		char **gone = NULL;
		size_t n_gone = 0;
		authz_index_expire(inc, now, &gone, &n_gone, &alias_changed);
		expiries += n_gone;
		for (size_t i = 0; i < n_gone; i++)
			assert_null(authz_find(inc, gone[i], &tv[0]));
		strv_free_n(gone, n_gone);

		struct authz_index *full;
		assert_int_equal(authz_index_build(ds, SERVER_ID, now, &full), 0);
		assert_same_index(inc, full, agents, 5);
		for (size_t k = 0; k < 5; k++) {
			char **p;
			size_t np = authz_agent_parents(full, &agents[k], &p);
			if (!parents_equal(p, np, prev[k], n_prev[k]))
				assert_true(alias_changed);
			strv_free_n(prev[k], n_prev[k]);
			prev[k] = p;
			n_prev[k] = np;
		}
		authz_index_free(full);
	}
	/* The run did exercise every kind of change. */
	assert_true(creates > 50 && updates > 50 && deletes > 20 && expiries > 5);
	for (size_t k = 0; k < 5; k++)
		strv_free_n(prev[k], n_prev[k]);
	strv_free_n(ids, n_ids);
	authz_index_free(inc);
}

/* The index reads the datastore a page at a time: more entries than several pages are all
 * there, once each, in id order, with their parents' entries found. */
static void build_reads_every_page(void **state)
{
	(void)state;
	struct authz_index *ix;
	assert_int_equal(authz_index_build(ds, SERVER_ID, now_unix(), &ix), 0);
	size_t before = authz_index_count(ix);
	authz_index_free(ix);

	enum { N = 3 * 2048 + 5, AGENTS = 7 };
	struct entry **v = xcalloc(N, sizeof(*v));
	char sid[128], parent[128];
	char *sel[] = {(char *)"unix:uid:1000"};
	for (size_t i = 0; i < N; i++) {
		snprintf(sid, sizeof(sid), TD "/bulk/%zu", i);
		snprintf(parent, sizeof(parent), TD "/lanyard/agent/join_token/bulk%zu", i % AGENTS);
		struct entry e = {.spiffe_id = sid, .parent_id = parent, .selectors = sel,
				  .n_selectors = 1};
		v[i] = entry_dup(&e);
	}
	size_t failed;
	char err[256];
	assert_int_equal(ds_entry_create_batch(ds, v, N, &failed, err, sizeof(err)), 0);

	assert_int_equal(authz_index_build(ds, SERVER_ID, now_unix(), &ix), 0);
	assert_int_equal(authz_index_count(ix), before + N);
	for (size_t i = 1; i < authz_index_count(ix); i++)
		assert_true(strcmp(authz_index_at(ix, i - 1, &tv[0])->id,
				   authz_index_at(ix, i, &tv[1])->id) < 0);
	for (size_t i = 0; i < N; i++) {
		const struct entry *e = authz_find(ix, v[i]->id, &tv[0]);
		assert_non_null(e);
		assert_string_equal(e->spiffe_id, v[i]->spiffe_id);
		assert_string_equal(e->parent_id, v[i]->parent_id);
		assert_string_equal(e->selectors[0], "unix:uid:1000");
	}
	struct agent_record r = {.spiffe_id = (char *)TD "/lanyard/agent/join_token/bulk3"};
	struct entry *got;
	size_t n;
	authz_entries_for(ix, &r, &got, &n);
	assert_int_equal(n, N / AGENTS + (3 < N % AGENTS));
	for (size_t i = 0; i < n; i++)
		assert_string_equal(got[i].parent_id, r.spiffe_id);
	free(got);
	authz_index_free(ix);
	entry_array_free(v, N);
}

/* An id that is not the datastore's lowercase UUID (a hand-edited database) cannot be kept
 * packed by the entry streams: the index leaves that entry out, with a warning, on a build and
 * on an update, and keeps serving the agent's other entries. */
static void foreign_id_left_out(void **state)
{
	(void)state;
	const char *agent = TD "/lanyard/agent/join_token/foreign";
	char *good = add(TD "/foreign/good", agent, "unix:uid:1", NULL, 0);
	char *bad = add(TD "/foreign/bad", agent, "unix:uid:2", NULL, 0);
	char path[128];
	snprintf(path, sizeof(path), "%s/ds.sqlite3", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char sql[256];
	snprintf(sql, sizeof(sql), "UPDATE entries SET id = 'Hand-Made-1' WHERE id = '%s'", bad);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_close(db);

	struct authz_index *ix;
	assert_int_equal(authz_index_build(ds, SERVER_ID, now_unix(), &ix), 0);
	assert_null(authz_find(ix, "Hand-Made-1", &tv[0]));
	assert_null(authz_find(ix, bad, &tv[0]));
	assert_non_null(authz_find(ix, good, &tv[0]));
	struct agent_record r = {.spiffe_id = (char *)agent};
	struct entry *got;
	size_t n;
	authz_entries_for(ix, &r, &got, &n);
	assert_int_equal(n, 1);
	assert_string_equal(got[0].id, good);
	free(got);
	bool alias_changed = false;
	assert_int_equal(authz_index_update(ix, ds, "Hand-Made-1", now_unix(), &alias_changed), 0);
	assert_null(authz_find(ix, "Hand-Made-1", &tv[0]));
	assert_int_equal(authz_index_update(ix, ds, good, now_unix(), &alias_changed), 0);
	assert_non_null(authz_find(ix, good, &tv[0]));
	authz_index_free(ix);
	free(good);
	free(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_datastore),
		cmocka_unit_test(entitlements),
		cmocka_unit_test(incremental_matches_rebuild),
		cmocka_unit_test(build_reads_every_page),
		cmocka_unit_test(foreign_id_left_out),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
