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
#include "persist.h"
#include "persist_check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 10)
		return 0;
	struct fuzz_input in = {data, size};
	int64_t now = (int64_t)(fuzz_take_u64(&in) & INT64_MAX);
	size_t blen = (size_t)fuzz_take_u8(&in) << 8;
	blen |= fuzz_take_u8(&in);
	data = in.p;
	size = in.n;
	if (blen > size)
		blen = size;
	const uint8_t *bundle = data;
	char *text = fuzz_cstr(data + blen, size - blen);

	struct persist_data d;
	char err[1024] = "";
	memset(&d, 0, sizeof(d));
	if (persist_parse_state("state.json", text, size - blen, now, blen ? bundle : NULL, blen,
				&d, err, sizeof(err)) == 0)
		fuzz_persist_check_state(&d, now);
	else
		FUZZ_CHECK(err[0] != '\0');
	persist_data_free(&d);
	free(text);
	return 0;
}
