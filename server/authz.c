#include "authz.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct authz_index {
	struct entry **all; /* owned */
	size_t n;
	const struct entry **by_id;     /* sorted by id */
	const struct entry **by_parent; /* sorted by parent_id then id */
	const struct entry **node_aliases; /* parented to the server's ID */
	size_t n_aliases;
};

static int cmp_id(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
	return strcmp(x->id, y->id);
}

static int cmp_parent(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
	int c = strcmp(x->parent_id, y->parent_id);
	return c ? c : strcmp(x->id, y->id);
}

int authz_index_build(struct datastore *ds, const char *server_id, int64_t now,
		      struct authz_index **out)
{
	struct entry **all = NULL;
	size_t n = 0;
	int r = ds_entry_list(ds, NULL, &all, &n);
	if (r < 0)
		return r;
	struct authz_index *ix = xcalloc(1, sizeof(*ix));
	ix->all = xcalloc(n + 1, sizeof(*ix->all));
	for (size_t i = 0; i < n; i++) {
		if (all[i]->expires_at && all[i]->expires_at <= now) {
			entry_free(all[i]);
			continue;
		}
		ix->all[ix->n++] = all[i];
	}
	free(all);
	ix->by_id = xcalloc(ix->n + 1, sizeof(*ix->by_id));
	ix->by_parent = xcalloc(ix->n + 1, sizeof(*ix->by_parent));
	ix->node_aliases = xcalloc(ix->n + 1, sizeof(*ix->node_aliases));
	for (size_t i = 0; i < ix->n; i++) {
		ix->by_id[i] = ix->by_parent[i] = ix->all[i];
		if (strcmp(ix->all[i]->parent_id, server_id) == 0)
			ix->node_aliases[ix->n_aliases++] = ix->all[i];
	}
	qsort(ix->by_id, ix->n, sizeof(*ix->by_id), cmp_id);
	qsort(ix->by_parent, ix->n, sizeof(*ix->by_parent), cmp_parent);
	*out = ix;
	return 0;
}

void authz_index_free(struct authz_index *ix)
{
	if (!ix)
		return;
	entry_array_free(ix->all, ix->n);
	free(ix->by_id);
	free(ix->by_parent);
	free(ix->node_aliases);
	free(ix);
}

const struct entry *authz_find(const struct authz_index *ix, const char *id)
{
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(ix->by_id[mid]->id, id);
		if (c == 0)
			return ix->by_id[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The first index in by_parent whose parent_id is >= parent. */
static size_t lower_bound(const struct authz_index *ix, const char *parent)
{
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(ix->by_parent[mid]->parent_id, parent) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* True when every selector of the node alias entry is among the agent's node selectors. */
static bool entry_has_selectors_of(const struct entry *a, const struct agent_record *agent)
{
	if (a->n_selectors == 0)
		return false;
	for (size_t i = 0; i < a->n_selectors; i++) {
		bool found = false;
		for (size_t j = 0; j < agent->n_selectors && !found; j++)
			found = strcmp(a->selectors[i], agent->selectors[j]) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* The SPIFFE IDs the agent acts as: its own, its aliases, and the node aliases it matches. */
static size_t agent_parents(const struct authz_index *ix, const struct agent_record *agent,
			    const char ***out)
{
	const char **p = xcalloc(2 + agent->n_aliases + ix->n_aliases, sizeof(*p));
	size_t n = 0;
	p[n++] = agent->spiffe_id;
	for (size_t i = 0; i < agent->n_aliases; i++)
		p[n++] = agent->aliases[i];
	for (size_t i = 0; i < ix->n_aliases; i++) {
		const struct entry *a = ix->node_aliases[i];
		if (entry_has_selectors_of(a, agent))
			p[n++] = a->spiffe_id;
	}
	*out = p;
	return n;
}

int authz_entries_for(const struct authz_index *ix, const struct agent_record *agent,
		      const struct entry ***out, size_t *n)
{
	const char **parents;
	size_t np = agent_parents(ix, agent, &parents);
	size_t cap = 16, cnt = 0;
	const struct entry **res = xmalloc(cap * sizeof(*res));
	for (size_t i = 0; i < np; i++) {
		/* The same parent twice (an alias equal to a node alias) must not repeat entries. */
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(parents[j], parents[i]) == 0)
				seen = true;
		if (seen)
			continue;
		for (size_t k = lower_bound(ix, parents[i]);
		     k < ix->n && strcmp(ix->by_parent[k]->parent_id, parents[i]) == 0; k++) {
			if (cnt == cap) {
				cap *= 2;
				res = xrealloc(res, cap * sizeof(*res));
			}
			res[cnt++] = ix->by_parent[k];
		}
	}
	free(parents);
	qsort(res, cnt, sizeof(*res), cmp_id);
	/* An entry reachable through two parents is listed once. */
	size_t w = 0;
	for (size_t i = 0; i < cnt; i++)
		if (w == 0 || res[w - 1] != res[i])
			res[w++] = res[i];
	*out = res;
	*n = w;
	return 0;
}

bool authz_allows(const struct authz_index *ix, const struct agent_record *agent,
		  const struct entry *e)
{
	const char **parents;
	size_t np = agent_parents(ix, agent, &parents);
	bool ok = false;
	for (size_t i = 0; i < np && !ok; i++)
		ok = strcmp(parents[i], e->parent_id) == 0;
	free(parents);
	return ok;
}
