/* persist_check.h: the invariants of what the agent's state loader (agent/persist.h) accepted,
 * shared by fuzz_persist (state.json alone) and fuzz_persist_dir (the whole data_dir): entries
 * sorted and unique, every SVID kept belongs to an entry, names that entry's SPIFFE ID, is
 * unexpired at now and its key matches its certificate. */
#ifndef LANYARD_FUZZ_PERSIST_CHECK_H
#define LANYARD_FUZZ_PERSIST_CHECK_H

#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "keys.h"
#include "persist.h"
#include "svid_cache.h"
#include "x509.h"

static inline const struct entry *fuzz_persist_entry(const struct persist_data *d,
							   const char *id)
{
	for (size_t i = 0; i < d->n_entries; i++)
		if (strcmp(d->entries[i]->id, id) == 0)
			return d->entries[i];
	return NULL;
}

static inline void fuzz_persist_check_state(const struct persist_data *d, int64_t now)
{
	for (size_t i = 1; i < d->n_entries; i++)
		FUZZ_CHECK(strcmp(d->entries[i - 1]->id, d->entries[i]->id) < 0);
	for (size_t i = 0; i < d->n_svids; i++) {
		const struct svid *v = d->svids[i];
		const struct entry *e = fuzz_persist_entry(d, v->entry_id);
		FUZZ_CHECK(e != NULL);
		FUZZ_CHECK(v->spiffe_id && strcmp(v->spiffe_id, e->spiffe_id) == 0);
		FUZZ_CHECK(v->not_after > now && v->not_before <= v->not_after);
		FUZZ_CHECK(v->renew_at >= v->not_before && v->renew_at <= v->not_after);
		lkey *k = NULL;
		FUZZ_CHECK(lkey_from_der(v->key, v->key_len, &k) == 0);
		FUZZ_CHECK(lkey_matches_cert(k, v->chain, v->chain_len));
		lkey_free(k);
	}
}

#endif
