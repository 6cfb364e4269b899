/* cli_common.h: what the modules of lanyard-server's operator commands share (cli.c: options and
 * the router; cli_http.c: requests to the admin API; cli_entry.c, cli_agent.c, cli_federation.c:
 * the commands by group). Internal to the CLI. Single-threaded: a process runs one command. */
#ifndef LANYARD_CLI_COMMON_H
#define LANYARD_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct cli_mtls;

#define MAX_REPEAT 64
#define MAX_RESPONSE (64u << 20)
#define REQUEST_TIMEOUT_S 30L
/* A batch of tens of thousands of entries is checked and written in one transaction. */
#define BATCH_TIMEOUT_S 600L

enum opt_id {
	O_SOCKET, O_OUTPUT, O_HELP, O_ID, O_SPIFFE_ID, O_PARENT_ID, O_SELECTOR, O_X509_TTL,
	O_JWT_TTL, O_DNS_NAME, O_HINT, O_ADMIN, O_DOWNSTREAM, O_EXPIRES_AT, O_TTL, O_FORMAT,
	O_TRUST_DOMAIN, O_FILE, O_FEDERATES_WITH,
	O_ENDPOINT_URL, O_PROFILE, O_ENDPOINT_ID, O_TRUST_BUNDLE,
	O_DATA, O_PAGE_SIZE, O_PAGE_TOKEN, O_AUDIENCE, O_WRITE,
	O_SERVER_URL, O_WORKLOAD_SOCKET, O_CLIENT_ID,
	O__COUNT
};

enum opt_kind { ARG_NONE, ARG_ONE, ARG_REPEAT, ARG_BOOL /* --x or --x=true|false */ };

struct opt_spec {
	const char *name;
	enum opt_kind kind;
	const char *help;
};

extern const struct opt_spec opt_specs[O__COUNT];

struct args {
	const char *value[O__COUNT];
	const char *list[O__COUNT][MAX_REPEAT];
	size_t n[O__COUNT];
	bool seen[O__COUNT];
	bool json;
	const char *socket;
	long timeout_s;		/* of each request */
	const char *server_url;	/* --server-url: the admin API over mutual TLS; NULL: the socket */
	struct cli_mtls *mtls;	/* the caller's SVID for server_url (cli_mtls.h) */
};

struct command {
	const char *name;
	int (*run)(const struct command *cmd, struct args *a);
	const char *summary;
	uint64_t opts;		/* bitmask of enum opt_id */
	uint64_t required;
};

struct group {
	const char *name;
	const char *summary;
	const struct command *commands;
	size_t n_commands;
};

#define BIT(o) (UINT64_C(1) << (o))
_Static_assert(O__COUNT <= 64, "options must fit the command bitmasks");
#define COMMON_OPTS (BIT(O_SOCKET) | BIT(O_OUTPUT) | BIT(O_HELP) | BIT(O_SERVER_URL) | \
		     BIT(O_WORKLOAD_SOCKET) | BIT(O_CLIENT_ID))
#define ENTRY_FIELDS (BIT(O_SPIFFE_ID) | BIT(O_PARENT_ID) | BIT(O_SELECTOR) | BIT(O_X509_TTL) | \
		      BIT(O_JWT_TTL) | BIT(O_DNS_NAME) | BIT(O_HINT) | BIT(O_ADMIN) | \
		      BIT(O_DOWNSTREAM) | BIT(O_EXPIRES_AT) | BIT(O_FEDERATES_WITH))
#define FED_FIELDS (BIT(O_ENDPOINT_URL) | BIT(O_PROFILE) | BIT(O_ENDPOINT_ID) | BIT(O_TRUST_BUNDLE))

/* cli.c: errors ("error: ..." on stderr) and flag values (each prints why it fails, -1). */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int parse_duration_flag(struct args *a, enum opt_id o, int64_t max, int64_t *out);
int parse_int_flag(struct args *a, enum opt_id o, int64_t *out);
bool bool_flag(struct args *a, enum opt_id o);

/* cli_http.c: requests to the admin API and the helpers that print its answers. */
int http(const struct args *a, const char *method, const char *path, const char *body,
	 long *status, char **resp);
char *call_ok(struct args *a, const char *method, const char *path, const char *body,
	      json_t **errdoc);
json_t *call_json_err(struct args *a, const char *method, const char *path, json_t *req,
			     json_t **errdoc);
int print_listing_json(struct args *a, const char *path);
json_t *call_json(struct args *a, const char *method, const char *path, json_t *req);
void print_json(json_t *j);
void format_time(int64_t t, char *buf, size_t len);
const char *jstr(json_t *o, const char *key);
int64_t jint(json_t *o, const char *key);
json_t *list_call(struct args *a, const char *path, const char *key, json_t **resp);
int col_width(json_t *items, const char *key, const char *head);

/* cli_entry.c */
int cmd_token_generate(const struct command *cmd, struct args *a);
json_t *strings_json(const char *const *v, size_t n);
int cmd_entry_create(const struct command *cmd, struct args *a);
bool append_query(char *url, size_t len, const char *key, const char *value);
int cmd_entry_update(const struct command *cmd, struct args *a);
int cmd_entry_delete(const struct command *cmd, struct args *a);
int cmd_entry_show(const struct command *cmd, struct args *a);
int cmd_entry_count(const struct command *cmd, struct args *a);
int cmd_agent_count(const struct command *cmd, struct args *a);

/* cli_agent.c */
int cmd_agent_list(const struct command *cmd, struct args *a);
int cmd_agent_show(const struct command *cmd, struct args *a);
int cmd_agent_evict(const struct command *cmd, struct args *a);
int cmd_agent_ban(const struct command *cmd, struct args *a);
int cmd_authority_show(const struct command *cmd, struct args *a);
int report_action(struct args *a, json_t *resp, const char *key, const char *what);
int cmd_authority_prepare(const struct command *cmd, struct args *a);
int cmd_authority_activate(const struct command *cmd, struct args *a);
int cmd_authority_taint(const struct command *cmd, struct args *a);
int cmd_authority_revoke(const struct command *cmd, struct args *a);
int cmd_server_list(const struct command *cmd, struct args *a);
int cmd_x509_mint(const struct command *cmd, struct args *a);
int cmd_jwt_mint(const struct command *cmd, struct args *a);

/* cli_federation.c */
int cmd_bundle_show(const struct command *cmd, struct args *a);
int cmd_bundle_list(const struct command *cmd, struct args *a);
int cmd_bundle_set(const struct command *cmd, struct args *a);
int cmd_bundle_delete(const struct command *cmd, struct args *a);
int cmd_fed_create(const struct command *cmd, struct args *a);
int cmd_fed_update(const struct command *cmd, struct args *a);
int cmd_fed_show(const struct command *cmd, struct args *a);
int cmd_fed_delete(const struct command *cmd, struct args *a);
int cmd_fed_refresh(const struct command *cmd, struct args *a);
int cmd_fed_list(const struct command *cmd, struct args *a);

#endif
