/* api_cli.c: "lanyard-agent api ...", the Workload API from a shell. One static table routes
 * "<verb> <noun>" to a handler; options are parsed once, against the set the command accepts;
 * handlers talk to the agent with workload_client and print text, or JSON with --output json. */
#include "api_cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bundle.h"
#include "grpc.h"
#include "util.h"
#include "workload_client.h"
#include "x509.h"

#define MAX_AUDIENCES 32
#define CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_S 30

enum {
	OPT_SOCKET = 1 << 0,
	OPT_WRITE = 1 << 1,
	OPT_OUTPUT = 1 << 2,
	OPT_AUDIENCE = 1 << 3,
	OPT_SPIFFE_ID = 1 << 4,
	OPT_SVID = 1 << 5,
	OPT_COUNT = 1 << 6,
	OPT_TIMEOUT = 1 << 7,
};

struct opts {
	const char *socket;
	const char *write_dir;
	bool json;
	const char *audience[MAX_AUDIENCES];
	size_t n_audience;
	const char *spiffe_id;
	const char *svid;
	int64_t count;     /* 0 = no limit */
	int64_t timeout_s; /* 0 = the default */
	bool timeout_set;
};

struct command {
	const char *verb, *noun; /* noun NULL: "api watch" */
	unsigned opts;
	int (*run)(struct workload_client *c, const struct opts *o);
	const char *usage;
};

/* Prints why a client call failed and returns the exit status. */
static int report(int rc, int status, const char *err)
{
	/* The names gRPC libraries print for status codes. */
	if (rc == WORKLOAD_ESTATUS && grpc_status_camel(status))
		fprintf(stderr, "%s: %s\n", grpc_status_camel(status), err[0] ? err : "(no message)");
	else
		fprintf(stderr, "error: %s\n", err);
	return 1;
}

static void fmt_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "%lld", (long long)t);
}

/* Parses the leaf (first certificate) of a DER chain. */
static int leaf_info(const uint8_t *chain, size_t len, struct x509_info *info)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	char err[128];
	int r = -1;

	if (x509_split_der(chain, len, &certs, &lens, &n) == 0 && n > 0)
		r = x509_parse(certs[0], lens[0], info, err, sizeof(err));
	free(certs);
	free(lens);
	return r;
}

static size_t cert_count(const uint8_t *der, size_t len)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;

	if (x509_split_der(der, len, &certs, &lens, &n) < 0)
		n = 0;
	free(certs);
	free(lens);
	return n;
}

static int print_json(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	if (!s) {
		fprintf(stderr, "error: out of memory\n");
		return 1;
	}
	printf("%s\n", s);
	free(s);
	return 0;
}

/* ---- fetch x509 ---- */

/* Concatenated PEM of the DER certificates in buf. */
static char *certs_pem(const uint8_t *der, size_t len)
{
	return bundle_to_pem(der, len);
}

/* federated_bundle.<i>.<j>.pem: the j-th federated bundle of the response, next to SVID i (as
 * SPIRE's agent CLI writes them). */
static int write_federated_files(const char *dir, size_t i, const struct workload_x509_context *x)
{
	char path[4096];
	for (size_t j = 0; j < x->n_federated; j++) {
		char *pem = certs_pem(x->federated[j].data, x->federated[j].len);
		snprintf(path, sizeof(path), "%s/federated_bundle.%zu.%zu.pem", dir, i, j);
		int r = pem ? file_write_atomic(path, pem, strlen(pem), 0644) : -ENOMEM;
		free(pem);
		if (r < 0) {
			fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(-r));
			return -1;
		}
	}
	return 0;
}

