/* cli_table.h: the text tables of "lanyard-server entry show", "agent list"...: columns that fit
 * CLI_TABLE_WIDTH, long values shortened in the middle with an ellipsis (the full values are in
 * --output json). Single-threaded; a table is built, printed once and freed. */
#ifndef LANYARD_CLI_TABLE_H
#define LANYARD_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

#define CLI_TABLE_WIDTH 120
#define CLI_TABLE_MAX_COLS 8

struct cli_table;

/* heads: ncols (<= CLI_TABLE_MAX_COLS) column titles. min_width[i] is the narrowest column i may
 * be shortened to (0: never shortened). */
struct cli_table *cli_table_new(const char *const *heads, const size_t *min_width, size_t ncols);
/* Adds a row of ncols values (copied; NULL prints as ""). */
void cli_table_add(struct cli_table *t, const char *const *cells);
/* Prints the heads and rows to f, at most width columns wide where the minimum widths allow. */
void cli_table_print(const struct cli_table *t, FILE *f, size_t width);
void cli_table_free(struct cli_table *t);

/* s shortened to at most width characters: the start, an ellipsis, the end (the end of a SPIFFE
 * ID names the workload). Writes into buf (bufsz bytes). Returns buf. */
char *cli_table_shorten(const char *s, size_t width, char *buf, size_t bufsz);

#endif
