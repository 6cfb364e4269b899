/* fuzz_persist: the agent's state.json parser (persist_parse_state, agent/persist.h), which must
 * treat the file as untrusted: anyone who could write it must not get a key, an SPIFFE ID or a
 * validity period served that the certificate and the persisted bundle do not vouch for.
 *
 * Input: 8 bytes big-endian "now" (unix seconds), 2 bytes big-endian bundle length, the bundle
 * (concatenated DER CA certificates), then the text of state.json. Fixing "now" in the input
 * keeps the seeds' SVIDs valid forever. Invariants on success: entries are sorted and unique,
 * every SVID kept belongs to an entry, names that entry's SPIFFE ID, is unexpired at now, and its
 * key matches its certificate. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "keys.h"
#include "persist.h"
#include "svid_cache.h"
#include "x509.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

static const struct entry *entry_of(const struct persist_data *d, const char *id)
{
	for (size_t i = 0; i < d->n_entries; i++)
		if (strcmp(d->entries[i]->id, id) == 0)
			return d->entries[i];
	return NULL;
}

static void check_loaded(const struct persist_data *d, int64_t now)
{
	for (size_t i = 1; i < d->n_entries; i++)
		FUZZ_CHECK(strcmp(d->entries[i - 1]->id, d->entries[i]->id) < 0);
	for (size_t i = 0; i < d->n_svids; i++) {
		const struct svid *v = d->svids[i];
		const struct entry *e = entry_of(d, v->entry_id);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 10)
		return 0;
	uint64_t unow = 0;
	for (int i = 0; i < 8; i++)
		unow = unow << 8 | data[i];
	int64_t now = (int64_t)(unow & INT64_MAX);
	size_t blen = (size_t)data[8] << 8 | data[9];
	data += 10;
	size -= 10;
	if (blen > size)
		blen = size;
	const uint8_t *bundle = data;
	char *text = fuzz_cstr(data + blen, size - blen);

	struct persist_data d;
	char err[1024] = "";
	memset(&d, 0, sizeof(d));
	if (persist_parse_state("state.json", text, size - blen, now, blen ? bundle : NULL, blen,
				&d, err, sizeof(err)) == 0)
		check_loaded(&d, now);
	else
		FUZZ_CHECK(err[0] != '\0');
	persist_data_free(&d);
	free(text);
	return 0;
}
