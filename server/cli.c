/* cli.c: "lanyard-server token|entry|agent|bundle|server ...": thin clients of the admin API.
 *
 * The router is one static table of groups and commands. Options are declared once (opt_specs)
 * and each command lists the ones it accepts; anything else is an error that names the flag. */
#include "cli.h"

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
#include "cli_mtls.h"
#include "curl_dyn.h"
#include "fed_bundle.h"
#include "fed_relationship.h"
#include "keys.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"


const struct opt_spec opt_specs[O__COUNT] = {
	[O_SOCKET] = { "socket", ARG_ONE, "admin socket (default " ADMIN_SOCKET_DEFAULT ")" },
	[O_OUTPUT] = { "output", ARG_ONE, "output format: text (default) or json" },
	[O_HELP] = { "help", ARG_NONE, "show this help" },
	[O_ID] = { "id", ARG_ONE, "ID (of the entry, or of the authority)" },
	[O_SPIFFE_ID] = { "spiffe-id", ARG_ONE, "SPIFFE ID" },
	[O_PARENT_ID] = { "parent-id", ARG_ONE, "parent SPIFFE ID (agent or alias)" },
	[O_SELECTOR] = { "selector", ARG_REPEAT, "selector type:value (repeatable)" },
	[O_X509_TTL] = { "x509-svid-ttl", ARG_ONE, "X509-SVID lifetime (seconds or 1h, 30m...)" },
	[O_JWT_TTL] = { "jwt-svid-ttl", ARG_ONE, "JWT-SVID lifetime (seconds or 5m...)" },
	[O_DNS_NAME] = { "dns-name", ARG_REPEAT, "DNS SAN for the X509-SVID (repeatable)" },
	[O_HINT] = { "hint", ARG_ONE, "hint passed to workloads" },
	[O_ADMIN] = { "admin", ARG_BOOL, "mark the entry admin (stored and shown; --admin=false clears)" },
	[O_DOWNSTREAM] = { "downstream", ARG_BOOL, "not supported (no nested servers); --downstream=false clears it" },
	[O_EXPIRES_AT] = { "expires-at", ARG_ONE, "entry expiry, unix seconds (0 = never)" },
	[O_TTL] = { "ttl", ARG_ONE, "lifetime of the token or SVID (seconds or 10m, 1h...)" },
	[O_FORMAT] = { "format", ARG_ONE, "pem (default) or spiffe" },
	[O_TRUST_DOMAIN] = { "trust-domain", ARG_ONE, "a foreign trust domain (example.org)" },
	[O_FILE] = { "file", ARG_ONE, "bundle file: PEM certificates or a SPIFFE bundle (JSON)" },
	[O_FEDERATES_WITH] = { "federates-with", ARG_REPEAT,
			       "trust domain whose bundle the workloads get (repeatable; "
			       "--federates-with= alone clears)" },
	[O_ENDPOINT_URL] = { "bundle-endpoint-url", ARG_ONE, "https URL of its bundle endpoint" },
	[O_PROFILE] = { "profile", ARG_ONE, "bundle endpoint profile: https_spiffe (default) or https_web" },
	[O_ENDPOINT_ID] = { "endpoint-spiffe-id", ARG_ONE, "https_spiffe: SPIFFE ID the endpoint presents" },
	[O_TRUST_BUNDLE] = { "trust-bundle", ARG_ONE, "https_spiffe: PEM file, the bundle that authenticates the endpoint until one is fetched" },
	[O_DATA] = { "data", ARG_ONE, "JSON file {\"entries\":[...]} to create in one transaction (- = stdin)" },
	[O_PAGE_SIZE] = { "page-size", ARG_ONE, "list one page of at most this many entries" },
	[O_AUDIENCE] = { "audience", ARG_REPEAT, "audience of the JWT-SVID (repeatable)" },
	[O_WRITE] = { "write", ARG_ONE, "directory to write the files to (the key 0600)" },
	[O_PAGE_TOKEN] = { "page-token", ARG_ONE, "the page after the one that printed this next_page_token" },
	[O_SERVER_URL] = { "server-url", ARG_ONE, "https://HOST:PORT: the admin API over mutual TLS "
			   "(admin_bind_port) instead of the socket, as the caller's X509-SVID" },
	[O_WORKLOAD_SOCKET] = { "workload-socket", ARG_ONE, "with --server-url: the Workload API "
				"(default $SPIFFE_ENDPOINT_SOCKET)" },
	[O_CLIENT_ID] = { "client-spiffe-id", ARG_ONE, "with --server-url: which of the caller's "
			  "X509-SVIDs to present (default the first)" },
};


