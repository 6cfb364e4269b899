/* util.h: small helpers shared by both daemons: durations, time, files, bytes. */
#ifndef LANYARD_UTIL_H
#define LANYARD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* "90s", "5m", "1h", "2d" or plain seconds; returns 0 and the seconds, or -1 when malformed,
 * negative or overflowing. */
int duration_parse(const char *s, int64_t *out);
/* Formats seconds as the shortest exact form ("1h", "90s"), into buf. */
void duration_format(int64_t secs, char *buf, size_t len);

int64_t now_unix(void);
/* Unix seconds as RFC 3339 UTC ("2026-12-04T06:15:00Z"; "-" for 0 or an unrepresentable time):
 * the form every log line and status page gives times in. Needs 21 bytes; 32 is safe. */
void time_format_rfc3339(int64_t t, char *buf, size_t len);
/* Monotonic clock in microseconds. */
int64_t now_mono_us(void);

/* Reads a whole file (at most max bytes) into a fresh NUL-terminated buffer the caller frees.
 * Returns 0, or -errno (-EFBIG when larger than max). */
int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len);
/* Writes data to path atomically: temp file in the same directory with the given mode, fsync,
 * rename, fsync of the directory. Returns 0 or -errno. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Returns 0 when path is a regular file that neither group nor others can read or write,
 * -EPERM when they can, or another -errno. */
int file_check_private(const char *path);
/* mkdir -p: missing parents are created 0755, the last directory with mode. 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

/* Gives the free pages inside every malloc arena back to the system (glibc's malloc_trim; a
 * no-op elsewhere), after a large transient structure was freed: glibc keeps freed memory that
 * is not at the top of a heap resident. Milliseconds on a heap of hundreds of MB. */
void heap_trim(void);
/* Zeroes memory in a way the compiler may not elide. */
void secure_zero(void *p, size_t len);
/* Constant-time comparison of two buffers of equal length. */
bool ct_equal(const void *a, const void *b, size_t len);
/* Binary search of a sorted array of n elements of size bytes: true when found, with *pos the
 * match, else false with *pos where key would be inserted. cmp(elem, key) is negative when elem
 * sorts before key (a qsort comparator works when key points to an element). */
bool sorted_find(const void *base, size_t n, size_t size, const void *key,
		 int (*cmp)(const void *elem, const void *key), size_t *pos);
/* FNV-1a, 64-bit: the hash of our in-memory tables (keys are identifiers we hold, not chosen to
 * collide). Continue from h (FNV1A_INIT to start) to hash several pieces as one. Pure and
 * async-signal-safe. */
#define FNV1A_INIT 0xcbf29ce484222325ull
uint64_t fnv1a(uint64_t h, const void *p, size_t len);
/* fnv1a over the bytes of a NUL-terminated string. */
uint64_t fnv1a_str(uint64_t h, const char *s);
/* Fills buf with cryptographically random bytes from the thread's RNG (rng.h). 0 or -1. */
int random_bytes(void *buf, size_t len);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* base64url without padding (RFC 7515). Caller frees. NULL on allocation failure. */
char *base64url_encode(const uint8_t *in, size_t len);
/* Decodes base64url with or without padding. Returns 0 and a buffer the caller frees, or -1. */
int base64url_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen);
/* Standard base64 with padding. Caller frees. */
char *base64_encode(const uint8_t *in, size_t len);
int base64_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen);

/* Random RFC 4122 version 4 UUID string (37 bytes with NUL). */
int uuid_v4(char out[37]);

/* Formats a human message into err (when err is not NULL) and returns -1: the error helper of
 * every function with a `char *err, size_t errlen` out-parameter. */
int errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Takes an exclusive lock on the file at path (created 0600) and writes our pid into it, so a
 * second daemon on the same state directory is refused with the first one's pid. Returns the
 * descriptor to keep open for the process's lifetime, or -1 with a reason naming `who`. */
int lockfile_acquire(const char *path, const char *who, char *err, size_t errlen);

/* For a SPIRE-style single-dash flag ("-spiffeID", "-parentID=x", "-entryID"): the name (without
 * dashes) of the flag among names[0..n) (given without or with leading dashes) that it stands
 * for, or NULL. Names compare without dashes and case, plus SPIRE's own spellings (entryID,
 * socketPath, dns). The CLIs answer "did you mean --spiffe-id". */
const char *spire_flag_suggest(const char *arg, const char *const *names, size_t n);

/* Like strdup but aborts on allocation failure: for small strings only. */
char *xstrdup(const char *s);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);

#endif
