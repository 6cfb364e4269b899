/* cli_table.c: text tables that fit a width (cli_table.h). */
#include "cli_table.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026, one column wide */
#define GAP 2

struct cli_table {
	size_t ncols, nrows, cap;
	const char *heads[CLI_TABLE_MAX_COLS];
	size_t min[CLI_TABLE_MAX_COLS];
	char **cells; /* nrows * ncols */
};

/* Display width: the number of UTF-8 code points (continuation bytes do not count). */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

/* The byte offset of code point k of s (or its length). */
static size_t byte_at(const char *s, size_t k)
{
	size_t i = 0;
	for (; s[i]; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80 && k-- == 0)
			return i;
	return i;
}

char *cli_table_shorten(const char *s, size_t width, char *buf, size_t bufsz)
{
	size_t w = text_width(s);
	if (w <= width || width < 2) {
		snprintf(buf, bufsz, "%s", s);
		return buf;
	}
	size_t head = (width - 1) / 3, tail = width - 1 - head;
	size_t hb = byte_at(s, head), tb = byte_at(s, w - tail);
	snprintf(buf, bufsz, "%.*s" ELLIPSIS "%s", (int)hb, s, s + tb);
	return buf;
}

struct cli_table *cli_table_new(const char *const *heads, const size_t *min_width, size_t ncols)
{
	struct cli_table *t = xcalloc(1, sizeof(*t));
	t->ncols = ncols < CLI_TABLE_MAX_COLS ? ncols : CLI_TABLE_MAX_COLS;
	for (size_t i = 0; i < t->ncols; i++) {
		t->heads[i] = heads[i];
		t->min[i] = min_width ? min_width[i] : 0;
	}
	return t;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(*t->cells));
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = xstrdup(cells[i] ? cells[i] : "");
	t->nrows++;
}

/* Natural widths, then the widest shrinkable column narrowed one step at a time until the table
 * fits (or nothing may shrink further). */
static void fit(const struct cli_table *t, size_t width, size_t *w)
{
	size_t total = GAP * (t->ncols - 1);
	for (size_t c = 0; c < t->ncols; c++) {
		w[c] = text_width(t->heads[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t x = text_width(t->cells[r * t->ncols + c]);
			if (x > w[c])
				w[c] = x;
		}
		total += w[c];
	}
	while (total > width) {
		size_t best = t->ncols;
		for (size_t c = 0; c < t->ncols; c++)
			if (t->min[c] && w[c] > t->min[c] && (best == t->ncols || w[c] > w[best]))
				best = c;
		if (best == t->ncols)
			break;
		w[best]--;
		total--;
	}
}

static void print_cell(FILE *f, const char *s, size_t w, bool last)
{
	char buf[4096];
	cli_table_shorten(s, w, buf, sizeof(buf));
	fputs(buf, f);
	if (last)
		return;
	for (size_t n = text_width(buf); n < w + GAP; n++)
		fputc(' ', f);
}

void cli_table_print(const struct cli_table *t, FILE *f, size_t width)
{
	size_t w[CLI_TABLE_MAX_COLS];
	fit(t, width, w);
	for (size_t c = 0; c < t->ncols; c++)
		print_cell(f, t->heads[c], w[c], c + 1 == t->ncols);
	fputc('\n', f);
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++)
			print_cell(f, t->cells[r * t->ncols + c], w[c], c + 1 == t->ncols);
		fputc('\n', f);
	}
}

void cli_table_free(struct cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
