/* fuzz_csr: PKCS#10 CSR parsing (common/x509.h x509_csr_parse), the first thing the server does
 * with the bytes of an Attest, RenewAgent or SignX509 request. The input is the DER CSR. */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "keys.h"
#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csr_info ci;
	char err[256] = "";

	if (x509_csr_parse(data, size, &ci, err, sizeof(err)) == 0) {
		enum key_type t;
		int bits = 0;
		FUZZ_CHECK(ci.spki && ci.spki_len > 0 && ci.spki_len < size);
		/* The accepted key is one of ours, and the same when read again. */
		FUZZ_CHECK(spki_key_type(ci.spki, ci.spki_len, &t, &bits) == 0);
		FUZZ_CHECK(t == ci.type);
		FUZZ_CHECK(memmem(data, size, ci.spki, ci.spki_len) != NULL);
	} else {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(ci.spki == NULL);
	}
	csr_info_free(&ci);
	return 0;
}
