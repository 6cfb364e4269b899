/* driver.c: a main() for the fuzz harnesses when libFuzzer is not available (gcc builds).
 *
 * It replays every seed file it is given, then runs a deterministic mutation loop over them (bit
 * flips, byte and integer overwrites, insertions, deletions, truncations, splices of two seeds,
 * dictionary tokens) for a bounded number of iterations or seconds, so that each harness runs as
 * an ordinary ctest under AddressSanitizer and UndefinedBehaviorSanitizer. There is no coverage
 * feedback: the value is in the seeds, which sit next to the paths worth reaching.
 *
 * Every input is handed to the harness in a buffer of exactly its size, as libFuzzer does, so a
 * read one byte past the end is caught. When the process dies on an input (a sanitizer report, an
 * abort, a per-input timeout, a leak), that input is written to the artifact directory as
 * crash-<hash> (or timeout-<hash>, leak-<hash>) and the command that replays it is printed.
 *
 * The same seed gives the same sequence of inputs, so a failure seen in CI is repeated with the
 * -s value it printed and enough -n iterations. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf; the project's build defines it already */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "strv.h"
#include "util.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRIVER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(DRIVER_ASAN)
#define DRIVER_ASAN 1
#endif

#ifdef DRIVER_ASAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
/* Declared in clang's sanitizer/allocator_interface.h, which gcc does not ship; both runtimes
 * export it. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_SEED_FILE (1u << 20)
#define MAX_TOKENS 4096
#define MAX_TOKEN_LEN 128

struct blob {
	uint8_t *data;
	size_t len;
	char *name;
};

struct blobs {
	struct blob *v;
	size_t n, cap;
};

struct options {
	double seconds;
	uint64_t iterations;
	uint64_t seed;
	size_t max_len;
	unsigned input_timeout;
	const char *artifact_dir;
	const char *dict_path;
};

/* What the process is running now, for the death paths. The driver is single-threaded and these
 * are only read from signal handlers and sanitizer callbacks on the way out. */
static const uint8_t *cur_data;
static size_t cur_len;
static const char *cur_what = "crash";
static const char *artifact_dir = ".";
static const char *prog_name = "fuzz";
static volatile sig_atomic_t dumped;

/* ---- Saving the input that killed us (async-signal-safe: write(2) only) ---- */

static size_t put_str(char *buf, size_t off, size_t cap, const char *s)
{
	while (*s && off + 1 < cap)
		buf[off++] = *s++;
	buf[off] = '\0';
	return off;
}

static void write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		b += w;
		n -= (size_t)w;
	}
}

