/* fuzz_signer_msg: the signer's message codec (server/signer_msg.h), the only parser between the
 * network-facing server and the process holding the CA keys. Input: one request or reply
 * message. What decodes must encode back to the same bytes; what does not is -EINVAL. A decoded
 * SIGN_BATCH request's digests, and a reply read as a batch of signatures, must lie inside the
 * message and rebuild it. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "signer_msg.h"

static void check_batch_req(const struct signer_req *req)
{
	const uint8_t *d[SIGNER_BATCH_MAX];
	size_t dl[SIGNER_BATCH_MAX], n = 0;
	int r = signer_batch_req_get(req, d, dl, &n);
	FUZZ_CHECK((r == 0) == (req->op == SIGNER_OP_SIGN_BATCH));
	if (r < 0)
		return;
	FUZZ_CHECK(n >= 1 && n <= SIGNER_BATCH_MAX);
	bool same = true;
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(d[i] > req->data && d[i] + dl[i] <= req->data + req->data_len);
		same = same && dl[i] == dl[0];
	}
	/* With one digest length (all the server sends), the builder makes the same bytes. */
	struct signer_req again = { 0 };
	if (same) {
		FUZZ_CHECK(signer_batch_req_set(&again, d, dl[0], n) == 0);
		FUZZ_CHECK(again.data_len == req->data_len &&
			   memcmp(again.data, req->data, req->data_len) == 0);
	}
}

/* Read as a batch reply of data[0] signatures: rebuilt by signer_batch_rep_add, same bytes. */
static void check_batch_rep(const struct signer_rep *rep)
{
	const uint8_t *s[SIGNER_BATCH_MAX];
	size_t sl[SIGNER_BATCH_MAX], n = rep->data[0];
	if (n > SIGNER_BATCH_MAX || signer_batch_rep_get(rep, n, s, sl) < 0)
		return;
	FUZZ_CHECK(rep->status == 0 && n >= 1);
	struct signer_rep again = { 0 };
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(signer_batch_rep_add(&again, s[i], sl[i]) == 0);
	FUZZ_CHECK(again.data_len == rep->data_len &&
		   memcmp(again.data, rep->data, rep->data_len) == 0);
}

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
		check_batch_req(&req);
	} else {
		FUZZ_CHECK(r == -EINVAL);
	}
	r = signer_rep_decode(data, size, &rep);
	if (r == 0) {
		FUZZ_CHECK(rep.data_len <= SIGNER_REP_DATA_MAX && rep.status <= 0);
		size_t n = signer_rep_encode(&rep, out, sizeof(out));
		FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
		if (rep.data_len > 0)
			check_batch_rep(&rep);
	} else {
		FUZZ_CHECK(r == -EINVAL);
	}
	return 0;
}
