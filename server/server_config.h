/* server_config.h: lanyard-server's configuration file (JSON), declared once as a table. */
#ifndef LANYARD_SERVER_CONFIG_H
#define LANYARD_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "k8s_reg_rules.h"

struct server_config {
	char *trust_domain;
	char *data_dir;
	char *bind_address;
	int64_t bind_port;
	char *admin_socket;
	char *admin_socket_group;
	char *http_address;
	int64_t http_port;
	char *ca_key_type;
	int64_t ca_ttl;
	int64_t default_x509_svid_ttl;
	int64_t default_jwt_svid_ttl;
	int64_t agent_svid_ttl;
	int64_t join_token_ttl;
	char *upstream_ca_cert;
	char *upstream_ca_key;
	/* The datastore: SQLite in data_dir (one server) or PostgreSQL (several servers). The
	 * connection string may hold a password: never logged or shown. */
	char *database_type;
	char *database_connection_string;
	int64_t database_max_connections;
	int64_t node_api_max_connections;
	int64_t node_api_max_connections_per_source;
	int64_t node_api_max_handshakes;
	int64_t node_api_handshake_timeout;
	int64_t node_api_idle_timeout;
	int64_t node_api_unauthenticated_max_message_size;
	char *log_level;
	char *log_format;
	/* Kubernetes: k8s_psat node attestation and the bundle ConfigMap (both optional). */
	char *k8s_psat_cluster;
	char *k8s_psat_audience;
	struct cfg_list k8s_psat_allowed_service_accounts;
	char *k8s_api_url;
	char *k8s_api_token_path;
	char *k8s_api_ca_path;
	bool k8s_api_insecure_skip_verify;
	char *k8s_bundle_configmap;
	char *k8s_bundle_configmap_key;
	/* OIDC discovery (optional) and the issuer JWT-SVIDs carry. */
	char *oidc_issuer;
	char *oidc_discovery_address;
	int64_t oidc_discovery_port;
	char *oidc_discovery_cert_file;
	char *oidc_discovery_key_file;
	/* A listener serving /metrics alone (optional), for Prometheus on the pod or host IP. */
	char *metrics_bind_address;
	int64_t metrics_bind_port;
	/* The admin API over mutual TLS (admin_tls.h); port 0: off. */
	char *admin_bind_address;
	int64_t admin_bind_port;
	/* The SPIFFE bundle endpoint (federation); port 0: off. */
	char *bundle_endpoint_address;
	int64_t bundle_endpoint_port;
	int64_t bundle_endpoint_refresh_hint;
	char *bundle_endpoint_profile;
	char *bundle_endpoint_cert_file;
	char *bundle_endpoint_key_file;
	char *federation_web_ca_file; /* NULL: https_web endpoints are checked against the system store */
	/* Automatic registration from pods (k8s_reg.h): the rules as configured (a JSON array,
	 * NULL or empty = off), parsed and checked into k8s_reg_rules by server_config_load. */
	json_t *k8s_registration;
	struct k8s_reg_rules k8s_reg_rules;
	int64_t k8s_registration_resync;
	bool k8s_registration_crd;
};

extern const struct cfg_option server_config_options[];
extern const size_t server_config_n_options;

/* Defaults, the file, then the rules between keys. 0, or -1 with a message naming file/key/value. */
int server_config_load(const char *path, struct server_config *cfg, char *err, size_t errlen);
void server_config_free(struct server_config *cfg);

#endif
