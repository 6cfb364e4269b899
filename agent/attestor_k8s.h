/* attestor_k8s.h: the Kubernetes workload attestor ("k8s"). The agent's side of k8s_psat node
 * attestation (reading its projected service account token) is node attestation's:
 * node_identity.h.
 *
 * attest() reads /proc/<pid>/cgroup through the caller's pinned directory (so the proc root is the
 * one given to caller_pin/caller_from_socket), takes the pod UID and container ID from it
 * (cgroup.h), and finds the container in the kubelet's pod list (kubelet.h). A process that is
 * not in a pod container gets no k8s selectors and no error. A container the kubelet does not
 * list yet is looked up again every retry_interval_ms, at most retries more times; then the call
 * fails with the reason: pod not found, container not in the pod list yet, kubelet refused the
 * token (401/403), kubelet unreachable.
 *
 * Selectors: k8s:ns, k8s:sa, k8s:pod-name, k8s:pod-uid, k8s:pod-label:<k>:<v>,
 * k8s:pod-owner:<kind>:<name>, k8s:container-name, k8s:container-image (the status' image and,
 * when it differs, its imageID), k8s:node-name. */
#ifndef LANYARD_ATTESTOR_K8S_H
#define LANYARD_ATTESTOR_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attestor.h"

#define K8S_DEFAULT_KUBELET_URL "https://127.0.0.1:10250"
#define K8S_DEFAULT_SA_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define K8S_DEFAULT_SA_CA "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
#define K8S_DEFAULT_PSAT_TOKEN "/var/run/secrets/tokens/lanyard-agent"

struct kubelet;

struct attestor_k8s_opts {
	const char *kubelet_url;  /* https://...:10250 (token + CA) or http://...:10255 (read-only) */
	const char *token_path;   /* the agent's service account token, for the secure port */
	const char *ca_path;      /* CA of the kubelet's serving certificate; NULL = system store */
	bool insecure_skip_verify;
	const char *node_name;    /* k8s:node-name when a pod's spec.nodeName is empty; may be NULL */
	unsigned retries;         /* lookups after the first one for a container not listed yet */
	int64_t retry_interval_ms;
	int64_t timeout_ms;       /* per kubelet request */
	int64_t min_refresh_ms;   /* between the starts of two kubelet requests */
	int64_t max_table_age_ms; /* refresh a table older than this on use; <= 0: only on misses */
};

/* Fills the defaults: the secure port on 127.0.0.1 with the pod's service account token and CA,
 * 10 retries every 250 ms, 5 s timeout, 250 ms between requests, tables refreshed after 30 s. */
void attestor_k8s_opts_defaults(struct attestor_k8s_opts *o);

/* The k8s attestor (ops name "k8s"). Makes no request yet. NULL with a reason in err. */
struct attestor *attestor_k8s_new(const struct attestor_k8s_opts *o, char *err, size_t errlen);
/* The attestor's pod table, for status and metrics (kubelet_stats). */
struct kubelet *attestor_k8s_kubelet(struct attestor *a);

#endif
