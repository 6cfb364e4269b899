/* cli_entry.c: "lanyard-server token|entry ..." and the counts. Single-threaded. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "admin_api.h"
#include "cli_common.h"
#include "cli_table.h"
#include "curl_dyn.h"
#include "fed_bundle.h"
#include "fed_relationship.h"
#include "keys.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

/* ---- token ---- */

int cmd_token_generate(const struct command *cmd, struct args *a)
{
	json_t *req = json_object();
	int ret = 1;
	if (a->value[O_SPIFFE_ID])
		json_object_set_new(req, "spiffe_id", json_string(a->value[O_SPIFFE_ID]));
	if (a->value[O_TTL]) {
		int64_t ttl;
		if (parse_duration_flag(a, O_TTL, INT32_MAX, &ttl) < 0)
			goto out;
		if (ttl == 0) {
			fail("--ttl must be positive");
			goto out;
		}
		json_object_set_new(req, "ttl", json_integer(ttl));
	}
	json_t *resp = call_json(a, "POST", "/v1/tokens", req);
	if (!resp)
		goto out;
	if (a->json) {
		print_json(resp);
	} else {
		char t[64];
		format_time(jint(resp, "expires_at"), t, sizeof(t));
		printf("Token: %s\n", jstr(resp, "token"));
		if (json_is_string(json_object_get(resp, "spiffe_id")))
			printf("SPIFFE ID: %s\n", jstr(resp, "spiffe_id"));
		printf("Expires at: %s\n", t);
	}
	json_decref(resp);
	ret = 0;
out:
	json_decref(req);
	return ret;
}

/* ---- entry ---- */

json_t *strings_json(const char *const *v, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_string(v[i]));
	return arr;
}

