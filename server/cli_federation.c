/* cli_federation.c: "lanyard-server bundle|federation ...". Single-threaded. */
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

/* ---- bundle ---- */

static int fed_bundle_show(struct args *a);

int cmd_bundle_show(const struct command *cmd, struct args *a)
{
	const char *format = a->value[O_FORMAT];
	if (a->value[O_TRUST_DOMAIN])
		return fed_bundle_show(a);
	char *resp = NULL;
	if (!format)
		format = a->json ? "spiffe" : "pem";
	if (strcmp(format, "pem") != 0 && strcmp(format, "spiffe") != 0) {
		fail("invalid value \"%s\" for --format: pem or spiffe", format);
		return 1;
	}
	char path[64];
	snprintf(path, sizeof(path), "/v1/bundle?format=%s", format);
	if (!(resp = call_ok(a, "GET", path, NULL, NULL)))
		return 1;
	if (a->json && strcmp(format, "pem") == 0) {
		json_t *j = json_pack("{s:s}", "pem", resp);
		print_json(j);
		json_decref(j);
	} else {
		fputs(resp, stdout);
		if (*resp && resp[strlen(resp) - 1] != '\n')
			fputc('\n', stdout);
	}
	free(resp);
	return 0;
}

/* ---- federated bundles ---- */

static void print_fed_bundle_line(json_t *b, int w)
{
	char t[64];
	format_time(jint(b, "refreshed_at"), t, sizeof(t));
	printf("%-*s  %-8lld  %-20s  %-8s  %lld/%lld\n", w, jstr(b, "trust_domain"),
	       (long long)jint(b, "sequence"), t, jstr(b, "source"),
	       (long long)jint(b, "x509_authorities"), (long long)jint(b, "jwt_authorities"));
}

int cmd_bundle_list(const struct command *cmd, struct args *a)
{
	json_t *resp, *bundles = list_call(a, "/v1/federated_bundles", "bundles", &resp);
	if (!bundles)
		return 1;
	if (a->json) {
		print_json(resp);
	} else {
		int w = col_width(bundles, "trust_domain", "TRUST DOMAIN");
		size_t i;
		json_t *b;
		printf("%-*s  %-8s  %-20s  %-8s  %s\n", w, "TRUST DOMAIN", "SEQUENCE",
		       "REFRESHED", "SOURCE", "X509/JWT");
		json_array_foreach(bundles, i, b)
			print_fed_bundle_line(b, w);
		printf("%zu federated bundle%s\n", json_array_size(bundles),
		       json_array_size(bundles) == 1 ? "" : "s");
	}
	json_decref(resp);
	return 0;
}

/* bundle show --trust-domain TD: PEM (default), the SPIFFE document (--format spiffe), or the
 * summary with both (--output json). */
static int fed_bundle_show(struct args *a)
{
	const char *format = a->value[O_FORMAT] ? a->value[O_FORMAT] : "pem";
	char path[8192] = "/v1/federated_bundles/show";
	if (strcmp(format, "pem") != 0 && strcmp(format, "spiffe") != 0) {
		fail("invalid value \"%s\" for --format: pem or spiffe", format);
		return 1;
	}
	if (!append_query(path, sizeof(path), "trust_domain", a->value[O_TRUST_DOMAIN])) {
		fail("--trust-domain too long");
		return 1;
	}
	json_t *resp = call_json(a, "GET", path, NULL);
	if (!resp)
		return 1;
	if (a->json) {
		print_json(resp);
	} else if (strcmp(format, "spiffe") == 0) {
		print_json(json_object_get(resp, "spiffe_bundle"));
	} else {
		fputs(jstr(resp, "pem"), stdout);
	}
	json_decref(resp);
	return 0;
}

