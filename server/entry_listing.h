/* entry_listing.h: the admin API's listing of registration entries (GET /v1/entries) as one JSON
 * document streamed to the client while it is read from the datastore, instead of one text of
 * tens of megabytes built first.
 *
 * The document is byte for byte what json_dumps(..., JSON_COMPACT) of {"entries":[...]} gives
 * (entry_to_json's members in its order; with a page, "next_page_token" after the entries, ""
 * on the last page), followed by a newline. The entries are read in chunks of
 * ENTRY_LISTING_CHUNK through the datastore's keyset pages on (created_at, id), so the
 * datastore (SQLite's mutex, a PostgreSQL pool connection) is never held while the client
 * reads, and rendered one at a time with jansson from one reused object tree (entry_json,
 * entry.h: the entry's members are written there only) into one reused
 * buffer: the server holds one chunk of entries and one rendered entry, never the whole list.
 *
 * Consistency, as for consecutive pages (datastore.h): an entry that exists throughout the
 * listing appears exactly once (changed meanwhile: in either version), in (created_at, id)
 * order; one created or deleted during the listing may or may not appear.
 *
 * Errors: a datastore error on the first chunk is returned by entry_listing_new, so the caller
 * can still answer with an error status. A later one (or an entry jansson cannot render) is
 * logged once and ends the document where it is, without the closing "]}": what the client got
 * does not parse. Over HTTP (entry_listing_response) the response then ends with an error:
 * libmicrohttpd closes the connection without the last chunk of the chunked encoding, which a
 * client such as curl reports as a partial transfer.
 *
 * Threading: a listing is used by one thread at a time (libmicrohttpd's connection thread);
 * the datastore as datastore.h says. */
#ifndef LANYARD_ENTRY_LISTING_H
#define LANYARD_ENTRY_LISTING_H

#include <stddef.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "datastore.h"

/* Entries read from the datastore at a time. */
#define ENTRY_LISTING_CHUNK 512

struct entry_listing;

/* Reads entries as ds_entry_list does (f->limit set by the listing). Tests pass their own. */
typedef int (*entry_listing_fetch_fn)(void *ud, const struct entry_filter *f,
				      struct entry ***out, size_t *n);

/* A listing of the entries matching f (its after_id/after_created_at start it; f->limit is
 * ignored; its strings are copied). page_size 0: all of them, no "next_page_token"; else at
 * most page_size entries and "next_page_token" (entry_bulk.h) when more match. fetch NULL:
 * ds_entry_list on ud (a struct datastore). Reads the first chunk: 0, or the datastore's
 * negative error (nothing sent yet). */
int entry_listing_new(entry_listing_fetch_fn fetch, void *ud, const struct entry_filter *f,
		      size_t page_size, struct entry_listing **out);
/* The next bytes of the document in *data (valid until the next call or the free): their
 * count, 0 at the end, or a negative error (-EIO, -ENOMEM; logged) after which the document
 * stays incomplete. */
ssize_t entry_listing_next(struct entry_listing *l, const char **data);
/* NULL-safe. */
void entry_listing_free(struct entry_listing *l);

/* A 200 response streaming the document (content type application/json); it owns l from
 * then on, and frees it when libmicrohttpd is done (also on failure: NULL). */
struct MHD_Response *entry_listing_response(struct entry_listing *l);

#endif
