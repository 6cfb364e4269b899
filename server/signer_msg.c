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
	if (len == 0 || len > SIGNER_REQ_DATA_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* The per-op rules on kind and data, shared by both directions of the request codec. */
static bool req_valid(const struct signer_req *r)
{
	if (r->data_len > SIGNER_REQ_DATA_MAX || r->kind > SIGNER_KIND_UPSTREAM)
		return false;
	switch (r->op) {
	case SIGNER_OP_SIGN:
		return r->data_len == 32 || r->data_len == 48 || r->data_len == 64;
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
