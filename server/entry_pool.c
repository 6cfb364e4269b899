/* entry_pool.c: packed entries and interned strings (see entry_pool.h). */
#include "entry_pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The table never shrinks below this many slots. */
#define MIN_SLOTS 64

/* One interned string: the hash is kept so that growing the table does not rehash strings. */
struct istr {
	uint64_t hash;
	unsigned refs;
	char s[];
};

/* Open addressing with linear probing; at most 3/4 of the slots used, so a probe always ends on
 * an empty slot. Removal shifts the following run back instead of leaving tombstones. */
struct entry_pool {
	struct istr **slots;
	size_t n_slots; /* a power of two, or 0 */
	size_t n;
};

static struct istr *istr_of(const char *s)
{
	return (struct istr *)(void *)(s - offsetof(struct istr, s));
}

struct entry_pool *entry_pool_new(void)
{
	return xcalloc(1, sizeof(struct entry_pool));
}

void entry_pool_free(struct entry_pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_slots; i++)
		free(p->slots[i]);
	free(p->slots);
	free(p);
}

static void resize(struct entry_pool *p, size_t n_slots)
{
	struct istr **old = p->slots;
	size_t n_old = p->n_slots;
	p->slots = xcalloc(n_slots, sizeof(*p->slots));
	p->n_slots = n_slots;
	for (size_t i = 0; i < n_old; i++) {
		if (!old[i])
			continue;
		size_t k = old[i]->hash & (n_slots - 1);
		while (p->slots[k])
			k = (k + 1) & (n_slots - 1);
		p->slots[k] = old[i];
	}
	free(old);
}

/* The slot holding s, or the empty slot where it would go. */
static size_t probe(const struct entry_pool *p, const char *s, uint64_t h, bool *found)
{
	size_t mask = p->n_slots - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const struct istr *x = p->slots[i];
		if (!x || (x->hash == h && strcmp(x->s, s) == 0)) {
			*found = x != NULL;
			return i;
		}
	}
}

const char *entry_pool_intern(struct entry_pool *p, const char *s)
{
	if (!s)
		return NULL;
	if ((p->n + 1) * 4 > p->n_slots * 3)
		resize(p, p->n_slots ? p->n_slots * 2 : MIN_SLOTS);
	uint64_t h = fnv1a_str(FNV1A_INIT, s);
	bool found;
	size_t i = probe(p, s, h, &found);
	if (!found) {
		size_t len = strlen(s);
		struct istr *x = xmalloc(sizeof(*x) + len + 1);
		x->hash = h;
		x->refs = 0;
		memcpy(x->s, s, len + 1);
		p->slots[i] = x;
		p->n++;
	}
	p->slots[i]->refs++;
	return p->slots[i]->s;
}

/* Empties slot i and moves back the entries after it that probing could no longer reach. */
static void remove_slot(struct entry_pool *p, size_t i)
{
	size_t mask = p->n_slots - 1;
	for (size_t j = (i + 1) & mask; p->slots[j]; j = (j + 1) & mask) {
		size_t home = p->slots[j]->hash & mask;
		/* The entry at j stays when its home slot lies cyclically in (i, j]. */
		bool stays = i <= j ? home > i && home <= j : home > i || home <= j;
		if (!stays) {
			p->slots[i] = p->slots[j];
			i = j;
		}
	}
	p->slots[i] = NULL;
}

void entry_pool_release(struct entry_pool *p, const char *s)
{
	if (!s)
		return;
	struct istr *x = istr_of(s);
	if (--x->refs)
		return;
	size_t mask = p->n_slots - 1, i = x->hash & mask;
	while (p->slots[i] != x)
		i = (i + 1) & mask;
	remove_slot(p, i);
	free(x);
	p->n--;
	if (p->n_slots > MIN_SLOTS && p->n * 8 < p->n_slots)
		resize(p, p->n_slots / 2);
}

size_t entry_pool_strings(const struct entry_pool *p)
{
	return p->n;
}

size_t entry_pool_slots(const struct entry_pool *p)
{
	return p->n_slots;
}

unsigned entry_pool_refs(const struct entry_pool *p, const char *s)
{
	if (!p->n_slots || !s)
		return 0;
	bool found;
	size_t i = probe(p, s, fnv1a_str(FNV1A_INIT, s), &found);
	return found ? p->slots[i]->refs : 0;
}

/* ---- packed entries ---- */

enum { PENTRY_ADMIN = 1, PENTRY_DOWNSTREAM = 2, PENTRY_MANAGED = 4, PENTRY_HINT = 8 };