/* Builds the entry JSON from the flags present (all for create, the changed ones for update). */
static json_t *entry_request(struct args *a)
{
	json_t *o = json_object();
	int64_t v;
	if (a->value[O_SPIFFE_ID])
		json_object_set_new(o, "spiffe_id", json_string(a->value[O_SPIFFE_ID]));
	if (a->value[O_PARENT_ID])
		json_object_set_new(o, "parent_id", json_string(a->value[O_PARENT_ID]));
	if (a->n[O_SELECTOR])
		json_object_set_new(o, "selectors", strings_json(a->list[O_SELECTOR], a->n[O_SELECTOR]));
	if (a->n[O_DNS_NAME])
		json_object_set_new(o, "dns_names", strings_json(a->list[O_DNS_NAME], a->n[O_DNS_NAME]));
	if (a->n[O_FEDERATES_WITH] == 1 && !*a->list[O_FEDERATES_WITH][0])
		json_object_set_new(o, "federates_with", json_array());
	else if (a->n[O_FEDERATES_WITH])
		json_object_set_new(o, "federates_with", strings_json(a->list[O_FEDERATES_WITH],
								      a->n[O_FEDERATES_WITH]));
	if (a->value[O_X509_TTL]) {
		if (parse_duration_flag(a, O_X509_TTL, INT32_MAX, &v) < 0)
			goto fail;
		json_object_set_new(o, "x509_svid_ttl", json_integer(v));
	}
	if (a->value[O_JWT_TTL]) {
		if (parse_duration_flag(a, O_JWT_TTL, INT32_MAX, &v) < 0)
			goto fail;
		json_object_set_new(o, "jwt_svid_ttl", json_integer(v));
	}
	if (a->value[O_HINT])
		json_object_set_new(o, "hint", json_string(a->value[O_HINT]));
	if (a->value[O_ADMIN])
		json_object_set_new(o, "admin", json_boolean(bool_flag(a, O_ADMIN)));
	if (a->value[O_DOWNSTREAM] && bool_flag(a, O_DOWNSTREAM)) {
		fail("--downstream is not supported: Lanyard has no nested (downstream) servers");
		goto fail;
	}
	if (a->value[O_DOWNSTREAM])
		json_object_set_new(o, "downstream", json_false());
	if (a->value[O_EXPIRES_AT]) {
		if (parse_int_flag(a, O_EXPIRES_AT, &v) < 0)
			goto fail;
		json_object_set_new(o, "expires_at", json_integer(v));
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static void ttl_text(int64_t ttl, char *buf, size_t len)
{
	if (ttl == 0)
		snprintf(buf, len, "default");
	else
		duration_format(ttl, buf, len);
}

static void print_entry_block(json_t *e)
{
	char buf[64];
	json_t *v;
	size_t i;
	printf("Entry ID      : %s\n", jstr(e, "id"));
	printf("SPIFFE ID     : %s\n", jstr(e, "spiffe_id"));
	printf("Parent ID     : %s\n", jstr(e, "parent_id"));
	printf("Revision      : %" PRId64 "\n", jint(e, "revision"));
	ttl_text(jint(e, "x509_svid_ttl"), buf, sizeof(buf));
	printf("X509-SVID TTL : %s\n", buf);
	ttl_text(jint(e, "jwt_svid_ttl"), buf, sizeof(buf));
	printf("JWT-SVID TTL  : %s\n", buf);
	json_array_foreach(json_object_get(e, "selectors"), i, v)
		printf("Selector      : %s\n", json_string_value(v) ? json_string_value(v) : "");
	json_array_foreach(json_object_get(e, "dns_names"), i, v)
		printf("DNS name      : %s\n", json_string_value(v) ? json_string_value(v) : "");
	json_array_foreach(json_object_get(e, "federates_with"), i, v)
		printf("Federates with: %s\n", json_string_value(v) ? json_string_value(v) : "");
	if (json_is_string(json_object_get(e, "hint")))
		printf("Hint          : %s\n", jstr(e, "hint"));
	if (json_is_true(json_object_get(e, "admin")))
		printf("Admin         : true\n");
	if (json_is_true(json_object_get(e, "downstream")))
		printf("Downstream    : true\n");
	if (json_is_true(json_object_get(e, "managed")))
		printf("Managed       : true (kept by k8s_registration; not editable by hand)\n");
	if (jint(e, "expires_at")) {
		format_time(jint(e, "expires_at"), buf, sizeof(buf));
		printf("Expires at    : %s\n", buf);
	}
}

static int entry_write_cmd(struct args *a, const char *method, const char *path)
{
	json_t *req = entry_request(a);
	if (!req)
		return 1;
	json_t *resp = call_json(a, method, path, req);
	json_decref(req);
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		print_entry_block(resp);
	json_decref(resp);
	return 0;
}

static void print_entry_table(json_t *entries);

/* Prints the per-entry refusals of a batch the server turned down. */
static void print_batch_errors(json_t *errdoc, const char *file)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(errdoc, "errors"), i, e)
		fprintf(stderr, "  %s: entries[%lld]: %s\n", file, (long long)jint(e, "index"),
			jstr(e, "error"));
}

/* entry create --data FILE: every entry of {"entries":[...]} in one transaction. */
static int entry_create_batch(struct args *a)
{
	const char *file = a->value[O_DATA];
	const char *name = strcmp(file, "-") == 0 ? "(stdin)" : file;
	json_error_t jerr;
	json_t *errdoc = NULL, *resp = NULL;
	int ret = 1;
	for (int o = 0; o < O__COUNT; o++) {
		if ((ENTRY_FIELDS & BIT(o)) && a->seen[o]) {
			fail("--data cannot be combined with --%s: the file gives every field",
			     opt_specs[o].name);
			return 1;
		}
	}
	json_t *doc = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr) :
		      json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		fail("--data %s: %s (line %d, column %d)", name, jerr.text, jerr.line, jerr.column);
		return 1;
	}
	if (!json_is_object(doc) || !json_is_array(json_object_get(doc, "entries"))) {
		fail("--data %s: must be a JSON object {\"entries\": [...]}, as \"entry show "
		     "--output json\" prints", name);
		goto out;
	}
	a->timeout_s = BATCH_TIMEOUT_S;
	resp = call_json_err(a, "POST", "/v1/entries/batch", doc, &errdoc);
	if (!resp) {
		print_batch_errors(errdoc, name);
		goto out;
	}
	json_t *entries = json_object_get(resp, "entries");
	if (a->json) {
		print_json(resp);
	} else {
		print_entry_table(entries);
		printf("Created %zu entr%s in one transaction\n", json_array_size(entries),
		       json_array_size(entries) == 1 ? "y" : "ies");
	}
	ret = 0;
