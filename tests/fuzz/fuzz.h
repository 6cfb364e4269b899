/* fuzz.h: small helpers shared by the harnesses (tests/fuzz/fuzz_*.c). */
#ifndef LANYARD_FUZZ_H
#define LANYARD_FUZZ_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* An invariant of the code under test that an input broke: report it like a sanitizer would,
 * so that the driver (or libFuzzer) saves the input. */
#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                    \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* A NUL-terminated copy of the input (which may hold NULs of its own). The caller frees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Reads the input as a sequence of fields: fuzz_take_u8 and fuzz_take_bytes consume from the
 * front; what is left at the end is the main payload. Running out yields zeros / empty. */
struct fuzz_input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fuzz_take_u8(struct fuzz_input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* Takes 8 bytes as a big-endian number (missing bytes count as zeros). */
static inline uint64_t fuzz_take_u64(struct fuzz_input *in)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | fuzz_take_u8(in);
	return v;
}

/* Takes bytes up to (not including) the next sep byte, or everything when there is none. */
static inline const uint8_t *fuzz_take_until(struct fuzz_input *in, uint8_t sep, size_t *len)
{
	const uint8_t *start = in->p;
	const uint8_t *e = in->n ? memchr(in->p, sep, in->n) : NULL;
	size_t l = e ? (size_t)(e - in->p) : in->n;
	*len = l;
	in->p += l;
	in->n -= l;
	if (e) {
		in->p++;
		in->n--;
	}
	return start;
}

/* Makes path hold exactly data (0600); an empty data removes it. Aborts on an I/O error: the
 * harness's own directory is broken, not the code under test. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t len)
{
	unlink(path);
	if (!len)
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n <= 0)
			abort();
		data += n;
		len -= (size_t)n;
	}
	close(fd);
}

/* Logging goes to stderr; a flood of "rejected" lines slows the loop and hides the report. */
static inline void fuzz_quiet_logs(void)
{
	if (!getenv("LANYARD_FUZZ_VERBOSE"))
		log_setup(LOG_LEVEL_ERROR, false);
}

#endif