static void dump_current_input(void)
{
	static const char hex[] = "0123456789abcdef";
	char path[4096], name[64];
	size_t off;
	int fd;

	if (dumped || !cur_data)
		return;
	dumped = 1;
	uint64_t h = fnv1a(FNV1A_INIT, cur_data, cur_len);
	off = put_str(name, 0, sizeof(name), cur_what);
	off = put_str(name, off, sizeof(name), "-");
	for (int i = 15; i >= 0 && off + 1 < sizeof(name); i--)
		name[off++] = hex[(h >> (i * 4)) & 0xf];
	name[off] = '\0';
	off = put_str(path, 0, sizeof(path), artifact_dir);
	off = put_str(path, off, sizeof(path), "/");
	off = put_str(path, off, sizeof(path), name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	write_all(fd, cur_data, cur_len);
	close(fd);

	char msg[4500];
	/* CI keeps the log, not the build tree: small inputs are also printed, in hex. */
	if (cur_len <= 4096) {
		char line[80];
		off = put_str(msg, 0, sizeof(msg), "\n==driver== the failing input (hex):");
		write_all(2, msg, off);
		for (size_t i = 0; i < cur_len; i += 32) {
			size_t o = 0;
			line[o++] = '\n';
			for (size_t j = i; j < cur_len && j < i + 32; j++) {
				line[o++] = hex[cur_data[j] >> 4];
				line[o++] = hex[cur_data[j] & 15];
			}
			write_all(2, line, o);
		}
	}
	off = put_str(msg, 0, sizeof(msg), "\n==driver== the failing input was saved to ");
	off = put_str(msg, off, sizeof(msg), path);
	off = put_str(msg, off, sizeof(msg), "\n==driver== replay it with: ");
	off = put_str(msg, off, sizeof(msg), prog_name);
	off = put_str(msg, off, sizeof(msg), " -n 0 ");
	off = put_str(msg, off, sizeof(msg), path);
	off = put_str(msg, off, sizeof(msg),
		      "\n==driver== (to recreate it from the hex: xxd -r -p HEXFILE > input)\n");
	write_all(2, msg, off);
}

static void on_fatal_signal(int sig)
{
	if (sig == SIGALRM)
		cur_what = "timeout";
	dump_current_input();
	signal(sig == SIGALRM ? SIGABRT : sig, SIG_DFL);
	raise(sig == SIGALRM ? SIGABRT : sig);
}

#ifdef DRIVER_ASAN
static void on_sanitizer_death(void)
{
	dump_current_input();
}

/* Allocation counts while an input runs: more mallocs than frees is a reason to ask
 * LeakSanitizer, which is too slow to ask after every input. */
static uint64_t n_mallocs, n_frees;

static void malloc_hook(const volatile void *p, size_t size)
{
	(void)p;
	(void)size;
	__atomic_fetch_add(&n_mallocs, 1, __ATOMIC_RELAXED);
}

static void free_hook(const volatile void *p)
{
	(void)p;
	__atomic_fetch_add(&n_frees, 1, __ATOMIC_RELAXED);
}
#endif

static void install_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	/* SIGSEGV and friends are left to AddressSanitizer when it is there: it reports them and
	 * then calls the death callback. */
	sigaction(SIGABRT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
#ifdef DRIVER_ASAN
	__sanitizer_set_death_callback(on_sanitizer_death);
	__sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
#else
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
#endif
}

/* ---- Running one input ---- */

struct run_state {
	unsigned input_timeout;
	unsigned leak_checks;
	bool leak_check_throttled;
	uint64_t runs;
};

static void run_one(struct run_state *rs, const uint8_t *data, size_t len)
{
	/* An exact-size copy, so that reading data[len] is an overflow. */
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy) {
		fprintf(stderr, "%s: out of memory\n", prog_name);
		exit(2);
	}
	if (len)
		memcpy(copy, data, len);
	cur_data = copy;
	cur_len = len;
#ifdef DRIVER_ASAN
	uint64_t m0 = __atomic_load_n(&n_mallocs, __ATOMIC_RELAXED);
	uint64_t f0 = __atomic_load_n(&n_frees, __ATOMIC_RELAXED);
#endif
	if (rs->input_timeout)
		alarm(rs->input_timeout);
	LLVMFuzzerTestOneInput(copy, len);
	if (rs->input_timeout)
		alarm(0);
	rs->runs++;
#ifdef DRIVER_ASAN
	uint64_t dm = __atomic_load_n(&n_mallocs, __ATOMIC_RELAXED) - m0;
	uint64_t df = __atomic_load_n(&n_frees, __ATOMIC_RELAXED) - f0;
	/* Caches that fill on first use (a thread's RNG, a parsed table) make some inputs look like
	 * leaks; after many clean checks, only every 64th suspicious input is checked. */
	if (dm > df && (!rs->leak_check_throttled || rs->runs % 64 == 0)) {
		if (__lsan_do_recoverable_leak_check()) {
			cur_what = "leak";
			dump_current_input();
			fprintf(stderr, "%s: the input above leaked memory\n", prog_name);
			abort();
		}
		if (++rs->leak_checks > 200)
			rs->leak_check_throttled = true;
	}
#endif
	cur_data = NULL;
	free(copy);
}

/* ---- Seeds and dictionary ---- */

