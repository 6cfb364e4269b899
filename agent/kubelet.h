/* kubelet.h: the pods of this node, from the kubelet's GET /pods, as one shared table.
 *
 * The pod list is fetched and parsed once into an immutable, reference-counted table indexed by
 * container ID and pod UID, so an attestation costs a binary search, not a re-parse of the whole
 * list. The table is replaced only when a lookup misses (a new container) or the table is older
 * than the caller's max age, with at most one request in flight (other callers wait for its
 * answer) and at least min_refresh_ms between the starts of two requests, so a flood of unknown
 * callers cannot turn into a flood of requests to the kubelet. Thread-safe. */
#ifndef LANYARD_KUBELET_H
#define LANYARD_KUBELET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kubelet_options {
	const char *url;          /* "https://127.0.0.1:10250" or "http://127.0.0.1:10255" */
	const char *token_path;   /* bearer token (https only); NULL or "" = none */
	const char *ca_path;      /* CA of the kubelet's serving certificate; NULL = system store */
	bool insecure_skip_verify;
	int64_t timeout_ms;       /* per request; <= 0: 5000 */
	int64_t min_refresh_ms;   /* minimum time between the starts of two requests; < 0: 0 */
};

struct kubelet_label {
	const char *key, *value;
};

struct kubelet_owner {
	const char *kind, *name;
};

struct kubelet_pod {
	const char *uid, *name, *ns, *service_account, *node_name; /* "" when absent */
	const struct kubelet_label *labels;
	size_t n_labels;
	const struct kubelet_owner *owners; /* metadata.ownerReferences */
	size_t n_owners;
};

struct kubelet_container {
	const char *id;       /* without the runtime scheme ("containerd://") */
	const char *name, *image, *image_id;
	const struct kubelet_pod *pod;
};

/* An immutable pod table. Pointers into it stay valid while a reference is held. */
struct kubelet_pods;

/* Parses a PodList (the body of GET /pods). Pods without a UID and containers without an ID
 * (still being created) are left out of the container index; a container ID claimed by two pods
 * is left out too. 0, or -1 with a reason in err. */
int kubelet_pods_parse(const char *json, size_t len, struct kubelet_pods **out, char *err,
		       size_t errlen);
const struct kubelet_container *kubelet_pods_find_container(const struct kubelet_pods *p,
							    const char *id);
const struct kubelet_pod *kubelet_pods_find_pod(const struct kubelet_pods *p, const char *uid);
size_t kubelet_pods_n_pods(const struct kubelet_pods *p);
size_t kubelet_pods_n_containers(const struct kubelet_pods *p);
struct kubelet_pods *kubelet_pods_ref(struct kubelet_pods *p);
/* Drops a reference; the last one frees the table. NULL-safe. */
void kubelet_pods_unref(struct kubelet_pods *p);

struct kubelet;

/* Copies the options. No request is made yet. NULL with a reason in err on bad options. */
struct kubelet *kubelet_new(const struct kubelet_options *o, char *err, size_t errlen);
/* No lookup may be running. NULL-safe. */
void kubelet_free(struct kubelet *k);

enum kubelet_result {
	KUBELET_FOUND = 0,
	KUBELET_POD_NOT_FOUND = -1,       /* the pod is not in the list */
	KUBELET_CONTAINER_NOT_FOUND = -2, /* the pod is, the container not (yet) */
	KUBELET_REFUSED = -3,             /* HTTP 401 or 403 */
	KUBELET_UNREACHABLE = -4,         /* no answer: refused connection, timeout, TLS error */
	KUBELET_ERROR = -5,               /* another status, a malformed list, no token file */
	KUBELET_MISMATCH = -6,            /* the container belongs to another pod than pod_uid */
};

/* Finds a container by ID (and checks it belongs to pod_uid, when pod_uid is not NULL or "").
 * A miss, or a table older than max_age_ms (> 0), makes one refresh: a new request when none is
 * in flight and min_refresh_ms has passed, else a wait for the request in flight; then the table
 * is searched again. On KUBELET_FOUND, *table holds a reference the caller drops with
 * kubelet_pods_unref and *ctr points into it; a stale entry is still served when the refresh
 * fails. Otherwise a kubelet_result with a reason in err (the last request's error when it
 * failed). */
int kubelet_lookup(struct kubelet *k, const char *container_id, const char *pod_uid,
		   int64_t max_age_ms, struct kubelet_pods **table,
		   const struct kubelet_container **ctr, char *err, size_t errlen);

struct kubelet_stats {
	uint64_t requests;       /* GET /pods sent */
	uint64_t request_errors; /* of which failed */
	size_t pods, containers; /* in the current table */
	int64_t table_age_ms;    /* -1 when there is no table yet */
};
void kubelet_stats(struct kubelet *k, struct kubelet_stats *out);

/* "found", "pod not found", ... for logs. */
const char *kubelet_result_name(int r);

#endif
