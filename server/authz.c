#include "authz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry_id.h"
#include "entry_pool.h"
#include "log.h"
#include "strv.h"
#include "util.h"

/* Entries read from the datastore at a time while the index is built: the index keeps packed
 * copies (entry_pool.h), so only a page of full entries is held besides them. */
#define BUILD_PAGE 2048

/* Three views of one set of entries, each a sorted array kept sorted on every change: a change
 * costs a binary search and a memmove of pointers (microseconds at tens of thousands of
 * entries), and lookups stay binary searches. The entries are entry_pool copies: one block
 * each, ids packed, parent IDs, selectors and federated trust domains interned; readers get
 * views of them (entry_pool_view). */
struct authz_index {
	char *server_id;
	struct entry_pool *pool;
	struct pentry **by_id;		 /* owns the entries (the pool's); sorted by id */
	const struct pentry **by_parent; /* sorted by parent_id then id */
	size_t n, cap;
	const struct pentry **aliases;	 /* node aliases (parent: server_id), sorted by id */
	size_t n_aliases, cap_aliases;
	/* No entry expires before this (INT64_MAX: none expires). A lower bound: removing an
	 * entry does not raise it, the next authz_index_expire scan does. */
	int64_t next_expiry;
};

/* Packed ids sort as their texts (entry_id.h). */
static int cmp_id(const void *a, const void *b)
{
	const struct pentry *x = *(const struct pentry *const *)a;
	const struct pentry *y = *(const struct pentry *const *)b;
	return memcmp(x->id, y->id, ENTRY_ID_BYTES);
}

static int cmp_parent(const void *a, const void *b)
{
	const struct pentry *x = *(const struct pentry *const *)a;
	const struct pentry *y = *(const struct pentry *const *)b;
	/* Interned: the same parent is the same pointer. */
	int c = x->parent_id == y->parent_id ? 0 : strcmp(x->parent_id, y->parent_id);
	return c ? c : memcmp(x->id, y->id, ENTRY_ID_BYTES);
}

static bool is_alias(const struct authz_index *ix, const struct pentry *e)
{
	return strcmp(e->parent_id, ix->server_id) == 0;
}

static bool expired(int64_t expires_at, int64_t now)
{
	return expires_at && expires_at <= now;
}

/* A packed copy of e, or NULL when its id does not pack (entry_id.h): every id the datastores
 * make does, and the index and the entry streams keep ids packed. Another id (a hand-edited
 * database) is left out of the index, with a warning: no agent sees that entry. */
static struct pentry *pack(struct authz_index *ix, const struct entry *e)
{
	struct pentry *d = entry_pool_add(ix->pool, e);
	if (!d)
		log_warnx("authorization index: entry \"%s\" left out: its id is not a lowercase "
			  "UUID (the form the datastore makes)", e->id);
	return d;
}

void authz_index_free(struct authz_index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->n; i++)
		entry_pool_put(ix->pool, ix->by_id[i]);
	entry_pool_free(ix->pool);
	free(ix->by_id);
	free(ix->by_parent);
	free(ix->aliases);
	free(ix->server_id);
	free(ix);
}

/* Appends the unexpired entries of a page, packed. */
static void build_add_page(struct authz_index *ix, struct entry *const *page, size_t n,
			   int64_t now)
{
	for (size_t i = 0; i < n; i++) {
		struct pentry *e = expired(page[i]->expires_at, now) ? NULL : pack(ix, page[i]);
		if (!e)
			continue;
		if (ix->n == ix->cap) {
			ix->cap = ix->cap * 2 + BUILD_PAGE;
			ix->by_id = xrealloc(ix->by_id, ix->cap * sizeof(*ix->by_id));
		}
		if (e->expires_at && e->expires_at < ix->next_expiry)
			ix->next_expiry = e->expires_at;
		ix->by_id[ix->n++] = e;
	}
}

/* Sorts by_id and drops an entry listed twice (it changed between two pages; the change journal
 * brings it up to date anyway), sizes the arrays to the load and fills the other views. */
