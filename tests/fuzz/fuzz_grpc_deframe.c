/* fuzz_grpc_deframe: the gRPC wire helpers every request passes through (common/grpc.h).
 *
 * Input: byte 0 picks the maximum message size, byte 1 seeds the split of the rest into DATA
 * chunks; the rest is a request body. The body is deframed twice, in one piece and in chunks of
 * pseudo-random sizes, and both must yield the same messages and the same ending: how the peer's
 * DATA frames happen to be cut must never matter. The body (up to its first NUL) is also a
 * grpc-message (percent decoding, and the encode/decode round trip) and a grpc-timeout. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "grpc.h"

struct outcome {
	uint8_t *msgs; /* every message, each preceded by its 4-byte length */
	size_t len, cap;
	size_t count;
	int end;       /* NEED_MORE, or the error that stopped the stream */
	bool idle;
};

static void record(struct outcome *o, const uint8_t *m, size_t n)
{
	if (o->len + n + 4 > o->cap) {
		o->cap = (o->len + n + 4) * 2;
		o->msgs = realloc(o->msgs, o->cap);
		FUZZ_CHECK(o->msgs != NULL);
	}
	o->msgs[o->len++] = (uint8_t)(n >> 24);
	o->msgs[o->len++] = (uint8_t)(n >> 16);
	o->msgs[o->len++] = (uint8_t)(n >> 8);
	o->msgs[o->len++] = (uint8_t)n;
	if (n)
		memcpy(o->msgs + o->len, m, n);
	o->len += n;
	o->count++;
}

/* Feeds one chunk until it is used up or the deframer fails. Returns false once it failed. */
static bool feed(struct grpc_deframer *d, const uint8_t *p, size_t n, struct outcome *o)
{
	for (;;) {
		size_t consumed;
		uint8_t *msg;
		size_t msg_len;
		int r = grpc_deframer_feed(d, p, n, &consumed, &msg, &msg_len);
		if (r == GRPC_DEFRAME_MESSAGE) {
			FUZZ_CHECK(msg != NULL && msg_len <= d->max);
			FUZZ_CHECK(consumed <= n);
			record(o, msg, msg_len);
			free(msg);
			p += consumed;
			n -= consumed;
			continue;
		}
		FUZZ_CHECK(msg == NULL);
		if (r == GRPC_DEFRAME_NEED_MORE) {
			FUZZ_CHECK(consumed == n);
			o->end = r;
			return true;
		}
		FUZZ_CHECK(r < 0);
		o->end = r;
		/* Sticky: the same error again, whatever comes next. */
		FUZZ_CHECK(grpc_deframer_feed(d, p, n, &consumed, &msg, &msg_len) == r && !msg);
		FUZZ_CHECK(!grpc_deframer_idle(d));
		return false;
	}
}

static void deframe(size_t max, const uint8_t *p, size_t n, uint32_t split_seed, bool chunked,
		    struct outcome *o)
{
	struct grpc_deframer d;
	uint32_t s = split_seed * 2654435761u + 1;

	memset(o, 0, sizeof(*o));
	o->end = GRPC_DEFRAME_NEED_MORE;
	grpc_deframer_init(&d, max);
	size_t off = 0;
	do {
		size_t c = n - off;
		if (chunked) {
			s = s * 1103515245u + 12345u;
			/* Mostly small pieces (headers split across frames), sometimes large ones. */
			size_t want = (s >> 16) % 8 ? 1 + (s >> 16) % 16 : 1 + (s >> 8) % 4096;
			if (want < c)
				c = want;
		}
		/* A zero-length chunk now and then, as an empty DATA frame. */
		if (chunked && (s & 0x1f) == 0 && feed(&d, p + off, 0, o) == false)
			break;
		if (!feed(&d, p + off, c, o))
			break;
		off += c;
	} while (off < n);
	o->idle = grpc_deframer_idle(&d);
	grpc_deframer_free(&d);
}

static void check_text(const uint8_t *p, size_t n)
{
	char *s = fuzz_cstr(p, n);

	char *dec = grpc_percent_decode(s);
	FUZZ_CHECK(dec != NULL && strlen(dec) <= strlen(s));
	char *enc = grpc_percent_encode(s);
	FUZZ_CHECK(enc != NULL);
	for (const char *c = enc; *c; c++)
		FUZZ_CHECK(*c >= 0x20 && *c <= 0x7e);
	char *back = grpc_percent_decode(enc);
	FUZZ_CHECK(back != NULL && strcmp(back, s) == 0);
	free(back);
	free(enc);
	free(dec);

	int64_t ms;
	if (grpc_timeout_parse(s, &ms) == 0) {
		char buf[16];
		int64_t again;
		FUZZ_CHECK(ms >= 0);
		grpc_timeout_format(ms, buf);
		FUZZ_CHECK(grpc_timeout_parse(buf, &again) == 0);
		/* Formatting rounds up (never a shorter deadline), except at the format's ceiling. */
		FUZZ_CHECK(again >= ms || strcmp(buf, "99999999H") == 0);
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const size_t maxes[] = { 0, 1, 5, 16, 100, 1024, 65536, 1u << 20 };
	size_t max = maxes[data[0] % 8];
	uint32_t seed = data[1];
	const uint8_t *p = data + 2;
	size_t n = size - 2;

	struct outcome whole, pieces;
	deframe(max, p, n, seed, false, &whole);
	deframe(max, p, n, seed, true, &pieces);
	FUZZ_CHECK(whole.count == pieces.count);
	FUZZ_CHECK(whole.len == pieces.len && (whole.len == 0 || !memcmp(whole.msgs, pieces.msgs,
									   whole.len)));
	FUZZ_CHECK(whole.end == pieces.end);
	FUZZ_CHECK(whole.idle == pieces.idle);
	free(whole.msgs);
	free(pieces.msgs);

	check_text(p, n);
	return 0;
}