/* The header carries no padding the arrays would waste. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct pentry) == 56,
	       "struct pentry has padding: reorder its members");

static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* Copies s to *at (advanced past it). */
static char *put_str(char **at, const char *s)
{
	size_t len = strlen(s) + 1;
	char *d = memcpy(*at, s, len);
	*at += len;
	return d;
}

static char **sel_of(const struct pentry *e)
{
	return (char **)e->ptrs;
}

static char **fed_of(const struct pentry *e)
{
	return (char **)e->ptrs + e->n_selectors;
}

static char **dns_of(const struct pentry *e)
{
	return (char **)e->ptrs + e->n_selectors + e->n_federates_with;
}

const char *entry_pool_spiffe_id(const struct pentry *e)
{
	return (const char *)(dns_of(e) + e->n_dns_names);
}

struct pentry *entry_pool_add(struct entry_pool *p, const struct entry *e)
{
	uint8_t id[ENTRY_ID_BYTES];
	if (!entry_id_pack(e->id, id) || e->n_selectors > UINT16_MAX ||
	    e->n_dns_names > UINT16_MAX || e->n_federates_with > UINT16_MAX)
		return NULL;
	size_t nptr = e->n_selectors + e->n_dns_names + e->n_federates_with;
	size_t strs = str_size(e->spiffe_id ? e->spiffe_id : "") + str_size(e->hint);
	for (size_t i = 0; i < e->n_dns_names; i++)
		strs += str_size(e->dns_names[i]);
	struct pentry *d = xmalloc(sizeof(*d) + nptr * sizeof(char *) + strs);
	d->revision = e->revision;
	d->expires_at = e->expires_at;
	d->parent_id = entry_pool_intern(p, e->parent_id ? e->parent_id : "");
	d->x509_svid_ttl = e->x509_svid_ttl;
	d->jwt_svid_ttl = e->jwt_svid_ttl;
	memcpy(d->id, id, sizeof(id));
	d->n_selectors = (uint16_t)e->n_selectors;
	d->n_dns_names = (uint16_t)e->n_dns_names;
	d->n_federates_with = (uint16_t)e->n_federates_with;
	d->flags = (uint8_t)((e->admin ? PENTRY_ADMIN : 0) | (e->downstream ? PENTRY_DOWNSTREAM : 0) |
			     (e->managed ? PENTRY_MANAGED : 0) | (e->hint ? PENTRY_HINT : 0));
	for (size_t i = 0; i < e->n_selectors; i++)
		sel_of(d)[i] = (char *)entry_pool_intern(p, e->selectors[i]);
	for (size_t i = 0; i < e->n_federates_with; i++)
		fed_of(d)[i] = (char *)entry_pool_intern(p, e->federates_with[i]);
	char *at = (char *)(dns_of(d) + d->n_dns_names);
	put_str(&at, e->spiffe_id ? e->spiffe_id : "");
	if (e->hint)
		put_str(&at, e->hint);
	for (size_t i = 0; i < e->n_dns_names; i++)
		dns_of(d)[i] = put_str(&at, e->dns_names[i]);
	return d;
}

void entry_pool_put(struct entry_pool *p, struct pentry *e)
{
	if (!e)
		return;
	entry_pool_release(p, e->parent_id);
	for (size_t i = 0; i < e->n_selectors; i++)
		entry_pool_release(p, sel_of(e)[i]);
	for (size_t i = 0; i < e->n_federates_with; i++)
		entry_pool_release(p, fed_of(e)[i]);
	free(e);
}

const struct entry *entry_pool_view(const struct pentry *e, struct entry *view)
{
	*view = (struct entry){
		.admin = e->flags & PENTRY_ADMIN,
		.downstream = e->flags & PENTRY_DOWNSTREAM,
		.managed = e->flags & PENTRY_MANAGED,
		.x509_svid_ttl = e->x509_svid_ttl,
		.jwt_svid_ttl = e->jwt_svid_ttl,
		.spiffe_id = (char *)entry_pool_spiffe_id(e),
		.parent_id = (char *)e->parent_id,
		.selectors = e->n_selectors ? sel_of(e) : NULL,
		.n_selectors = e->n_selectors,
		.dns_names = e->n_dns_names ? dns_of(e) : NULL,
		.n_dns_names = e->n_dns_names,
		.federates_with = e->n_federates_with ? fed_of(e) : NULL,
		.n_federates_with = e->n_federates_with,
		.expires_at = e->expires_at,
		.revision = e->revision,
	};
	if (e->flags & PENTRY_HINT)
		view->hint = view->spiffe_id + strlen(view->spiffe_id) + 1;
	entry_id_unpack(e->id, view->id);
	return view;
}
