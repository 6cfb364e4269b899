/* prev_svids.c: see prev_svids.h. A sorted array: lookups by binary search; renewals (rare per
 * agent) pay the insertion and the pruning pass. */
#include "prev_svids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

struct prev {
	char *agent_id;
	char serial[80];
	int64_t not_after;
};

struct prev_svids {
	struct prev *v; /* sorted by agent_id */
	size_t n, cap;
};

static int cmp_id(const void *elem, const void *key)
{
	return strcmp(((const struct prev *)elem)->agent_id, key);
}

struct prev_svids *prev_svids_new(void)
{
	return xcalloc(1, sizeof(struct prev_svids));
}

void prev_svids_free(struct prev_svids *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].agent_id);
	free(p->v);
	free(p);
}

static void prune(struct prev_svids *p, int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].not_after <= now)
			free(p->v[i].agent_id);
		else
			p->v[k++] = p->v[i];
	}
	p->n = k;
}

void prev_svids_put(struct prev_svids *p, const char *agent_id, const char *serial,
		    int64_t not_after, int64_t now)
{
	prune(p, now);
	if (!serial || !serial[0] || not_after <= now)
		return;
	size_t pos;
	if (!sorted_find(p->v, p->n, sizeof(*p->v), agent_id, cmp_id, &pos)) {
		if (p->n == PREV_SVIDS_MAX)
			return;
		if (p->n == p->cap) {
			p->cap = p->cap ? 2 * p->cap : 16;
			p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
		}
		memmove(&p->v[pos + 1], &p->v[pos], (p->n - pos) * sizeof(*p->v));
		p->n++;
		p->v[pos].agent_id = xstrdup(agent_id);
	}
	snprintf(p->v[pos].serial, sizeof(p->v[pos].serial), "%s", serial);
	p->v[pos].not_after = not_after;
}

bool prev_svids_match(const struct prev_svids *p, const char *agent_id, const char *serial,
		      int64_t now)
{
	size_t pos;
	if (!serial[0] || !sorted_find(p->v, p->n, sizeof(*p->v), agent_id, cmp_id, &pos))
		return false;
	return p->v[pos].not_after > now && strcasecmp(p->v[pos].serial, serial) == 0;
}

void prev_svids_forget(struct prev_svids *p, const char *agent_id)
{
	size_t pos;
	if (!sorted_find(p->v, p->n, sizeof(*p->v), agent_id, cmp_id, &pos))
		return;
	free(p->v[pos].agent_id);
	memmove(&p->v[pos], &p->v[pos + 1], (p->n - pos - 1) * sizeof(*p->v));
	p->n--;
}
