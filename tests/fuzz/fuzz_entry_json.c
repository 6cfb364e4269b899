/* fuzz_entry_json: registration entries from JSON (server/entry.h), as the admin API and the CLI
 * read them. The input is the request body: jansson parses it, then entry_from_json,
 * entry_validate and entry_merge_json run on it. An accepted entry must come back unchanged
 * through entry_to_json and entry_from_json. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "entry.h"
#include "fuzz.h"

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool strv_eq(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i], b[i]))
			return false;
	return true;
}

static bool entry_eq(const struct entry *a, const struct entry *b)
{
	return strcmp(a->id, b->id) == 0 && str_eq(a->spiffe_id, b->spiffe_id) &&
	       str_eq(a->parent_id, b->parent_id) &&
	       strv_eq(a->selectors, a->n_selectors, b->selectors, b->n_selectors) &&
	       a->x509_svid_ttl == b->x509_svid_ttl && a->jwt_svid_ttl == b->jwt_svid_ttl &&
	       strv_eq(a->dns_names, a->n_dns_names, b->dns_names, b->n_dns_names) &&
	       str_eq(a->hint, b->hint) && a->admin == b->admin &&
	       a->downstream == b->downstream && a->expires_at == b->expires_at &&
	       a->revision == b->revision && a->created_at == b->created_at &&
	       strv_eq(a->federates_with, a->n_federates_with, b->federates_with,
		       b->n_federates_with);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t je;
	json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
	struct entry *e = NULL, *back = NULL;
	char err[512] = "";

	if (!o)
		return 0;
	int r = entry_from_json(o, &e, err, sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && err[0] != '\0');
		goto out;
	}
	FUZZ_CHECK(e != NULL);
	/* Selectors are normalised: sorted, no duplicates. */
	for (size_t i = 1; i < e->n_selectors; i++)
		FUZZ_CHECK(strcmp(e->selectors[i - 1], e->selectors[i]) < 0);
	FUZZ_CHECK(entry_has_selectors(e, (const char *const *)e->selectors, e->n_selectors));

	err[0] = '\0';
	if (entry_validate(e, "example.org", err, sizeof(err)) == 0) {
		FUZZ_CHECK(e->spiffe_id && e->parent_id && e->n_selectors >= 1);
		for (size_t i = 0; i < e->n_selectors; i++)
			FUZZ_CHECK(entry_selector_validate(e->selectors[i], NULL, 0) == 0);
		/* What the admin API answers can be sent back as a request. (Only for valid
		 * entries: entry_to_json writes a missing spiffe_id or parent_id as null, which
		 * entry_from_json refuses.) */
		json_t *j = entry_to_json(e);
		FUZZ_CHECK(j != NULL);
		FUZZ_CHECK(entry_from_json(j, &back, err, sizeof(err)) == 0);
		FUZZ_CHECK(entry_eq(e, back));
		json_decref(j);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}

	/* A partial update with the same body onto a copy gives the same entry, and a failing
	 * update leaves its target alone. */
	struct entry *dup = entry_dup(e);
	FUZZ_CHECK(entry_merge_json(dup, o, err, sizeof(err)) == 0);
	FUZZ_CHECK(entry_eq(dup, e));
	json_t *bad = json_pack("{s:i}", "no_such_key", 1);
	FUZZ_CHECK(bad && entry_merge_json(dup, bad, err, sizeof(err)) < 0);
	FUZZ_CHECK(entry_eq(dup, e));
	json_decref(bad);
	entry_free(dup);
out:
	entry_free(back);
	entry_free(e);
	json_decref(o);
	return 0;
}
