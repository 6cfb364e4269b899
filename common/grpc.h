/* grpc.h: gRPC wire helpers shared by the server and client transports: status codes, the
 * 5-byte length-prefixed message framing, a streaming deframer, grpc-message percent-encoding
 * and grpc-timeout parsing. No I/O here. */
#ifndef LANYARD_GRPC_H
#define LANYARD_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum grpc_status {
	GRPC_STATUS_OK = 0,
	GRPC_STATUS_CANCELLED = 1,
	GRPC_STATUS_UNKNOWN = 2,
	GRPC_STATUS_INVALID_ARGUMENT = 3,
	GRPC_STATUS_DEADLINE_EXCEEDED = 4,
	GRPC_STATUS_NOT_FOUND = 5,
	GRPC_STATUS_ALREADY_EXISTS = 6,
	GRPC_STATUS_PERMISSION_DENIED = 7,
	GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	GRPC_STATUS_FAILED_PRECONDITION = 9,
	GRPC_STATUS_ABORTED = 10,
	GRPC_STATUS_OUT_OF_RANGE = 11,
	GRPC_STATUS_UNIMPLEMENTED = 12,
	GRPC_STATUS_INTERNAL = 13,
	GRPC_STATUS_UNAVAILABLE = 14,
	GRPC_STATUS_DATA_LOSS = 15,
	GRPC_STATUS_UNAUTHENTICATED = 16,
};

/* "PERMISSION_DENIED" style; "UNKNOWN_STATUS" for codes outside 0..16. Never NULL. */
const char *grpc_status_name(int code);
/* "PermissionDenied" style (what gRPC libraries print, and Prometheus exporters' code label);
 * NULL for codes outside 0..16. */
const char *grpc_status_camel(int code);

/* One metadata entry; names are lower-case ASCII. */
struct grpc_header {
	const char *name;
	const char *value;
};

#define GRPC_FRAME_HEADER_LEN 5
#define GRPC_DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)

/* Writes the 5-byte prefix (compressed flag 0, big-endian length) of a len-byte message. */
void grpc_frame_header(uint8_t hdr[GRPC_FRAME_HEADER_LEN], uint32_t len);
/* Returns a fresh buffer holding the prefix and the message (caller frees), NULL when len does
 * not fit in 32 bits or on allocation failure. */
uint8_t *grpc_frame(const uint8_t *msg, size_t len, size_t *out_len);

/* Streaming deframer: feed it DATA payloads in any split; it yields whole messages. */
enum grpc_deframe_result {
	GRPC_DEFRAME_NEED_MORE = 0,    /* everything consumed, no complete message yet */
	GRPC_DEFRAME_MESSAGE = 1,      /* *msg holds one message (caller frees); feed the rest again */
	GRPC_DEFRAME_TOO_LARGE = -1,   /* declared length > max: RESOURCE_EXHAUSTED */
	GRPC_DEFRAME_COMPRESSED = -2,  /* compressed flag set: we negotiate no compression */
	GRPC_DEFRAME_BAD_FLAG = -3,    /* flag byte other than 0 or 1 */
	GRPC_DEFRAME_NOMEM = -4,
};

struct grpc_deframer {
	uint8_t hdr[GRPC_FRAME_HEADER_LEN];
	size_t hdr_have;
	uint8_t *buf;    /* message being assembled, NULL between messages */
	size_t need;     /* its declared length */
	size_t have;
	size_t cap;      /* allocated, grows up to need + 1 as data arrives, never by realloc
			    (h2buf_regrow: messages carry private keys); wiped when dropped */
	size_t max;
	bool failed;     /* after an error every feed fails the same way */
	int error;
};

void grpc_deframer_init(struct grpc_deframer *d, size_t max_message);
/* Consumes bytes from data (at most len) and sets *consumed. Returns a grpc_deframe_result.
 * Once an error was returned, the deframer keeps returning it. A zero-length message is
 * returned as a non-NULL 1-byte allocation with *msg_len 0. */
int grpc_deframer_feed(struct grpc_deframer *d, const uint8_t *data, size_t len, size_t *consumed,
		       uint8_t **msg, size_t *msg_len);
/* Feeds one DATA payload whole: each complete message goes to on_msg, which owns it (and wipes
 * it if it drops it: messages carry secrets) and returns false to stop (the rest of the payload
 * is then ignored). Returns 0, or the deframer's error (a negative grpc_deframe_result). */
int grpc_deframer_feed_all(struct grpc_deframer *d, const uint8_t *data, size_t len,
			   bool (*on_msg)(void *ud, uint8_t *msg, size_t len), void *ud);
/* True when no partial message is pending (a stream ending here ended cleanly). */
bool grpc_deframer_idle(const struct grpc_deframer *d);
void grpc_deframer_free(struct grpc_deframer *d);

/* grpc-message encoding (gRPC over HTTP/2 spec): bytes outside 0x20..0x7E and '%' become %XX.
 * Returns a fresh string (caller frees) or NULL on allocation failure. NULL input gives "". */
char *grpc_percent_encode(const char *s);
/* Decodes %XX sequences; malformed sequences are kept verbatim, as the spec asks. Caller frees;
 * NULL on allocation failure. */
char *grpc_percent_decode(const char *s);

/* Parses a grpc-timeout value: 1..8 ASCII digits followed by one unit of H M S m u n.
 * Returns 0 and the timeout in milliseconds rounded up (so "1n" is 1 ms, "0m" is 0), or -1. */
int grpc_timeout_parse(const char *s, int64_t *ms);
/* Formats a timeout in milliseconds as a valid grpc-timeout value (at most 8 digits, choosing a
 * coarser unit when needed). buf must hold 16 bytes. Negative values are treated as 0. */
void grpc_timeout_format(int64_t ms, char buf[16]);

#endif