static void build_finish(struct authz_index *ix)
{
	qsort(ix->by_id, ix->n, sizeof(*ix->by_id), cmp_id);
	size_t w = 0;
	for (size_t i = 0; i < ix->n; i++) {
		if (w && memcmp(ix->by_id[w - 1]->id, ix->by_id[i]->id, ENTRY_ID_BYTES) == 0)
			entry_pool_put(ix->pool, ix->by_id[i]);
		else
			ix->by_id[w++] = ix->by_id[i];
	}
	ix->n = w;
	ix->cap = w + 16;
	ix->by_id = xrealloc(ix->by_id, ix->cap * sizeof(*ix->by_id));
	ix->by_parent = xcalloc(ix->cap, sizeof(*ix->by_parent));
	memcpy(ix->by_parent, ix->by_id, w * sizeof(*ix->by_parent));
	qsort(ix->by_parent, ix->n, sizeof(*ix->by_parent), cmp_parent);
	for (size_t i = 0; i < ix->n; i++)
		ix->n_aliases += is_alias(ix, ix->by_id[i]);
	ix->cap_aliases = ix->n_aliases + 16;
	ix->aliases = xcalloc(ix->cap_aliases, sizeof(*ix->aliases));
	ix->n_aliases = 0;
	/* In by_id's order: sorted by id already. */
	for (size_t i = 0; i < ix->n; i++)
		if (is_alias(ix, ix->by_id[i]))
			ix->aliases[ix->n_aliases++] = ix->by_id[i];
}

int authz_index_build(struct datastore *ds, const char *server_id, int64_t now,
		      struct authz_index **out)
{
	struct authz_index *ix = xcalloc(1, sizeof(*ix));
	ix->server_id = xstrdup(server_id);
	ix->pool = entry_pool_new();
	ix->next_expiry = INT64_MAX;
	ix->cap = 16;
	ix->by_id = xcalloc(ix->cap, sizeof(*ix->by_id));
	struct entry_filter f = {.limit = BUILD_PAGE};
	char after[sizeof(((struct entry *)0)->id)];
	size_t n;
	do {
		struct entry **page = NULL;
		n = 0;
		int r = ds_entry_list(ds, &f, &page, &n);
		if (r < 0) {
			authz_index_free(ix);
			return r;
		}
		build_add_page(ix, page, n, now);
		if (n) {
			memcpy(after, page[n - 1]->id, sizeof(after));
			f.after_id = after;
			f.after_created_at = page[n - 1]->created_at;
		}
		entry_array_free(page, n);
	} while (n == BUILD_PAGE);
	build_finish(ix);
	*out = ix;
	return 0;
}

/* Binary search of a sorted pointer array: true when found, *pos the match or insertion point. */
static bool bsearch_pos(const struct pentry *const *v, size_t n, const struct pentry *key,
			int (*cmp)(const void *, const void *), size_t *pos)
{
	return sorted_find(v, n, sizeof(*v), &key, cmp, pos);
}

static void ptr_insert(const void **v, size_t *n, size_t pos, const void *p)
{
	memmove(&v[pos + 1], &v[pos], (*n - pos) * sizeof(*v));
	v[pos] = p;
	(*n)++;
}

static void ptr_remove(const void **v, size_t *n, size_t pos)
{
	memmove(&v[pos], &v[pos + 1], (*n - pos - 1) * sizeof(*v));
	(*n)--;
}

/* Unlinks the entry at by_id[pos] from every view and frees it. */
static void remove_at(struct authz_index *ix, size_t pos)
{
	struct pentry *e = ix->by_id[pos];
	size_t p;
	if (bsearch_pos(ix->by_parent, ix->n, e, cmp_parent, &p) && ix->by_parent[p] == e)
		ptr_remove((const void **)ix->by_parent, &(size_t){ix->n}, p);
	if (is_alias(ix, e) && bsearch_pos(ix->aliases, ix->n_aliases, e, cmp_id, &p) &&
	    ix->aliases[p] == e)
		ptr_remove((const void **)ix->aliases, &ix->n_aliases, p);
	ptr_remove((const void **)ix->by_id, &ix->n, pos);
	entry_pool_put(ix->pool, e);
}