static int write_svid_files(const char *dir, size_t i, const struct workload_x509_svid *s)
{
	char path[4096], *pem = NULL;
	int r;

	if (mkdir_p(dir, 0755) < 0) {
		fprintf(stderr, "error: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	pem = certs_pem(s->chain, s->chain_len);
	snprintf(path, sizeof(path), "%s/svid.%zu.pem", dir, i);
	r = pem ? file_write_atomic(path, pem, strlen(pem), 0644) : -ENOMEM;
	free(pem);
	if (r < 0)
		goto fail;
	pem = pem_encode("PRIVATE KEY", s->key, s->key_len);
	snprintf(path, sizeof(path), "%s/svid.%zu.key", dir, i);
	r = pem ? file_write_atomic(path, pem, strlen(pem), 0600) : -ENOMEM;
	if (pem) {
		secure_zero(pem, strlen(pem));
		free(pem);
	}
	if (r < 0)
		goto fail;
	pem = certs_pem(s->bundle, s->bundle_len);
	snprintf(path, sizeof(path), "%s/bundle.%zu.pem", dir, i);
	r = pem ? file_write_atomic(path, pem, strlen(pem), 0644) : -ENOMEM;
	free(pem);
	if (r < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(-r));
	return -1;
}

static int cmd_fetch_x509(struct workload_client *c, const struct opts *o)
{
	struct workload_x509_context x;
	json_t *root = NULL, *arr = NULL;
	int status = -1, rc, ret = 1;
	char err[512] = "";

	rc = workload_fetch_x509(c, &x, &status, err, sizeof(err));
	if (rc < 0)
		return report(rc, status, err);
	if (o->json) {
		root = json_object();
		arr = json_array();
		json_object_set_new(root, "svids", arr);
	}
	for (size_t i = 0; i < x.n_svids; i++) {
		const struct workload_x509_svid *s = &x.svids[i];
		struct x509_info info;
		char nb[32], na[32];

		if (leaf_info(s->chain, s->chain_len, &info) < 0) {
			fprintf(stderr, "error: SVID %s: the certificate does not parse\n", s->spiffe_id);
			goto out;
		}
		if (o->write_dir && (write_svid_files(o->write_dir, i, s) < 0 ||
				     write_federated_files(o->write_dir, i, &x) < 0)) {
			x509_info_free(&info);
			goto out;
		}
		if (o->json) {
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I}", "spiffe_id",
							     s->spiffe_id, "hint", s->hint, "serial",
							     info.serial, "not_before",
							     (json_int_t)info.not_before, "not_after",
							     (json_int_t)info.not_after));
		} else {
			fmt_time(info.not_before, nb);
			fmt_time(info.not_after, na);
			printf("%sSPIFFE ID:     %s\n", i ? "\n" : "", s->spiffe_id);
			if (s->hint[0])
				printf("Hint:          %s\n", s->hint);
			printf("Serial:        %s\n", info.serial);
			printf("Not before:    %s\n", nb);
			printf("Not after:     %s\n", na);
			printf("Chain:         %zu certificate(s)\n", cert_count(s->chain, s->chain_len));
			printf("Bundle:        %zu CA certificate(s)\n",
			       cert_count(s->bundle, s->bundle_len));
			if (o->write_dir)
				printf("Written to:    %s/svid.%zu.pem, svid.%zu.key, bundle.%zu.pem\n",
				       o->write_dir, i, i, i);
		}
		x509_info_free(&info);
	}
	for (size_t j = 0; j < x.n_federated; j++) {
		const struct workload_bundle *b = &x.federated[j];
		if (o->json)
			continue;
		printf("\nFederated:     %s (%zu CA certificate(s))\n", b->trust_domain_id,
		       cert_count(b->data, b->len));
		if (o->write_dir)
			printf("Written to:    %s/federated_bundle.<i>.%zu.pem\n", o->write_dir, j);
	}
	if (o->json) {
		json_t *fed = json_object();
		for (size_t j = 0; fed && j < x.n_federated; j++)
			json_object_set_new(fed, x.federated[j].trust_domain_id,
					    json_integer((json_int_t)cert_count(x.federated[j].data,
										x.federated[j].len)));
		json_object_set_new(root, "federated_bundles", fed);
	}
	ret = o->json ? print_json(root) : 0;
	root = NULL;
out:
	json_decref(root);
	workload_x509_context_free(&x);
	return ret;
}

/* ---- fetch jwt, validate jwt ---- */

static int cmd_fetch_jwt(struct workload_client *c, const struct opts *o)
{
	struct workload_jwt_svids j;
	json_t *root, *arr;
	int status = -1, rc;
	char err[512] = "";

	if (o->n_audience == 0) {
		fprintf(stderr, "error: at least one --audience is required\n");
		return 1;
	}
	rc = workload_fetch_jwt(c, o->audience, o->n_audience, o->spiffe_id, &j, &status, err,
				sizeof(err));
	if (rc < 0)
		return report(rc, status, err);
	if (!o->json) {
		for (size_t i = 0; i < j.n; i++) {
			printf("%sSPIFFE ID:  %s\n", i ? "\n" : "", j.v[i].spiffe_id);
			if (j.v[i].hint[0])
				printf("Hint:       %s\n", j.v[i].hint);
			printf("Token:      %s\n", j.v[i].token);
		}
		workload_jwt_svids_free(&j);
		return 0;
	}
	root = json_object();
	arr = json_array();
	json_object_set_new(root, "svids", arr);
	for (size_t i = 0; i < j.n; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "spiffe_id", j.v[i].spiffe_id,
						     "hint", j.v[i].hint, "svid", j.v[i].token));
	workload_jwt_svids_free(&j);
	return print_json(root);
}