void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void fail(const char *fmt, ...)
{
	va_list ap;
	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- argument parsing ---- */

/* A single-dash argument: SPIRE's spelling of one of the command's flags, or a typo. */
static void fail_single_dash(const char *group, const struct command *cmd, const char *arg)
{
	const char *names[O__COUNT];
	size_t n = 0;
	for (int o = 0; o < O__COUNT; o++)
		if (cmd->opts & BIT(o))
			names[n++] = opt_specs[o].name;
	const char *match = spire_flag_suggest(arg, names, n);
	if (match)
		fail("unknown flag \"%s\": did you mean --%s? (flags take two dashes)", arg, match);
	else
		fail("unknown flag \"%s\" for \"%s %s\" (see lanyard-server %s %s --help)", arg,
		     group, cmd->name, group, cmd->name);
}

/* --server-url https://HOST:PORT (no path), with --workload-socket/--client-spiffe-id only
 * beside it, and not with --socket. */
static int server_url_arg(struct args *a)
{
	const char *u = a->value[O_SERVER_URL];
	if (!u) {
		if (a->seen[O_WORKLOAD_SOCKET] || a->seen[O_CLIENT_ID]) {
			fail("--%s needs --server-url", a->seen[O_CLIENT_ID] ? "client-spiffe-id"
									    : "workload-socket");
			return -1;
		}
		return 0;
	}
	if (a->seen[O_SOCKET]) {
		fail("--socket and --server-url exclude each other");
		return -1;
	}
	const char *host = strncmp(u, "https://", 8) == 0 ? u + 8 : NULL;
	if (!host || !*host || strchr(host, '/') || strlen(u) > 1024) {
		fail("invalid value \"%s\" for --server-url: https://HOST:PORT", u);
		return -1;
	}
	a->server_url = u;
	return 0;
}

static int parse_args(const char *group, const struct command *cmd, int argc, char **argv,
		      struct args *a)
{
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "-h") == 0) {
			a->seen[O_HELP] = true;
			continue;
		}
		if (arg[0] == '-' && arg[1] && arg[1] != '-') {
			fail_single_dash(group, cmd, arg);
			return -1;
		}
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			fail("unexpected argument \"%s\" (see lanyard-server %s %s --help)", arg,
			     group, cmd->name);
			return -1;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		int id = -1;
		for (int o = 0; o < O__COUNT && id < 0; o++)
			if (strlen(opt_specs[o].name) == nlen && strncmp(opt_specs[o].name, name, nlen) == 0)
				id = o;
		if (id < 0 || !(cmd->opts & BIT(id))) {
			fail("unknown flag --%.*s for \"%s %s\"", (int)nlen, name, group, cmd->name);
			return -1;
		}
		const struct opt_spec *s = &opt_specs[id];
		const char *val = NULL;
		switch (s->kind) {
		case ARG_NONE:
			if (eq) {
				fail("flag --%s takes no value", s->name);
				return -1;
			}
			break;
		case ARG_BOOL:
			val = eq ? eq + 1 : "true";
			if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0) {
				fail("invalid value \"%s\" for --%s: true or false", val, s->name);
				return -1;
			}
			break;
		case ARG_ONE:
		case ARG_REPEAT:
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				fail("flag --%s needs a value", s->name);
				return -1;
			}
			break;
		}
		if (s->kind == ARG_REPEAT) {
			if (a->n[id] >= MAX_REPEAT) {
				fail("too many --%s flags (at most %d)", s->name, MAX_REPEAT);
				return -1;
			}
			a->list[id][a->n[id]++] = val;
		} else if (a->seen[id] && s->kind != ARG_NONE) {
			fail("flag --%s given twice", s->name);
			return -1;
		}
		a->seen[id] = true;
		a->value[id] = val;
	}
	if (a->seen[O_HELP])
		return 0;
	for (int o = 0; o < O__COUNT; o++) {
		if ((cmd->required & BIT(o)) && !a->seen[o]) {
			fail("--%s is required for \"%s %s\"", opt_specs[o].name, group, cmd->name);
			return -1;
		}
	}
	a->socket = a->value[O_SOCKET] ? a->value[O_SOCKET] : ADMIN_SOCKET_DEFAULT;
	a->timeout_s = REQUEST_TIMEOUT_S;
	if (!*a->socket) {
		fail("--socket must not be empty");
		return -1;
	}
	if (server_url_arg(a) < 0)
		return -1;
	if (a->value[O_OUTPUT]) {
		if (strcmp(a->value[O_OUTPUT], "json") == 0) {
			a->json = true;
		} else if (strcmp(a->value[O_OUTPUT], "text") != 0) {
			fail("invalid value \"%s\" for --output: text or json", a->value[O_OUTPUT]);
			return -1;
		}
	}
	return 0;
}

