/* agent_pack.h: an agent record copied into one malloc'd block (the struct, its selector and
 * alias arrays and every string), for the records the node API keeps per connected agent (the
 * entry stream's, the connection's SignX509 cache): one allocation instead of 5 or more, so the
 * allocator's header and rounding are paid once per agent instead of per piece.
 *
 * The result is a plain struct agent_record for every reader; it is freed with free(), never
 * with agent_record_free. Pure functions: any thread. */
#ifndef LANYARD_AGENT_PACK_H
#define LANYARD_AGENT_PACK_H

#include <stdbool.h>
#include <stddef.h>

#include "datastore.h"

/* The bytes agent_pack(a, with_serial) allocates. */
size_t agent_pack_size(const struct agent_record *a, bool with_serial);
/* A copy of a in one block: spiffe_id, selectors, aliases, not_after, created_at, last_seen and
 * banned; serial too when with_serial (NULL otherwise, or when a has none); attestor always NULL
 * (no reader of a kept record uses it). Never NULL (aborts on memory exhaustion, as xmalloc). */
struct agent_record *agent_pack(const struct agent_record *a, bool with_serial);
/* Copies src (its NUL included) to *at and advances *at past it; returns the copy. */
char *agent_pack_str(char **at, const char *src);

#endif
