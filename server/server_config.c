#include "server_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datastore.h"
#include "oidc.h"
#include "spiffeid.h"
#include "util.h"

/* Where database_connection_string comes from when the key is absent. */
#define DB_CONNSTR_ENV "LANYARD_DATABASE_CONNECTION_STRING"

#define OPT(field) .offset = offsetof(struct server_config, field)
#define YEAR (366LL * 86400)

static const char *const key_types[] = {"ec-p256", "ec-p384", "rsa-2048", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const database_types[] = {"sqlite", "postgres", NULL};
static const char *const endpoint_profiles[] = {"https_spiffe", "https_web", NULL};

const struct cfg_option server_config_options[] = {
	{.name = "trust_domain", .type = CFG_STRING, OPT(trust_domain), .required = true,
	 .doc = "the trust domain this server signs for, e.g. example.org"},
	{.name = "data_dir", .type = CFG_STRING, OPT(data_dir), .def = "/var/lib/lanyard/server",
	 .doc = "directory for the datastore and CA keys (created 0700)"},
	{.name = "bind_address", .type = CFG_STRING, OPT(bind_address), .def = "0.0.0.0",
	 .doc = "address of the node API (agents connect here)"},
	{.name = "bind_port", .type = CFG_INT, OPT(bind_port), .def = "8081", .min = 0, .max = 65535,
	 .doc = "port of the node API (0 picks a free port, logged at start)"},
	{.name = "admin_socket", .type = CFG_STRING, OPT(admin_socket),
	 .def = "/run/lanyard/server/admin.sock", .doc = "Unix socket of the admin API and the CLI"},
	{.name = "admin_socket_group", .type = CFG_STRING, OPT(admin_socket_group),
	 .doc = "group whose members may use the admin socket (socket 0660); unset: 0600, root "
		"and the server's uid only"},
	{.name = "http_address", .type = CFG_STRING, OPT(http_address), .def = "127.0.0.1",
	 .doc = "address of the operator HTTP endpoint"},
	{.name = "http_port", .type = CFG_INT, OPT(http_port), .def = "8080", .min = 0, .max = 65535,
	 .doc = "port of the operator HTTP endpoint (0 disables it)"},
	{.name = "ca_key_type", .type = CFG_ENUM, OPT(ca_key_type), .def = "ec-p256",
	 .choices = key_types, .doc = "CA key type: ec-p256, ec-p384 or rsa-2048"},
	{.name = "ca_ttl", .type = CFG_DURATION, OPT(ca_ttl), .def = "24h", .min = 30, .max = 10 * YEAR,
	 .doc = "lifetime of each CA authority; rotation prepares at 1/2, activates at 5/6"},
	{.name = "default_x509_svid_ttl", .type = CFG_DURATION, OPT(default_x509_svid_ttl),
	 .def = "1h", .min = 10, .max = YEAR, .doc = "X509-SVID lifetime when the entry sets none"},
	{.name = "default_jwt_svid_ttl", .type = CFG_DURATION, OPT(default_jwt_svid_ttl),
	 .def = "5m", .min = 10, .max = YEAR, .doc = "JWT-SVID lifetime when the entry sets none"},
	{.name = "agent_svid_ttl", .type = CFG_DURATION, OPT(agent_svid_ttl), .def = "1h", .min = 10,
	 .max = YEAR, .doc = "lifetime of the agents' own X509-SVIDs"},
	{.name = "join_token_ttl", .type = CFG_DURATION, OPT(join_token_ttl), .def = "600", .min = 1,
	 .max = YEAR, .doc = "default lifetime of join tokens"},
	{.name = "upstream_ca_cert", .type = CFG_STRING, OPT(upstream_ca_cert),
	 .doc = "PEM certificate of an upstream CA that signs our CA (optional)"},
	{.name = "upstream_ca_key", .type = CFG_STRING, OPT(upstream_ca_key),
	 .doc = "PEM private key of the upstream CA (mode 0600; with upstream_ca_cert)"},
	{.name = "database_type", .type = CFG_ENUM, OPT(database_type), .def = "sqlite",
	 .choices = database_types,
	 .doc = "sqlite (a file in data_dir, one server) or postgres (several servers, one database)"},
	{.name = "database_connection_string", .type = CFG_STRING, OPT(database_connection_string),
	 .doc = "postgres: libpq key=value string or postgresql:// URI (password also from PG* "
		"environment or a passfile; never logged)"},
	{.name = "database_max_connections", .type = CFG_INT, OPT(database_max_connections),
	 .def = "8", .min = 1, .max = 64,
	 .doc = "postgres: connections in the pool (one more follows the change feed)"},
	{.name = "node_api_max_connections", .type = CFG_INT, OPT(node_api_max_connections),
	 .def = "16384", .min = 16, .max = 1000000,
	 .doc = "node API connections in all (one per agent; lowered to fit RLIMIT_NOFILE)"},
	{.name = "node_api_max_connections_per_source", .type = CFG_INT,
	 OPT(node_api_max_connections_per_source), .def = "1024", .min = 0, .max = 1000000,
	 .doc = "node API connections per client IP address (agents behind one NAT share it; 0 = "
		"no limit)"},
	{.name = "node_api_max_handshakes", .type = CFG_INT, OPT(node_api_max_handshakes),
	 .def = "128", .min = 0, .max = 1000000,
	 .doc = "node API TLS handshakes in progress; a connection beyond it is reset at once and "
		"the agent retries after its jittered backoff (0 = no cap; with a per-source limit "
		"one address may hold 1/16 of them)"},
	{.name = "node_api_handshake_timeout", .type = CFG_DURATION, OPT(node_api_handshake_timeout),
	 .def = "10s", .min = 1, .max = 600,
	 .doc = "node API: TLS handshake, HTTP/2 preface and first request must arrive within this"},
	{.name = "node_api_idle_timeout", .type = CFG_DURATION, OPT(node_api_idle_timeout),
	 .def = "5m", .min = 1, .max = 86400,
	 .doc = "node API: a connection without an open call is closed after this (agents keep "
		"their entry stream open)"},
	{.name = "node_api_unauthenticated_max_message_size", .type = CFG_INT,
	 OPT(node_api_unauthenticated_max_message_size), .def = "65536", .min = 1024,
	 .max = 16 << 20,
	 .doc = "node API: largest Attest request without a client certificate (join token, k8s "
		"PSAT token); 1,024 of them may be in flight at once"},
	{.name = "log_level", .type = CFG_ENUM, OPT(log_level), .def = "info", .choices = log_levels,
	 .doc = "debug, info, warn or error"},
	{.name = "log_format", .type = CFG_ENUM, OPT(log_format), .def = "text",
	 .choices = log_formats, .doc = "text or json"},
	{.name = "k8s_psat_cluster", .type = CFG_STRING, OPT(k8s_psat_cluster),
	 .doc = "enables k8s_psat node attestation: the cluster's name in agent IDs and selectors"},
	{.name = "k8s_psat_audience", .type = CFG_STRING, OPT(k8s_psat_audience),
	 .def = "lanyard-server", .doc = "audience agents' projected service account tokens must have"},
	{.name = "k8s_psat_allowed_service_accounts", .type = CFG_STRING_LIST,
	 OPT(k8s_psat_allowed_service_accounts), .def = "[]",
	 .doc = "\"namespace:serviceaccount\" of the agents allowed to attest with k8s_psat"},
	{.name = "k8s_api_url", .type = CFG_STRING, OPT(k8s_api_url),
	 .doc = "Kubernetes API server URL (default: in-cluster, from KUBERNETES_SERVICE_HOST)"},
	{.name = "k8s_api_token_path", .type = CFG_STRING, OPT(k8s_api_token_path),
	 .doc = "bearer token for the API server (default: the pod's service account token)"},
	{.name = "k8s_api_ca_path", .type = CFG_STRING, OPT(k8s_api_ca_path),
	 .doc = "CA certificate of the API server (default: the pod's service account CA)"},
	{.name = "k8s_api_insecure_skip_verify", .type = CFG_BOOL,
	 OPT(k8s_api_insecure_skip_verify), .def = "false",
	 .doc = "do not verify the API server's certificate (testing only)"},
	{.name = "k8s_bundle_configmap", .type = CFG_STRING, OPT(k8s_bundle_configmap),
	 .doc = "\"namespace/name\" of a ConfigMap the server keeps the bundle PEM in (optional)"},
	{.name = "k8s_bundle_configmap_key", .type = CFG_STRING, OPT(k8s_bundle_configmap_key),
	 .def = "bundle.crt", .doc = "key of the bundle in that ConfigMap"},
	{.name = "oidc_issuer", .type = CFG_STRING, OPT(oidc_issuer),
	 .doc = "issuer URL (https://host[/path]) JWT-SVIDs carry as \"iss\" and OIDC discovery "
		"announces"},
	{.name = "oidc_discovery_address", .type = CFG_STRING, OPT(oidc_discovery_address),
	 .def = "0.0.0.0", .doc = "address of the OIDC discovery endpoint"},
	{.name = "oidc_discovery_port", .type = CFG_INT, OPT(oidc_discovery_port), .def = "0",
	 .min = 0, .max = 65535,
	 .doc = "port of the OIDC discovery endpoint (0 disables it; needs oidc_issuer)"},
	{.name = "oidc_discovery_cert_file", .type = CFG_STRING, OPT(oidc_discovery_cert_file),
	 .doc = "PEM certificate chain for HTTPS on the discovery endpoint (unset: plain HTTP, for "
		"behind a TLS-terminating ingress)"},
	{.name = "oidc_discovery_key_file", .type = CFG_STRING, OPT(oidc_discovery_key_file),
	 .doc = "PEM private key of that certificate (others may not read it)"},
	{.name = "metrics_bind_address", .type = CFG_STRING, OPT(metrics_bind_address),
	 .def = "0.0.0.0", .doc = "address of the /metrics-only listener"},
	{.name = "metrics_bind_port", .type = CFG_INT, OPT(metrics_bind_port), .def = "0", .min = 0,
	 .max = 65535, .doc = "port of a listener serving /metrics alone, for Prometheus (0: off)"},
	{.name = "admin_bind_address", .type = CFG_STRING, OPT(admin_bind_address),
	 .def = "127.0.0.1", .doc = "address of the admin API over mutual TLS"},
	{.name = "admin_bind_port", .type = CFG_INT, OPT(admin_bind_port), .def = "0", .min = 0,
	 .max = 65535, .doc = "port of the admin API over mutual TLS, for the X509-SVIDs of entries "
	 "marked admin (0: off)"},
	{.name = "bundle_endpoint_address", .type = CFG_STRING, OPT(bundle_endpoint_address),
	 .def = "0.0.0.0", .doc = "address of the SPIFFE bundle endpoint (federation)"},
	{.name = "bundle_endpoint_port", .type = CFG_INT, OPT(bundle_endpoint_port), .def = "0",
	 .min = 0, .max = 65535, .doc = "port of the bundle endpoint (0: no bundle endpoint)"},
	{.name = "bundle_endpoint_refresh_hint", .type = CFG_DURATION,
	 OPT(bundle_endpoint_refresh_hint), .def = "5m", .min = 1, .max = 86400,
	 .doc = "spiffe_refresh_hint published with the bundle"},
	{.name = "bundle_endpoint_profile", .type = CFG_ENUM, OPT(bundle_endpoint_profile),
	 .def = "https_spiffe", .choices = endpoint_profiles,
	 .doc = "https_spiffe (an X509-SVID for spiffe://<td>/lanyard/server, minted and renewed "
		"by the server) or https_web (bundle_endpoint_cert_file and _key_file)"},
	{.name = "bundle_endpoint_cert_file", .type = CFG_STRING, OPT(bundle_endpoint_cert_file),
	 .doc = "https_web: PEM certificate chain of the bundle endpoint"},
	{.name = "bundle_endpoint_key_file", .type = CFG_STRING, OPT(bundle_endpoint_key_file),
	 .doc = "https_web: PEM private key of the bundle endpoint (mode 0600)"},
	{.name = "federation_web_ca_file", .type = CFG_STRING, OPT(federation_web_ca_file),
	 .doc = "PEM CA certificates that authenticate https_web bundle endpoints of federated "
		"trust domains instead of the system store (a private PKI)"},
	{.name = "k8s_registration", .type = CFG_JSON, OPT(k8s_registration), .def = "[]",
	 .doc = "rules for entries the server keeps for pods on its own (JSON array; empty = off; "
		"needs k8s_psat_cluster): [{\"spiffe_id\": TEMPLATE, \"namespaces\": [...], "
		"\"pod_labels\": {...}, \"dns_names\": [...], \"x509_svid_ttl\": \"1h\"}]"},
	{.name = "k8s_registration_crd", .type = CFG_BOOL, OPT(k8s_registration_crd),
	 .def = "false",
	 .doc = "automatic registration: rules also from ClusterSPIFFEID objects (the CRD in "
		"deploy/kubernetes/crd), watched like pods"},
	{.name = "k8s_registration_resync", .type = CFG_DURATION, OPT(k8s_registration_resync),
	 .def = "10m", .min = 10, .max = 86400,
	 .doc = "automatic registration: how often the pod and node lists are read again in full "
		"and the managed entries reconciled"},
};
const size_t server_config_n_options = ARRAY_LEN(server_config_options);

static int oidc_config_check(const char *path, const struct server_config *cfg, char *err,
			     size_t errlen)
{
	char why[256];
	if (cfg->oidc_issuer && oidc_issuer_check(cfg->oidc_issuer, why, sizeof(why)) < 0)
		return errorf(err, errlen, "%s: key 'oidc_issuer': value \"%s\": %s", path,
			      cfg->oidc_issuer, why);
	if (cfg->oidc_discovery_port && !cfg->oidc_issuer)
		return errorf(err, errlen, "%s: key 'oidc_issuer' is required when "
			      "oidc_discovery_port is set", path);
	if (!!cfg->oidc_discovery_cert_file != !!cfg->oidc_discovery_key_file)
		return errorf(err, errlen, "%s: keys 'oidc_discovery_cert_file' and "
			      "'oidc_discovery_key_file' go together", path);
	if (cfg->oidc_discovery_cert_file && !cfg->oidc_discovery_port)
		return errorf(err, errlen, "%s: key 'oidc_discovery_cert_file' is only used with "
			      "oidc_discovery_port (0: discovery is off)", path);
	return 0;
}

int server_config_load(const char *path, struct server_config *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	if (config_load(path, server_config_options, server_config_n_options, cfg, err, errlen) < 0)
		return -1;
	char why[512];
	if (trust_domain_validate(cfg->trust_domain, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: key 'trust_domain': value \"%s\": %s", path,
			 cfg->trust_domain, why);
		return -1;
	}
	if (!!cfg->upstream_ca_cert != !!cfg->upstream_ca_key) {
		snprintf(err, errlen, "%s: keys 'upstream_ca_cert' and 'upstream_ca_key' go together",
			 path);
		return -1;
	}
	if (cfg->k8s_psat_cluster && cfg->k8s_psat_allowed_service_accounts.n == 0) {
		snprintf(err, errlen,
			 "%s: key 'k8s_psat_allowed_service_accounts' must list at least one "
			 "\"namespace:serviceaccount\" when k8s_psat_cluster is set",
			 path);
		return -1;
	}
	if ((json_array_size(cfg->k8s_registration) > 0 || cfg->k8s_registration_crd) &&
	    !cfg->k8s_psat_cluster) {
		snprintf(err, errlen, "%s: key '%s' needs k8s_psat_cluster: the entries' parents are "
			 "the k8s_psat agents of the pods' nodes", path,
			 cfg->k8s_registration_crd ? "k8s_registration_crd" : "k8s_registration");
		return -1;
	}
	struct k8s_reg_ctx rc = {.trust_domain = cfg->trust_domain, .cluster = cfg->k8s_psat_cluster};
	if (k8s_reg_rules_parse(cfg->k8s_registration, &rc, &cfg->k8s_reg_rules, why,
				sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	if (strcmp(cfg->database_type, "postgres") == 0) {
		/* Kubernetes: the connection string from a Secret, through the environment. */
		const char *env = getenv(DB_CONNSTR_ENV);
		if (!cfg->database_connection_string && env && *env)
			cfg->database_connection_string = xstrdup(env);
		if (!cfg->database_connection_string) {
			snprintf(err, errlen, "%s: key 'database_connection_string' (or the "
				 "environment variable " DB_CONNSTR_ENV ") is required when "
				 "database_type is \"postgres\"", path);
			return -1;
		}
		if (datastore_pg_conninfo_check(cfg->database_connection_string, NULL, 0, why,
						sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: key 'database_connection_string': %s", path, why);
			return -1;
		}
	} else if (cfg->database_connection_string) {
		snprintf(err, errlen, "%s: key 'database_connection_string' is only used with "
			 "\"database_type\": \"postgres\"", path);
		return -1;
	}
	if (oidc_config_check(path, cfg, err, errlen) < 0)
		return -1;
	if (cfg->federation_web_ca_file && access(cfg->federation_web_ca_file, R_OK) != 0) {
		snprintf(err, errlen, "%s: key 'federation_web_ca_file': cannot read %s: %s", path,
			 cfg->federation_web_ca_file, strerror(errno));
		return -1;
	}
	bool web = strcmp(cfg->bundle_endpoint_profile, "https_web") == 0;
	if (web && (!cfg->bundle_endpoint_cert_file || !cfg->bundle_endpoint_key_file)) {
		snprintf(err, errlen, "%s: keys 'bundle_endpoint_cert_file' and "
			 "'bundle_endpoint_key_file' are required when bundle_endpoint_profile is "
			 "\"https_web\"", path);
		return -1;
	}
	if (!web && (cfg->bundle_endpoint_cert_file || cfg->bundle_endpoint_key_file)) {
		snprintf(err, errlen, "%s: keys 'bundle_endpoint_cert_file' and "
			 "'bundle_endpoint_key_file' are only used with \"bundle_endpoint_profile\": "
			 "\"https_web\"", path);
		return -1;
	}
	if (cfg->default_x509_svid_ttl > cfg->ca_ttl || cfg->agent_svid_ttl > cfg->ca_ttl) {
		snprintf(err, errlen,
			 "%s: key 'default_x509_svid_ttl'/'agent_svid_ttl': SVIDs cannot outlive the "
			 "CA (ca_ttl %llds)",
			 path, (long long)cfg->ca_ttl);
		return -1;
	}
	return 0;
}

void server_config_free(struct server_config *cfg)
{
	if (cfg->database_connection_string)
		explicit_bzero(cfg->database_connection_string,
			       strlen(cfg->database_connection_string));
	config_free(server_config_options, server_config_n_options, cfg);
	k8s_reg_rules_free(&cfg->k8s_reg_rules);
}