int parse_duration_flag(struct args *a, enum opt_id o, int64_t max, int64_t *out)
{
	const char *v = a->value[o];
	if (duration_parse(v, out) < 0 || *out > max) {
		fail("invalid value \"%s\" for --%s: a duration such as 3600, 90s, 30m, 1h or 2d "
		     "(at most %lld seconds)", v, opt_specs[o].name, (long long)max);
		return -1;
	}
	return 0;
}

int parse_int_flag(struct args *a, enum opt_id o, int64_t *out)
{
	const char *v = a->value[o];
	char *end = NULL;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < 0) {
		fail("invalid value \"%s\" for --%s: a non-negative integer", v, opt_specs[o].name);
		return -1;
	}
	*out = x;
	return 0;
}

bool bool_flag(struct args *a, enum opt_id o)
{
	return strcmp(a->value[o], "true") == 0;
}

static void usage_command(FILE *f, const char *group, const struct command *cmd)
{
	fprintf(f, "Usage: lanyard-server %s %s [flags]\n  %s\n\nFlags:\n", group, cmd->name,
		cmd->summary);
	for (int o = 0; o < O__COUNT; o++) {
		if (!(cmd->opts & BIT(o)))
			continue;
		const struct opt_spec *s = &opt_specs[o];
		char left[64];
		snprintf(left, sizeof(left), "--%s%s", s->name,
			 s->kind == ARG_ONE || s->kind == ARG_REPEAT ? " VALUE" : "");
		fprintf(f, "  %-24s %s%s\n", left, s->help, (cmd->required & BIT(o)) ? " (required)" : "");
	}
}

/* ---- router ---- */

static const struct command token_commands[] = {
	{ .name = "generate", .run = cmd_token_generate,
	  .summary = "Creates a single-use join token for an agent.",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID) | BIT(O_TTL) },
};

static const struct command entry_commands[] = {
	{ .name = "create", .run = cmd_entry_create,
	  .summary = "Creates a registration entry (--spiffe-id, --parent-id and --selector needed), "
		     "or every entry of --data FILE in one transaction.",
	  .opts = COMMON_OPTS | ENTRY_FIELDS | BIT(O_DATA) },
	{ .name = "show", .run = cmd_entry_show,
	  .summary = "Lists registration entries, optionally filtered (selectors: entries having all) "
		     "and a page at a time.",
	  .opts = COMMON_OPTS | BIT(O_ID) | BIT(O_SPIFFE_ID) | BIT(O_PARENT_ID) | BIT(O_SELECTOR) |
		  BIT(O_PAGE_SIZE) | BIT(O_PAGE_TOKEN) },
	{ .name = "update", .run = cmd_entry_update,
	  .summary = "Updates an entry: the fields given replace the stored ones.",
	  .opts = COMMON_OPTS | BIT(O_ID) | ENTRY_FIELDS, .required = BIT(O_ID) },
	{ .name = "delete", .run = cmd_entry_delete, .summary = "Deletes an entry.",
	  .opts = COMMON_OPTS | BIT(O_ID), .required = BIT(O_ID) },
	{ .name = "count", .run = cmd_entry_count,
	  .summary = "Counts registration entries ({\"count\": N} with --output json).",
	  .opts = COMMON_OPTS },
};

