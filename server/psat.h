/* psat.h: k8s_psat node attestation: an agent proves it runs in a pod of an allowed service
 * account with a projected service account token, and is named after the node it runs on.
 *
 * psat_attest() checks the token's audience, has the cluster's API server authenticate it
 * (TokenReview, authentication.k8s.io/v1, with the audience), checks the service account against
 * the "namespace:serviceaccount" allow-list, reads the token's pod (same UID as in the token,
 * same service account, scheduled on the node the token names when it names one) and that pod's
 * node, and returns the agent ID spiffe://<td>/lanyard/agent/k8s_psat/<cluster>/<node-uid> with
 * the selectors k8s_psat:cluster:, k8s_psat:agent_ns:, k8s_psat:agent_sa:,
 * k8s_psat:agent_pod_name:, k8s_psat:agent_pod_uid:, k8s_psat:agent_node_name:,
 * k8s_psat:agent_node_uid:. A fresh token from the same node gives the same agent ID, so
 * re-attestation works.
 *
 * Blocking (several API calls): run it on a worker thread. Thread-safe. */
#ifndef LANYARD_PSAT_H
#define LANYARD_PSAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s_api.h"

#define PSAT_DEFAULT_AUDIENCE "lanyard-server"
#define PSAT_TOKEN_MAX (16 * 1024)

struct psat_options {
	const char *cluster;            /* name in agent IDs and selectors: [A-Za-z0-9._-] */
	const char *audience;           /* NULL = PSAT_DEFAULT_AUDIENCE */
	char *const *allowed_sas;       /* "namespace:serviceaccount" */
	size_t n_allowed;
	struct k8s_api_options api;     /* where the cluster's API server is (in-cluster by default) */
};

struct psat_result {
	char *agent_id;
	char **selectors; /* "k8s_psat:..." */
	size_t n_selectors;
	char *ns, *sa, *pod_name, *pod_uid, *node_name, *node_uid;
};

enum psat_error {
	PSAT_DENIED = -1,      /* the token does not prove an allowed agent: PERMISSION_DENIED */
	PSAT_UNAVAILABLE = -2, /* the API server could not be asked or refused us: UNAVAILABLE */
	PSAT_INTERNAL = -3,    /* allocation failure, an agent ID we cannot form: INTERNAL */
};

struct psat;

/* Validates and copies the options (cluster name, allow-list entries), resolves the API server.
 * NULL with a reason in err. */
struct psat *psat_new(const struct psat_options *o, char *err, size_t errlen);
void psat_free(struct psat *p);
const char *psat_cluster(const struct psat *p);

/* Attests token (token_len bytes, not NUL-terminated necessarily) for trust_domain. 0 with out
 * filled (free with psat_result_free), or a psat_error with a reason in err that is safe to send
 * to the agent and to log (it never holds the token). */
int psat_attest(struct psat *p, const char *trust_domain, const char *token, size_t token_len,
		struct psat_result *out, char *err, size_t errlen);
void psat_result_free(struct psat_result *r);

#endif
