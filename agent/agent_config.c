#include "agent_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "server_conn.h"
#include "spiffeid.h"
#include "util.h"

#define F(name) offsetof(struct agent_config, name)
#define DEFAULT_SERVER_ADDRESS "127.0.0.1"
#define DEFAULT_SERVER_PORT 8081

static const char *const key_types[] = {"ec-p256", "ec-p384", "rsa-2048", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const node_attestors[] = {"join_token", "k8s_psat", NULL};

const struct cfg_option agent_config_options[] = {
	{.name = "trust_domain", .type = CFG_STRING, .offset = F(trust_domain), .required = true,
	 .doc = "trust domain of this agent and its server, e.g. example.org"},
	/* server_address and server_port have their defaults (DEFAULT_SERVER_*) applied after
	 * loading, so that setting either beside server_addresses is an error. */
	{.name = "server_address", .type = CFG_STRING, .offset = F(server_address),
	 .doc = "host name or IP address of lanyard-server's node API (default 127.0.0.1); every "
		"address a name resolves to is a failover candidate"},
	{.name = "server_port", .type = CFG_INT, .offset = F(server_port), .min = 1, .max = 65535,
	 .doc = "TCP port of the server's node API (default 8081)"},
	{.name = "server_addresses", .type = CFG_STRING_LIST, .offset = F(server_addresses),
	 .doc = "node API addresses to fail over between, [\"host:port\", ...] (instead of "
		"server_address and server_port)"},
	{.name = "trust_bundle_path", .type = CFG_STRING, .offset = F(trust_bundle_path),
	 .doc = "PEM CA certificates that authenticate the server on first contact"},
	{.name = "insecure_bootstrap", .type = CFG_BOOL, .offset = F(insecure_bootstrap),
	 .def = "false",
	 .doc = "skip the server check on first contact (testing only; warned about loudly)"},
	{.name = "data_dir", .type = CFG_STRING, .offset = F(data_dir),
	 .def = "/var/lib/lanyard/agent",
	 .doc = "directory (0700) for the agent key, SVIDs, bundle and workload state"},
	{.name = "socket_path", .type = CFG_STRING, .offset = F(socket_path),
	 .def = "/run/lanyard/agent/api.sock", .doc = "Unix socket of the SPIFFE Workload API"},
	{.name = "http_address", .type = CFG_STRING, .offset = F(http_address), .def = "127.0.0.1",
	 .doc = "address of the operator HTTP endpoint (health, status, metrics)"},
	{.name = "http_port", .type = CFG_INT, .offset = F(http_port), .def = "8088", .min = 0,
	 .max = 65535, .doc = "port of the operator HTTP endpoint (0 disables it)"},
	{.name = "metrics_bind_address", .type = CFG_STRING, .offset = F(metrics_bind_address),
	 .def = "0.0.0.0", .doc = "address of the /metrics-only listener (the pod or host IP)"},
	{.name = "metrics_bind_port", .type = CFG_INT, .offset = F(metrics_bind_port), .def = "0",
	 .min = 0, .max = 65535,
	 .doc = "port of a listener serving /metrics alone, for Prometheus (0: off; needs "
		"http_port)"},
	{.name = "join_token", .type = CFG_STRING, .offset = F(join_token),
	 .doc = "join token for node attestation (prefer join_token_file)"},
	{.name = "join_token_file", .type = CFG_STRING, .offset = F(join_token_file),
	 .doc = "file (0600, owned by the agent's uid) holding the join token"},
	{.name = "workload_key_type", .type = CFG_ENUM, .offset = F(workload_key_type),
	 .def = "ec-p256", .choices = key_types, .doc = "key type of workload X509-SVIDs"},
	{.name = "rotation_fraction", .type = CFG_DOUBLE, .offset = F(rotation_fraction),
	 .def = "0.5", .dmin = 0.05, .dmax = 0.95,
	 .doc = "renew an SVID when this fraction of its lifetime remains (+-10% jitter)"},
	{.name = "log_level", .type = CFG_ENUM, .offset = F(log_level), .def = "info",
	 .choices = log_levels, .doc = "debug, info, warn or error"},
	{.name = "log_format", .type = CFG_ENUM, .offset = F(log_format), .def = "text",
	 .choices = log_formats, .doc = "text or json (one object per line)"},
	{.name = "unix_workload_path_selectors", .type = CFG_BOOL,
	 .offset = F(unix_workload_path_selectors), .def = "false",
	 .doc = "also produce unix:path and unix:sha256 selectors of the caller's executable"},
	{.name = "sha256_max_size", .type = CFG_INT, .offset = F(sha256_max_size),
	 .def = "268435456", .min = 0, .max = INT64_C(1) << 40,
	 .doc = "largest executable hashed for unix:sha256, in bytes"},
	{.name = "max_conns_per_process", .type = CFG_INT, .offset = F(max_conns_per_process),
	 .def = "32", .min = 1, .max = 100000,
	 .doc = "Workload API connections allowed per caller process (pid and start time)"},
	{.name = "max_conns_per_uid", .type = CFG_INT, .offset = F(max_conns_per_uid), .def = "0",
	 .min = 0, .max = 100000,
	 .doc = "Workload API connections allowed per caller uid (0: no limit; one process could "
		"then lock out the others of its uid)"},
	{.name = "workload_idle_timeout", .type = CFG_DURATION, .offset = F(workload_idle_timeout),
	 .def = "60s", .min = 0, .max = 86400,
	 .doc = "close Workload API connections without an open call after this long (0: never)"},
	{.name = "sync_staleness", .type = CFG_DURATION, .offset = F(sync_staleness), .def = "5m",
	 .min = 1, .max = 86400 * 30,
	 .doc = "the agent reports not ready when its last server sync is older than this"},
	{.name = "node_attestor", .type = CFG_ENUM, .offset = F(node_attestor),
	 .def = "join_token", .choices = node_attestors,
	 .doc = "how the agent proves its node: join_token or k8s_psat (Kubernetes)"},
	{.name = "psat_token_path", .type = CFG_STRING, .offset = F(psat_token_path),
	 .def = "/var/run/secrets/tokens/lanyard-agent",
	 .doc = "projected service account token for k8s_psat (re-read at every attestation)"},
	{.name = "k8s_workload_attestor", .type = CFG_BOOL, .offset = F(k8s_workload_attestor),
	 .def = "false", .doc = "add k8s selectors of callers running in pods (asks the kubelet)"},
	{.name = "kubelet_url", .type = CFG_STRING, .offset = F(kubelet_url),
	 .def = "https://127.0.0.1:10250",
	 .doc = "kubelet API: https://...:10250 (token) or http://...:10255 (read-only)"},
	{.name = "kubelet_token_path", .type = CFG_STRING, .offset = F(kubelet_token_path),
	 .def = "/var/run/secrets/kubernetes.io/serviceaccount/token",
	 .doc = "bearer token for the kubelet's secure port"},
	{.name = "kubelet_ca_path", .type = CFG_STRING, .offset = F(kubelet_ca_path),
	 .def = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
	 .doc = "CA certificates of the kubelet's serving certificate"},
	{.name = "kubelet_insecure_skip_verify", .type = CFG_BOOL,
	 .offset = F(kubelet_insecure_skip_verify), .def = "false",
	 .doc = "do not check the kubelet's certificate (self-signed kubelet certificates)"},
	{.name = "proc_root", .type = CFG_STRING, .offset = F(proc_root), .def = "/proc",
	 .doc = "proc file system the workload attestors read callers from"},
	{.name = "sds_default_name", .type = CFG_STRING, .offset = F(sds_default_name),
	 .def = "default", .doc = "Envoy SDS resource name of the caller's first X509-SVID"},
	{.name = "sds_default_bundle_name", .type = CFG_STRING,
	 .offset = F(sds_default_bundle_name), .def = "ROOTCA",
	 .doc = "Envoy SDS resource name of the trust bundle (validation context, trusted_ca)"},
	{.name = "sds_default_all_bundles_name", .type = CFG_STRING,
	 .offset = F(sds_default_all_bundles_name), .def = "ALL",
	 .doc = "Envoy SDS resource name of every bundle, with the SPIFFE certificate validator"},
};

const size_t agent_config_n_options = sizeof(agent_config_options) / sizeof(agent_config_options[0]);

/* server_address without the brackets an IPv6 address may come in ("[::1]", as the connection
 * code has always accepted it); NULL when it does not fit. */
static const char *bare_host(const char *h, char *buf, size_t len)
{
	size_t l = strlen(h);
	if (l < 3 || h[0] != '[' || h[l - 1] != ']')
		return h;
	if (l - 2 >= len)
		return NULL;
	memcpy(buf, h + 1, l - 2);
	buf[l - 2] = '\0';
	return buf;
}

/* server_address:server_port as the one endpoint, with their defaults. */
static void single_server(struct agent_config *cfg)
{
	char buf[300];
	if (!cfg->server_address)
		cfg->server_address = xstrdup(DEFAULT_SERVER_ADDRESS);
	if (!cfg->server_port)
		cfg->server_port = DEFAULT_SERVER_PORT;
	const char *h = bare_host(cfg->server_address, buf, sizeof(buf));
	cfg->servers = xcalloc(1, sizeof(*cfg->servers));
	cfg->servers[0].host = xstrdup(h ? h : cfg->server_address);
	cfg->servers[0].port = (int)cfg->server_port;
	cfg->n_servers = 1;
}

/* Parses server_addresses into cfg->servers. */
static int parse_server_list(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
	const struct cfg_list *l = &cfg->server_addresses;
	char why[256];
	if (l->n == 0) {
		snprintf(err, errlen,
			 "%s: key 'server_addresses': value [] must list at least one \"host:port\"",
			 path);
		return -1;
	}
	if (l->n > SERVER_ENDPOINTS_MAX) {
		snprintf(err, errlen, "%s: key 'server_addresses': %zu addresses, at most %d allowed",
			 path, l->n, SERVER_ENDPOINTS_MAX);
		return -1;
	}
	cfg->servers = xcalloc(l->n, sizeof(*cfg->servers));
	for (size_t i = 0; i < l->n; i++) {
		if (server_endpoint_parse(l->v[i], &cfg->servers[i], why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: key 'server_addresses': value \"%s\" is not host:port: %s",
				 path, l->v[i], why);
			return -1;
		}
		cfg->n_servers++;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(l->v[i], l->v[j]) == 0) {
				snprintf(err, errlen,
					 "%s: key 'server_addresses': value \"%s\" is listed twice",
					 path, l->v[i]);
				return -1;
			}
		}
	}
	return 0;
}