static const struct command agent_commands[] = {
	{ .name = "list", .run = cmd_agent_list, .summary = "Lists attested agents.",
	  .opts = COMMON_OPTS },
	{ .name = "count", .run = cmd_agent_count,
	  .summary = "Counts attested agents ({\"count\": N} with --output json).",
	  .opts = COMMON_OPTS },
	{ .name = "show", .run = cmd_agent_show, .summary = "Shows one attested agent.",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID), .required = BIT(O_SPIFFE_ID) },
	{ .name = "evict", .run = cmd_agent_evict,
	  .summary = "Forgets an agent: it must attest again.",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID), .required = BIT(O_SPIFFE_ID) },
	{ .name = "ban", .run = cmd_agent_ban,
	  .summary = "Bans an agent: it can neither renew nor attest again.",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID), .required = BIT(O_SPIFFE_ID) },
};

static const struct command bundle_commands[] = {
	{ .name = "show", .run = cmd_bundle_show,
	  .summary = "Prints the trust bundle, or with --trust-domain a federated one (PEM, or "
		     "SPIFFE JSON with --format spiffe).",
	  .opts = COMMON_OPTS | BIT(O_FORMAT) | BIT(O_TRUST_DOMAIN) },
	{ .name = "list", .run = cmd_bundle_list,
	  .summary = "Lists the federated bundles (foreign trust domains), set or fetched.",
	  .opts = COMMON_OPTS },
	{ .name = "set", .run = cmd_bundle_set,
	  .summary = "Sets the bundle of a foreign trust domain by hand (PEM or SPIFFE bundle).",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN) | BIT(O_FILE),
	  .required = BIT(O_TRUST_DOMAIN) | BIT(O_FILE) },
	{ .name = "delete", .run = cmd_bundle_delete,
	  .summary = "Deletes the bundle of a foreign trust domain.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN), .required = BIT(O_TRUST_DOMAIN) },
};

