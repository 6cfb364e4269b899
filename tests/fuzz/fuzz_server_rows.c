/* fuzz_server_rows: the JSON documents the server keeps in its datastore and reads back at start
 * and on every change: a federation relationship (fed_relationship_from_json, also what the
 * admin API accepts) and the string lists of rows (datastore_strv_from_text: selectors, DNS
 * names, federates_with). In a shared PostgreSQL datastore, other servers write them.
 *
 * Input: the document. Invariants: an accepted relationship survives fed_relationship_to_json
 * and fed_relationship_from_json unchanged (the same document again); a string list that parses
 * survives datastore_strv_to_text and parses to the same strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "datastore_backend.h"
#include "fed_relationship.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

static void relationship(const json_t *j)
{
	struct fed_relationship *r = NULL, *back = NULL;
	char err[512] = "";
	if (fed_relationship_from_json(j, &r, err, sizeof(err)) < 0) {
		FUZZ_CHECK(err[0] != '\0' && r == NULL);
		return;
	}
	json_t *doc = fed_relationship_to_json(r);
	FUZZ_CHECK(doc != NULL);
	FUZZ_CHECK(fed_relationship_from_json(doc, &back, err, sizeof(err)) == 0);
	json_t *again = fed_relationship_to_json(back);
	FUZZ_CHECK(json_equal(doc, again));
	json_decref(again);
	json_decref(doc);
	fed_relationship_free(back);
	fed_relationship_free(r);
}

static void strv(const char *text)
{
	char **v = NULL, **back = NULL;
	size_t n = 0, n_back = 0;
	if (datastore_strv_from_text(text, &v, &n) < 0)
		return;
	char *again = datastore_strv_to_text(v, n);
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(datastore_strv_from_text(again, &back, &n_back) == 0 && n_back == n);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(strcmp(v[i], back[i]) == 0);
	for (size_t i = 0; i < n; i++) {
		free(v[i]);
		free(back[i]);
	}
	free(v);
	free(back);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_cstr(data, size);
	json_t *j = json_loadb(text, size, 0, NULL);
	if (j)
		relationship(j);
	json_decref(j);
	strv(text);
	free(text);
	return 0;
}
