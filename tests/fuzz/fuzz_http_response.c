/* fuzz_http_response: the HTTP/1.1 response parser the federation fetcher runs on what a bundle
 * endpoint sends (common/http_response.h). The input is the whole response. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "http_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size + 1 bytes, as the fetcher gives: ASan sees any read past them. */
	char *buf = malloc(size + 1);
	char err[256] = "";
	long status = 0;
	size_t body_len = 0;
	if (!buf)
		abort();
	if (size)
		memcpy(buf, data, size);
	buf[size] = '\0';
	if (http_response_parse(buf, size, &status, &body_len, err, sizeof(err)) == 0) {
		FUZZ_CHECK(body_len <= size);
		FUZZ_CHECK(buf[body_len] == '\0');
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	free(buf);
	return 0;
}
