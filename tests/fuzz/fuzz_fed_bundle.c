/* fuzz_fed_bundle: a foreign trust domain's bundle document (server/fed_bundle.h), as an
 * operator's "bundle set" file or a fetched bundle endpoint answer gives it: PEM certificates or
 * a SPIFFE bundle (JWK Set). An accepted bundle validates, and its SPIFFE document parses back to
 * the same authorities and sequence. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fed_bundle.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fed_bundle *b = NULL, *back = NULL;
	char err[512] = "";
	bool has_seq = false;
	char *doc = NULL;

	int r = fed_bundle_parse("two.test", (const char *)data, size, &b, &has_seq, err,
				 sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && err[0] != '\0' && b == NULL);
		return 0;
	}
	FUZZ_CHECK(fed_bundle_validate(b, err, sizeof(err)) == 0);
	FUZZ_CHECK(b->x509_len > 0 || jwks_count(b->jwt) > 0);
	doc = fed_bundle_to_spiffe_json(b);
	FUZZ_CHECK(doc != NULL);
	FUZZ_CHECK(fed_bundle_parse("two.test", doc, strlen(doc), &back, &has_seq, err,
				    sizeof(err)) == 0);
	FUZZ_CHECK(has_seq && back->sequence == b->sequence);
	FUZZ_CHECK(back->x509_len == b->x509_len &&
		   (b->x509_len == 0 || memcmp(back->x509, b->x509, b->x509_len) == 0));
	FUZZ_CHECK(jwks_count(back->jwt) == jwks_count(b->jwt));
	json_t *sum = fed_bundle_summary_json(b);
	FUZZ_CHECK(sum != NULL);
	json_decref(sum);
	free(doc);
	fed_bundle_free(back);
	fed_bundle_free(b);
	return 0;
}
