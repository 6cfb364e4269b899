/* entry_bulk.h: helpers for handling entries by the thousand: the opaque page tokens of a paginated
 * listing and the duplicates within a batch. Pure functions; no locking, no I/O. */
#ifndef LANYARD_ENTRY_BULK_H
#define LANYARD_ENTRY_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/* Large enough for any token entry_page_token_encode makes. */
#define ENTRY_PAGE_TOKEN_MAX 160

/* The token of the page that follows the entry last (the last one of a page). Listings are sorted
 * by (created_at, id), and the token names that key: a client cannot tell, and must not rely on,
 * what it holds. */
void entry_page_token_encode(const struct entry *last, char out[ENTRY_PAGE_TOKEN_MAX]);
/* Reads a token back: 0, or -EINVAL when tok was not made by entry_page_token_encode.
 * id_out receives the entry id (37 bytes with the NUL). */
int entry_page_token_decode(const char *tok, int64_t *created_at, char id_out[37]);

/* Looks for two entries of v with the same SPIFFE ID, parent ID and selector set (selectors
 * normalised), which the datastore would refuse as duplicates. Returns true and their indexes
 * (*first < *second) for the first such pair in order of the second index; false when none. */
bool entry_batch_find_duplicate(struct entry *const *v, size_t n, size_t *first, size_t *second);

#endif
