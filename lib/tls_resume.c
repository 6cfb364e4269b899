/* tls_resume.c: a bounded table of resumable wolfSSL sessions (see tls_resume.h). A plain array
 * searched linearly: the tables are small (a client's peers, a server's recent TLS 1.2
 * sessions) and a lookup costs well under a microsecond next to a handshake. A tag is the
 * entry's index plus one in its low 24 bits and the entry's generation above them; the
 * generation changes whenever the entry is given to another key. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tls_resume.h"

#define INDEX_BITS 24
#define INDEX_MASK ((UINT64_C(1) << INDEX_BITS) - 1)

struct entry {
	uint8_t key[TLS_RESUME_KEY_MAX];
	size_t len; /* 0: a free slot */
	uint64_t gen;
	WOLFSSL_SESSION *sess; /* NULL while claimed but not stored */
	const WOLFSSL_CTX *owner;
	int64_t not_after;
	uint64_t used; /* the table's clock at the last claim, put or hit, for LRU eviction */
};

struct tls_resume {
	pthread_mutex_t lock;
	struct entry *e;
	size_t max;
	uint64_t clock;
};

struct tls_resume *tls_resume_new(size_t max)
{
	struct tls_resume *r;

	if (max == 0 || max > INDEX_MASK - 1)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->e = calloc(max, sizeof(*r->e));
	if (!r->e) {
		free(r);
		return NULL;
	}
	r->max = max;
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

static void forget(struct entry *e)
{
	wolfSSL_SESSION_free(e->sess);
	e->sess = NULL;
	e->owner = NULL;
}

void tls_resume_free(struct tls_resume *r)
{
	if (!r)
		return;
	tls_resume_clear(r);
	pthread_mutex_destroy(&r->lock);
	free(r->e);
	free(r);
}

/* Under lock. */
static struct entry *find(struct tls_resume *r, const void *key, size_t len)
{
	if (len == 0 || len > TLS_RESUME_KEY_MAX)
		return NULL;
	for (size_t i = 0; i < r->max; i++)
		if (r->e[i].len == len && memcmp(r->e[i].key, key, len) == 0)
			return &r->e[i];
	return NULL;
}

/* Under lock: the entry a tag names, NULL when stale. */
static struct entry *by_tag(struct tls_resume *r, uint64_t tag)
{
	uint64_t i = tag & INDEX_MASK;

	if (i == 0 || i > r->max || r->e[i - 1].gen != tag >> INDEX_BITS || !r->e[i - 1].len)
		return NULL;
	return &r->e[i - 1];
}

static uint64_t tag_of(const struct tls_resume *r, const struct entry *e)
{
	return (e->gen << INDEX_BITS) | (uint64_t)(e - r->e + 1);
}

uint64_t tls_resume_claim(struct tls_resume *r, const void *key, size_t len)
{
	struct entry *e;
	uint64_t tag;

	if (len == 0 || len > TLS_RESUME_KEY_MAX)
		return 0;
	pthread_mutex_lock(&r->lock);
	e = find(r, key, len);
	if (!e) {
		/* A free slot, else the least recently used one. */
		e = &r->e[0];
		for (size_t i = 0; i < r->max && e->len; i++)
			if (!r->e[i].len || r->e[i].used < e->used)
				e = &r->e[i];
		forget(e);
		e->gen = (e->gen + 1) & (UINT64_MAX >> INDEX_BITS);
		memcpy(e->key, key, len);
		e->len = len;
	}
	e->used = ++r->clock;
	tag = tag_of(r, e);
	pthread_mutex_unlock(&r->lock);
	return tag;
}

void tls_resume_put(struct tls_resume *r, uint64_t tag, WOLFSSL_SESSION *sess,
		    const WOLFSSL_CTX *owner, int64_t not_after)
{
	struct entry *e;

	pthread_mutex_lock(&r->lock);
	e = by_tag(r, tag);
	if (e) {
		forget(e);
		e->sess = sess;
		e->owner = owner;
		e->not_after = not_after;
		e->used = ++r->clock;
		sess = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	wolfSSL_SESSION_free(sess);
}

/* Under lock: e when its session may be used by owner at now; a stale one is forgotten. */
static struct entry *usable(struct tls_resume *r, struct entry *e, const WOLFSSL_CTX *owner,
			    int64_t now)
{
	if (!e || !e->sess)
		return NULL;
	if (e->owner != owner || now >= e->not_after) {
		forget(e);
		return NULL;
	}
	e->used = ++r->clock;
	return e;
}

int tls_resume_offer(struct tls_resume *r, uint64_t tag, WOLFSSL *ssl, int64_t now)
{
	struct entry *e;
	int offered = 0;

	pthread_mutex_lock(&r->lock);
	e = usable(r, by_tag(r, tag), wolfSSL_get_SSL_CTX(ssl), now);
	/* wolfSSL copies the session into ssl; it refuses one it knows cannot be resumed. */
	if (e && wolfSSL_set_session(ssl, e->sess) == WOLFSSL_SUCCESS)
		offered = 1;
	pthread_mutex_unlock(&r->lock);
	return offered;
}

WOLFSSL_SESSION *tls_resume_get(struct tls_resume *r, const void *key, size_t len,
				const WOLFSSL_CTX *owner, int64_t now)
{
	WOLFSSL_SESSION *s = NULL;
	struct entry *e;

	pthread_mutex_lock(&r->lock);
	e = usable(r, find(r, key, len), owner, now);
	if (e && wolfSSL_SESSION_up_ref(e->sess) == WOLFSSL_SUCCESS)
		s = e->sess;
	pthread_mutex_unlock(&r->lock);
	return s;
}

void tls_resume_drop(struct tls_resume *r, uint64_t tag)
{
	struct entry *e;

	pthread_mutex_lock(&r->lock);
	e = by_tag(r, tag);
	if (e)
		forget(e);
	pthread_mutex_unlock(&r->lock);
}

void tls_resume_drop_key(struct tls_resume *r, const void *key, size_t len)
{
	struct entry *e;

	pthread_mutex_lock(&r->lock);
	e = find(r, key, len);
	if (e)
		forget(e);
	pthread_mutex_unlock(&r->lock);
}

void tls_resume_clear(struct tls_resume *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->max; i++)
		forget(&r->e[i]);
	pthread_mutex_unlock(&r->lock);
}

size_t tls_resume_count(struct tls_resume *r)
{
	size_t n = 0;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->max; i++)
		n += r->e[i].sess != NULL;
	pthread_mutex_unlock(&r->lock);
	return n;
}
