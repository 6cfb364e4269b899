/* entry_bulk.c: page tokens and duplicate detection for bulk entry operations (entry_bulk.h). */
#include "entry_bulk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Version 1 of the token: base64url("1:<created_at>:<id>"). The version lets a later format be
 * told apart from this one. */
#define TOKEN_PREFIX "1:"

void entry_page_token_encode(const struct entry *last, char out[ENTRY_PAGE_TOKEN_MAX])
{
	char raw[96];
	int n = snprintf(raw, sizeof(raw), TOKEN_PREFIX "%" PRId64 ":%s", last->created_at, last->id);
	char *b = base64url_encode((const uint8_t *)raw, (size_t)n);
	snprintf(out, ENTRY_PAGE_TOKEN_MAX, "%s", b ? b : "");
	free(b);
}

static bool id_chars_ok(const char *id, size_t len)
{
	if (len == 0 || len > 36)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f') || id[i] == '-'))
			return false;
	return true;
}

int entry_page_token_decode(const char *tok, int64_t *created_at, char id_out[37])
{
	uint8_t *raw = NULL;
	size_t len = 0;
	int ret = -EINVAL;
	if (!tok || strlen(tok) >= ENTRY_PAGE_TOKEN_MAX ||
	    base64url_decode(tok, strlen(tok), &raw, &len) < 0)
		return -EINVAL;
	char text[ENTRY_PAGE_TOKEN_MAX];
	if (len >= sizeof(text) || memchr(raw, '\0', len))
		goto out;
	memcpy(text, raw, len);
	text[len] = '\0';
	if (strncmp(text, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) != 0)
		goto out;
	char *p = text + strlen(TOKEN_PREFIX), *end = NULL;
	errno = 0;
	long long t = strtoll(p, &end, 10);
	if (end == p || errno || *end != ':' || !id_chars_ok(end + 1, strlen(end + 1)))
		goto out;
	*created_at = t;
	snprintf(id_out, 37, "%s", end + 1);
	ret = 0;
out:
	free(raw);
	return ret;
}

/* ---- duplicates within a batch ---- */

struct keyed {
	char *key; /* spiffe_id NUL-separated from parent_id and the sorted selectors */
	size_t len, index;
};

static int keyed_cmp(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	size_t m = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->key, y->key, m);
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* The identity of an entry as one byte string; the NUL separators cannot occur in the parts. */
static char *entry_key(const struct entry *e, size_t *len)
{
	size_t n = strlen(e->spiffe_id) + strlen(e->parent_id) + 2;
	for (size_t i = 0; i < e->n_selectors; i++)
		n += strlen(e->selectors[i]) + 1;
	char *k = xmalloc(n), *p = k;
	const char *parts[2] = { e->spiffe_id, e->parent_id };
	for (size_t i = 0; i < 2; i++) {
		size_t l = strlen(parts[i]) + 1;
		memcpy(p, parts[i], l);
		p += l;
	}
	for (size_t i = 0; i < e->n_selectors; i++) {
		size_t l = strlen(e->selectors[i]) + 1;
		memcpy(p, e->selectors[i], l);
		p += l;
	}
	*len = n;
	return k;
}

bool entry_batch_find_duplicate(struct entry *const *v, size_t n, size_t *first, size_t *second)
{
	if (n < 2)
		return false;
	struct keyed *k = xcalloc(n, sizeof(*k));
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		k[i].key = entry_key(v[i], &k[i].len);
		k[i].index = i;
	}
	/* Sorted by key then index: equal keys are adjacent, the lower index first. */
	qsort(k, n, sizeof(*k), keyed_cmp);
	for (size_t i = 1; i < n; i++) {
		if (k[i].len != k[i - 1].len || memcmp(k[i].key, k[i - 1].key, k[i].len) != 0)
			continue;
		if (!found || k[i].index < *second) {
			*first = k[i - 1].index;
			*second = k[i].index;
			found = true;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(k[i].key);
	free(k);
	return found;
}
