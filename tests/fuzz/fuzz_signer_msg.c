/* fuzz_signer_msg: the signer's message codec (server/signer_msg.h), the only parser between the
 * network-facing server and the process holding the CA keys. Input: one request or reply
 * message. What decodes must encode back to the same bytes; what does not is -EINVAL. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "signer_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[SIGNER_REP_MAX];
	struct signer_req req;
	struct signer_rep rep;
	int r = signer_req_decode(data, size, &req);
	if (r == 0) {
		FUZZ_CHECK(req.data_len <= SIGNER_REQ_DATA_MAX);
		size_t n = signer_req_encode(&req, out, sizeof(out));
		FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
	} else {
		FUZZ_CHECK(r == -EINVAL);
	}
	r = signer_rep_decode(data, size, &rep);
	if (r == 0) {
		FUZZ_CHECK(rep.data_len <= SIGNER_REP_DATA_MAX && rep.status <= 0);
		size_t n = signer_rep_encode(&rep, out, sizeof(out));
		FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
	} else {
		FUZZ_CHECK(r == -EINVAL);
	}
	return 0;
}