static void blobs_add(struct blobs *b, uint8_t *data, size_t len, char *name)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		if (!b->v) {
			fprintf(stderr, "%s: out of memory\n", prog_name);
			exit(2);
		}
	}
	b->v[b->n].data = data;
	b->v[b->n].len = len;
	b->v[b->n].name = name;
	b->n++;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = malloc(MAX_SEED_FILE);
	if (!buf) {
		fclose(f);
		return -1;
	}
	size_t n = fread(buf, 1, MAX_SEED_FILE, f);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* A file, or every regular file of a directory in name order (readdir's order is not stable). */
static int load_path(struct blobs *b, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		uint8_t *data;
		size_t len;
		if (read_file(path, &data, &len) < 0) {
			fprintf(stderr, "%s: %s: cannot read\n", prog_name, path);
			return -1;
		}
		blobs_add(b, data, len, strdup(path));
		return 0;
	}
	DIR *d = opendir(path);
	if (!d) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, path, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				exit(2);
		}
		if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0)
			exit(2);
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), strv_cmp);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			uint8_t *data;
			size_t len;
			if (read_file(names[i], &data, &len) == 0) {
				blobs_add(b, data, len, names[i]);
				continue;
			}
			fprintf(stderr, "%s: %s: cannot read\n", prog_name, names[i]);
			rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* libFuzzer's dictionary format: one token per line, `name="value"` or `"value"`, with \\, \"
 * and \xNN escapes; '#' starts a comment line. */
static int load_dict(struct blobs *b, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog_name, path, strerror(errno));
		return -1;
	}
	char line[1024];
	unsigned lineno = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f) && b->n < MAX_TOKENS) {
		lineno++;
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\0')
			continue;
		char *q = strchr(p, '"');
		if (!q) {
			fprintf(stderr, "%s: %s:%u: no quoted token\n", prog_name, path, lineno);
			rc = -1;
			continue;
		}
		uint8_t tok[MAX_TOKEN_LEN];
		size_t n = 0;
		bool closed = false;
		for (q++; *q && n < sizeof(tok); q++) {
			if (*q == '"') {
				closed = true;
				break;
			}
			if (*q == '\\' && q[1] == 'x' && hexval(q[2]) >= 0 && hexval(q[3]) >= 0) {
				tok[n++] = (uint8_t)(hexval(q[2]) * 16 + hexval(q[3]));
				q += 3;
			} else if (*q == '\\' && (q[1] == '\\' || q[1] == '"')) {
				tok[n++] = (uint8_t)q[1];
				q++;
			} else {
				tok[n++] = (uint8_t)*q;
			}
		}
		if (!closed || n == 0) {
			fprintf(stderr, "%s: %s:%u: malformed token\n", prog_name, path, lineno);
			rc = -1;
			continue;
		}
		uint8_t *copy = malloc(n);
		if (!copy)
			exit(2);
		memcpy(copy, tok, n);
		blobs_add(b, copy, n, NULL);
	}
	fclose(f);
	return rc;
}

/* ---- Mutations ---- */

/* splitmix64: small, fast, and the same sequence everywhere for the same seed. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n)
{
	return n ? (size_t)(rng_next(s) % n) : 0;
}

static const uint8_t interesting8[] = {
	0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff, '"', '\\', '%', '/', ':', '.', ',', '{',
	'}', '[', ']', '-', '0', '9', 'a', 'z', 'A', ' ', '\n', '\t', '(', ')', '*', '=', 0x30, 0x02,
	0x04, 0x06, 0x82, 0xa0, 0xa3,
};

static const uint64_t interesting_int[] = {
	0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
	0xffffffff, 0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull,
};

struct mutator {
	uint8_t *buf;
	size_t len, cap; /* cap is the maximum input length */
	uint64_t *rng;
	const struct blobs *seeds;
	const struct blobs *dict;
};

static void insert_bytes(struct mutator *m, size_t at, const uint8_t *p, size_t n)
{
	if (m->len + n > m->cap)
		n = m->cap - m->len;
	if (n == 0)
		return;
	memmove(m->buf + at + n, m->buf + at, m->len - at);
	memcpy(m->buf + at, p, n);
	m->len += n;
}

