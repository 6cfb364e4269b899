/* cli_json.c: streaming re-indentation of the admin API's JSON (cli_json.h). */
#include "cli_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048
#define OUT_BUF 65536

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The index just past the string starting at text[i] (its opening quote), or 0 when it does
 * not end or holds a raw control character. */
static size_t string_end(const char *text, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '"')
			return i + 1;
		if (c < 0x20)
			return 0;
		if (c == '\\')
			i++;
	}
	return 0;
}

int cli_json_check(const char *text, size_t len)
{
	char stack[MAX_DEPTH];
	size_t depth = 0, i = 0;
	while (i < len && is_ws(text[i]))
		i++;
	if (i == len || (text[i] != '{' && text[i] != '['))
		return -1;
	for (; i < len; i++) {
		char c = text[i];
		if (c == '"') {
			size_t e = string_end(text, len, i);
			if (!e)
				return -1;
			i = e - 1;
		} else if (c == '{' || c == '[') {
			if (depth == MAX_DEPTH)
				return -1;
			stack[depth++] = c == '{' ? '}' : ']';
		} else if (c == '}' || c == ']') {
			if (!depth || stack[--depth] != c)
				return -1;
			if (!depth)
				break;
		}
	}
	if (depth || i == len)
		return -1;
	for (i++; i < len; i++)
		if (!is_ws(text[i]))
			return -1;
	return 0;
}

struct out {
	FILE *f;
	char *buf; /* OUT_BUF bytes */
	size_t len;
	bool failed;
};

static void flush(struct out *o)
{
	if (o->len && fwrite(o->buf, 1, o->len, o->f) != o->len)
		o->failed = true;
	o->len = 0;
}

static void put(struct out *o, const char *s, size_t n)
{
	while (n) {
		if (o->len == OUT_BUF)
			flush(o);
		size_t k = OUT_BUF - o->len < n ? OUT_BUF - o->len : n;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
	}
}

static void newline(struct out *o, size_t depth)
{
	static const char spaces[] = "                                ";
	put(o, "\n", 1);
	for (size_t n = depth * 2; n;) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		put(o, spaces, k);
		n -= k;
	}
}

int cli_json_print_indented(const char *text, size_t len, FILE *out)
{
	struct out o = {.f = out, .buf = malloc(OUT_BUF)};
	size_t depth = 0;
	if (!o.buf)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (c == '"') {
			size_t e = string_end(text, len, i);
			if (!e)
				e = len;
			put(&o, text + i, e - i);
			i = e - 1;
		} else if (c == '{' || c == '[') {
			char close = c == '{' ? '}' : ']';
			size_t j = i + 1;
			while (j < len && is_ws(text[j]))
				j++;
			if (j < len && text[j] == close) {
				put(&o, c == '{' ? "{}" : "[]", 2);
				i = j;
				continue;
			}
			put(&o, &c, 1);
			newline(&o, ++depth);
		} else if (c == '}' || c == ']') {
			newline(&o, depth ? --depth : 0);
			put(&o, &c, 1);
		} else if (c == ',') {
			put(&o, ",", 1);
			newline(&o, depth);
		} else if (c == ':') {
			put(&o, ": ", 2);
		} else if (!is_ws(c)) {
			size_t e = i + 1;
			while (e < len && !is_ws(text[e]) && !strchr("{}[],:\"", text[e]))
				e++;
			put(&o, text + i, e - i);
			i = e - 1;
		}
	}
	put(&o, "\n", 1);
	flush(&o);
	free(o.buf);
	return o.failed ? -1 : 0;
}
