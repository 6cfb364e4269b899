/* strv.c: string vectors (contract in strv.h). */
#include "strv.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

char **strv_dup(char *const *v, size_t n)
{
	if (!v || n == 0)
		return NULL;
	char **out = xcalloc(n, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

void strv_push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

int strv_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t strv_sort_unique(char **v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), strv_cmp);
	size_t w = 1;
	for (size_t i = 1; i < n; i++) {
		if (strcmp(v[w - 1], v[i]) == 0)
			free(v[i]);
		else
			v[w++] = v[i];
	}
	return w;
}

json_t *strv_to_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}
