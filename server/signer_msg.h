/* signer_msg.h: the fixed binary format between the server and its signer process (signer.h).
 *
 * One request and one reply per SOCK_SEQPACKET message, so a message is never split or merged;
 * every field has an explicit length that the decoder checks against the bytes received and the
 * limits below. A message of any other size, an unknown op or kind, or a length out of range is
 * refused with -EINVAL (never trusted, never a crash): the signer answers it with an error reply.
 *
 *   request: op u8 | kind u8 | data_len u16 | handle u32 | data[data_len]      (big-endian)
 *   reply:   status i32 | handle u32 | data_len u16 | 0 u16 | data[data_len]
 *
 * Requests: SIGN(handle, digest of 32/48/64 bytes) -> DER ECDSA or PKCS#1 v1.5 RSA signature;
 * SIGN_BATCH(handle, count u8 | count x (digest_len u8 | digest)) -> count u8 | count x
 * (sig_len u16 | signature), count 1..SIGNER_BATCH_MAX, each digest 32/48/64 bytes: the
 * signatures of a batch of X509-SVIDs in one round trip, in request order, all or none;
 * GENERATE(kind, authority id) -> a new key written to its file, handle + SubjectPublicKeyInfo;
 * LOAD(kind, authority id; UPSTREAM: no id) -> handle + SPKI; PUBLIC_KEY(handle) -> SPKI;
 * DESTROY(authority id) -> both key files removed and their keys dropped. A reply with a
 * negative status carries a message for the operator in data (never key material).
 *
 * Pure functions, no state: safe from any thread. */
#ifndef LANYARD_SIGNER_MSG_H
#define LANYARD_SIGNER_MSG_H

#include <stddef.h>
#include <stdint.h>

#define SIGNER_REQ_HEADER 8
#define SIGNER_ID_MAX 64
#define SIGNER_DIGEST_MAX 64
#define SIGNER_SIG_MAX 512 /* LKEY_SIG_MAX: RSA-4096 */
#define SIGNER_BATCH_MAX 16
#define SIGNER_REQ_DATA_MAX (1 + SIGNER_BATCH_MAX * (1 + SIGNER_DIGEST_MAX))
#define SIGNER_REQ_MAX (SIGNER_REQ_HEADER + SIGNER_REQ_DATA_MAX)
#define SIGNER_REP_HEADER 12
#define SIGNER_REP_DATA_MAX (1 + SIGNER_BATCH_MAX * (2 + SIGNER_SIG_MAX))
#define SIGNER_REP_MAX (SIGNER_REP_HEADER + SIGNER_REP_DATA_MAX)

enum signer_op {
	SIGNER_OP_SIGN = 1,
	SIGNER_OP_GENERATE = 2,
	SIGNER_OP_LOAD = 3,
	SIGNER_OP_PUBLIC_KEY = 4,
	SIGNER_OP_DESTROY = 5,
	SIGNER_OP_SIGN_BATCH = 6,
};

/* Which key of an authority (or the upstream CA's key, configured in the signer). */
enum signer_kind {
	SIGNER_KIND_X509 = 0,
	SIGNER_KIND_JWT = 1,
	SIGNER_KIND_UPSTREAM = 2,
};

struct signer_req {
	uint8_t op;
	uint8_t kind;
	uint32_t handle;
	uint16_t data_len;
	uint8_t data[SIGNER_REQ_DATA_MAX];
};

struct signer_rep {
	int32_t status; /* 0, or a negative errno */
	uint32_t handle;
	uint16_t data_len;
	uint8_t data[SIGNER_REP_DATA_MAX];
};

/* Encoders: the message length, or 0 when the struct breaks the rules the decoder checks. */
size_t signer_req_encode(const struct signer_req *r, uint8_t *buf, size_t cap);
size_t signer_rep_encode(const struct signer_rep *r, uint8_t *buf, size_t cap);
/* Decoders: 0, or -EINVAL for a message of the wrong size or with a field out of range. */
int signer_req_decode(const uint8_t *buf, size_t len, struct signer_req *out);
int signer_rep_decode(const uint8_t *buf, size_t len, struct signer_rep *out);

/* SIGN_BATCH request data: n (1..SIGNER_BATCH_MAX) digests of dlen bytes each (32/48/64).
 * 0, or -EINVAL. */
int signer_batch_req_set(struct signer_req *r, const uint8_t *const *digests, size_t dlen,
			 size_t n);
/* The digests of a SIGN_BATCH request (pointers into r->data); *n their number. 0 or -EINVAL. */
int signer_batch_req_get(const struct signer_req *r, const uint8_t **digests, size_t *dlens,
			 size_t *n);
/* Appends a signature to a SIGN_BATCH reply under construction (data_len 0 to begin with).
 * 0, or -EINVAL when it does not fit or the batch is full. */
int signer_batch_rep_add(struct signer_rep *r, const uint8_t *sig, size_t siglen);
/* The signatures of a SIGN_BATCH reply (pointers into r->data): 0 when the reply carries exactly
 * n well-formed signatures, else -EINVAL. */
int signer_batch_rep_get(const struct signer_rep *r, size_t n, const uint8_t **sigs,
			 size_t *siglens);

/* True for an authority id the signer accepts in a file name: 1..SIGNER_ID_MAX of
 * [0-9a-zA-Z_-]. */
int signer_id_valid(const uint8_t *id, size_t len);

#endif