/* Adds e, packed, whose id is not in the index. */
static void insert(struct authz_index *ix, struct pentry *e)
{
	if (ix->n == ix->cap) {
		ix->cap = ix->cap + ix->cap / 2 + 16;
		ix->by_id = xrealloc(ix->by_id, ix->cap * sizeof(*ix->by_id));
		ix->by_parent = xrealloc(ix->by_parent, ix->cap * sizeof(*ix->by_parent));
	}
	size_t p;
	if (is_alias(ix, e)) {
		if (ix->n_aliases == ix->cap_aliases) {
			ix->cap_aliases = ix->cap_aliases * 2 + 16;
			ix->aliases = xrealloc(ix->aliases,
					       ix->cap_aliases * sizeof(*ix->aliases));
		}
		bsearch_pos(ix->aliases, ix->n_aliases, e, cmp_id, &p);
		ptr_insert((const void **)ix->aliases, &ix->n_aliases, p, e);
	}
	bsearch_pos(ix->by_parent, ix->n, e, cmp_parent, &p);
	ptr_insert((const void **)ix->by_parent, &(size_t){ix->n}, p, e);
	bsearch_pos((const struct pentry *const *)ix->by_id, ix->n, e, cmp_id, &p);
	ptr_insert((const void **)ix->by_id, &ix->n, p, e);
	if (e->expires_at && e->expires_at < ix->next_expiry)
		ix->next_expiry = e->expires_at;
}