out:
	json_decref(errdoc);
	json_decref(resp);
	json_decref(doc);
	return ret;
}

int cmd_entry_create(const struct command *cmd, struct args *a)
{
	static const enum opt_id needed[] = { O_SPIFFE_ID, O_PARENT_ID, O_SELECTOR };
	if (a->value[O_DATA])
		return entry_create_batch(a);
	for (size_t i = 0; i < ARRAY_LEN(needed); i++) {
		if (!a->seen[needed[i]]) {
			fail("--%s is required for \"entry create\" (or --data FILE)",
			     opt_specs[needed[i]].name);
			return 1;
		}
	}
	return entry_write_cmd(a, "POST", "/v1/entries");
}

/* Appends "?k=v" / "&k=v" with v URL-encoded. */
bool append_query(char *url, size_t len, const char *key, const char *value)
{
	const struct curl_fns *cu = curl_fns_load(NULL, 0);
	char *esc = cu->easy_escape(NULL, value, 0);
	if (!esc)
		return false;
	size_t used = strlen(url);
	int n = snprintf(url + used, len - used, "%c%s=%s", strchr(url, '?') ? '&' : '?', key, esc);
	cu->free(esc);
	return n > 0 && (size_t)n < len - used;
}

static bool id_arg_ok(const char *id)
{
	if (!*id || strlen(id) > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
		      *p == '-'))
			return false;
	return true;
}

int cmd_entry_update(const struct command *cmd, struct args *a)
{
	char path[128];
	if (!id_arg_ok(a->value[O_ID])) {
		fail("invalid value \"%s\" for --id: an entry ID", a->value[O_ID]);
		return 1;
	}
	snprintf(path, sizeof(path), "/v1/entries/%s", a->value[O_ID]);
	return entry_write_cmd(a, "PUT", path);
}

int cmd_entry_delete(const struct command *cmd, struct args *a)
{
	char path[128];
	if (!id_arg_ok(a->value[O_ID])) {
		fail("invalid value \"%s\" for --id: an entry ID", a->value[O_ID]);
		return 1;
	}
	snprintf(path, sizeof(path), "/v1/entries/%s", a->value[O_ID]);
	json_t *resp = call_json(a, "DELETE", path, NULL);
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		printf("Deleted entry %s\n", jstr(resp, "deleted"));
	json_decref(resp);
	return 0;
}

/* The selectors of entry e joined with commas (malloc'd). */
static char *selectors_joined(json_t *e)
{
	size_t len = 1, k;
	json_t *v;
	json_array_foreach(json_object_get(e, "selectors"), k, v)
		len += json_string_length(v) + 1;
	char *out = xcalloc(1, len);
	json_array_foreach(json_object_get(e, "selectors"), k, v) {
		if (k)
			strcat(out, ",");
		strcat(out, json_string_value(v) ? json_string_value(v) : "");
	}
	return out;
}

/* Entry IDs stay whole (they are what --id takes); SPIFFE IDs and selectors give way. */
static void print_entry_table(json_t *entries)
{
	static const char *const heads[] = { "ENTRY ID", "SPIFFE ID", "PARENT ID", "SELECTORS" };
	static const size_t mins[] = { 0, 24, 24, 16 };
	struct cli_table *t = cli_table_new(heads, mins, 4);
	size_t n = json_array_size(entries), i;
	json_t *e;
	json_array_foreach(entries, i, e) {
		char *sels = selectors_joined(e);
		if (json_is_true(json_object_get(e, "managed"))) {
			size_t len = strlen(sels) + sizeof(" (managed)");
			char *m = xmalloc(len);
			snprintf(m, len, "%s (managed)", sels);
			free(sels);
			sels = m;
		}
		const char *row[] = { jstr(e, "id"), jstr(e, "spiffe_id"), jstr(e, "parent_id"), sels };
		cli_table_add(t, row);
		free(sels);
	}
	cli_table_print(t, stdout, CLI_TABLE_WIDTH);
	cli_table_free(t);
	printf("%zu entr%s\n", n, n == 1 ? "y" : "ies");
}

