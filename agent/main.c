/* lanyard-agent: the per-node daemon that serves the SPIFFE Workload API. `run` starts it; `api`
 * is a Workload API client (api_cli.c); `csi` the CSI node plugin for Kubernetes (csi.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <uv.h>

#include "agent_config.h"
#include "agent_http.h"
#include "api_cli.h"
#include "attestor_k8s.h"
#include "csi.h"
#include "helper.h"
#include "log.h"
#include "node_client.h"
#include "persist.h"
#include "svid_cache.h"
#include "util.h"
#include "workload_api.h"

struct agent {
	struct agent_config cfg;
	uv_loop_t loop;
	struct svid_cache *cache;
	struct node_client *nc;
	struct workload_api *wl;
	struct agent_http *http;
	uv_signal_t sigterm, sigint;
	int lock_fd;
	bool stopping;
	bool refused; /* the server refused the agent for good: exit 1 */
};

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Stops in the order that lets every piece finish cleanly: the operator endpoints (they read
 * the others), no new callers, open streams ended, then the sync thread (which flushes the state
 * to data_dir). The loop then runs dry. */
static void shutdown_agent(struct agent *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	agent_http_stop(a->http);
	a->http = NULL;
	workload_api_stop(a->wl);
	a->wl = NULL;
	node_client_stop(a->nc);
	a->nc = NULL;
	close_handle((uv_handle_t *)&a->sigterm);
	close_handle((uv_handle_t *)&a->sigint);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct agent *a = sig->data;
	log_info("received %s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	shutdown_agent(a);
}

/* A permanent refusal ends the agent with status 1 and the reason, so a service manager shows
 * it failed instead of a unit that looks active but will never get an identity. Stopping the
 * loop defers the shutdown out of the node client's own callback. */
static void on_refused(void *ud, const char *reason)
{
	struct agent *a = ud;
	log_error("the server refused this agent for good, exiting: %s", reason);
	a->refused = true;
	uv_stop(&a->loop);
}

/* One agent per data_dir: two would overwrite each other's state. */
static int lock_data_dir(struct agent *a, char *err, size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/agent.lock", a->cfg.data_dir);
	a->lock_fd = lockfile_acquire(path, "lanyard-agent", err, errlen);
	return a->lock_fd < 0 ? -1 : 0;
}

/* The Workload API with the attestors the configuration asks for: unix always, k8s when
 * k8s_workload_attestor is set (the API takes the attestor over). */
static int start_workload_api(struct agent *a, char *err, size_t errlen)
{
	const struct agent_config *c = &a->cfg;
	struct attestor *extra[1];
	size_t n_extra = 0;
	if (c->k8s_workload_attestor) {
		struct attestor_k8s_opts ko;
		attestor_k8s_opts_defaults(&ko);
		ko.kubelet_url = c->kubelet_url;
		ko.token_path = c->kubelet_token_path;
		ko.ca_path = c->kubelet_ca_path && *c->kubelet_ca_path ? c->kubelet_ca_path : NULL;
		ko.insecure_skip_verify = c->kubelet_insecure_skip_verify;
		ko.node_name = getenv("NODE_NAME");
		char why[512];
		extra[0] = attestor_k8s_new(&ko, why, sizeof(why));
		if (!extra[0]) {
			snprintf(err, errlen, "k8s workload attestor: %s", why);
			return -1;
		}
		n_extra = 1;
	}
	struct workload_api_opts o = {
		.socket_path = c->socket_path,
		.trust_domain = c->trust_domain,
		.unix_path_selectors = c->unix_workload_path_selectors,
		.sha256_max_size = c->sha256_max_size,
		.max_conns_per_process = (unsigned)c->max_conns_per_process,
		.max_conns_per_uid = (unsigned)c->max_conns_per_uid,
		.idle_timeout_ms = (unsigned)(c->workload_idle_timeout * 1000),
		.proc_root = c->proc_root,
		.attestors = extra,
		.n_attestors = n_extra,
		.sds_names = {c->sds_default_name, c->sds_default_bundle_name,
			      c->sds_default_all_bundles_name},
	};
	return workload_api_start_opts(&a->loop, &o, a->cache, a->nc, &a->wl, err, errlen);
}

/* glibc raises its mmap threshold to the size of any large block freed (up to 32 MB), and the
 * trim threshold to twice that: after the agent wrote its state file or a status document once,
 * later blocks of that size come from the arenas, and megabytes of freed memory stay resident
 * for good. Fixed thresholds turn that adaptation off: large buffers are mapped and unmapped,
 * and free memory at the top of an arena goes back to the system. */
static void tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 512 * 1024);
}

