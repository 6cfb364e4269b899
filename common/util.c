#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdarg.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/random.h>

#include "rng.h"

int duration_parse(const char *s, int64_t *out)
{
	if (!s || !*s)
		return -1;
	int64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
		p++;
	}
	int64_t mult = 1;
	if (*p) {
		switch (*p) {
		case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		default: return -1;
		}
		if (p[1])
			return -1;
	}
	if (v > INT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

void duration_format(int64_t secs, char *buf, size_t len)
{
	if (secs != 0 && secs % 86400 == 0)
		snprintf(buf, len, "%lldd", (long long)(secs / 86400));
	else if (secs != 0 && secs % 3600 == 0)
		snprintf(buf, len, "%lldh", (long long)(secs / 3600));
	else if (secs != 0 && secs % 60 == 0)
		snprintf(buf, len, "%lldm", (long long)(secs / 60));
	else
		snprintf(buf, len, "%llds", (long long)secs);
}

void time_format_rfc3339(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (len == 0)
		return;
	if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
}

int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

int64_t now_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
	int ret = 0;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if ((size_t)st.st_size > max) {
		ret = -EFBIG;
		goto out;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	buf = malloc(cap);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > max + 1) {
				ret = -EFBIG;
				goto out;
			}
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		ret = -EFBIG;
		goto out;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	buf = NULL;
out:
	if (buf) {
		secure_zero(buf, cap);
		free(buf);
	}
	close(fd);
	return ret;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	int ret = 0;
	if (fchmod(fd, mode) < 0) {
		ret = -errno;
		goto fail;
	}
	const uint8_t *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) < 0) {
		ret = -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		ret = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto fail;
	}
	/* Make the rename itself durable. */
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return ret;
}

int file_check_private(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return -EPERM;
	return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		/* Like mkdir -p -m: only the last directory gets mode; parents are ordinary. */
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void heap_trim(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

void secure_zero(void *p, size_t len)
{
	if (p && len)
		explicit_bzero(p, len);
}

bool ct_equal(const void *a, const void *b, size_t len)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;
	for (size_t i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

bool sorted_find(const void *base, size_t n, size_t size, const void *key,
		 int (*cmp)(const void *elem, const void *key), size_t *pos)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp((const char *)base + mid * size, key);
		if (c == 0) {
			*pos = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

#define FNV1A_PRIME 0x100000001b3ull

uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * FNV1A_PRIME;
	return h;
}

uint64_t fnv1a_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * FNV1A_PRIME;
	return h;
}

int random_bytes(void *buf, size_t len)
{
	WC_RNG *rng = rng_thread();
	return rng && wc_RNG_GenerateBlock(rng, buf, (word32)len) == 0 ? 0 : -1;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = 0;
}

char *base64_encode(const uint8_t *in, size_t len)
{
	word32 outlen = (word32)((len + 2) / 3 * 4 + 1);
	char *out = malloc(outlen + 1);
	if (!out)
		return NULL;
	if (len == 0) {
		out[0] = 0;
		return out;
	}
	if (Base64_Encode_NoNl(in, (word32)len, (byte *)out, &outlen) != 0) {
		free(out);
		return NULL;
	}
	out[outlen] = 0;
	return out;
}

int base64_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	word32 n = (word32)(inlen / 4 * 3 + 3);
	uint8_t *buf = malloc(n + 1);
	if (!buf)
		return -1;
	if (inlen == 0) {
		*out = buf;
		*outlen = 0;
		return 0;
	}
	if (Base64_Decode((const byte *)in, (word32)inlen, buf, &n) != 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

char *base64url_encode(const uint8_t *in, size_t len)
{
	char *s = base64_encode(in, len);
	if (!s)
		return NULL;
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r == '=')
			break;
		*w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
	}
	*w = 0;
	return s;
}

int base64url_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	while (inlen > 0 && in[inlen - 1] == '=')
		inlen--;
	if (inlen % 4 == 1)
		return -1;
	size_t padded = (inlen + 3) / 4 * 4;
	char *tmp = malloc(padded + 1);
	if (!tmp)
		return -1;
	for (size_t i = 0; i < inlen; i++) {
		char c = in[i];
		if (c == '+' || c == '/') {
			free(tmp);
			return -1;
		}
		tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	for (size_t i = inlen; i < padded; i++)
		tmp[i] = '=';
	tmp[padded] = 0;
	int r = base64_decode(tmp, padded, out, outlen);
	free(tmp);
	return r;
}

int uuid_v4(char out[37])
{
	uint8_t b[16];
	if (random_bytes(b, sizeof(b)) < 0)
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

static void oom(void)
{
	fputs("fatal: out of memory\n", stderr);
	abort();
}

char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		oom();
	return d;
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

int errorf(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int lockfile_acquire(const char *path, const char *who, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errorf(err, errlen, "cannot open %.300s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(fd);
		return errorf(err, errlen, "%.300s is in use by another %s (pid %s)", path, who,
			      pid[0] ? pid : "?");
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) < 0) {
		/* The lock holds without the pid; only the message of a second instance suffers. */
	}
	return fd;
}

/* The flag name without dashes and lower-cased, up to '=' or the end, into out. */
static void flag_key(const char *name, char *out, size_t outlen)
{
	size_t o = 0;
	for (const char *p = name; *p && *p != '=' && o + 1 < outlen; p++)
		if (*p != '-')
			out[o++] = (char)tolower((unsigned char)*p);
	out[o] = '\0';
}

const char *spire_flag_suggest(const char *arg, const char *const *names, size_t n)
{
	static const struct {
		const char *spire, *ours;
	} renamed[] = {
		{"entryid", "id"}, {"socketpath", "socket"}, {"dns", "dnsname"},
	};
	char key[64], cand[64];
	if (!arg || arg[0] != '-' || arg[1] == '-' || !arg[1])
		return NULL;
	flag_key(arg, key, sizeof(key));
	for (size_t i = 0; i < ARRAY_LEN(renamed); i++)
		if (strcmp(key, renamed[i].spire) == 0)
			snprintf(key, sizeof(key), "%s", renamed[i].ours);
	for (size_t i = 0; i < n; i++) {
		flag_key(names[i], cand, sizeof(cand));
		if (strcmp(key, cand) == 0) {
			const char *name = names[i];
			while (*name == '-')
				name++;
			return name;
		}
	}
	return NULL;
}
