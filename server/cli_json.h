/* cli_json.h: the CLI's --output json of large answers without a JSON tree. The admin API
 * renders listings with jansson (compact); the CLI prints them as jansson's JSON_INDENT(2) would,
 * re-indenting the text in one streaming pass instead of parsing 100,000 entries into objects
 * and dumping them again. Strings, numbers and literals are copied byte for byte (the server's
 * jansson escaped them as the CLI's would). Single-threaded, no global state. */
#ifndef LANYARD_CLI_JSON_H
#define LANYARD_CLI_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Checks that text (len bytes) is one JSON object or array whose brackets balance, whose
 * strings end and hold no raw control characters, with nothing but whitespace after it (a
 * structural check: the answer is complete, not a full grammar check). 0 or -1. */
int cli_json_check(const char *text, size_t len);
/* Writes text re-indented with 2 spaces per level and a final newline, as json_dumps(..,
 * JSON_INDENT(2)) and puts print the parsed document. Input that cli_json_check refuses gives
 * undefined (but bounded) output: check first. 0, or -1 when writing failed. */
int cli_json_print_indented(const char *text, size_t len, FILE *out);

#endif
