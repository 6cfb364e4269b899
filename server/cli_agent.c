/* cli_agent.c: "lanyard-server agent|authority|server|x509|jwt ...". Single-threaded. */
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

/* ---- agent ---- */

static void print_agent_block(json_t *ag)
{
	char t[64];
	size_t i;
	json_t *v;
	printf("SPIFFE ID     : %s\n", jstr(ag, "spiffe_id"));
	printf("Attestor      : %s\n", jstr(ag, "attestor"));
	json_array_foreach(json_object_get(ag, "aliases"), i, v)
		printf("Alias         : %s\n", json_string_value(v) ? json_string_value(v) : "");
	json_array_foreach(json_object_get(ag, "selectors"), i, v)
		printf("Selector      : %s\n", json_string_value(v) ? json_string_value(v) : "");
	printf("SVID serial   : %s\n", jstr(ag, "serial"));
	format_time(jint(ag, "not_after"), t, sizeof(t));
	printf("SVID expires  : %s\n", t);
	format_time(jint(ag, "created_at"), t, sizeof(t));
	printf("Attested at   : %s\n", t);
	format_time(jint(ag, "last_seen"), t, sizeof(t));
	printf("Last seen     : %s\n", t);
	printf("Banned        : %s\n", json_is_true(json_object_get(ag, "banned")) ? "yes" : "no");
}

int cmd_agent_list(const struct command *cmd, struct args *a)
{
	json_t *resp, *agents = list_call(a, "/v1/agents", "agents", &resp);
	if (!agents)
		return 1;
	if (a->json) {
		print_json(resp);
	} else {
		static const char *const heads[] = { "SPIFFE ID", "ATTESTOR", "SVID EXPIRES", "BANNED" };
		static const size_t mins[] = { 32, 8, 0, 0 };
		struct cli_table *tb = cli_table_new(heads, mins, 4);
		size_t i;
		json_t *ag;
		json_array_foreach(agents, i, ag) {
			char t[64];
			format_time(jint(ag, "not_after"), t, sizeof(t));
			const char *row[] = { jstr(ag, "spiffe_id"), jstr(ag, "attestor"), t,
				json_is_true(json_object_get(ag, "banned")) ? "yes" : "no" };
			cli_table_add(tb, row);
		}
		cli_table_print(tb, stdout, CLI_TABLE_WIDTH);
		cli_table_free(tb);
		printf("%zu agent%s\n", json_array_size(agents), json_array_size(agents) == 1 ? "" : "s");
	}
	json_decref(resp);
	return 0;
}

int cmd_agent_show(const struct command *cmd, struct args *a)
{
	char path[8192] = "/v1/agents/show";
	if (!append_query(path, sizeof(path), "spiffe_id", a->value[O_SPIFFE_ID])) {
		fail("--spiffe-id too long");
		return 1;
	}
	json_t *resp = call_json(a, "GET", path, NULL);
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		print_agent_block(resp);
	json_decref(resp);
	return 0;
}

static int agent_action(struct args *a, const char *path, const char *key, const char *verb)
{
	json_t *req = json_pack("{s:s}", "spiffe_id", a->value[O_SPIFFE_ID]);
	json_t *resp = req ? call_json(a, "POST", path, req) : NULL;
	json_decref(req);
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		printf("%s agent %s\n", verb, jstr(resp, key));
	json_decref(resp);
	return 0;
}

int cmd_agent_evict(const struct command *cmd, struct args *a)
{
	return agent_action(a, "/v1/agents/evict", "evicted", "Evicted");
}

int cmd_agent_ban(const struct command *cmd, struct args *a)
{
	return agent_action(a, "/v1/agents/ban", "banned", "Banned");
}

/* ---- authority ---- */

static void print_authority_table(json_t *auths)
{
	size_t i;
	json_t *au;
	printf("%-32s  %-4s  %-8s  %-7s  %-20s  %-20s  %s\n", "ID", "KIND", "STATE", "TAINTED",
	       "NOT BEFORE", "NOT AFTER", "KEY");
	json_array_foreach(auths, i, au) {
		bool x509 = strcmp(jstr(au, "kind"), "x509") == 0;
		char fp[20] = "";
		if (!x509)
			snprintf(fp, sizeof(fp), "%.16s", jstr(au, "key_id"));
		printf("%-32.32s  %-4s  %-8s  %-7s  %-20s  %-20s  %s%s\n", jstr(au, "id"),
		       jstr(au, "kind"), jstr(au, "state"),
		       json_is_true(json_object_get(au, "tainted")) ? "yes" : "no",
		       jstr(au, "not_before"), jstr(au, "not_after"), x509 ? "" : "kid ", fp);
	}
}