/* The servers to connect to: server_addresses, or server_address and server_port, never both. */
static int load_servers(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
	char why[256];
	if (cfg->server_addresses.v) {
		if (cfg->server_address || cfg->server_port) {
			snprintf(err, errlen,
				 "%s: key '%s' does not apply with 'server_addresses' (each address "
				 "carries its port): set one or the other",
				 path, cfg->server_address ? "server_address" : "server_port");
			return -1;
		}
		return parse_server_list(path, cfg, err, errlen);
	}
	if (cfg->server_address) {
		char buf[300];
		const char *h = bare_host(cfg->server_address, buf, sizeof(buf));
		if (!h || server_host_check(h, why, sizeof(why)) < 0) {
			snprintf(err, errlen,
				 "%s: key 'server_address': value \"%s\" is not a host name or IP "
				 "address: %s",
				 path, cfg->server_address, h ? why : "too long");
			return -1;
		}
	}
	single_server(cfg);
	return 0;
}

char *agent_config_servers_text(const struct agent_config *cfg)
{
	size_t cap = cfg->n_servers * (SERVER_LABEL_MAX + 2) + 1, len = 0;
	char *out = xmalloc(cap);
	out[0] = '\0';
	for (size_t i = 0; i < cfg->n_servers; i++) {
		const struct server_endpoint *e = &cfg->servers[i];
		bool v6 = strchr(e->host, ':') != NULL;
		len += (size_t)snprintf(out + len, cap - len, v6 ? "%s[%s]:%d" : "%s%s:%d",
					i ? ", " : "", e->host, e->port);
	}
	return out;
}