int cmd_bundle_set(const struct command *cmd, struct args *a)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int ret = 1;
	json_t *req = NULL, *resp = NULL;
	int r = file_read_all(a->value[O_FILE], FED_BUNDLE_MAX_BYTES, &data, &len);
	if (r < 0) {
		fail("cannot read --file %s: %s", a->value[O_FILE],
		     r == -EFBIG ? "larger than 512 KiB" : strerror(-r));
		goto out;
	}
	json_t *doc = json_stringn((const char *)data, len);
	if (!doc) {
		fail("--file %s is neither PEM nor a SPIFFE bundle document (not UTF-8 text)",
		     a->value[O_FILE]);
		goto out;
	}
	req = json_pack("{s:s, s:o}", "trust_domain", a->value[O_TRUST_DOMAIN], "bundle", doc);
	resp = req ? call_json(a, "POST", "/v1/federated_bundles/set", req) : NULL;
	if (!resp) {
		if (!req)
			fail("out of memory");
		goto out;
	}
	if (a->json)
		print_json(resp);
	else
		printf("Federated bundle of %s set (sequence %lld)\n", jstr(resp, "trust_domain"),
		       (long long)jint(resp, "sequence"));
	ret = 0;
out:
	free(data);
	json_decref(req);
	json_decref(resp);
	return ret;
}

int cmd_bundle_delete(const struct command *cmd, struct args *a)
{
	json_t *req = json_pack("{s:s}", "trust_domain", a->value[O_TRUST_DOMAIN]);
	json_t *resp = req ? call_json(a, "POST", "/v1/federated_bundles/delete", req) : NULL;
	json_decref(req);
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		printf("Deleted the federated bundle of %s\n", jstr(resp, "deleted"));
	json_decref(resp);
	return 0;
}

/* ---- federation ---- */


/* /v1/federations/<td>, the trust domain checked first (it becomes part of the path). */
static bool fed_path(struct args *a, char *path, size_t len)
{
	char why[256];
	const char *td = a->value[O_TRUST_DOMAIN];
	if (trust_domain_validate(td, why, sizeof(why)) < 0) {
		fail("invalid --trust-domain \"%s\": %s", td, why);
		return false;
	}
	snprintf(path, len, "/v1/federations/%s", td);
	return true;
}

