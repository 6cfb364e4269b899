/* jwt_cache.c: JWT-SVID requests and the loop thread's token cache (see jwt_cache.h). */
#include "jwt_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "strv.h"
#include "util.h"

#define JWT_CACHE_MAX 4096

struct cached {
	char *key;
	char *token;
	int64_t fresh_until; /* half-life */
	int64_t expires_at;
};

struct jwt_cache {
	struct cached *v;
	size_t n;
};

static void wipe_free(char *s)
{
	if (!s)
		return;
	secure_zero(s, strlen(s));
	free(s);
}

char *jwt_cache_key(const char *entry_id, char *const *aud, size_t n_aud)
{
	size_t len = strlen(entry_id) + 24;
	for (size_t i = 0; i < n_aud; i++)
		len += strlen(aud[i]) + 24;
	char *k = xmalloc(len);
	size_t off = (size_t)snprintf(k, len, "%zu:%s", strlen(entry_id), entry_id);
	for (size_t i = 0; i < n_aud; i++)
		off += (size_t)snprintf(k + off, len - off, "|%zu:%s", strlen(aud[i]), aud[i]);
	return k;
}

struct jwt_req *jwt_cache_req_new(const char *entry_id, char *const *audience, size_t n_audience,
				  node_jwt_cb cb, void *ud, int64_t now)
{
	struct jwt_req *r = xcalloc(1, sizeof(*r));
	r->entry_id = xstrdup(entry_id);
	r->aud = xcalloc(n_audience + 1, sizeof(char *));
	for (size_t i = 0; i < n_audience; i++)
		r->aud[i] = xstrdup(audience[i]);
	r->n_aud = n_audience;
	qsort(r->aud, r->n_aud, sizeof(char *), strv_cmp);
	r->key = jwt_cache_key(r->entry_id, r->aud, r->n_aud);
	r->cb = cb;
	r->ud = ud;
	r->requested_at = now;
	return r;
}

void jwt_cache_req_free(struct jwt_req *r)
{
	if (!r)
		return;
	free(r->entry_id);
	for (size_t i = 0; i < r->n_aud; i++)
		free(r->aud[i]);
	free(r->aud);
	free(r->key);
	wipe_free(r->token);
	free(r->message);
	free(r);
}

void jwt_cache_req_answer(struct jwt_req *r, int status, const char *token, int64_t expires_at,
			  const char *message)
{
	r->status = status;
	r->token = token ? xstrdup(token) : NULL;
	r->expires_at = expires_at;
	r->message = message ? xstrdup(message) : NULL;
}

struct jwt_req *jwt_cache_req_reverse(struct jwt_req *list)
{
	struct jwt_req *rev = NULL;
	while (list) {
		struct jwt_req *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	return rev;
}

struct jwt_cache *jwt_cache_new(void)
{
	return xcalloc(1, sizeof(struct jwt_cache));
}

void jwt_cache_free(struct jwt_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].key);
		wipe_free(c->v[i].token);
	}
	free(c->v);
	free(c);
}

void jwt_cache_put(struct jwt_cache *c, const struct jwt_req *r, int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct cached *e = &c->v[i];
		if (e->fresh_until <= now || strcmp(e->key, r->key) == 0) {
			free(e->key);
			wipe_free(e->token);
			continue;
		}
		c->v[k++] = *e;
	}
	c->n = k;
	int64_t fresh = r->requested_at + (r->expires_at - r->requested_at) / 2;
	if (fresh <= now || c->n >= JWT_CACHE_MAX)
		return;
	c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
	c->v[c->n++] = (struct cached){
		.key = xstrdup(r->key),
		.token = xstrdup(r->token),
		.fresh_until = fresh,
		.expires_at = r->expires_at,
	};
}

bool jwt_cache_answer(struct jwt_cache *c, struct jwt_req *r)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct cached *e = &c->v[i];
		if (strcmp(e->key, r->key) == 0 && e->fresh_until > r->requested_at) {
			jwt_cache_req_answer(r, GRPC_STATUS_OK, e->token, e->expires_at, NULL);
			return true;
		}
	}
	return false;
}