int agent_config_defaults(struct agent_config *cfg, char *err, size_t errlen)
{
	if (config_defaults(agent_config_options, agent_config_n_options, cfg, err, errlen) < 0)
		return -1;
	single_server(cfg);
	return 0;
}

#define MAX_SECRET 4096

/* The checks run on the opened file (fstat), so a rename between check and read cannot swap
 * another file in. */
int agent_read_secret_file(const char *path, char **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int ret = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	*out = NULL;
	if (fd < 0)
		return errorf(err, errlen, "cannot open join token file %s: %s", path,
			      strerror(errno));
	if (fstat(fd, &st) < 0) {
		errorf(err, errlen, "cannot stat join token file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		errorf(err, errlen, "refusing join token file %s: not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		errorf(err, errlen,
		       "refusing join token file %s: owned by uid %u, not by the agent's uid %u",
		       path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		errorf(err, errlen,
		       "refusing join token file %s: mode %04o lets group or others access it "
		       "(run: chmod 600 %s)",
		       path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > MAX_SECRET) {
		errorf(err, errlen, "refusing join token file %s: larger than %d bytes", path,
		       MAX_SECRET);
		goto out;
	}
	buf = xcalloc(1, MAX_SECRET + 1);
	for (;;) {
		ssize_t n = read(fd, buf + len, MAX_SECRET - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			errorf(err, errlen, "cannot read join token file %s: %s", path,
			       strerror(errno));
			goto out;
		}
		if (n == 0 || len + (size_t)n == MAX_SECRET) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]))
		buf[--len] = '\0';
	if (len == 0 || strlen(buf) != len) {
		errorf(err, errlen, "refusing join token file %s: %s", path,
		       len ? "it contains a NUL byte" : "it is empty");
		goto out;
	}
	*out = buf;
	buf = NULL;
	ret = 0;
out:
	if (buf) {
		secure_zero(buf, MAX_SECRET + 1);
		free(buf);
	}
	close(fd);
	return ret;
}

static int load_token_file(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
	char why[512];
	if (cfg->join_token) {
		return errorf(err, errlen,
			      "%s: keys 'join_token' and 'join_token_file' exclude each other: "
			      "set only join_token_file",
			      path);
	}
	if (agent_read_secret_file(cfg->join_token_file, &cfg->join_token, why, sizeof(why)) < 0)
		return errorf(err, errlen, "%s: key 'join_token_file': %s", path, why);
	return 0;
}

int agent_config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen)
{
	if (config_load(path, agent_config_options, agent_config_n_options, cfg, err, errlen) < 0)
		return -1;

	char why[256];
	if (trust_domain_validate(cfg->trust_domain, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: key 'trust_domain': value \"%s\" is not a trust domain: %s",
			 path, cfg->trust_domain, why);
		return -1;
	}
	const struct {
		const char *name;
		const char *value;
	} nonempty[] = {
		{"data_dir", cfg->data_dir},
		{"socket_path", cfg->socket_path},       {"http_address", cfg->http_address},
		{"metrics_bind_address", cfg->metrics_bind_address},
		{"psat_token_path", cfg->psat_token_path}, {"kubelet_url", cfg->kubelet_url},
		{"proc_root", cfg->proc_root},
		{"sds_default_name", cfg->sds_default_name},
		{"sds_default_bundle_name", cfg->sds_default_bundle_name},
		{"sds_default_all_bundles_name", cfg->sds_default_all_bundles_name},
	};
	for (size_t i = 0; i < ARRAY_LEN(nonempty); i++) {
		if (!nonempty[i].value || !*nonempty[i].value) {
			snprintf(err, errlen, "%s: key '%s': value \"\" must not be empty", path,
				 nonempty[i].name);
			return -1;
		}
	}
	if (load_servers(path, cfg, err, errlen) < 0)
		return -1;
	if (cfg->metrics_bind_port && !cfg->http_port) {
		snprintf(err, errlen, "%s: key 'metrics_bind_port' needs the operator endpoint "
			 "(http_port is 0)", path);
		return -1;
	}
	if (cfg->data_dir[0] != '/' || cfg->socket_path[0] != '/') {
		bool d = cfg->data_dir[0] != '/';
		snprintf(err, errlen, "%s: key '%s': value \"%s\" must be an absolute path", path,
			 d ? "data_dir" : "socket_path", d ? cfg->data_dir : cfg->socket_path);
		return -1;
	}
	if (cfg->trust_bundle_path && !*cfg->trust_bundle_path) {
		snprintf(err, errlen, "%s: key 'trust_bundle_path': value \"\" must not be empty",
			 path);
		return -1;
	}
	if (cfg->trust_bundle_path && cfg->insecure_bootstrap) {
		snprintf(err, errlen,
			 "%s: keys 'trust_bundle_path' and 'insecure_bootstrap' exclude each other: "
			 "set only one",
			 path);
		return -1;
	}
	if (cfg->join_token && !*cfg->join_token) {
		free(cfg->join_token);
		cfg->join_token = NULL;
	}
	if (cfg->join_token_file && load_token_file(path, cfg, err, errlen) < 0)
		return -1;
	/* Neither trust source is acceptable when data_dir already holds a bundle from an earlier
	 * run; the node client checks that at start, where it can read data_dir. */
	if (cfg->insecure_bootstrap)
		log_warnx("insecure_bootstrap is set in %s: the first contact with the server will NOT "
			 "authenticate it. Use this for testing only.",
			 path);
	return 0;
}

void agent_config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	if (cfg->join_token)
		secure_zero(cfg->join_token, strlen(cfg->join_token));
	server_endpoints_free(cfg->servers, cfg->n_servers);
	cfg->servers = NULL;
	cfg->n_servers = 0;
	config_free(agent_config_options, agent_config_n_options, cfg);
}
