/* entry_listing.c: GET /v1/entries streamed (entry_listing.h). */
#include "entry_listing.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "entry.h"
#include "entry_bulk.h"
#include "log.h"
#include "util.h"

#define HEAD "{\"entries\":["
#define BLOCK_SIZE (64 * 1024)

struct entry_listing {
	entry_listing_fetch_fn fetch;
	void *ud;
	/* The filter, its strings owned, after_* moved past each chunk. */
	struct entry_filter f;
	char *spiffe_id, *parent_id, **selectors;
	char after_id[37];
	/* The chunk being rendered. */
	struct entry **v;
	size_t n, next;
	bool more;		/* the datastore may hold more after this chunk */
	/* Paging: entries still to emit; SIZE_MAX when not paged. */
	bool paged;
	size_t left;
	struct entry last;	/* created_at and id of the last entry emitted, for the token */
	bool any;		/* an entry was emitted (a comma before the next) */
	enum { S_HEAD, S_ENTRIES, S_TAIL, S_DONE, S_FAILED } state;
	struct entry_json *tree;	/* reused for every entry: rendering allocates only strings */
	char *buf;		/* the current piece */
	size_t cap;
	/* entry_listing_response: the piece being copied out. */
	const char *pending;
	size_t pending_len;
};

static int fetch_ds(void *ud, const struct entry_filter *f, struct entry ***out, size_t *n)
{
	return ds_entry_list(ud, f, out, n);
}

static int reserve(struct entry_listing *l, size_t n)
{
	if (n <= l->cap)
		return 0;
	size_t cap = l->cap ? l->cap : 4096;
	while (cap < n)
		cap *= 2;
	char *p = realloc(l->buf, cap);
	if (!p)
		return -ENOMEM;
	l->buf = p;
	l->cap = cap;
	return 0;
}

/* e as compact JSON into l->buf, after a comma unless it is the first: the length, or < 0. */
static ssize_t render(struct entry_listing *l, const struct entry *e)
{
	size_t off = l->any ? 1 : 0;
	json_t *obj = entry_json_fill(l->tree, e);
	if (!obj)
		return -EINVAL;
	size_t need;
	for (;;) {
		size_t room = l->cap > off ? l->cap - off : 0;
		need = json_dumpb(obj, room ? l->buf + off : NULL, room, JSON_COMPACT);
		if (need == 0)
			return -EINVAL;
		if (need <= room)
			break;
		if (reserve(l, off + need) < 0)
			return -ENOMEM;
	}
	if (off)
		l->buf[0] = ',';
	return (ssize_t)(off + need);
}

/* Reads the next chunk (the previous one freed). */
static int fetch_chunk(struct entry_listing *l)
{
	entry_array_free(l->v, l->n);
	l->v = NULL;
	l->n = l->next = 0;
	/* One more than a page still needs: whether it exists says whether there is a next page. */
	size_t want = l->paged ? (l->left < ENTRY_LISTING_CHUNK ? l->left + 1 : ENTRY_LISTING_CHUNK)
			       : ENTRY_LISTING_CHUNK;
	l->f.limit = want;
	int ret = l->fetch(l->ud, &l->f, &l->v, &l->n);
	if (ret < 0) {
		l->v = NULL;
		l->n = 0;
		return ret;
	}
	l->more = l->n == want;
	if (l->n) {
		const struct entry *e = l->v[l->n - 1];
		snprintf(l->after_id, sizeof(l->after_id), "%s", e->id);
		l->f.after_id = l->after_id;
		l->f.after_created_at = e->created_at;
	}
	return 0;
}

/* The closing of the document into l->buf: its length, or < 0. */
static ssize_t render_tail(struct entry_listing *l)
{
	size_t len = 1;
	if (reserve(l, 64) < 0)
		return -ENOMEM;
	l->buf[0] = ']';
	if (l->paged) {
		char next[ENTRY_PAGE_TOKEN_MAX] = "";
		/* A full page: is there one more entry (read already, or in the next chunk)? */
		if (l->left == 0 && l->next == l->n && l->more) {
			int ret = fetch_chunk(l);
			if (ret < 0)
				return ret;
		}
		if (l->left == 0 && l->next < l->n)
			entry_page_token_encode(&l->last, next);
		json_t *tok = json_string(next);
		char *t = tok ? json_dumps(tok, JSON_ENCODE_ANY) : NULL;
		json_decref(tok);
		if (!t || reserve(l, strlen(t) + 64) < 0) {
			free(t);
			return -ENOMEM;
		}
		len += (size_t)sprintf(l->buf + len, ",\"next_page_token\":%s", t);
		free(t);
	}
	memcpy(l->buf + len, "}\n", 2);
	return (ssize_t)(len + 2);
}

/* The next entry, or NULL at the end of the page or of the matching entries (or after an error:
 * *err < 0). */
