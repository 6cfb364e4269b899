/* signer_msg.c: encoding and checking of the signer's messages (signer_msg.h). */
#include "signer_msg.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int signer_id_valid(const uint8_t *id, size_t len)
{
	if (len == 0 || len > SIGNER_ID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static bool digest_len_ok(size_t len)
{
	return len == 32 || len == 48 || len == 64;
}

/* Walks SIGN_BATCH request data: count u8 | count x (len u8 | digest). Outputs may be NULL. */
static int batch_walk(const uint8_t *data, size_t len, const uint8_t **digests, size_t *dlens,
		      size_t *n)
{
	if (len < 1 || data[0] == 0 || data[0] > SIGNER_BATCH_MAX)
		return -EINVAL;
	size_t count = data[0], off = 1;
	for (size_t i = 0; i < count; i++) {
		if (off >= len || !digest_len_ok(data[off]) || len - off - 1 < data[off])
			return -EINVAL;
		if (digests) {
			digests[i] = data + off + 1;
			dlens[i] = data[off];
		}
		off += 1 + (size_t)data[off];
	}
	if (off != len)
		return -EINVAL;
	if (n)
		*n = count;
	return 0;
}

int signer_batch_req_set(struct signer_req *r, const uint8_t *const *digests, size_t dlen,
			 size_t n)
{
	if (n == 0 || n > SIGNER_BATCH_MAX || !digest_len_ok(dlen))
		return -EINVAL;
	size_t off = 1;
	r->op = SIGNER_OP_SIGN_BATCH;
	r->data[0] = (uint8_t)n;
	for (size_t i = 0; i < n; i++) {
		r->data[off++] = (uint8_t)dlen;
		memcpy(r->data + off, digests[i], dlen);
		off += dlen;
	}
	r->data_len = (uint16_t)off;
	return 0;
}

int signer_batch_req_get(const struct signer_req *r, const uint8_t **digests, size_t *dlens,
			 size_t *n)
{
	if (r->op != SIGNER_OP_SIGN_BATCH || r->data_len > SIGNER_REQ_DATA_MAX)
		return -EINVAL;
	return batch_walk(r->data, r->data_len, digests, dlens, n);
}

int signer_batch_rep_add(struct signer_rep *r, const uint8_t *sig, size_t siglen)
{
	if (r->data_len == 0)
		r->data[r->data_len++] = 0;
	if (r->data[0] >= SIGNER_BATCH_MAX || siglen == 0 || siglen > SIGNER_SIG_MAX ||
	    (size_t)(SIGNER_REP_DATA_MAX - r->data_len) < 2 + siglen)
		return -EINVAL;
	put16(r->data + r->data_len, (uint16_t)siglen);
	memcpy(r->data + r->data_len + 2, sig, siglen);
	r->data_len = (uint16_t)(r->data_len + 2 + siglen);
	r->data[0]++;
	return 0;
}

int signer_batch_rep_get(const struct signer_rep *r, size_t n, const uint8_t **sigs,
			 size_t *siglens)
{
	if (r->status != 0 || r->data_len > SIGNER_REP_DATA_MAX || r->data_len < 1 ||
	    r->data[0] != n || n > SIGNER_BATCH_MAX)
		return -EINVAL;
	size_t off = 1, len = r->data_len;
	for (size_t i = 0; i < n; i++) {
		if (len - off < 2)
			return -EINVAL;
		size_t sl = get16(r->data + off);
		off += 2;
		if (sl == 0 || sl > SIGNER_SIG_MAX || len - off < sl)
			return -EINVAL;
		sigs[i] = r->data + off;
		siglens[i] = sl;
		off += sl;
	}
	return off == len ? 0 : -EINVAL;
}

/* The per-op rules on kind and data, shared by both directions of the request codec. */
static bool req_valid(const struct signer_req *r)
{
	if (r->data_len > SIGNER_REQ_DATA_MAX || r->kind > SIGNER_KIND_UPSTREAM)
		return false;
	switch (r->op) {
	case SIGNER_OP_SIGN:
		return digest_len_ok(r->data_len);
	case SIGNER_OP_SIGN_BATCH:
		return batch_walk(r->data, r->data_len, NULL, NULL, NULL) == 0;
	case SIGNER_OP_PUBLIC_KEY:
		return r->data_len == 0;
	case SIGNER_OP_LOAD:
		if (r->kind == SIGNER_KIND_UPSTREAM)
			return r->data_len == 0;
		return signer_id_valid(r->data, r->data_len);
	case SIGNER_OP_GENERATE:
		return r->kind != SIGNER_KIND_UPSTREAM && signer_id_valid(r->data, r->data_len);
	case SIGNER_OP_DESTROY:
		return signer_id_valid(r->data, r->data_len);
	default:
		return false;
	}
}

size_t signer_req_encode(const struct signer_req *r, uint8_t *buf, size_t cap)
{
	size_t len = SIGNER_REQ_HEADER + (size_t)r->data_len;
	if (!req_valid(r) || cap < len)
		return 0;
	buf[0] = r->op;
	buf[1] = r->kind;
	put16(buf + 2, r->data_len);
	put32(buf + 4, r->handle);
	memcpy(buf + SIGNER_REQ_HEADER, r->data, r->data_len);
	return len;
}

int signer_req_decode(const uint8_t *buf, size_t len, struct signer_req *out)
{
	memset(out, 0, sizeof(*out));
	if (len < SIGNER_REQ_HEADER || len > SIGNER_REQ_MAX)
		return -EINVAL;
	out->op = buf[0];
	out->kind = buf[1];
	out->data_len = get16(buf + 2);
	out->handle = get32(buf + 4);
	if (out->data_len != len - SIGNER_REQ_HEADER)
		return -EINVAL;
	memcpy(out->data, buf + SIGNER_REQ_HEADER, out->data_len);
	return req_valid(out) ? 0 : -EINVAL;
}

size_t signer_rep_encode(const struct signer_rep *r, uint8_t *buf, size_t cap)
{
	size_t len = SIGNER_REP_HEADER + (size_t)r->data_len;
	if (r->data_len > SIGNER_REP_DATA_MAX || r->status > 0 || cap < len)
		return 0;
	put32(buf, (uint32_t)r->status);
	put32(buf + 4, r->handle);
	put16(buf + 8, r->data_len);
	put16(buf + 10, 0);
	memcpy(buf + SIGNER_REP_HEADER, r->data, r->data_len);
	return len;
}

int signer_rep_decode(const uint8_t *buf, size_t len, struct signer_rep *out)
{
	memset(out, 0, sizeof(*out));
	if (len < SIGNER_REP_HEADER || len > SIGNER_REP_MAX)
		return -EINVAL;
	out->status = (int32_t)get32(buf);
	out->handle = get32(buf + 4);
	out->data_len = get16(buf + 8);
	if (out->data_len != len - SIGNER_REP_HEADER || get16(buf + 10) != 0 || out->status > 0)
		return -EINVAL;
	memcpy(out->data, buf + SIGNER_REP_HEADER, out->data_len);
	return 0;
}
