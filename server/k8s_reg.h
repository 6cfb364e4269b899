/* k8s_reg.h: automatic registration from pods. The server keeps one entry per pod and matching
 * rule (k8s_reg_rules.h) on its own: SPIFFE ID and DNS names from the rule's templates, parent
 * = the k8s_psat agent of the pod's node (spiffe://<td>/lanyard/agent/k8s_psat/<cluster>/
 * <node-uid>), selectors k8s:ns:, k8s:sa:, k8s:pod-uid:, marked managed.
 *
 * Threads: k8s_reg_start starts three threads of its own. Two follow the Kubernetes API the way
 * an informer does, one for nodes and one for pods: list (in pages), then watch from the list's
 * resourceVersion with bookmarks, resume a dropped watch from the last resourceVersion seen
 * (bounded backoff), and list again after 410 Gone or every resync_s. A list is followed by a
 * full reconciliation: the entries wanted for the pods listed against the managed entries in
 * the datastore (re-read then), creating what is missing and deleting what is not wanted, so a
 * restart or a watch gap leaves no duplicate and no orphan. An event reconciles its one pod (a
 * node event, the pods on that node). The third thread holds a lease in the datastore
 * ("k8s_registration", renewed every K8S_REG_LEASE_RENEW_S): only the holder follows the API and
 * writes entries, so with several servers on one database one reconciles at a time.
 *
 * The state (pods, nodes, managed entries) is owned by the module under one mutex; the
 * datastore is thread-safe. changed(ud) is called from these threads after entries changed
 * (it must be thread-safe: uv_async_send).
 *
 * With o->crd, a fourth thread follows the ClusterSPIFFEID objects the same way; each object's
 * spec is one more rule (a bad one is logged and ignored), and pods are reconciled only once
 * those rules are listed too. */
#ifndef LANYARD_K8S_REG_H
#define LANYARD_K8S_REG_H

#include <stddef.h>
#include <stdint.h>

#include "datastore.h"
#include "k8s_api.h"
#include "k8s_reg_rules.h"

/* ClusterSPIFFEID objects (deploy/kubernetes/crd/clusterspiffeid.yaml): cluster-scoped, each
 * spec one rule in the configuration's form. */
#define K8S_REG_CRD_PATH "/apis/lanyard.io/v1alpha1/clusterspiffeids"
#define K8S_REG_LEASE "k8s_registration"
#define K8S_REG_LEASE_TTL_S 15
#define K8S_REG_LEASE_RENEW_S 5

struct k8s_reg_options {
	const struct k8s_reg_rules *rules; /* borrowed: outlives the module */
	const char *trust_domain;
	const char *cluster;               /* k8s_psat_cluster */
	const char *holder;                /* this server's lease holder name (its uid) */
	bool crd;                          /* rules from ClusterSPIFFEID objects too */
	int64_t resync_s;                  /* full list again this often */
	int watch_timeout_s;               /* timeoutSeconds of a watch; <= 0: 300 */
	struct k8s_api_options api;
	struct datastore *ds;
	void (*changed)(void *ud);
	void *ud;
};

struct k8s_reg;

/* Copies what it needs from o and starts the threads. 0, or -1 with a reason in err. */
int k8s_reg_start(const struct k8s_reg_options *o, struct k8s_reg **out, char *err,
		  size_t errlen);
/* Stops the threads (an open watch is cut within about a second), gives the lease up, frees r.
 * NULL-safe. */
void k8s_reg_stop(struct k8s_reg *r);

#endif