int cmd_authority_show(const struct command *cmd, struct args *a)
{
	json_t *resp = call_json(a, "GET", "/v1/authorities", NULL);
	if (!resp)
		return 1;
	json_t *auths = json_object_get(resp, "authorities");
	if (!json_is_array(auths)) {
		fail("malformed answer from the server");
		json_decref(resp);
		return 1;
	}
	if (a->json)
		print_json(resp);
	else
		print_authority_table(auths);
	json_decref(resp);
	return 0;
}

/* The answer of an action ({"<key>": name}): as JSON, or "<what> <name>". Takes resp (NULL: the
 * call failed and said why). The exit status. */
int report_action(struct args *a, json_t *resp, const char *key, const char *what)
{
	if (!resp)
		return 1;
	if (a->json)
		print_json(resp);
	else
		printf("%s %s\n", what, jstr(resp, key));
	json_decref(resp);
	return 0;
}

/* prepare, activate, taint, revoke: {"id"} in (prepare: nothing), {"<verb>": id} out. */
static int authority_action(struct args *a, const char *path, const char *key, const char *verb)
{
	char what[64];
	json_t *req = a->value[O_ID] ? json_pack("{s:s}", "id", a->value[O_ID]) : json_object();
	json_t *resp = req ? call_json(a, "POST", path, req) : NULL;
	json_decref(req);
	snprintf(what, sizeof(what), "%s authority", verb);
	return report_action(a, resp, key, what);
}

int cmd_authority_prepare(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/prepare", "prepared", "Prepared");
}

int cmd_authority_activate(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/activate", "activated", "Activated");
}

int cmd_authority_taint(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/taint", "tainted", "Tainted");
}

int cmd_authority_revoke(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/revoke", "revoked", "Revoked");
}

/* ---- server ---- */

int cmd_server_list(const struct command *cmd, struct args *a)
{
	json_t *resp, *servers = list_call(a, "/v1/servers", "servers", &resp);
	if (!servers)
		return 1;
	if (a->json) {
		print_json(resp);
	} else {
		static const char *const heads[] = { "ID", "ADDRESS", "VERSION", "LAST SEEN",
						     "AUTHORITIES" };
		static const size_t mins[] = { 0, 24, 10, 0, 0 };
		struct cli_table *tb = cli_table_new(heads, mins, 5);
		size_t i;
		json_t *sv;
		json_array_foreach(servers, i, sv) {
			char t[64], na[32];
			format_time(jint(sv, "last_seen"), t, sizeof(t));
			snprintf(na, sizeof(na), "%lld", (long long)jint(sv, "authorities"));
			const char *row[] = { jstr(sv, "id"), jstr(sv, "address"), jstr(sv, "version"),
					      t, na };
			cli_table_add(tb, row);
		}
		cli_table_print(tb, stdout, CLI_TABLE_WIDTH);
		cli_table_free(tb);
		printf("%zu server%s\n", json_array_size(servers),
		       json_array_size(servers) == 1 ? "" : "s");
	}
	json_decref(resp);
	return 0;
}

/* ---- x509 mint, jwt mint ---- */

/* The lifetime of a minted SVID: --ttl, or 0 to let the server choose. */
static int mint_ttl_flag(struct args *a, json_t *req)
{
	int64_t ttl;
	if (!a->value[O_TTL])
		return 0;
	if (parse_duration_flag(a, O_TTL, MINT_TTL_MAX, &ttl) < 0)
		return -1;
	if (ttl == 0) {
		fail("--ttl must be positive");
		return -1;
	}
	json_object_set_new(req, "ttl", json_integer(ttl));
	return 0;
}

/* Writes dir/name (mode); prints the error naming the file. */
static int write_out(const char *dir, const char *name, const char *data, mode_t mode)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int ret = file_write_atomic(path, data, strlen(data), mode);
	if (ret < 0)
		fail("cannot write %s: %s", path, strerror(-ret));
	else
		printf("Wrote %s\n", path);
	return ret;
}

