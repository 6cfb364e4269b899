/* strv.h: string vectors as the rest of the tree stores them: a `char **` of owned strings next to
 * a `size_t` count (struct entry's selectors, a stream's parents, pending change lists).
 *
 * Contract: the vector owns its strings; no locking (a vector belongs to whoever owns the struct
 * that holds it). Growth aborts on allocation failure like xrealloc (util.h): these are small
 * lists of identifiers, never sized by a peer. */
#ifndef LANYARD_STRV_H
#define LANYARD_STRV_H

#include <stddef.h>

#include <jansson.h>

/* Frees the n strings and the array; NULL-safe. */
void strv_free(char **v, size_t n);
/* A deep copy, or NULL when n is 0. */
char **strv_dup(char *const *v, size_t n);
/* Appends a copy of s, growing the array by one. */
void strv_push(char ***v, size_t *n, const char *s);
/* Sorts v (strcmp order) and frees repeats; returns the new count. */
size_t strv_sort_unique(char **v, size_t n);
/* strcmp on two char * elements: the qsort/bsearch comparator of a string vector. */
int strv_cmp(const void *a, const void *b);
/* A JSON array of the strings (a new reference), or NULL on allocation failure. */
json_t *strv_to_json(char *const *v, size_t n);

#endif
