/* http_response.c: parsing a whole HTTP/1.1 response read from a peer. */
#include "http_response.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Decodes a chunked body in place. 0, or -1 when malformed. */
static int dechunk(char *b, size_t len, size_t *out_len)
{
	size_t r = 0, w = 0;
	for (;;) {
		char *end;
		unsigned long sz = strtoul(b + r, &end, 16);
		char *crlf = memmem(b + r, len - r, "\r\n", 2);
		if (end == b + r || !crlf)
			return -1;
		r = (size_t)(crlf - b) + 2;
		if (sz == 0)
			break;
		if (sz > len - r || len - r - sz < 2)
			return -1;
		memmove(b + w, b + r, sz);
		w += sz;
		r += sz + 2;
	}
	*out_len = w;
	return 0;
}

int http_response_parse(char *buf, size_t len, long *status, size_t *body_len, char *err,
			size_t errlen)
{
	char *hend = memmem(buf, len, "\r\n\r\n", 4);
	if (!hend || strncmp(buf, "HTTP/1.", 7) != 0)
		return errorf(err, errlen, "not an HTTP response");
	*hend = '\0';
	*status = strtol(buf + 9, NULL, 10);
	bool chunked = false;
	long clen = -1;
	for (char *line = strstr(buf, "\r\n"); line && line < hend; line = strstr(line + 2, "\r\n")) {
		char *l = line + 2;
		if (strncasecmp(l, "transfer-encoding:", 18) == 0)
			chunked = strstr(l, "chunked") != NULL;
		else if (strncasecmp(l, "content-length:", 15) == 0)
			clen = strtol(l + 15, NULL, 10);
	}
	char *body = hend + 4;
	size_t blen = len - (size_t)(body - buf);
	memmove(buf, body, blen);
	buf[blen] = '\0';
	if (chunked && dechunk(buf, blen, &blen) < 0)
		return errorf(err, errlen, "malformed chunked body");
	if (!chunked && clen >= 0 && (size_t)clen != blen)
		return errorf(err, errlen, "the body is %zu bytes, Content-Length said %ld", blen,
			      clen);
	buf[blen] = '\0';
	*body_len = blen;
	return 0;
}

