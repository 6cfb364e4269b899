/* http_response.h: a whole HTTP/1.1 response, as read from a peer that closed the connection
 * (Connection: close), split into its status and body. The peer is untrusted: anything malformed
 * is an error with a reason, never a read past len. No state, any thread. */
#ifndef LANYARD_HTTP_RESPONSE_H
#define LANYARD_HTTP_RESPONSE_H

#include <stddef.h>

/* buf holds len bytes and has room for one more (a NUL). On success the body (de-chunked when
 * Transfer-Encoding is chunked; checked against Content-Length otherwise) is moved to the front
 * of buf, NUL-terminated, its length in *body_len, the status code in *status. 0, or -1 with the
 * reason in err. */
int http_response_parse(char *buf, size_t len, long *status, size_t *body_len, char *err,
			size_t errlen);

#endif