static void mutate_once(struct mutator *m)
{
	uint64_t *r = m->rng;
	size_t pos = rng_below(r, m->len + 1);
	uint8_t tmp[256];
	size_t n;

	switch (rng_below(r, 14)) {
	case 0: /* flip one bit */
		if (m->len)
			m->buf[rng_below(r, m->len)] ^= (uint8_t)(1u << rng_below(r, 8));
		break;
	case 1: /* random byte */
		if (m->len)
			m->buf[rng_below(r, m->len)] = (uint8_t)rng_next(r);
		break;
	case 2: /* interesting byte */
		if (m->len)
			m->buf[rng_below(r, m->len)] =
				interesting8[rng_below(r, sizeof(interesting8))];
		break;
	case 3: /* small arithmetic on a byte (lengths, tags) */
		if (m->len)
			m->buf[rng_below(r, m->len)] += (uint8_t)(rng_below(r, 33) - 16);
		break;
	case 4: { /* interesting integer, 1/2/4/8 bytes, either endianness */
		size_t w = (size_t)1 << rng_below(r, 4);
		if (m->len < w)
			break;
		uint64_t v = interesting_int[rng_below(r, sizeof(interesting_int) / 8)];
		size_t at = rng_below(r, m->len - w + 1);
		bool big = rng_below(r, 2);
		for (size_t i = 0; i < w; i++)
			m->buf[at + (big ? w - 1 - i : i)] = (uint8_t)(v >> (8 * i));
		break;
	}
	case 5: /* delete a range */
		if (m->len) {
			size_t at = rng_below(r, m->len);
			n = 1 + rng_below(r, m->len - at < 64 ? m->len - at : 64);
			memmove(m->buf + at, m->buf + at + n, m->len - at - n);
			m->len -= n;
		}
		break;
	case 6: /* insert random bytes */
		n = 1 + rng_below(r, 16);
		for (size_t i = 0; i < n; i++)
			tmp[i] = (uint8_t)rng_next(r);
		insert_bytes(m, pos, tmp, n);
		break;
	case 7: /* duplicate a chunk of the input elsewhere */
		if (m->len) {
			size_t at = rng_below(r, m->len);
			n = 1 + rng_below(r, m->len - at < sizeof(tmp) ? m->len - at : sizeof(tmp));
			memcpy(tmp, m->buf + at, n);
			insert_bytes(m, rng_below(r, m->len + 1), tmp, n);
		}
		break;
	case 8: /* truncate */
		m->len = pos;
		break;
	case 9: { /* splice: the head of this input, the tail of another seed */
		if (!m->seeds->n)
			break;
		const struct blob *o = &m->seeds->v[rng_below(r, m->seeds->n)];
		size_t from = rng_below(r, o->len + 1);
		n = o->len - from;
		if (pos + n > m->cap)
			n = m->cap - pos;
		memcpy(m->buf + pos, o->data + from, n);
		m->len = pos + n;
		break;
	}
	case 10: { /* insert a chunk of another seed */
		if (!m->seeds->n)
			break;
		const struct blob *o = &m->seeds->v[rng_below(r, m->seeds->n)];
		if (!o->len)
			break;
		size_t from = rng_below(r, o->len);
		n = 1 + rng_below(r, o->len - from < 512 ? o->len - from : 512);
		insert_bytes(m, pos, o->data + from, n);
		break;
	}
	case 11: /* dictionary token, inserted or overwriting */
		if (m->dict->n) {
			const struct blob *t = &m->dict->v[rng_below(r, m->dict->n)];
			if (rng_below(r, 2) || pos + t->len > m->len) {
				insert_bytes(m, pos, t->data, t->len);
			} else {
				memcpy(m->buf + pos, t->data, t->len);
			}
		}
		break;
	case 12: /* a run of one byte (long names, deep nesting) */
		n = 1 + rng_below(r, rng_below(r, 2) ? 16 : sizeof(tmp));
		memset(tmp, m->len ? m->buf[rng_below(r, m->len)] : 'A', n);
		insert_bytes(m, pos, tmp, n);
		break;
	case 13: /* swap two bytes */
		if (m->len >= 2) {
			size_t a = rng_below(r, m->len), b = rng_below(r, m->len);
			uint8_t t = m->buf[a];
			m->buf[a] = m->buf[b];
			m->buf[b] = t;
		}
		break;
	}
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-t SECONDS] [-n ITERATIONS] [-s SEED] [-m MAX_LEN] [-T INPUT_TIMEOUT]\n"
		"          [-d DICT] [-o ARTIFACT_DIR] SEED_FILE_OR_DIR...\n"
		"Replays every seed, then mutates them until ITERATIONS inputs or SECONDS have passed\n"
		"(defaults: 10000 iterations, 10 s, seed 1; -n 0 only replays). The environment\n"
		"variables LANYARD_FUZZ_SECONDS, LANYARD_FUZZ_ITERATIONS and LANYARD_FUZZ_SEED override\n"
		"the options, to run longer without editing the test registration.\n",
		prog_name);
	exit(2);
}

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t parse_u64(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		usage();
	return v;
}