static int run_usage(FILE *f)
{
	fprintf(f, "usage: lanyard-agent run --config FILE [--join-token-file FILE]\n"
		   "       (or LANYARD_JOIN_TOKEN in the environment; --join-token TOKEN is "
		   "deprecated)\n");
	return f == stdout ? 0 : 1;
}

#define TOKEN_ENV "LANYARD_JOIN_TOKEN"

/* Where the join token came from on the command line or in the environment. Each source is
 * copied and its original bytes wiped at once: other local users can read /proc/PID/cmdline,
 * and /proc/PID/environ outlives unsetenv. */
struct run_args {
	const char *config_path;
	char *token;            /* owned copy; wiped when freed */
	const char *token_file; /* read after the flags, so that errors name it */
	int n_sources;
	bool token_on_argv;
};

static void wipe_str(char *s)
{
	secure_zero(s, strlen(s));
}

static void take_token(struct run_args *ra, char *value)
{
	if (ra->token) {
		wipe_str(ra->token);
		free(ra->token);
	}
	ra->token = xstrdup(value);
	wipe_str(value);
	ra->n_sources++;
}

/* 0, 1 for --help, or -1 on a usage error (printed). */
static int parse_run_args(int argc, char **argv, struct run_args *ra)
{
	ra->config_path = "/etc/lanyard/agent.json";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			ra->config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			ra->config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "--join-token-file") == 0 && i + 1 < argc) {
			ra->token_file = argv[++i];
			ra->n_sources++;
		} else if (strncmp(argv[i], "--join-token-file=", 18) == 0) {
			ra->token_file = argv[i] + 18;
			ra->n_sources++;
		} else if (strcmp(argv[i], "--join-token") == 0 && i + 1 < argc) {
			take_token(ra, argv[++i]);
			ra->token_on_argv = true;
		} else if (strncmp(argv[i], "--join-token=", 13) == 0) {
			take_token(ra, argv[i] + 13);
			ra->token_on_argv = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			return run_usage(stdout) == 0 ? 1 : -1;
		} else {
			fprintf(stderr, "lanyard-agent run: unknown argument '%s'\n", argv[i]);
			run_usage(stderr);
			return -1;
		}
	}
	char *env = getenv(TOKEN_ENV);
	if (env) {
		if (*env)
			take_token(ra, env);
		unsetenv(TOKEN_ENV);
	}
	return 0;
}

/* Applies the token of the command line or environment over the configuration's. 0, or -1 with
 * a reason in err. */
static int apply_token(struct run_args *ra, struct agent_config *cfg, char *err, size_t errlen)
{
	char *tok = NULL;
	if (ra->n_sources > 1)
		return errorf(err, errlen,
			      "give the join token once: --join-token-file, " TOKEN_ENV
			      " and --join-token exclude each other");
	if (ra->token_file && agent_read_secret_file(ra->token_file, &tok, err, errlen) < 0)
		return -1;
	if (ra->token) {
		tok = ra->token;
		ra->token = NULL;
	}
	if (!tok)
		return 0;
	if (cfg->join_token) {
		wipe_str(cfg->join_token);
		free(cfg->join_token);
	}
	cfg->join_token = tok;
	return 0;
}

static void run_args_free(struct run_args *ra)
{
	if (ra->token) {
		wipe_str(ra->token);
		free(ra->token);
	}
}

