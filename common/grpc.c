/* grpc.c: gRPC wire helpers (framing, deframing, grpc-message and grpc-timeout encodings). */
#include "grpc.h"
#include "h2conn.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The one table of status names: the spec's (and grpc-status logs') upper-case names, and the
 * CamelCase names gRPC libraries print and Prometheus exporters label codes with (Go's
 * codes.Code.String()). */
static const struct {
	const char *upper, *camel;
} status_names[] = {
	[GRPC_STATUS_OK] = { "OK", "OK" },
	[GRPC_STATUS_CANCELLED] = { "CANCELLED", "Canceled" },
	[GRPC_STATUS_UNKNOWN] = { "UNKNOWN", "Unknown" },
	[GRPC_STATUS_INVALID_ARGUMENT] = { "INVALID_ARGUMENT", "InvalidArgument" },
	[GRPC_STATUS_DEADLINE_EXCEEDED] = { "DEADLINE_EXCEEDED", "DeadlineExceeded" },
	[GRPC_STATUS_NOT_FOUND] = { "NOT_FOUND", "NotFound" },
	[GRPC_STATUS_ALREADY_EXISTS] = { "ALREADY_EXISTS", "AlreadyExists" },
	[GRPC_STATUS_PERMISSION_DENIED] = { "PERMISSION_DENIED", "PermissionDenied" },
	[GRPC_STATUS_RESOURCE_EXHAUSTED] = { "RESOURCE_EXHAUSTED", "ResourceExhausted" },
	[GRPC_STATUS_FAILED_PRECONDITION] = { "FAILED_PRECONDITION", "FailedPrecondition" },
	[GRPC_STATUS_ABORTED] = { "ABORTED", "Aborted" },
	[GRPC_STATUS_OUT_OF_RANGE] = { "OUT_OF_RANGE", "OutOfRange" },
	[GRPC_STATUS_UNIMPLEMENTED] = { "UNIMPLEMENTED", "Unimplemented" },
	[GRPC_STATUS_INTERNAL] = { "INTERNAL", "Internal" },
	[GRPC_STATUS_UNAVAILABLE] = { "UNAVAILABLE", "Unavailable" },
	[GRPC_STATUS_DATA_LOSS] = { "DATA_LOSS", "DataLoss" },
	[GRPC_STATUS_UNAUTHENTICATED] = { "UNAUTHENTICATED", "Unauthenticated" },
};

static bool status_known(int code)
{
	return code >= 0 && code < (int)(sizeof(status_names) / sizeof(status_names[0]));
}

const char *grpc_status_name(int code)
{
	return status_known(code) ? status_names[code].upper : "UNKNOWN_STATUS";
}

const char *grpc_status_camel(int code)
{
	return status_known(code) ? status_names[code].camel : NULL;
}

void grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER_LEN], uint32_t len)
{
	hdr[0] = 0;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

uint8_t *grpc_frame(const uint8_t *msg, size_t len, size_t *out_len)
{
	uint8_t *out;

	if (len > UINT32_MAX)
		return NULL;
	out = malloc(len + GRPC_FRAME_HEADER_LEN);
	if (!out)
		return NULL;
	grpc_frame_header(out, (uint32_t)len);
	if (len)
		memcpy(out + GRPC_FRAME_HEADER_LEN, msg, len);
	*out_len = len + GRPC_FRAME_HEADER_LEN;
	return out;
}

void grpc_deframer_init(struct grpc_deframer *d, size_t max_message)
{
	memset(d, 0, sizeof(*d));
	d->max = max_message ? max_message : GRPC_DEFAULT_MAX_MESSAGE;
}

/* Messages may carry private keys: a partial one is wiped when dropped. */
static void deframe_drop(struct grpc_deframer *d)
{
	if (d->buf) {
		secure_zero(d->buf, d->cap);
		free(d->buf);
	}
	d->buf = NULL;
	d->cap = 0;
}

static int deframe_fail(struct grpc_deframer *d, int error)
{
	d->failed = true;
	d->error = error;
	deframe_drop(d);
	return error;
}

int grpc_deframer_feed(struct grpc_deframer *d, const uint8_t *data, size_t len, size_t *consumed,
		       uint8_t **msg, size_t *msg_len)
{
	size_t off = 0, n;

	*consumed = 0;
	*msg = NULL;
	*msg_len = 0;
	if (d->failed)
		return d->error;
	while (d->hdr_have < GRPC_FRAME_HEADER_LEN) {
		if (off == len) {
			*consumed = off;
			return GRPC_DEFRAME_NEED_MORE;
		}
		d->hdr[d->hdr_have++] = data[off++];
		if (d->hdr_have < GRPC_FRAME_HEADER_LEN)
			continue;
		if (d->hdr[0] == 1)
			return deframe_fail(d, GRPC_DEFRAME_COMPRESSED);
		if (d->hdr[0] != 0)
			return deframe_fail(d, GRPC_DEFRAME_BAD_FLAG);
		d->need = (size_t)d->hdr[1] << 24 | (size_t)d->hdr[2] << 16 | (size_t)d->hdr[3] << 8 |
			  d->hdr[4];
		if (d->need > d->max)
			return deframe_fail(d, GRPC_DEFRAME_TOO_LARGE);
		/* The buffer grows with the data that actually arrives: a peer that only announces a
		 * large message costs nothing (the node API reads Attest before authentication). One
		 * extra byte so that an empty message is still a non-NULL allocation. */
		d->cap = d->need < 4096 ? d->need + 1 : 4096;
		d->buf = malloc(d->cap);
		if (!d->buf)
			return deframe_fail(d, GRPC_DEFRAME_NOMEM);
		d->have = 0;
	}
	n = d->need - d->have;
	if (n > len - off)
		n = len - off;
	if (d->have + n + 1 > d->cap) {
		size_t cap = d->cap;
		while (cap < d->have + n + 1)
			cap *= 2;
		if (cap > d->need + 1)
			cap = d->need + 1;
		/* Not realloc: it could leave an unwiped copy of the bytes so far behind. */
		uint8_t *nb = h2buf_regrow(d->buf, d->cap, d->have, cap);
		if (!nb)
			return deframe_fail(d, GRPC_DEFRAME_NOMEM);
		d->buf = nb;
		d->cap = cap;
	}
	if (n)
		memcpy(d->buf + d->have, data + off, n);
	d->have += n;
	off += n;
	*consumed = off;
	if (d->have < d->need)
		return GRPC_DEFRAME_NEED_MORE;
	*msg = d->buf;
	*msg_len = d->need;
	d->buf = NULL;
	d->hdr_have = 0;
	d->need = d->have = 0;
	return GRPC_DEFRAME_MESSAGE;
}

int grpc_deframer_feed_all(struct grpc_deframer *d, const uint8_t *data, size_t len,
			   bool (*on_msg)(void *ud, uint8_t *msg, size_t len), void *ud)
{
	while (len > 0) {
		uint8_t *m;
		size_t used, mlen;
		int rc = grpc_deframer_feed(d, data, len, &used, &m, &mlen);

		data += used;
		len -= used;
		if (rc < 0)
			return rc;
		if (rc == GRPC_DEFRAME_MESSAGE && !on_msg(ud, m, mlen))
			break;
	}
	return 0;
}

bool grpc_deframer_idle(const struct grpc_deframer *d)
{
	return !d->failed && d->hdr_have == 0;
}

void grpc_deframer_free(struct grpc_deframer *d)
{
	if (!d)
		return;
	deframe_drop(d);
	d->hdr_have = 0;
}

char *grpc_percent_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t n = 0;
	char *out, *o;

	if (!s)
		s = "";
	for (p = (const unsigned char *)s; *p; p++)
		n += (*p < 0x20 || *p > 0x7e || *p == '%') ? 3 : 1;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '%') {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *grpc_percent_decode(const char *s)
{
	size_t i, n;
	char *out, *o;

	if (!s)
		s = "";
	n = strlen(s);
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

int grpc_timeout_parse(const char *s, int64_t *ms)
{
	int64_t v = 0, r;
	size_t i, digits = 0;

	if (!s)
		return -1;
	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		if (++digits > 8)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (digits == 0 || s[i] == '\0' || s[i + 1] != '\0')
		return -1;
	switch (s[i]) {
	case 'H':
		r = v * 3600 * 1000;
		break;
	case 'M':
		r = v * 60 * 1000;
		break;
	case 'S':
		r = v * 1000;
		break;
	case 'm':
		r = v;
		break;
	case 'u':
		r = (v + 999) / 1000;
		break;
	case 'n':
		r = (v + 999999) / 1000000;
		break;
	default:
		return -1;
	}
	*ms = r;
	return 0;
}

void grpc_timeout_format(int64_t ms, char buf[16])
{
	uint64_t v = ms < 0 ? 0 : (uint64_t)ms;
	unsigned out;
	char unit;

	/* Round up so that the server never sees a shorter deadline than the client's. */
	if (v <= 99999999) {
		out = (unsigned)v;
		unit = 'm';
	} else if (v / 1000 + 1 <= 99999999) {
		out = (unsigned)((v + 999) / 1000);
		unit = 'S';
	} else if (v / 60000 + 1 <= 99999999) {
		out = (unsigned)(v / 60000 + 1);
		unit = 'M';
	} else {
		out = 99999999;
		unit = 'H';
	}
	snprintf(buf, 16, "%u%c", out % 100000000u, unit);
}
