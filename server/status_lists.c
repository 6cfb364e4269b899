/* status_lists.c: pages of entries and agents for the status page (status_lists.h). Only
 * identifiers and selectors are shown: nothing secret is stored in either record. */
#include "status_lists.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "datastore.h"
#include "entry_bulk.h"
#include "util.h"

static char *dump(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

static char *error_doc(const char *msg)
{
	return dump(json_pack("{s:s}", "error", msg));
}

static json_t *strings(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static char *entries_page(struct datastore *ds, const char *q, const char *tok)
{
	const char *sel[1] = { q };
	char after[37];
	struct entry_filter f = { .limit = STATUS_LIST_PAGE + 1 };
	struct entry **v = NULL;
	size_t n = 0;
	if (q && strncmp(q, "spiffe://", 9) == 0) {
		f.spiffe_id = q;
	} else if (q && *q) {
		f.selectors = sel;
		f.n_selectors = 1;
	}
	if (tok && *tok) {
		if (entry_page_token_decode(tok, &f.after_created_at, after) < 0)
			return error_doc("invalid page_token");
		f.after_id = after;
	}
	if (ds_entry_list(ds, &f, &v, &n) < 0)
		return error_doc("cannot read the entries");
	char next[ENTRY_PAGE_TOKEN_MAX] = "";
	size_t shown = n > STATUS_LIST_PAGE ? STATUS_LIST_PAGE : n;
	if (n > STATUS_LIST_PAGE)
		entry_page_token_encode(v[shown - 1], next);
	json_t *a = json_array();
	for (size_t i = 0; i < shown; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o}", "id", v[i]->id,
						   "spiffe_id", v[i]->spiffe_id, "parent_id",
						   v[i]->parent_id, "selectors",
						   strings(v[i]->selectors, v[i]->n_selectors)));
	entry_array_free(v, n);
	return dump(json_pack("{s:o, s:s}", "entries", a, "next_page_token", next));
}

/* Agents are few next to entries (one per node) and listed whole; the token is the offset of
 * the page among those matching q. */
static char *agents_page(struct datastore *ds, const char *q, const char *tok)
{
	struct agent_record **v = NULL;
	size_t n = 0, skip = 0, shown = 0, matched = 0;
	if (tok && *tok) {
		char *end = NULL;
		errno = 0;
		unsigned long long x = strtoull(tok, &end, 10);
		if (*end || errno || x > SIZE_MAX)
			return error_doc("invalid page_token");
		skip = (size_t)x;
	}
	if (ds_agent_list(ds, &v, &n) < 0)
		return error_doc("cannot read the agents");
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		if (q && *q && !strstr(v[i]->spiffe_id, q))
			continue;
		if (matched++ < skip || shown == STATUS_LIST_PAGE)
			continue;
		shown++;
		json_array_append_new(a, json_pack("{s:s, s:s?, s:I, s:I, s:b}", "spiffe_id",
						   v[i]->spiffe_id, "attestor", v[i]->attestor,
						   "not_after", (json_int_t)v[i]->not_after,
						   "last_seen", (json_int_t)v[i]->last_seen,
						   "banned", v[i]->banned));
	}
	agent_record_array_free(v, n);
	char next[32] = "";
	if (matched > skip + shown)
		snprintf(next, sizeof(next), "%zu", skip + shown);
	return dump(json_pack("{s:o, s:s}", "agents", a, "next_page_token", next));
}

char *status_lists_page(void *ud, const char *name, const char *q, const char *page_token)
{
	struct datastore *ds = ud;
	if (strcmp(name, "entries") == 0)
		return entries_page(ds, q, page_token);
	if (strcmp(name, "agents") == 0)
		return agents_page(ds, q, page_token);
	return NULL;
}
