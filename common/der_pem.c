/* der_pem.c: the DER reader and PEM armour (contract in der_pem.h). */
#include "der_pem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Longest PEM label we look for; ours are at most "RSA PRIVATE KEY". */
#define LABEL_MAX 64

/* ---- DER reading ---- */

int der_next(const uint8_t *buf, size_t len, size_t *pos, uint8_t *tag, const uint8_t **val,
	     size_t *vlen)
{
	size_t p = *pos;
	if (p >= len || len - p < 2)
		return -1;
	uint8_t t = buf[p++];
	if ((t & 0x1f) == 0x1f)
		return -1; /* multi-byte tags never occur in what we read */
	size_t l = buf[p++];
	if (l & 0x80) {
		size_t n = l & 0x7f;
		if (n == 0 || n > 4 || len - p < n)
			return -1; /* indefinite or absurd lengths */
		if (buf[p] == 0)
			return -1; /* not minimal */
		l = 0;
		for (size_t i = 0; i < n; i++)
			l = (l << 8) | buf[p++];
		if (l < 0x80)
			return -1; /* not minimal */
	}
	if (l > len - p)
		return -1;
	if (tag)
		*tag = t;
	if (val)
		*val = buf + p;
	if (vlen)
		*vlen = l;
	*pos = p + l;
	return 0;
}

int der_expect(const uint8_t *buf, size_t len, size_t *pos, uint8_t want, const uint8_t **val,
	       size_t *vlen)
{
	uint8_t tag;
	size_t save = *pos;
	if (der_next(buf, len, pos, &tag, val, vlen) < 0 || tag != want) {
		*pos = save;
		return -1;
	}
	return 0;
}

/* ---- PEM ---- */

char *pem_encode(const char *label, const uint8_t *der, size_t len)
{
	char *b64 = base64_encode(der, len);
	if (!b64)
		return NULL;
	size_t bl = strlen(b64);
	size_t cap = strlen(label) * 2 + 64 + bl + bl / 64 + 2;
	char *out = malloc(cap);
	if (!out) {
		secure_zero(b64, bl);
		free(b64);
		return NULL;
	}
	size_t pos = (size_t)snprintf(out, cap, "-----BEGIN %s-----\n", label);
	for (size_t i = 0; i < bl; i += 64) {
		size_t n = bl - i < 64 ? bl - i : 64;
		memcpy(out + pos, b64 + i, n);
		pos += n;
		out[pos++] = '\n';
	}
	snprintf(out + pos, cap - pos, "-----END %s-----\n", label);
	secure_zero(b64, bl);
	free(b64);
	return out;
}

/* One block of the given label at or after p: its base64 body is [*body, *end), and *next points
 * past its END line. 0 when found, 1 when there is none, -1 when it has no END line. */
static int block_find(const char *p, const char *lim, const char *label, const char **body,
		      const char **end, const char **next)
{
	char begin[LABEL_MAX + 16], fin[LABEL_MAX + 16];

	snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
	snprintf(fin, sizeof(fin), "-----END %s-----", label);
	const char *b = memmem(p, (size_t)(lim - p), begin, strlen(begin));
	if (!b)
		return 1;
	*body = b + strlen(begin);
	*end = memmem(*body, (size_t)(lim - *body), fin, strlen(fin));
	if (!*end)
		return -1;
	*next = *end + strlen(fin);
	return 0;
}

/* Decodes the base64 of [body, end), whitespace ignored, appending it at out + *out_len (out has
 * room for the whole: decoded bytes never outnumber the base64 ones). 0 or -1. */
static int block_decode(const char *body, const char *end, uint8_t *out, size_t *out_len)
{
	char *b64 = malloc((size_t)(end - body) + 1);
	uint8_t *piece = NULL;
	size_t n = 0, piece_len = 0;
	int ret = -1;

	if (!b64)
		return -1;
	for (const char *c = body; c < end; c++)
		if (!isspace((unsigned char)*c))
			b64[n++] = *c;
	b64[n] = 0;
	if (n == 0 || base64_decode(b64, n, &piece, &piece_len) < 0)
		goto out;
	memcpy(out + *out_len, piece, piece_len);
	*out_len += piece_len;
	ret = 0;
out:
	secure_zero(b64, n);
	free(b64);
	if (piece)
		secure_zero(piece, piece_len);
	free(piece);
	return ret;
}

int pem_decode_concat(const char *pem, size_t len, const char *label, uint8_t **der,
		      size_t *der_len)
{
	const char *p = pem, *lim = pem + len, *body, *end;
	size_t out_len = 0;
	uint8_t *out;
	int r;

	*der = NULL;
	*der_len = 0;
	if (!pem || strlen(label) > LABEL_MAX)
		return -1;
	/* Sized once for everything: growing would leave copies of what may be a key behind. */
	out = malloc(len + 1);
	if (!out)
		return -1;
	while ((r = block_find(p, lim, label, &body, &end, &p)) == 0)
		if (block_decode(body, end, out, &out_len) < 0)
			break;
	if (r != 1) {
		secure_zero(out, out_len);
		free(out);
		return -1;
	}
	*der = out;
	*der_len = out_len;
	return 0;
}

int pem_decode_first(const char *pem, size_t len, const char *const *labels, size_t n_labels,
		     uint8_t **der, size_t *der_len)
{
	const char *best = NULL, *best_end = NULL;
	const char *lim = pem + len, *body, *end, *next;
	size_t out_len = 0;
	uint8_t *out;

	*der = NULL;
	*der_len = 0;
	if (!pem)
		return -1;
	for (size_t i = 0; i < n_labels; i++) {
		if (strlen(labels[i]) > LABEL_MAX)
			return -1;
		/* A first block without its END line is an error, not a reason to take the next. */
		int r = block_find(pem, lim, labels[i], &body, &end, &next);
		if (r <= 0 && (!best || body < best)) {
			best = body;
			best_end = r == 0 ? end : NULL;
		}
	}
	if (!best_end)
		return -1;
	out = malloc((size_t)(best_end - best) + 1);
	if (!out)
		return -1;
	if (block_decode(best, best_end, out, &out_len) < 0) {
		secure_zero(out, out_len);
		free(out);
		return -1;
	}
	*der = out;
	*der_len = out_len;
	return 0;
}