static bool same_strv(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Whether replacing old by new (either may be NULL) can change which agents act as which node
 * alias: only the alias's SPIFFE ID and selectors matter. */
static bool alias_differs(const struct authz_index *ix, const struct pentry *old,
			  const struct pentry *new)
{
	bool a = old && is_alias(ix, old), b = new && is_alias(ix, new);
	if (!a && !b)
		return false;
	if (a != b)
		return true;
	struct entry vo, vn;
	entry_pool_view(old, &vo);
	entry_pool_view(new, &vn);
	return strcmp(vo.spiffe_id, vn.spiffe_id) != 0 ||
	       !same_strv(vo.selectors, vo.n_selectors, vn.selectors, vn.n_selectors);
}

/* The position of the entry id in by_id: true when it is there. */
static bool find_pos(const struct authz_index *ix, const char *id, size_t *pos)
{
	struct pentry key = {0};
	const struct pentry *kp = &key;
	return entry_id_pack(id, key.id) &&
	       bsearch_pos((const struct pentry *const *)ix->by_id, ix->n, kp, cmp_id, pos);
}

int authz_index_update(struct authz_index *ix, struct datastore *ds, const char *id, int64_t now,
		       bool *alias_changed)
{
	struct entry *e = NULL;
	int r = ds_entry_get(ds, id, &e);
	if (r < 0 && r != -ENOENT)
		return r;
	struct pentry *d = e && !expired(e->expires_at, now) ? pack(ix, e) : NULL;
	entry_free(e);
	size_t pos;
	bool found = find_pos(ix, id, &pos);
	if (alias_differs(ix, found ? ix->by_id[pos] : NULL, d))
		*alias_changed = true;
	if (found)
		remove_at(ix, pos);
	if (d)
		insert(ix, d);
	return 0;
}

void authz_index_expire(struct authz_index *ix, int64_t now, char ***ids, size_t *n,
			bool *alias_changed)
{
	if (now < ix->next_expiry)
		return;
	/* One pass over each view, keeping the order, then the expired entries are freed. */
	size_t w = 0;
	for (size_t i = 0; i < ix->n; i++)
		if (!expired(ix->by_parent[i]->expires_at, now))
			ix->by_parent[w++] = ix->by_parent[i];
	w = 0;
	for (size_t i = 0; i < ix->n_aliases; i++) {
		if (!expired(ix->aliases[i]->expires_at, now))
			ix->aliases[w++] = ix->aliases[i];
		else
			*alias_changed = true;
	}
	ix->n_aliases = w;
	int64_t next = INT64_MAX;
	w = 0;
	for (size_t i = 0; i < ix->n; i++) {
		struct pentry *e = ix->by_id[i];
		if (expired(e->expires_at, now)) {
			char id[ENTRY_ID_TEXT];
			entry_id_unpack(e->id, id);
			strv_push(ids, n, id);
			entry_pool_put(ix->pool, e);
			continue;
		}
		if (e->expires_at && e->expires_at < next)
			next = e->expires_at;
		ix->by_id[w++] = e;
	}
	ix->n = w;
	ix->next_expiry = next;
}

size_t authz_index_count(const struct authz_index *ix)
{
	return ix->n;
}

const struct entry *authz_index_at(const struct authz_index *ix, size_t i, struct entry *view)
{
	return i < ix->n ? entry_pool_view(ix->by_id[i], view) : NULL;
}

const struct entry *authz_find(const struct authz_index *ix, const char *id, struct entry *view)
{
	size_t pos;
	return find_pos(ix, id, &pos) ? entry_pool_view(ix->by_id[pos], view) : NULL;
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
static bool entry_has_selectors_of(const struct pentry *a, const struct agent_record *agent)
{
	if (a->n_selectors == 0)
		return false;
	for (size_t i = 0; i < a->n_selectors; i++) {
		bool found = false;
		for (size_t j = 0; j < agent->n_selectors && !found; j++)
			found = strcmp(a->ptrs[i], agent->selectors[j]) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* The SPIFFE IDs the agent acts as: its own, its aliases, and the node aliases it matches
 * (borrowed strings, possibly repeated). */
static size_t agent_parents(const struct authz_index *ix, const struct agent_record *agent,
			    const char ***out)
{
	const char **p = xcalloc(2 + agent->n_aliases + ix->n_aliases, sizeof(*p));
	size_t n = 0;
	p[n++] = agent->spiffe_id;
	for (size_t i = 0; i < agent->n_aliases; i++)
		p[n++] = agent->aliases[i];
	for (size_t i = 0; i < ix->n_aliases; i++) {
		const struct pentry *a = ix->aliases[i];
		if (entry_has_selectors_of(a, agent))
			p[n++] = entry_pool_spiffe_id(a);
	}
	*out = p;
	return n;
}

/* Sorts v and drops repeats; returns the new length. */
static size_t sort_unique(const char **v, size_t n)
{
	qsort(v, n, sizeof(*v), strv_cmp);
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		if (w == 0 || strcmp(v[w - 1], v[i]) != 0)
			v[w++] = v[i];
	return w;
}

size_t authz_agent_parents(const struct authz_index *ix, const struct agent_record *agent,
			   char ***out)
{
	const char **p;
	size_t n = agent_parents(ix, agent, &p);
	n = sort_unique(p, n);
	char **v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = xstrdup(p[i]);
	free(p);
	*out = v;
	return n;
}

int authz_entries_for(const struct authz_index *ix, const struct agent_record *agent,
		      struct entry **out, size_t *n)
{
	const char **parents;
	size_t np = agent_parents(ix, agent, &parents);
	/* The same parent twice (an alias equal to a node alias) must not repeat entries. */
	np = sort_unique(parents, np);
	size_t cap = 16, cnt = 0;
	const struct pentry **res = xmalloc(cap * sizeof(*res));
	for (size_t i = 0; i < np; i++) {
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
	/* Distinct parents have distinct entries: res holds no repeats. */
	qsort(res, cnt, sizeof(*res), cmp_id);
	struct entry *v = xcalloc(cnt + 1, sizeof(*v));
	for (size_t i = 0; i < cnt; i++)
		entry_pool_view(res[i], &v[i]);
	free(res);
	*out = v;
	*n = cnt;
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