static int cmd_validate_jwt(struct workload_client *c, const struct opts *o)
{
	char *sub = NULL, *claims = NULL, err[512] = "";
	int status = -1, rc;
	json_t *cl;

	if (o->n_audience != 1 || !o->svid) {
		fprintf(stderr, "error: exactly one --audience and --svid TOKEN are required\n");
		return 1;
	}
	rc = workload_validate_jwt(c, o->audience[0], o->svid, &sub, &claims, &status, err,
				   sizeof(err));
	if (rc < 0)
		return report(rc, status, err);
	cl = json_loads(claims, 0, NULL);
	if (o->json) {
		rc = print_json(json_pack("{s:s, s:o}", "spiffe_id", sub, "claims",
					  cl ? cl : json_object()));
	} else {
		char *pretty = cl ? json_dumps(cl, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

		printf("SPIFFE ID:  %s\nClaims:     %s\n", sub, pretty ? pretty : claims);
		free(pretty);
		json_decref(cl);
		rc = 0;
	}
	free(sub);
	free(claims);
	return rc;
}

/* ---- fetch bundles ---- */

static int cmd_fetch_bundles(struct workload_client *c, const struct opts *o)
{
	struct workload_bundles xb, jb;
	json_t *root = NULL, *xo = NULL, *jo = NULL;
	int status = -1, rc;
	char err[512] = "";

	rc = workload_fetch_x509_bundles(c, &xb, &status, err, sizeof(err));
	if (rc < 0)
		return report(rc, status, err);
	rc = workload_fetch_jwt_bundles(c, &jb, &status, err, sizeof(err));
	if (rc < 0) {
		workload_bundles_free(&xb);
		return report(rc, status, err);
	}
	if (o->json) {
		root = json_object();
		xo = json_object();
		jo = json_object();
		json_object_set_new(root, "x509_bundles", xo);
		json_object_set_new(root, "jwt_bundles", jo);
	}
	for (size_t i = 0; i < xb.n; i++) {
		char *pem = certs_pem(xb.v[i].data, xb.v[i].len);

		if (o->json)
			json_object_set_new(xo, xb.v[i].trust_domain_id, json_string(pem ? pem : ""));
		else
			printf("# X.509 bundle of %s: %zu CA certificate(s)\n%s",
			       xb.v[i].trust_domain_id, cert_count(xb.v[i].data, xb.v[i].len),
			       pem ? pem : "");
		free(pem);
	}
	for (size_t i = 0; i < jb.n; i++) {
		json_t *set = json_loadb((const char *)jb.v[i].data, jb.v[i].len, 0, NULL);

		if (o->json) {
			json_object_set_new(jo, jb.v[i].trust_domain_id, set ? set : json_null());
		} else {
			printf("# JWT bundle of %s: %zu key(s)\n%.*s\n", jb.v[i].trust_domain_id,
			       json_array_size(json_object_get(set, "keys")), (int)jb.v[i].len,
			       (const char *)jb.v[i].data);
			json_decref(set);
		}
	}
	workload_bundles_free(&xb);
	workload_bundles_free(&jb);
	return o->json ? print_json(root) : 0;
}

/* ---- watch ---- */

struct watch_state {
	const struct opts *o;
	int64_t seen;
};

static int on_update(void *ud, const struct workload_x509_context *x)
{
	struct watch_state *w = ud;
	char now[32];

	fmt_time(now_unix(), now);
	printf("%s update %lld:", now, (long long)++w->seen);
	for (size_t i = 0; i < x->n_svids; i++) {
		struct x509_info info;
		char na[32] = "?";

		if (leaf_info(x->svids[i].chain, x->svids[i].chain_len, &info) == 0) {
			fmt_time(info.not_after, na);
			x509_info_free(&info);
		}
		printf("%s %s (expires %s)", i ? "," : "", x->svids[i].spiffe_id, na);
	}
	printf("\n");
	fflush(stdout);
	return w->o->count && w->seen >= w->o->count ? 1 : 0;
}

static int cmd_watch(struct workload_client *c, const struct opts *o)
{
	struct watch_state w = {.o = o};
	int status = -1, rc;
	char err[512] = "";

	rc = workload_watch_x509(c, on_update, &w, o->timeout_set ? (int)(o->timeout_s * 1000) : -1,
				 &status, err, sizeof(err));
	if (rc > 0)
		return 0; /* --count reached */
	if (rc == WORKLOAD_EIO && strcmp(err, "timeout") == 0) {
		/* --timeout bounds a watch; only an unmet --count makes it a failure. */
		if (!o->count)
			return 0;
		fprintf(stderr, "error: timeout: %lld of %lld updates in %llds\n", (long long)w.seen,
			(long long)o->count, (long long)o->timeout_s);
		return 1;
	}
	if (rc == WORKLOAD_ESTATUS && status == GRPC_STATUS_OK) {
		fprintf(stderr, "error: the agent ended the stream\n");
		return 1;
	}
	return report(rc, status, err);
}

/* ---- routing ---- */

static const struct command commands[] = {
	{"fetch", "x509", OPT_SOCKET | OPT_WRITE | OPT_OUTPUT | OPT_TIMEOUT, cmd_fetch_x509,
	 "api fetch x509 [--socket PATH] [--write DIR] [--output text|json] [--timeout SECONDS]"},
	{"fetch", "jwt", OPT_SOCKET | OPT_AUDIENCE | OPT_SPIFFE_ID | OPT_OUTPUT | OPT_TIMEOUT,
	 cmd_fetch_jwt,
	 "api fetch jwt --audience AUD [--audience AUD ...] [--spiffe-id ID] [--socket PATH] "
	 "[--output text|json] [--timeout SECONDS]"},
	{"validate", "jwt", OPT_SOCKET | OPT_AUDIENCE | OPT_SVID | OPT_OUTPUT | OPT_TIMEOUT,
	 cmd_validate_jwt, "api validate jwt --audience AUD --svid TOKEN [--socket PATH] "
	 "[--output text|json] [--timeout SECONDS]"},
	{"fetch", "bundles", OPT_SOCKET | OPT_OUTPUT | OPT_TIMEOUT, cmd_fetch_bundles,
	 "api fetch bundles [--socket PATH] [--output text|json] [--timeout SECONDS]"},
	{"watch", NULL, OPT_SOCKET | OPT_COUNT | OPT_TIMEOUT, cmd_watch,
	 "api watch [--socket PATH] [--count N] [--timeout SECONDS]"},
};

static const struct {
	const char *name;
	unsigned bit;
} option_names[] = {
	{"--socket", OPT_SOCKET},       {"--write", OPT_WRITE},		{"--output", OPT_OUTPUT},
	{"--audience", OPT_AUDIENCE},   {"--spiffe-id", OPT_SPIFFE_ID}, {"--svid", OPT_SVID},
	{"--count", OPT_COUNT},		{"--timeout", OPT_TIMEOUT},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: lanyard-agent <command>\n\nWorkload API client commands:\n");
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		fprintf(f, "  lanyard-agent %s\n", commands[i].usage);
	fprintf(f, "\nThe socket is --socket, else $%s (unix:///path), else %s.\n"
		   "--timeout SECONDS bounds each call (for watch: the wait for each update).\n",
		WORKLOAD_ENDPOINT_ENV, WORKLOAD_DEFAULT_SOCKET);
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* An argument without "--": SPIRE's single-dash spelling of a flag ("-spiffeID"), or a stray. */
static void suggest_flag(const struct command *cmd, const char *arg)
{
	const char *names[ARRAY_LEN(option_names)];
	size_t n = 0;
	for (size_t k = 0; k < ARRAY_LEN(option_names); k++)
		if (cmd->opts & option_names[k].bit)
			names[n++] = option_names[k].name;
	const char *match = spire_flag_suggest(arg, names, n);
	if (match)
		fprintf(stderr, "error: unknown flag \"%s\": did you mean --%s? (flags take two "
				"dashes)\n", arg, match);
	else
		fprintf(stderr, "error: unexpected argument \"%s\"\n", arg);
}

static int parse_opts(const struct command *cmd, int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *val, *eq;
		size_t namelen;
		unsigned bit = 0;

		if (strncmp(arg, "--", 2) != 0) {
			suggest_flag(cmd, arg);
			return -1;
		}
		eq = strchr(arg, '=');
		namelen = eq ? (size_t)(eq - arg) : strlen(arg);
		for (size_t k = 0; k < ARRAY_LEN(option_names); k++)
			if (strlen(option_names[k].name) == namelen &&
			    strncmp(option_names[k].name, arg, namelen) == 0)
				bit = option_names[k].bit;
		if (!bit || !(cmd->opts & bit)) {
			fprintf(stderr, "error: unknown option %.*s for \"%s%s%s\"\n", (int)namelen, arg,
				cmd->verb, cmd->noun ? " " : "", cmd->noun ? cmd->noun : "");
			return -1;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "error: %s needs a value\n", arg);
			return -1;
		}
		switch (bit) {
		case OPT_SOCKET:
			o->socket = val;
			break;
		case OPT_WRITE:
			o->write_dir = val;
			break;
		case OPT_OUTPUT:
			if (strcmp(val, "json") != 0 && strcmp(val, "text") != 0) {
				fprintf(stderr, "error: --output must be text or json, not \"%s\"\n", val);
				return -1;
			}
			o->json = strcmp(val, "json") == 0;
			break;
		case OPT_AUDIENCE:
			if (!val[0] || o->n_audience == MAX_AUDIENCES) {
				fprintf(stderr, "error: --audience must be non-empty (at most %d)\n",
					MAX_AUDIENCES);
				return -1;
			}
			o->audience[o->n_audience++] = val;
			break;
		case OPT_SPIFFE_ID:
			o->spiffe_id = val;
			break;
		case OPT_SVID:
			o->svid = val;
			break;
		case OPT_COUNT:
			if (!parse_int(val, 1, INT32_MAX, &o->count)) {
				fprintf(stderr, "error: --count must be a positive integer, not \"%s\"\n",
					val);
				return -1;
			}
			break;
		case OPT_TIMEOUT:
			if (!parse_int(val, 1, 86400, &o->timeout_s)) {
				fprintf(stderr, "error: --timeout must be 1..86400 seconds, not \"%s\"\n",
					val);
				return -1;
			}
			o->timeout_set = true;
			break;
		}
	}
	return 0;
}

