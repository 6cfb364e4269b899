/* agent_config.h: the agent's JSON configuration, declared once as a table (common/config.h).
 *
 * After the table is applied, agent_config_load checks the rules between keys and derives what
 * the table cannot express: the servers to connect to are either server_addresses ("host:port"
 * each, parsed by server_conn.h) or server_address and server_port (defaults 127.0.0.1:8081),
 * never both, and end up in cfg->servers. The struct owns every string and array it holds. */
#ifndef LANYARD_AGENT_CONFIG_H
#define LANYARD_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct server_endpoint;

struct agent_config {
	char *trust_domain;      /* "example.org" */
	char *server_address;    /* NULL when server_addresses is set */
	int64_t server_port;     /* 0 when server_addresses is set */
	struct cfg_list server_addresses; /* "host:port" each */
	/* Derived by agent_config_load: server_addresses parsed, or server_address:server_port. */
	struct server_endpoint *servers;
	size_t n_servers;
	char *trust_bundle_path; /* PEM CA certificates for the first contact; NULL when unset */
	bool insecure_bootstrap;
	char *data_dir;
	char *socket_path;
	char *http_address;
	int64_t http_port;
	char *metrics_bind_address; /* the /metrics-only listener (off while metrics_bind_port 0) */
	int64_t metrics_bind_port;
	char *join_token;      /* NULL when unset; the command line and environment override it */
	char *join_token_file; /* read at load into join_token; excludes join_token */
	char *workload_key_type;
	double rotation_fraction;
	char *log_level;
	char *log_format;
	bool unix_workload_path_selectors;
	int64_t sha256_max_size;
	int64_t max_conns_per_process;
	int64_t max_conns_per_uid;     /* 0 = no per-uid limit */
	int64_t workload_idle_timeout; /* seconds; 0 = never */
	int64_t sync_staleness; /* seconds */
	/* Kubernetes: node attestation with a projected service account token, and the workload
	 * attestor that asks the kubelet about pods. */
	char *node_attestor;   /* "join_token" or "k8s_psat" */
	char *psat_token_path; /* the projected token, read anew for every attestation */
	bool k8s_workload_attestor;
	char *kubelet_url;
	char *kubelet_token_path;
	char *kubelet_ca_path;
	bool kubelet_insecure_skip_verify;
	char *proc_root; /* where callers' /proc entries are read; "/proc" but in tests */
	/* Envoy SDS resource names (SPIRE's keys and defaults). */
	char *sds_default_name;             /* the caller's first SVID: "default" */
	char *sds_default_bundle_name;      /* the own bundle: "ROOTCA" */
	char *sds_default_all_bundles_name; /* every bundle, SPIFFE validator: "ALL" */
};

extern const struct cfg_option agent_config_options[];
extern const size_t agent_config_n_options;

/* Applies defaults, reads path and checks the rules between keys. 0, or -1 with a message
 * naming the file, key and value in err; cfg must be freed either way. */
int agent_config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen);
/* Only the defaults (for tests and tools). */
int agent_config_defaults(struct agent_config *cfg, char *err, size_t errlen);
/* "a:1, b:2": the configured servers, for logs; the caller frees it. */
char *agent_config_servers_text(const struct agent_config *cfg);
/* Reads a secret (a join token) from path: a regular file owned by this process's effective uid
 * with no group or other permission bits (0600 or stricter). Trailing newlines and spaces are
 * dropped. 0 with *out (free after secure_zero), or -1 with a message naming the file and the
 * reason in err. */
int agent_read_secret_file(const char *path, char **out, char *err, size_t errlen);
/* Wipes the join token and frees every string. NULL-safe. */
void agent_config_free(struct agent_config *cfg);

#endif
