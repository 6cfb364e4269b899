/* agent_config.h: the agent's JSON configuration, declared once as a table (common/config.h). */
#ifndef LANYARD_AGENT_CONFIG_H
#define LANYARD_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct agent_config {
	char *trust_domain;      /* "example.org" */
	char *server_address;
	int64_t server_port;
	char *trust_bundle_path; /* PEM CA certificates for the first contact; NULL when unset */
	bool insecure_bootstrap;
	char *data_dir;
	char *socket_path;
	char *http_address;
	int64_t http_port;
	char *join_token; /* NULL when unset; --join-token overrides it */
	char *workload_key_type;
	double rotation_fraction;
	char *log_level;
	char *log_format;
	bool unix_workload_path_selectors;
	int64_t sha256_max_size;
	int64_t max_conns_per_uid;
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
/* Wipes the join token and frees every string. NULL-safe. */
void agent_config_free(struct agent_config *cfg);

#endif
