/* fuzz_spiffeid: SPIFFE ID and trust domain parsing (common/spiffeid.h). The input is the ID as
 * text; an embedded NUL ends it early, as it would in the C strings the callers pass. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "spiffeid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	char td[TRUST_DOMAIN_MAX + 1];
	char err[256] = "";
	const char *path = NULL;

	if (spiffeid_parse(s, td, &path, err, sizeof(err)) == 0) {
		size_t len = strlen(s);
		FUZZ_CHECK(len <= SPIFFEID_MAX);
		FUZZ_CHECK(path >= s && path <= s + len);
		FUZZ_CHECK(strlen(td) >= 1 && strlen(td) <= TRUST_DOMAIN_MAX);
		FUZZ_CHECK(trust_domain_validate(td, NULL, 0) == 0);
		FUZZ_CHECK(spiffeid_member_of(s, td));
		FUZZ_CHECK((spiffeid_validate_leaf(s, err, sizeof(err)) == 0) == (*path != '\0'));
		/* The ID is spiffe://<td><path>, nothing more and nothing less. */
		FUZZ_CHECK(strncmp(s, "spiffe://", 9) == 0);
		FUZZ_CHECK(strncmp(s + 9, td, strlen(td)) == 0);
		FUZZ_CHECK(s + 9 + strlen(td) == path);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(spiffeid_validate_leaf(s, NULL, 0) < 0);
		FUZZ_CHECK(!spiffeid_member_of(s, "example.org"));
	}
	/* The same bytes as a bare trust domain (configuration files, CLI flags). */
	err[0] = '\0';
	if (trust_domain_validate(s, err, sizeof(err)) == 0) {
		char id[TRUST_DOMAIN_MAX + 16];
		FUZZ_CHECK(strlen(s) <= TRUST_DOMAIN_MAX);
		snprintf(id, sizeof(id), "spiffe://%s", s);
		FUZZ_CHECK(spiffeid_parse(id, td, &path, NULL, 0) == 0);
		FUZZ_CHECK(strcmp(td, s) == 0 && *path == '\0');
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	free(s);
	return 0;
}
