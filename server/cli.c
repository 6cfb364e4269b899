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
#include "cli_json.h"
#include "cli_table.h"
#include "curl_dyn.h"
#include "fed_bundle.h"
#include "fed_relationship.h"
#include "keys.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

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
	O__COUNT
};

enum opt_kind { ARG_NONE, ARG_ONE, ARG_REPEAT, ARG_BOOL /* --x or --x=true|false */ };

struct opt_spec {
	const char *name;
	enum opt_kind kind;
	const char *help;
};

static const struct opt_spec opt_specs[O__COUNT] = {
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
};

struct args {
	const char *value[O__COUNT];
	const char *list[O__COUNT][MAX_REPEAT];
	size_t n[O__COUNT];
	bool seen[O__COUNT];
	bool json;
	const char *socket;
	long timeout_s;		/* of each request */
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
#define COMMON_OPTS (BIT(O_SOCKET) | BIT(O_OUTPUT) | BIT(O_HELP))
#define ENTRY_FIELDS (BIT(O_SPIFFE_ID) | BIT(O_PARENT_ID) | BIT(O_SELECTOR) | BIT(O_X509_TTL) | \
		      BIT(O_JWT_TTL) | BIT(O_DNS_NAME) | BIT(O_HINT) | BIT(O_ADMIN) | \
		      BIT(O_DOWNSTREAM) | BIT(O_EXPIRES_AT) | BIT(O_FEDERATES_WITH))

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;
	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- HTTP over the admin socket ---- */