/* "api fetch" alone or with --help lists the fetch commands; anything else unknown is an error
 * with the full list. */
static int usage_verb(int argc, char **argv)
{
	bool known = false, help = argc > 2 && (strcmp(argv[2], "--help") == 0 ||
						strcmp(argv[2], "-h") == 0);
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		known |= strcmp(commands[i].verb, argv[1]) == 0;
	if (known && (argc == 2 || help)) {
		FILE *f = help ? stdout : stderr;
		fprintf(f, "usage: lanyard-agent api %s <what>\n\n", argv[1]);
		for (size_t i = 0; i < ARRAY_LEN(commands); i++)
			if (strcmp(commands[i].verb, argv[1]) == 0)
				fprintf(f, "  lanyard-agent %s\n", commands[i].usage);
		return help ? 0 : 1;
	}
	fprintf(stderr, "error: unknown command \"api %s%s%s\"\n\n", argv[1], argc > 2 ? " " : "",
		argc > 2 ? argv[2] : "");
	usage(stderr);
	return 1;
}

int api_cli_main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct workload_client *c = NULL;
	struct opts o;
	char err[512];
	int used = 2, rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	for (size_t i = 0; i < ARRAY_LEN(commands) && !cmd; i++) {
		if (strcmp(commands[i].verb, argv[1]) != 0)
			continue;
		if (!commands[i].noun)
			cmd = &commands[i];
		else if (argc > 2 && strcmp(commands[i].noun, argv[2]) == 0)
			cmd = &commands[i], used = 3;
	}
	if (!cmd)
		return usage_verb(argc, argv);
	if (argc > used && (strcmp(argv[used], "--help") == 0 || strcmp(argv[used], "-h") == 0)) {
		printf("usage: lanyard-agent %s\n", cmd->usage);
		return 0;
	}
	if (parse_opts(cmd, argc - used, argv + used, &o) < 0) {
		fprintf(stderr, "usage: lanyard-agent %s\n", cmd->usage);
		return 1;
	}
	if (workload_client_connect(o.socket, CONNECT_TIMEOUT_MS, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "error: %s\n", err);
		return 1;
	}
	if (cmd->run != cmd_watch)
		workload_client_set_timeout(c, (int)((o.timeout_set ? o.timeout_s : DEFAULT_TIMEOUT_S) *
						     1000));
	rc = cmd->run(c, &o);
	workload_client_close(c);
	return rc;
}
