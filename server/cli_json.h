/* cli_json.h: the CLI's --output json of large answers without a JSON tree and without the
 * whole answer in memory. The admin API renders listings with jansson (compact) and streams
 * them; the CLI prints them as jansson's JSON_INDENT(2) dump of the parsed document would look,
 * re-indenting the text as it arrives, piece by piece, in one pass (a stream holds a fixed
 * 64 KiB output buffer and its bracket stack, whatever the size of the document). Strings,
 * numbers and literals are copied byte for byte (the server's jansson escaped them as the
 * CLI's would).
 *
 * The text is checked as it goes (a structural check that the answer is one complete
 * document, not a full grammar check): one JSON object (or array), brackets that balance,
 * strings that end and hold no raw control characters, nothing but whitespace after it. What
 * was printed before a fault stays printed: the caller says that the output is incomplete.
 *
 * A stream is used by one thread; no global state. */
#ifndef LANYARD_CLI_JSON_H
#define LANYARD_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cli_json_stream;

/* A stream printing to out, or only checking when out is NULL. object_only: the document must
 * be an object (a listing), not an array. NULL on allocation failure. */
struct cli_json_stream *cli_json_stream_new(FILE *out, bool object_only);
/* The next len bytes of the text. 0, or -1 once the text cannot be the start of a complete
 * document or writing failed (cli_json_stream_error says which); every later call fails too. */
int cli_json_stream_feed(struct cli_json_stream *s, const char *text, size_t len);
/* The end of the text: 0 when the document was complete (its final newline written and the
 * output flushed), -1 otherwise (the output flushed as far as it went). */
int cli_json_stream_finish(struct cli_json_stream *s);
/* Why the stream failed ("" when it has not): a static string. */
const char *cli_json_stream_error(const struct cli_json_stream *s);
/* True when the stream failed because writing the output failed (errno tells why). */
bool cli_json_stream_write_failed(const struct cli_json_stream *s);
/* NULL-safe. Does not flush. */
void cli_json_stream_free(struct cli_json_stream *s);

/* Checks a whole text as a stream that prints nothing would (an object or an array). 0 or -1. */
int cli_json_check(const char *text, size_t len);
/* Writes a whole text re-indented, as a stream would, with the final newline. 0, or -1 when
 * the text is not one complete document or writing failed. */
int cli_json_print_indented(const char *text, size_t len, FILE *out);

#endif