static int cmd_run(int argc, char **argv)
{
	struct run_args ra = {0};
	int pr = parse_run_args(argc, argv, &ra);
	if (pr != 0) {
		run_args_free(&ra);
		return pr > 0 ? 0 : 1;
	}
	tune_malloc();
	struct agent *a = xcalloc(1, sizeof(*a));
	a->lock_fd = -1;
	char err[1024];
	int ret = 1;
	bool loop_ready = false;
	if (agent_config_load(ra.config_path, &a->cfg, err, sizeof(err)) < 0 ||
	    apply_token(&ra, &a->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-agent: %s\n", err);
		goto out;
	}
	log_setup(log_level_parse(a->cfg.log_level), strcmp(a->cfg.log_format, "json") == 0);
	signal(SIGPIPE, SIG_IGN);
	if (ra.token_on_argv)
		log_warnx("the join token was given with --join-token: it was visible to every local "
			 "user until now (wiped from the command line at start); use "
			 "--join-token-file FILE (0600) or " TOKEN_ENV " instead");

	if (persist_prepare_dir(a->cfg.data_dir, err, sizeof(err)) < 0 ||
	    lock_data_dir(a, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	uv_loop_init(&a->loop);
	uv_signal_init(&a->loop, &a->sigterm);
	uv_signal_init(&a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	loop_ready = true;
	a->cache = svid_cache_new(&a->loop);
	if (!a->cache) {
		log_error("cannot create the SVID cache");
		goto out;
	}
	if (node_client_start(&a->cfg, a->cache, &a->loop, &a->nc, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (start_workload_api(a, err, sizeof(err)) < 0) {
		log_error("Workload API on socket_path %s: %s", a->cfg.socket_path, err);
		goto out;
	}
	if (agent_http_start(&a->loop, &a->cfg, a->cache, a->nc, a->wl, &a->http, err,
			     sizeof(err)) < 0) {
		log_error("operator endpoint on %s", err);
		goto out;
	}
	node_client_on_refused(a->nc, on_refused, a);
	if (node_client_run(a->nc, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);

	char *servers = agent_config_servers_text(&a->cfg);
	log_info("lanyard-agent %s: trust domain %s, server %s, Workload API on %s",
		 LANYARD_VERSION, a->cfg.trust_domain, servers, a->cfg.socket_path);
	free(servers);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	ret = a->refused ? 1 : 0;
	if (!ret)
		log_info("lanyard-agent stopped");
out:
	if (loop_ready) {
		shutdown_agent(a);
		uv_run(&a->loop, UV_RUN_DEFAULT);
		/* Only now: the Workload API's handles may use the cache until they are closed. */
		svid_cache_free(a->cache);
		uv_run(&a->loop, UV_RUN_DEFAULT);
		uv_loop_close(&a->loop);
	}
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	agent_config_free(&a->cfg);
	free(a);
	run_args_free(&ra);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lanyard-agent <command> [options]\n"
		"\n"
		"  run --config FILE [--join-token-file F]  start the agent (or " TOKEN_ENV ")\n"
		"  api fetch x509|jwt|bundles, api validate jwt, api watch\n"
		"                                           Workload API client commands\n"
		"  helper --config FILE [--once]            keep an SVID in files for other programs\n"
		"  healthcheck [--config FILE]              probe the agent's /ready endpoint\n"
		"  csi --csi-socket PATH [--workload-socket-dir DIR]\n"
		"                                           CSI node plugin: the socket for pods\n"
		"  version                                  print the version\n"
		"\n"
		"Configuration keys (JSON object in the --config file):\n");
	for (size_t i = 0; i < agent_config_n_options; i++) {
		const struct cfg_option *o = &agent_config_options[i];
		char def[64];
		if (o->required)
			snprintf(def, sizeof(def), "required");
		else if (o->def)
			snprintf(def, sizeof(def), "default %s", o->def);
		else
			snprintf(def, sizeof(def), "unset");
		fprintf(f, "  %-29s %s (%s)\n", o->name, o->doc, def);
	}
	fprintf(f, "\nRun 'lanyard-agent api --help' for the client commands.\n");
}

/* Secrets that client commands take as flag values (a JWT-SVID for `api validate jwt --svid`):
 * every local user can read /proc/PID/cmdline, so the value is moved to the heap and its bytes
 * in argv are wiped before the command runs. The copies are wiped and freed afterwards. */
static const char *const secret_flags[] = {"--svid"};
#define MAX_HIDDEN 16

struct hidden_args {
	char *copies[MAX_HIDDEN];
	size_t n;
};

static void hide_value(struct hidden_args *h, char **slot, size_t value_off)
{
	if (h->n == MAX_HIDDEN)
		return;
	char *copy = xstrdup(*slot);
	wipe_str(*slot + value_off);
	*slot = copy;
	h->copies[h->n++] = copy;
}

static void hide_secret_args(int argc, char **argv, struct hidden_args *h)
{
	for (int i = 1; i < argc; i++) {
		for (size_t k = 0; k < ARRAY_LEN(secret_flags); k++) {
			size_t fl = strlen(secret_flags[k]);
			if (strcmp(argv[i], secret_flags[k]) == 0 && i + 1 < argc)
				hide_value(h, &argv[++i], 0);
			else if (strncmp(argv[i], secret_flags[k], fl) == 0 && argv[i][fl] == '=')
				hide_value(h, &argv[i], fl + 1);
		}
	}
}

static void hidden_args_free(struct hidden_args *h)
{
	for (size_t i = 0; i < h->n; i++) {
		wipe_str(h->copies[i]);
		free(h->copies[i]);
	}
}

static int api_main(int argc, char **argv)
{
	struct hidden_args h = {0};
	hide_secret_args(argc, argv, &h);
	int r = api_cli_main(argc, argv);
	hidden_args_free(&h);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "api") == 0)
		return api_main(argc - 1, argv + 1);
	if (strcmp(cmd, "helper") == 0)
		return helper_main(argc - 1, argv + 1);
	if (strcmp(cmd, "csi") == 0)
		return csi_main(argc - 1, argv + 1);
	if (strcmp(cmd, "healthcheck") == 0)
		return agent_healthcheck_main(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("lanyard-agent %s\n", LANYARD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "lanyard-agent: unknown command '%s'\n", cmd);
	usage(stderr);
	return 1;
}