int cmd_entry_show(const struct command *cmd, struct args *a)
{
	char path[8192] = "/v1/entries";
	json_t *resp = NULL;
	if (a->value[O_ID]) {
		if (a->value[O_SPIFFE_ID] || a->value[O_PARENT_ID] || a->n[O_SELECTOR] ||
		    a->value[O_PAGE_SIZE] || a->value[O_PAGE_TOKEN]) {
			fail("--id cannot be combined with --spiffe-id, --parent-id, --selector, "
			     "--page-size or --page-token");
			return 1;
		}
		if (!id_arg_ok(a->value[O_ID])) {
			fail("invalid value \"%s\" for --id: an entry ID", a->value[O_ID]);
			return 1;
		}
		snprintf(path, sizeof(path), "/v1/entries/%s", a->value[O_ID]);
		json_t *e = call_json(a, "GET", path, NULL);
		if (!e)
			return 1;
		resp = json_pack("{s:[o]}", "entries", e);
	} else {
		bool ok = true;
		if (a->value[O_PAGE_SIZE]) {
			int64_t ps;
			if (parse_int_flag(a, O_PAGE_SIZE, &ps) < 0)
				return 1;
			if (ps < 1 || ps > ENTRY_PAGE_SIZE_MAX) {
				fail("invalid value \"%s\" for --page-size: 1 to %d",
				     a->value[O_PAGE_SIZE], ENTRY_PAGE_SIZE_MAX);
				return 1;
			}
			ok &= append_query(path, sizeof(path), "page_size", a->value[O_PAGE_SIZE]);
		}
		if (a->value[O_PAGE_TOKEN])
			ok &= append_query(path, sizeof(path), "page_token", a->value[O_PAGE_TOKEN]);
		if (a->value[O_SPIFFE_ID])
			ok &= append_query(path, sizeof(path), "spiffe_id", a->value[O_SPIFFE_ID]);
		if (a->value[O_PARENT_ID])
			ok &= append_query(path, sizeof(path), "parent_id", a->value[O_PARENT_ID]);
		for (size_t i = 0; i < a->n[O_SELECTOR]; i++)
			ok &= append_query(path, sizeof(path), "selector", a->list[O_SELECTOR][i]);
		if (!ok) {
			fail("filter too long");
			return 1;
		}
		if (a->json)
			return print_listing_json(a, path);
		resp = call_json(a, "GET", path, NULL);
	}
	if (!resp)
		return 1;
	json_t *entries = json_object_get(resp, "entries");
	if (!json_is_array(entries)) {
		fail("malformed answer from the server");
		json_decref(resp);
		return 1;
	}
	if (a->json)
		print_json(resp);
	else if (a->value[O_ID])
		print_entry_block(json_array_get(entries, 0)); /* one entry: every field */
	else
		print_entry_table(entries);
	const char *next = json_string_value(json_object_get(resp, "next_page_token"));
	if (!a->json && next && *next)
		printf("Next page: --page-token %s\n", next);
	json_decref(resp);
	return 0;
}

/* ---- counts ---- */

/* "entry count" / "agent count": the server counts without listing. */
static int count_cmd(struct args *a, const char *path, const char *one, const char *many)
{
	json_t *resp = call_json(a, "GET", path, NULL);
	if (!resp)
		return 1;
	json_t *count = json_object_get(resp, "count");
	if (!json_is_integer(count)) {
		fail("malformed answer from the server");
		json_decref(resp);
		return 1;
	}
	json_int_t n = json_integer_value(count);
	if (a->json)
		print_json(resp);
	else
		printf("%lld %s\n", (long long)n, n == 1 ? one : many);
	json_decref(resp);
	return 0;
}

int cmd_entry_count(const struct command *cmd, struct args *a)
{
	return count_cmd(a, "/v1/entries/count", "entry", "entries");
}

int cmd_agent_count(const struct command *cmd, struct args *a)
{
	return count_cmd(a, "/v1/agents/count", "agent", "agents");
}