static const struct entry *next_entry(struct entry_listing *l, int *err)
{
	*err = 0;
	if (l->paged && l->left == 0)
		return NULL;
	if (l->next == l->n) {
		if (!l->more)
			return NULL;
		if ((*err = fetch_chunk(l)) < 0 || l->n == 0)
			return NULL;
	}
	return l->v[l->next++];
}

static ssize_t fail(struct entry_listing *l, int err, const char *what)
{
	log_warnx("admin: entry listing cut short after %s: %s (the client gets an incomplete "
		  "document)", l->any ? "some entries" : "the first bytes", what);
	l->state = S_FAILED;
	return err;
}

ssize_t entry_listing_next(struct entry_listing *l, const char **data)
{
	ssize_t len = 0;
	int err = 0;
	switch (l->state) {
	case S_HEAD:
		l->state = S_ENTRIES;
		*data = HEAD;
		return (ssize_t)strlen(HEAD);
	case S_ENTRIES: {
		const struct entry *e = next_entry(l, &err);
		if (err < 0)
			return fail(l, -EIO, "cannot read entries from the datastore");
		if (e) {
			if ((len = render(l, e)) < 0)
				return fail(l, (int)len, "cannot render an entry");
			l->any = true;
			l->last.created_at = e->created_at;
			memcpy(l->last.id, e->id, sizeof(l->last.id));
			if (l->paged)
				l->left--;
			*data = l->buf;
			return len;
		}
		l->state = S_TAIL;
	}
		/* fall through */
	case S_TAIL:
		if ((len = render_tail(l)) < 0)
			return fail(l, (int)len, len == -ENOMEM ? "out of memory" :
				    "cannot read entries from the datastore");
		l->state = S_DONE;
		*data = l->buf;
		return len;
	case S_DONE:
		return 0;
	case S_FAILED:
		return -EIO;
	}
	return -EIO;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int entry_listing_new(entry_listing_fetch_fn fetch, void *ud, const struct entry_filter *f,
		      size_t page_size, struct entry_listing **out)
{
	struct entry_listing *l = xcalloc(1, sizeof(*l));
	int ret;
	l->fetch = fetch ? fetch : fetch_ds;
	l->ud = ud;
	l->paged = page_size > 0;
	l->left = l->paged ? page_size : SIZE_MAX;
	l->more = true;
	if (f) {
		l->f = *f;
		l->f.spiffe_id = l->spiffe_id = dup_or_null(f->spiffe_id);
		l->f.parent_id = l->parent_id = dup_or_null(f->parent_id);
		l->selectors = xcalloc(f->n_selectors + 1, sizeof(char *));
		for (size_t i = 0; i < f->n_selectors; i++)
			l->selectors[i] = xstrdup(f->selectors[i]);
		l->f.selectors = (const char *const *)l->selectors;
		if (f->after_id) {
			snprintf(l->after_id, sizeof(l->after_id), "%s", f->after_id);
			l->f.after_id = l->after_id;
		}
	}
	if (!(l->tree = entry_json_new()))
		ret = -ENOMEM;
	else
		ret = fetch_chunk(l);
	if (ret < 0) {
		entry_listing_free(l);
		return ret;
	}
	*out = l;
	return 0;
}

void entry_listing_free(struct entry_listing *l)
{
	if (!l)
		return;
	entry_array_free(l->v, l->n);
	entry_json_free(l->tree);
	free(l->spiffe_id);
	free(l->parent_id);
	for (size_t i = 0; l->selectors && l->selectors[i]; i++)
		free(l->selectors[i]);
	free(l->selectors);
	free(l->buf);
	free(l);
}

/* libmicrohttpd's content reader: fills buf with as many pieces as fit. A failure after some
 * bytes of this call hands those over first; the next call ends the response with an error. */
static ssize_t read_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct entry_listing *l = cls;
	size_t done = 0;
	(void)pos;
	while (done < max) {
		if (l->pending_len == 0) {
			ssize_t n = entry_listing_next(l, &l->pending);
			if (n < 0)
				return done ? (ssize_t)done : MHD_CONTENT_READER_END_WITH_ERROR;
			if (n == 0)
				return done ? (ssize_t)done : MHD_CONTENT_READER_END_OF_STREAM;
			l->pending_len = (size_t)n;
		}
		size_t k = l->pending_len < max - done ? l->pending_len : max - done;
		memcpy(buf + done, l->pending, k);
		l->pending += k;
		l->pending_len -= k;
		done += k;
	}
	return (ssize_t)done;
}

static void free_cb(void *cls)
{
	entry_listing_free(cls);
}

struct MHD_Response *entry_listing_response(struct entry_listing *l)
{
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE,
								    read_cb, l, free_cb);
	if (!r) {
		entry_listing_free(l);
		return NULL;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return r;
}
