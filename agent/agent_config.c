#include "agent_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "spiffeid.h"
#include "util.h"

#define F(name) offsetof(struct agent_config, name)

static const char *const key_types[] = {"ec-p256", "ec-p384", "rsa-2048", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const node_attestors[] = {"join_token", "k8s_psat", NULL};

const struct cfg_option agent_config_options[] = {
	{.name = "trust_domain", .type = CFG_STRING, .offset = F(trust_domain), .required = true,
	 .doc = "trust domain of this agent and its server, e.g. example.org"},
	{.name = "server_address", .type = CFG_STRING, .offset = F(server_address),
	 .def = "127.0.0.1", .doc = "host name or IP address of lanyard-server's node API"},
	{.name = "server_port", .type = CFG_INT, .offset = F(server_port), .def = "8081", .min = 1,
	 .max = 65535, .doc = "TCP port of the server's node API"},
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
	{.name = "join_token", .type = CFG_STRING, .offset = F(join_token),
	 .doc = "join token for node attestation (or --join-token)"},
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
	{.name = "max_conns_per_uid", .type = CFG_INT, .offset = F(max_conns_per_uid), .def = "64",
	 .min = 1, .max = 100000, .doc = "Workload API connections allowed per caller uid"},
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

int agent_config_defaults(struct agent_config *cfg, char *err, size_t errlen)
{
	return config_defaults(agent_config_options, agent_config_n_options, cfg, err, errlen);
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
		{"server_address", cfg->server_address}, {"data_dir", cfg->data_dir},
		{"socket_path", cfg->socket_path},       {"http_address", cfg->http_address},
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
	/* Neither trust source is acceptable when data_dir already holds a bundle from an earlier
	 * run; the node client checks that at start, where it can read data_dir. */
	if (cfg->insecure_bootstrap)
		log_warn("insecure_bootstrap is set in %s: the first contact with the server will NOT "
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
	config_free(agent_config_options, agent_config_n_options, cfg);
}