static const struct command federation_commands[] = {
	{ .name = "create", .run = cmd_fed_create,
	  .summary = "Federates with a trust domain: its bundle is fetched from its bundle endpoint.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN) | FED_FIELDS,
	  .required = BIT(O_TRUST_DOMAIN) | BIT(O_ENDPOINT_URL) },
	{ .name = "list", .run = cmd_fed_list,
	  .summary = "Lists federation relationships and their fetch state.", .opts = COMMON_OPTS },
	{ .name = "show", .run = cmd_fed_show, .summary = "Shows one federation relationship.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN), .required = BIT(O_TRUST_DOMAIN) },
	{ .name = "update", .run = cmd_fed_update,
	  .summary = "Updates a relationship: the fields given replace the stored ones.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN) | FED_FIELDS, .required = BIT(O_TRUST_DOMAIN) },
	{ .name = "delete", .run = cmd_fed_delete,
	  .summary = "Ends a federation: the relationship and the bundle fetched through it go.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN), .required = BIT(O_TRUST_DOMAIN) },
	{ .name = "refresh", .run = cmd_fed_refresh,
	  .summary = "Fetches the trust domain's bundle now.",
	  .opts = COMMON_OPTS | BIT(O_TRUST_DOMAIN), .required = BIT(O_TRUST_DOMAIN) },
};

static const struct command authority_commands[] = {
	{ .name = "show", .run = cmd_authority_show,
	  .summary = "Lists the CA authorities (x509 and jwt keys; state, validity, taint).",
	  .opts = COMMON_OPTS },
	{ .name = "prepare", .run = cmd_authority_prepare,
	  .summary = "Prepares the next authority now: it joins the bundle, and signs once activated.",
	  .opts = COMMON_OPTS },
	{ .name = "activate", .run = cmd_authority_activate,
	  .summary = "Makes a prepared authority the one that signs; the active one becomes old.",
	  .opts = COMMON_OPTS | BIT(O_ID), .required = BIT(O_ID) },
	{ .name = "taint", .run = cmd_authority_taint,
	  .summary = "Taints a non-active authority: every agent re-issues what it signed, at once.",
	  .opts = COMMON_OPTS | BIT(O_ID), .required = BIT(O_ID) },
	{ .name = "revoke", .run = cmd_authority_revoke,
	  .summary = "Removes a tainted authority from the bundle once no agent depends on it.",
	  .opts = COMMON_OPTS | BIT(O_ID), .required = BIT(O_ID) },
};

static const struct command server_commands[] = {
	{ .name = "list", .run = cmd_server_list,
	  .summary = "Lists the live servers sharing this server's database.",
	  .opts = COMMON_OPTS },
};

static const struct command x509_commands[] = {
	{ .name = "mint", .run = cmd_x509_mint,
	  .summary = "Mints an X509-SVID by hand (the key is made here; only a CSR is sent).",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID) | BIT(O_TTL) | BIT(O_DNS_NAME) | BIT(O_WRITE),
	  .required = BIT(O_SPIFFE_ID) },
};

static const struct command jwt_commands[] = {
	{ .name = "mint", .run = cmd_jwt_mint, .summary = "Mints a JWT-SVID by hand.",
	  .opts = COMMON_OPTS | BIT(O_SPIFFE_ID) | BIT(O_AUDIENCE) | BIT(O_TTL) | BIT(O_WRITE),
	  .required = BIT(O_SPIFFE_ID) | BIT(O_AUDIENCE) },
};

static const struct group groups[] = {
	{ "token", "join tokens", token_commands, ARRAY_LEN(token_commands) },
	{ "entry", "registration entries", entry_commands, ARRAY_LEN(entry_commands) },
	{ "agent", "attested agents", agent_commands, ARRAY_LEN(agent_commands) },
	{ "authority", "the CA authorities: forced rotation, taint, revocation", authority_commands,
	  ARRAY_LEN(authority_commands) },
	{ "bundle", "the trust bundle and federated bundles", bundle_commands, ARRAY_LEN(bundle_commands) },
	{ "federation", "federation with other trust domains", federation_commands,
	  ARRAY_LEN(federation_commands) },
	{ "server", "the servers of this trust domain", server_commands,
	  ARRAY_LEN(server_commands) },
	{ "x509", "X509-SVIDs minted by hand", x509_commands, ARRAY_LEN(x509_commands) },
	{ "jwt", "JWT-SVIDs minted by hand", jwt_commands, ARRAY_LEN(jwt_commands) },
};

static void usage_group(FILE *f, const struct group *g)
{
	fprintf(f, "Usage: lanyard-server %s <command> [flags]\n\nCommands (%s):\n", g->name,
		g->summary);
	for (size_t i = 0; i < g->n_commands; i++)
		fprintf(f, "  %-10s %s\n", g->commands[i].name, g->commands[i].summary);
	fprintf(f, "\nRun \"lanyard-server %s <command> --help\" for its flags.\n", g->name);
}

bool cli_is_command(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_LEN(groups); i++)
		if (strcmp(groups[i].name, name) == 0)
			return true;
	return false;
}

int cli_main(int argc, char **argv)
{
	const struct group *g = NULL;
	const struct command *cmd = NULL;
	struct args *a = NULL;
	int ret = 1;

	for (size_t i = 0; argc > 0 && i < ARRAY_LEN(groups) && !g; i++)
		if (strcmp(groups[i].name, argv[0]) == 0)
			g = &groups[i];
	if (!g) {
		fail("unknown command \"%s\" (token, entry, agent, bundle, federation, authority, "
		     "server, x509 or jwt)", argc > 0 ? argv[0] : "");
		return 1;
	}
	if (argc < 2) {
		usage_group(stderr, g);
		return 1;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage_group(stdout, g);
		return 0;
	}
	for (size_t i = 0; i < g->n_commands && !cmd; i++)
		if (strcmp(g->commands[i].name, argv[1]) == 0)
			cmd = &g->commands[i];
	if (!cmd) {
		fail("unknown command \"%s %s\"", g->name, argv[1]);
		usage_group(stderr, g);
		return 1;
	}
	a = xcalloc(1, sizeof(*a));
	if (parse_args(g->name, cmd, argc - 2, argv + 2, a) < 0)
		goto out;
	if (a->seen[O_HELP]) {
		usage_command(stdout, g->name, cmd);
		ret = 0;
		goto out;
	}
	char why[512];
	const struct curl_fns *cu = curl_fns_load(why, sizeof(why));
	if (!cu) {
		fail("%s", why);
		goto out;
	}
	if (a->server_url && (cli_mtls_load(a->value[O_WORKLOAD_SOCKET], a->value[O_CLIENT_ID],
					    &a->mtls) < 0 ||
			      cli_mtls_pin_server(a->mtls, cu, a->server_url, a->timeout_s) < 0))
		goto out;
	ret = cmd->run(cmd, a);
	fflush(stdout);
out:
	if (a)
		cli_mtls_free(a->mtls);
	free(a);
	return ret;
}
