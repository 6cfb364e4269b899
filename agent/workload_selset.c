/* workload_selset.c: interned caller selector sets and their match against the snapshot.
 *
 * Caller selector sets are interned and shared by every call with the same selectors; the match
 * against the current snapshot is cached in the set (valid while its epoch is the API's), so
 * 1,000 streams of a few workloads cost a few matchings per publication. Loop thread only. */
#include "workload_internal.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- selector sets ---- */

static uint64_t selset_hash(char *const *v, size_t n)
{
	uint64_t h = FNV1A_INIT;

	/* 0xff never occurs in UTF-8: it separates the selectors. */
	for (size_t i = 0; i < n; i++)
		h = fnv1a(fnv1a_str(h, v[i]), "\xff", 1);
	return h;
}

/* Takes over the strings of l (l is emptied). NULL on allocation failure. */
struct selset *selset_intern(struct workload_api *w, struct selector_list *l)
{
	uint64_t h = selset_hash(l->v, l->n);
	struct selset **bucket = &w->sets[h % SELSET_BUCKETS], *s;

	for (s = *bucket; s; s = s->next) {
		size_t i;

		if (s->hash != h || s->n != l->n)
			continue;
		for (i = 0; i < l->n && strcmp(s->v[i], l->v[i]) == 0; i++)
			;
		if (i == l->n) {
			s->refs++;
			selector_list_free(l);
			return s;
		}
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->hash = h;
	s->refs = 1;
	s->v = l->v;
	s->n = l->n;
	l->v = NULL;
	l->n = l->cap = 0;
	s->next = *bucket;
	*bucket = s;
	return s;
}

void selset_unref(struct workload_api *w, struct selset *s)
{
	struct selset **pp;

	if (!s || --s->refs > 0)
		return;
	for (pp = &w->sets[s->hash % SELSET_BUCKETS]; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->match);
	free(s);
}

/* The entries of the current snapshot the set is entitled to. 0 or -1 (no memory). */
int selset_match(struct workload_api *w, struct selset *s)
{
	const struct snapshot *snap = w->snap;
	size_t cap = 0;

	if (s->epoch == w->epoch)
		return 0;
	/* Sized for the matches, not the entries: a node may hold thousands of entries and many
	 * distinct callers, each of which matches a few. */
	free(s->match);
	s->match = NULL;
	s->n_match = 0;
	for (size_t i = 0; i < snap->n_entries; i++) {
		const struct entry *e = snap->entries[i];

		/* An entry without selectors would match every process on the node. */
		if (e->n_selectors == 0 ||
		    !selectors_subset(e->selectors, e->n_selectors, s->v, s->n))
			continue;
		if (s->n_match == cap) {
			size_t *m = realloc(s->match, (cap ? cap * 2 : 4) * sizeof(*m));

			if (!m)
				return -1;
			s->match = m;
			cap = cap ? cap * 2 : 4;
		}
		s->match[s->n_match++] = i;
	}
	s->epoch = w->epoch;
	return 0;
}