/* A PEM as a JSON string, escaped by hand so that the key never enters a JSON library buffer
 * that would be freed without wiping. PEM holds only base64, '-', ' ' and newlines. */
static void print_json_pem(const char *pem)
{
	putchar('"');
	for (const char *p = pem; *p; p++) {
		if (*p == '\n')
			fputs("\\n", stdout);
		else if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
			putchar(*p);
	}
	putchar('"');
}

static void print_mint_x509(struct args *a, json_t *resp, const char *key_pem)
{
	if (a->json) {
		char *cert = json_dumps(json_object_get(resp, "certificate"), JSON_ENCODE_ANY);
		char *bundle = json_dumps(json_object_get(resp, "bundle"), JSON_ENCODE_ANY);
		printf("{\n  \"certificate\": %s,\n  \"private_key\": ", cert ? cert : "\"\"");
		print_json_pem(key_pem);
		printf(",\n  \"bundle\": %s\n}\n", bundle ? bundle : "\"\"");
		free(cert);
		free(bundle);
		return;
	}
	printf("X509-SVID:\n%s\nPrivate key:\n%s\nRoot CAs:\n%s", jstr(resp, "certificate"),
	       key_pem, jstr(resp, "bundle"));
}

/* The key is made here and only a CSR goes to the server: the private key never crosses the
 * admin socket. */
int cmd_x509_mint(const struct command *cmd, struct args *a)
{
	lkey *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	char *csr_b64 = NULL, *key_pem = NULL;
	json_t *req = json_pack("{s:s}", "spiffe_id", a->value[O_SPIFFE_ID]), *resp = NULL;
	int ret = 1;
	if (!req || mint_ttl_flag(a, req) < 0)
		goto out;
	if (a->n[O_DNS_NAME])
		json_object_set_new(req, "dns_names", strings_json(a->list[O_DNS_NAME],
								   a->n[O_DNS_NAME]));
	if (lkey_generate(KEY_EC_P256, &key) < 0 || x509_csr_create(key, &csr, &csr_len) < 0 ||
	    !(csr_b64 = base64_encode(csr, csr_len)) || lkey_to_pem(key, &key_pem) < 0) {
		fail("cannot generate a key and its certificate request");
		goto out;
	}
	json_object_set_new(req, "csr", json_string(csr_b64));
	if (!(resp = call_json(a, "POST", "/v1/svids/x509", req)))
		goto out;
	if (a->value[O_WRITE]) {
		const char *d = a->value[O_WRITE];
		if (write_out(d, "svid.pem", jstr(resp, "certificate"), 0644) < 0 ||
		    write_out(d, "key.pem", key_pem, 0600) < 0 ||
		    write_out(d, "bundle.pem", jstr(resp, "bundle"), 0644) < 0)
			goto out;
	} else {
		print_mint_x509(a, resp, key_pem);
	}
	ret = 0;
out:
	if (key_pem)
		secure_zero(key_pem, strlen(key_pem));
	free(key_pem);
	lkey_free(key);
	free(csr);
	free(csr_b64);
	json_decref(req);
	json_decref(resp);
	return ret;
}

int cmd_jwt_mint(const struct command *cmd, struct args *a)
{
	json_t *req = json_pack("{s:s, s:o}", "spiffe_id", a->value[O_SPIFFE_ID], "audience",
				strings_json(a->list[O_AUDIENCE], a->n[O_AUDIENCE]));
	json_t *resp = NULL;
	int ret = 1;
	if (!req || mint_ttl_flag(a, req) < 0)
		goto out;
	if (!(resp = call_json(a, "POST", "/v1/svids/jwt", req)))
		goto out;
	const char *token = jstr(resp, "token");
	if (a->value[O_WRITE]) {
		if (write_out(a->value[O_WRITE], "token", token, 0600) < 0)
			goto out;
	} else if (a->json) {
		json_t *j = json_pack("{s:s}", "token", token);
		print_json(j);
		json_decref(j);
	} else {
		printf("%s\n", token);
	}
	ret = 0;
out:
	json_decref(req);
	json_decref(resp);
	return ret;
}