struct buf {
	char *data;
	size_t len, cap;
	bool overflow;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;
	if (n > MAX_RESPONSE - b->len) {
		b->overflow = true;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		/* Doubling: answers of many megabytes (a batch, a large listing) arrive in pieces. */
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nd = realloc(b->data, cap);
		if (!nd)
			return 0;
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* Performs one request. Returns 0 with the HTTP status and body (malloc'd, NUL-terminated), or
 * -1 after printing why the server could not be reached. */
static int http(const char *socket, long timeout_s, const char *method, const char *path,
		const char *body, long *status, char **resp)
{
	/* Loaded by cli_main before any command runs. */
	const struct curl_fns *cu = curl_fns_load(NULL, 0);
	CURL *c = cu->easy_init();
	struct curl_slist *hdrs = NULL;
	struct buf b = { 0 };
	char url[4096];
	int ret = -1;

	*resp = NULL;
	if (!c) {
		fail("cannot initialise libcurl");
		return -1;
	}
	snprintf(url, sizeof(url), "http://localhost%s", path);
	cu->easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
	cu->easy_setopt(c, CURLOPT_URL, url);
	cu->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	cu->easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	cu->easy_setopt(c, CURLOPT_WRITEDATA, &b);
	cu->easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(c, CURLOPT_PROXY, "");
	if (body) {
		hdrs = cu->slist_append(hdrs, "Content-Type: application/json");
		cu->easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		cu->easy_setopt(c, CURLOPT_POSTFIELDS, body);
		cu->easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = cu->easy_perform(c);
	if (rc == CURLE_COULDNT_CONNECT) {
		long oserr = 0;
		cu->easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
		fail("cannot connect to admin socket %s: %s", socket,
		     oserr ? strerror((int)oserr) : cu->easy_strerror(rc));
		goto out;
	}
	if (rc != CURLE_OK) {
		fail("request to admin socket %s failed: %s", socket,
		     b.overflow ? "response too large" : cu->easy_strerror(rc));
		goto out;
	}
	cu->easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	*resp = b.data ? b.data : xstrdup("");
	b.data = NULL;
	ret = 0;
out:
	free(b.data);
	cu->slist_free_all(hdrs);
	cu->easy_cleanup(c);
	return ret;
}

/* The body of a 2xx answer (caller frees), or NULL after printing the server's error; when
 * errdoc is not NULL, it also receives the server's error document (caller's reference). */
static char *call_ok(struct args *a, const char *method, const char *path, const char *body,
		     json_t **errdoc)
{
	char *resp = NULL;
	long status = 0;
	if (http(a->socket, a->timeout_s, method, path, body, &status, &resp) < 0)
		return NULL;
	if (status >= 200 && status <= 299)
		return resp;
	json_t *j = json_loads(resp, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (msg)
		fail("%s", msg);
	else
		fail("server answered HTTP %ld", status);
	if (errdoc && json_is_object(j))
		*errdoc = json_incref(j);
	json_decref(j);
	secure_zero(resp, strlen(resp));
	free(resp);
	return NULL;
}

/* A request whose answer must be a JSON object with a 2xx status (call_ok). */
static json_t *call_json_err(struct args *a, const char *method, const char *path, json_t *req,
			     json_t **errdoc)
{
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	char *resp = NULL;
	json_t *out = NULL;

	if (req && !body) {
		fail("out of memory");
		return NULL;
	}
	if (!(resp = call_ok(a, method, path, body, errdoc)))
		goto out;
	out = json_loads(resp, 0, NULL);
	if (!json_is_object(out)) {
		fail("malformed answer from the server");
		json_decref(out);
		out = NULL;
	}
out:
	free(body);
	if (resp)
		secure_zero(resp, strlen(resp)); /* may hold a minted token */
	free(resp);
	return out;
}

/* --output json of a listing: the server's text re-indented without a JSON tree (100,000
 * entries: cli_json.h). */
static int print_listing_json(struct args *a, const char *path)
{
	char *resp = call_ok(a, "GET", path, NULL, NULL);
	if (!resp)
		return 1;
	size_t len = strlen(resp);
	int ret = 1;
	if (cli_json_check(resp, len) < 0 || resp[strspn(resp, " \t\r\n")] != '{')
		fail("malformed answer from the server");
	else if (cli_json_print_indented(resp, len, stdout) < 0)
		fail("cannot write the answer: %s", strerror(errno));
	else
		ret = 0;
	free(resp);
	return ret;
}

static json_t *call_json(struct args *a, const char *method, const char *path, json_t *req)
{
	return call_json_err(a, method, path, req, NULL);
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	if (s) {
		puts(s);
		free(s);
	}
}

static void format_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld", (long long)t);
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static int64_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* GET path and the array under key in the answer (borrowed from *resp, which the caller frees);
 * NULL after printing why. */
static json_t *list_call(struct args *a, const char *path, const char *key, json_t **resp)
{
	*resp = call_json(a, "GET", path, NULL);
	if (!*resp)
		return NULL;
	json_t *items = json_object_get(*resp, key);
	if (!json_is_array(items)) {
		fail("malformed answer from the server");
		json_decref(*resp);
		*resp = NULL;
		return NULL;
	}
	return items;
}

/* The width of a table column: the longest member key of items, or the heading. */
static int col_width(json_t *items, const char *key, const char *head)
{
	size_t w = strlen(head), i;
	json_t *it;
	json_array_foreach(items, i, it)
		if (strlen(jstr(it, key)) > w)
			w = strlen(jstr(it, key));
	return (int)w;
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

static int parse_duration_flag(struct args *a, enum opt_id o, int64_t max, int64_t *out)
{
	const char *v = a->value[o];
	if (duration_parse(v, out) < 0 || *out > max) {
		fail("invalid value \"%s\" for --%s: a duration such as 3600, 90s, 30m, 1h or 2d "
		     "(at most %lld seconds)", v, opt_specs[o].name, (long long)max);
		return -1;
	}
	return 0;
}

static int parse_int_flag(struct args *a, enum opt_id o, int64_t *out)
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

static bool bool_flag(struct args *a, enum opt_id o)
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

/* ---- token ---- */

static int cmd_token_generate(const struct command *cmd, struct args *a)
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

static json_t *strings_json(const char *const *v, size_t n)
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

static int cmd_entry_create(const struct command *cmd, struct args *a)
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
static bool append_query(char *url, size_t len, const char *key, const char *value)
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

static int cmd_entry_update(const struct command *cmd, struct args *a)
{
	char path[128];
	if (!id_arg_ok(a->value[O_ID])) {
		fail("invalid value \"%s\" for --id: an entry ID", a->value[O_ID]);
		return 1;
	}
	snprintf(path, sizeof(path), "/v1/entries/%s", a->value[O_ID]);
	return entry_write_cmd(a, "PUT", path);
}

static int cmd_entry_delete(const struct command *cmd, struct args *a)
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

static int cmd_entry_show(const struct command *cmd, struct args *a)
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

static int cmd_entry_count(const struct command *cmd, struct args *a)
{
	return count_cmd(a, "/v1/entries/count", "entry", "entries");
}

static int cmd_agent_count(const struct command *cmd, struct args *a)
{
	return count_cmd(a, "/v1/agents/count", "agent", "agents");
}

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

static int cmd_agent_list(const struct command *cmd, struct args *a)
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

static int cmd_agent_show(const struct command *cmd, struct args *a)
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

static int cmd_agent_evict(const struct command *cmd, struct args *a)
{
	return agent_action(a, "/v1/agents/evict", "evicted", "Evicted");
}

static int cmd_agent_ban(const struct command *cmd, struct args *a)
{
	return agent_action(a, "/v1/agents/ban", "banned", "Banned");
}

/* ---- bundle ---- */

static int fed_bundle_show(struct args *a);

static int cmd_bundle_show(const struct command *cmd, struct args *a)
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

static int cmd_authority_show(const struct command *cmd, struct args *a)
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
static int report_action(struct args *a, json_t *resp, const char *key, const char *what)
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

static int cmd_authority_prepare(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/prepare", "prepared", "Prepared");
}

static int cmd_authority_activate(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/activate", "activated", "Activated");
}

static int cmd_authority_taint(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/taint", "tainted", "Tainted");
}

static int cmd_authority_revoke(const struct command *cmd, struct args *a)
{
	return authority_action(a, "/v1/authorities/revoke", "revoked", "Revoked");
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

static int cmd_bundle_list(const struct command *cmd, struct args *a)
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

static int cmd_bundle_set(const struct command *cmd, struct args *a)
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

static int cmd_bundle_delete(const struct command *cmd, struct args *a)
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

#define FED_FIELDS (BIT(O_ENDPOINT_URL) | BIT(O_PROFILE) | BIT(O_ENDPOINT_ID) | BIT(O_TRUST_BUNDLE))

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

static int cmd_fed_create(const struct command *cmd, struct args *a)
{
	json_t *req = fed_request(a);
	json_t *resp = req ? call_json(a, "POST", "/v1/federations", req) : NULL;
	json_decref(req);
	return fed_print(a, resp);
}

static int cmd_fed_update(const struct command *cmd, struct args *a)
{
	char path[320];
	if (!fed_path(a, path, sizeof(path)))
		return 1;
	json_t *req = fed_request(a);
	json_t *resp = req ? call_json(a, "PUT", path, req) : NULL;
	json_decref(req);
	return fed_print(a, resp);
}

static int cmd_fed_show(const struct command *cmd, struct args *a)
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

static int cmd_fed_delete(const struct command *cmd, struct args *a)
{
	return fed_action(a, "DELETE", "deleted", "Deleted the federation relationship with");
}

static int cmd_fed_refresh(const struct command *cmd, struct args *a)
{
	return fed_action(a, "POST", "refreshing", "Fetching the bundle of");
}

static int cmd_fed_list(const struct command *cmd, struct args *a)
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

/* ---- server ---- */

static int cmd_server_list(const struct command *cmd, struct args *a)
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
static int cmd_x509_mint(const struct command *cmd, struct args *a)
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

static int cmd_jwt_mint(const struct command *cmd, struct args *a)
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
	if (!curl_fns_load(why, sizeof(why))) {
		fail("%s", why);
		goto out;
	}
	ret = cmd->run(cmd, a);
	fflush(stdout);
out:
	free(a);
	return ret;
}