static double parse_seconds(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct options o = {
		.seconds = 10,
		.iterations = 10000,
		.seed = 1,
		.max_len = 64 * 1024,
		.input_timeout = 10,
		.artifact_dir = ".",
	};
	struct blobs seeds = { 0 }, dict = { 0 };
	int c;

	prog_name = argv[0];
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	while ((c = getopt(argc, argv, "t:n:s:m:T:d:o:h")) != -1) {
		switch (c) {
		case 't': o.seconds = parse_seconds(optarg); break;
		case 'n': o.iterations = parse_u64(optarg); break;
		case 's': o.seed = parse_u64(optarg); break;
		case 'm': o.max_len = (size_t)parse_u64(optarg); break;
		case 'T': o.input_timeout = (unsigned)parse_u64(optarg); break;
		case 'd': o.dict_path = optarg; break;
		case 'o': o.artifact_dir = optarg; break;
		default: usage();
		}
	}
	const char *env;
	if ((env = getenv("LANYARD_FUZZ_SECONDS")) && *env)
		o.seconds = parse_seconds(env);
	if ((env = getenv("LANYARD_FUZZ_ITERATIONS")) && *env)
		o.iterations = parse_u64(env);
	if ((env = getenv("LANYARD_FUZZ_SEED")) && *env)
		o.seed = parse_u64(env);
	if (optind >= argc)
		usage();
	if (o.max_len == 0)
		o.max_len = 1;
	artifact_dir = o.artifact_dir;

	for (int i = optind; i < argc; i++)
		if (load_path(&seeds, argv[i]) < 0)
			return 2;
	if (o.dict_path && load_dict(&dict, o.dict_path) < 0)
		return 2;
	install_handlers();

	struct run_state rs = { .input_timeout = o.input_timeout };
	double t0 = mono_seconds();

	/* Seeds first, each by name, so that a regression seed that fails says which one. */
	size_t longest = 0;
	for (size_t i = 0; i < seeds.n; i++) {
		cur_what = "crash";
		run_one(&rs, seeds.v[i].data, seeds.v[i].len);
		if (seeds.v[i].len > longest)
			longest = seeds.v[i].len;
	}
	size_t n_seed_runs = (size_t)rs.runs;
	/* The empty input is always worth one run. */
	run_one(&rs, (const uint8_t *)"", 0);

	size_t cap = o.max_len > longest ? o.max_len : longest;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return 2;
	uint64_t rng = o.seed;
	struct mutator m = { .buf = buf, .cap = cap, .rng = &rng, .seeds = &seeds, .dict = &dict };
	uint64_t it;
	for (it = 0; it < o.iterations; it++) {
		if ((it & 15) == 0 && mono_seconds() - t0 >= o.seconds)
			break;
		if (seeds.n) {
			const struct blob *b = &seeds.v[rng_below(&rng, seeds.n)];
			m.len = b->len < cap ? b->len : cap;
			memcpy(buf, b->data, m.len);
		} else {
			m.len = 0;
		}
		/* Mostly few mutations (near-valid inputs go deepest), sometimes many. */
		unsigned k = 1 + (unsigned)rng_below(&rng, rng_below(&rng, 4) ? 4 : 32);
		for (unsigned j = 0; j < k; j++)
			mutate_once(&m);
		cur_what = "crash";
		run_one(&rs, buf, m.len);
	}

	printf("%s: %zu seeds, %" PRIu64 " mutated inputs in %.1f s (seed %" PRIu64
	       "): no failure\n",
	       prog_name, n_seed_runs, it, mono_seconds() - t0, o.seed);
	free(buf);
	for (size_t i = 0; i < seeds.n; i++) {
		free(seeds.v[i].data);
		free(seeds.v[i].name);
	}
	free(seeds.v);
	for (size_t i = 0; i < dict.n; i++)
		free(dict.v[i].data);
	free(dict.v);
	return 0;
}
