/* cli_json.c: streaming check and re-indentation of the admin API's JSON (cli_json.h). */
#include "cli_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048
#define OUT_BUF 65536

/* Where the text is: before the document, inside it (in a string or not), after it. */
enum state { S_BEFORE, S_IN, S_STRING, S_AFTER, S_FAILED };

struct cli_json_stream {
	FILE *f;		/* NULL: check only */
	bool object_only;
	enum state state;
	bool escaped;		/* S_STRING: the last byte was an unpaired backslash */
	/* An opening bracket read but not printed yet: "{}" when the next byte that is not
	 * whitespace closes it, else the bracket, a newline and the indentation. */
	char pending;
	size_t depth;
	char stack[MAX_DEPTH];	/* the closing brackets expected, innermost last */
	const char *error;
	bool write_failed;
	size_t len;
	char buf[OUT_BUF];
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int fault(struct cli_json_stream *s, const char *why)
{
	s->state = S_FAILED;
	s->error = why;
	return -1;
}

static void flush(struct cli_json_stream *s)
{
	if (s->len && !s->write_failed && fwrite(s->buf, 1, s->len, s->f) != s->len)
		s->write_failed = true;
	s->len = 0;
}

static void put(struct cli_json_stream *s, const char *p, size_t n)
{
	if (!s->f)
		return;
	while (n) {
		if (s->len == OUT_BUF)
			flush(s);
		size_t k = OUT_BUF - s->len < n ? OUT_BUF - s->len : n;
		memcpy(s->buf + s->len, p, k);
		s->len += k;
		p += k;
		n -= k;
	}
}

static void newline(struct cli_json_stream *s)
{
	static const char spaces[] = "                                ";
	put(s, "\n", 1);
	for (size_t n = s->depth * 2; n;) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		put(s, spaces, k);
		n -= k;
	}
}

/* The bytes of a string from text[i] up to its closing quote (included) or the end of text:
 * the index after them, or SIZE_MAX on a raw control character. Strings hold most of a
 * listing's bytes: they are copied in runs. */
static size_t string_bytes(struct cli_json_stream *s, const char *text, size_t len, size_t i)
{
	size_t j = i;
	for (; j < len; j++) {
		unsigned char c = (unsigned char)text[j];
		if (s->escaped) {
			s->escaped = false;
		} else if (c == '\\') {
			s->escaped = true;
		} else if (c == '"') {
			s->state = S_IN;
			j++;
			break;
		} else if (c < 0x20) {
			return SIZE_MAX;
		}
	}
	put(s, text + i, j - i);
	return j;
}

static int open_bracket(struct cli_json_stream *s, char c)
{
	if (s->depth == MAX_DEPTH)
		return fault(s, "the document nests deeper than 2048 levels");
	s->stack[s->depth++] = c == '{' ? '}' : ']';
	s->pending = c;
	return 0;
}

static int close_bracket(struct cli_json_stream *s, char c)
{
	if (!s->depth || s->stack[s->depth - 1] != c)
		return fault(s, "its brackets do not match");
	s->depth--;
	if (s->pending) {
		put(s, s->pending == '{' ? "{}" : "[]", 2);
		s->pending = 0;
	} else {
		newline(s);
		put(s, &c, 1);
	}
	if (!s->depth)
		s->state = S_AFTER;
	return 0;
}

/* One byte outside strings, inside the document. */
static int structural(struct cli_json_stream *s, char c)
{
	if (is_ws(c))
		return 0;
	if (s->pending && c != s->stack[s->depth - 1]) {
		put(s, &s->pending, 1);
		s->pending = 0;
		newline(s);
	}
	switch (c) {
	case '"':
		s->state = S_STRING;
		put(s, "\"", 1);
		return 0;
	case '{':
	case '[':
		return open_bracket(s, c);
	case '}':
	case ']':
		return close_bracket(s, c);
	case ',':
		put(s, ",", 1);
		newline(s);
		return 0;
	case ':':
		put(s, ": ", 2);
		return 0;
	default:
		put(s, &c, 1);
		return 0;
	}
}

int cli_json_stream_feed(struct cli_json_stream *s, const char *text, size_t len)
{
	for (size_t i = 0; i < len && s->state != S_FAILED; i++) {
		char c = text[i];
		switch (s->state) {
		case S_BEFORE:
			if (is_ws(c))
				break;
			if (c != '{' && (c != '[' || s->object_only))
				return fault(s, s->object_only ? "it is not a JSON object"
								: "it is not a JSON object or array");
			s->state = S_IN;
			open_bracket(s, c);
			break;
		case S_IN:
			if (structural(s, c) < 0)
				return -1;
			break;
		case S_STRING:
			if ((i = string_bytes(s, text, len, i)) == SIZE_MAX)
				return fault(s, "a string holds a raw control character");
			i--;
			break;
		case S_AFTER:
			if (!is_ws(c))
				return fault(s, "there is more text after the document");
			break;
		case S_FAILED:
			break;
		}
	}
	if (s->state != S_FAILED && s->write_failed)
		return fault(s, "cannot write the output");
	return s->state == S_FAILED ? -1 : 0;
}

int cli_json_stream_finish(struct cli_json_stream *s)
{
	if (s->state == S_BEFORE)
		fault(s, "it is empty");
	else if (s->state == S_IN || s->state == S_STRING)
		fault(s, "it ends before the document does (truncated)");
	if (s->state == S_AFTER)
		put(s, "\n", 1);
	if (s->f)
		flush(s);
	if (s->state != S_FAILED && (s->write_failed || (s->f && fflush(s->f) != 0))) {
		s->write_failed = true;
		fault(s, "cannot write the output");
	}
	return s->state == S_FAILED ? -1 : 0;
}

struct cli_json_stream *cli_json_stream_new(FILE *out, bool object_only)
{
	struct cli_json_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->f = out;
	s->object_only = object_only;
	s->state = S_BEFORE;
	s->error = "";
	return s;
}

const char *cli_json_stream_error(const struct cli_json_stream *s)
{
	return s->error;
}

bool cli_json_stream_write_failed(const struct cli_json_stream *s)
{
	return s->write_failed;
}

void cli_json_stream_free(struct cli_json_stream *s)
{
	free(s);
}

/* A whole text through a stream. */
static int whole(const char *text, size_t len, FILE *out)
{
	struct cli_json_stream *s = cli_json_stream_new(out, false);
	int ret = -1;
	if (!s)
		return -1;
	if (cli_json_stream_feed(s, text, len) == 0 && cli_json_stream_finish(s) == 0)
		ret = 0;
	else if (out)
		flush(s);
	cli_json_stream_free(s);
	return ret;
}

int cli_json_check(const char *text, size_t len)
{
	return whole(text, len, NULL);
}

int cli_json_print_indented(const char *text, size_t len, FILE *out)
{
	return whole(text, len, out);
}
