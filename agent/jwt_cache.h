/* jwt_cache.h: the agent's JWT-SVID requests and the cache of the tokens the server signed.
 *
 * A jwt_req is one token request: built on the loop thread by the Workload API (workload_jwt.c),
 * answered from the cache there, or by the sync thread (node_client_fetch_jwt(), which makes its
 * own jwt_req to carry the request across) and handed back to the loop thread to run its
 * callback. It has one owner at a time; node_client moves it between its queues through the
 * next link.
 *
 * The cache belongs to the Workload API on the loop thread alone (no lock). It keeps a token until its half-life, keyed by the
 * entry id and the sorted audience set, and holds at most JWT_CACHE_MAX tokens. */
#ifndef LANYARD_JWT_CACHE_H
#define LANYARD_JWT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node_client.h"

struct jwt_req {
	struct jwt_req *next; /* link of the queue that holds it */
	char *entry_id;
	char **aud;           /* sorted */
	size_t n_aud;
	char *key;            /* entry id and sorted audiences: the cache key */
	node_jwt_cb cb;
	void *ud;
	int64_t requested_at; /* unix seconds */
	uint64_t epoch;       /* the owner's cache generation when asked (workload_jwt.c) */
	/* The answer. */
	int status;           /* gRPC status code */
	char *token;
	char *message;
	int64_t expires_at;
};

/* A request for entry_id and a copy of the audience set (n_audience > 0), sorted, with its cache
 * key. Never NULL (allocation failure aborts, as xmalloc does). */
struct jwt_req *jwt_cache_req_new(const char *entry_id, char *const *audience, size_t n_audience,
				  node_jwt_cb cb, void *ud, int64_t now);
/* Wipes the token and frees. NULL-safe. */
void jwt_cache_req_free(struct jwt_req *r);
/* Records the answer (copies token and message, either may be NULL). */
void jwt_cache_req_answer(struct jwt_req *r, int status, const char *token, int64_t expires_at,
			  const char *message);
/* Reverses a list linked by next (queues are pushed at the head) and returns its new head. */
struct jwt_req *jwt_cache_req_reverse(struct jwt_req *list);

/* The cache key of an entry and an audience list, kept in the given order (callers sort first).
 * Each part is length-prefixed, so no two different inputs share a key. Caller frees. */
char *jwt_cache_key(const char *entry_id, char *const *aud, size_t n_aud);

struct jwt_cache;
/* Never NULL (allocation failure aborts). */
struct jwt_cache *jwt_cache_new(void);
/* Wipes the tokens and frees. NULL-safe. */
void jwt_cache_free(struct jwt_cache *c);
/* Stores the token of r, an answered request with status OK, until its half-life counted from
 * r->requested_at; drops any older token for the same key and every token past its half-life
 * at now. A token already past its half-life, or one that finds the cache full, is not kept. */
void jwt_cache_put(struct jwt_cache *c, const struct jwt_req *r, int64_t now);
/* When the cache holds a token for r->key that is before its half-life at r->requested_at,
 * answers r with it (status OK) and returns true; otherwise leaves r alone and returns false. */
bool jwt_cache_answer(struct jwt_cache *c, struct jwt_req *r);

#endif