/* The relationship members the flags give; NULL after printing why. */
static json_t *fed_request(struct args *a)
{
	json_t *o = json_object();
	if (a->value[O_TRUST_DOMAIN])
		json_object_set_new(o, "trust_domain", json_string(a->value[O_TRUST_DOMAIN]));
	if (a->value[O_ENDPOINT_URL])
		json_object_set_new(o, "bundle_endpoint_url", json_string(a->value[O_ENDPOINT_URL]));
	if (a->value[O_PROFILE])
		json_object_set_new(o, "bundle_endpoint_profile", json_string(a->value[O_PROFILE]));
	/* Switching an existing relationship to https_web drops what only https_spiffe uses. */
	if (a->value[O_PROFILE] && strcmp(a->value[O_PROFILE], "https_web") == 0) {
		json_object_set_new(o, "endpoint_spiffe_id", json_null());
		json_object_set_new(o, "trust_bundle", json_null());
	}
	if (a->value[O_ENDPOINT_ID])
		json_object_set_new(o, "endpoint_spiffe_id", json_string(a->value[O_ENDPOINT_ID]));
	if (a->value[O_TRUST_BUNDLE]) {
		uint8_t *pem = NULL;
		size_t len = 0;
		int r = file_read_all(a->value[O_TRUST_BUNDLE], FED_TRUST_BUNDLE_MAX, &pem, &len);
		if (r < 0) {
			fail("--trust-bundle %s: %s", a->value[O_TRUST_BUNDLE], strerror(-r));
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, "trust_bundle", json_stringn((const char *)pem, len));
		free(pem);
		if (!json_object_get(o, "trust_bundle")) {
			fail("--trust-bundle %s: not text", a->value[O_TRUST_BUNDLE]);
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static void print_fed(json_t *f)
{
	char t[64];
	json_t *st = json_object_get(f, "state");
	printf("Trust domain       : %s\n", jstr(f, "trust_domain"));
	printf("Bundle endpoint    : %s\n", jstr(f, "bundle_endpoint_url"));
	printf("Profile            : %s\n", jstr(f, "bundle_endpoint_profile"));
	if (json_object_get(f, "endpoint_spiffe_id"))
		printf("Endpoint SPIFFE ID : %s\n", jstr(f, "endpoint_spiffe_id"));
	printf("Initial bundle     : %s\n", json_object_get(f, "trust_bundle") ? "yes" : "no");
	if (!st)
		return;
	format_time(jint(st, "last_success"), t, sizeof(t));
	printf("Last fetched       : %s\n", jint(st, "last_success") ? t : "never");
	if (json_object_get(st, "sequence"))
		printf("Bundle sequence    : %lld\n", (long long)jint(st, "sequence"));
	if (*jstr(st, "last_error"))
		printf("Last error         : %s\n", jstr(st, "last_error"));
	format_time(jint(st, "next_attempt"), t, sizeof(t));
	printf("Next fetch         : %s\n", t);
}

static int fed_print(struct args *a, json_t *resp)
{
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		print_fed(resp);
	json_decref(resp);
	return 0;
}

int cmd_fed_create(const struct command *cmd, struct args *a)
{
	json_t *req = fed_request(a);
	json_t *resp = req ? call_json(a, "POST", "/v1/federations", req) : NULL;
	json_decref(req);
	return fed_print(a, resp);
}

int cmd_fed_update(const struct command *cmd, struct args *a)
{
	char path[320];
	if (!fed_path(a, path, sizeof(path)))
		return 1;
	json_t *req = fed_request(a);
	json_t *resp = req ? call_json(a, "PUT", path, req) : NULL;
	json_decref(req);
	return fed_print(a, resp);
}

int cmd_fed_show(const struct command *cmd, struct args *a)
{
	char path[320];
	if (!fed_path(a, path, sizeof(path)))
		return 1;
	return fed_print(a, call_json(a, "GET", path, NULL));
}

static int fed_action(struct args *a, const char *method, const char *key, const char *verb)
{
	char path[320];
	if (!fed_path(a, path, sizeof(path)))
		return 1;
	return report_action(a, call_json(a, method, path, NULL), key, verb);
}

int cmd_fed_delete(const struct command *cmd, struct args *a)
{
	return fed_action(a, "DELETE", "deleted", "Deleted the federation relationship with");
}

int cmd_fed_refresh(const struct command *cmd, struct args *a)
{
	return fed_action(a, "POST", "refreshing", "Fetching the bundle of");
}

int cmd_fed_list(const struct command *cmd, struct args *a)
{
	json_t *resp = call_json(a, "GET", "/v1/federations", NULL);
	if (!resp)
		return 1;
	json_t *feds = json_object_get(resp, "federations"), *f;
	size_t i;
	if (!json_is_array(feds)) {
		fail("malformed answer from the server");
		json_decref(resp);
		return 1;
	}
	if (a->json) {
		print_json(resp);
	} else {
		printf("%-24s  %-12s  %-20s  %s\n", "TRUST DOMAIN", "PROFILE", "LAST FETCHED",
		       "BUNDLE ENDPOINT");
		json_array_foreach(feds, i, f) {
			char t[64];
			int64_t at = jint(json_object_get(f, "state"), "last_success");
			format_time(at, t, sizeof(t));
			printf("%-24s  %-12s  %-20s  %s\n", jstr(f, "trust_domain"),
			       jstr(f, "bundle_endpoint_profile"), at ? t : "never",
			       jstr(f, "bundle_endpoint_url"));
		}
		printf("%zu federation relationship%s\n", json_array_size(feds),
		       json_array_size(feds) == 1 ? "" : "s");
	}
	json_decref(resp);
	return 0;
}
