/* k8s_api.h: a minimal client of the Kubernetes API server for the k8s_psat node attestor and the
 * bundle ConfigMap publisher: JSON requests with the server's own service account token.
 *
 * In a pod, the defaults find the API server the way client-go's in-cluster config does:
 * https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the token and CA mounted at
 * /var/run/secrets/kubernetes.io/serviceaccount/. Calls block (libcurl): run them on a worker
 * thread. Thread-safe: each call uses its own connection. */
#ifndef LANYARD_K8S_API_H
#define LANYARD_K8S_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define K8S_API_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct k8s_api_options {
	const char *url;        /* "https://host:port"; NULL or "" = in-cluster from the env */
	const char *token_path; /* NULL = K8S_API_SA_DIR/token; "" = send no token */
	const char *ca_path;    /* NULL = K8S_API_SA_DIR/ca.crt; "" = the system store */
	bool insecure_skip_verify;
	int64_t timeout_ms;     /* per request; <= 0: 10000 */
};

struct k8s_api;

/* Resolves the defaults. NULL with a reason in err (not in a pod and no URL given, ...). */
struct k8s_api *k8s_api_new(const struct k8s_api_options *o, char *err, size_t errlen);
void k8s_api_free(struct k8s_api *a);
/* The base URL in use, for logs. */
const char *k8s_api_url(const struct k8s_api *a);

enum {
	K8S_API_UNREACHABLE = -1, /* no HTTP answer (refused, timeout, TLS) or no token file */
	K8S_API_INTERNAL = -2,    /* allocation failure */
};

/* Sends method to path ("/api/v1/...", already escaped) with an optional JSON body
 * (content_type defaults to application/json). Any HTTP answer returns 0 with its status and
 * its body parsed as JSON in *out (NULL when the body is not JSON; json_decref it). Otherwise a
 * K8S_API_* code with a reason in err. */
int k8s_api_call(struct k8s_api *a, const char *method, const char *path, json_t *body,
		 const char *content_type, long *status, json_t **out, char *err, size_t errlen);

/* A watch (GET path with ?watch=1...): the API server answers a stream of JSON lines
 * {"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}, one per event. */
struct k8s_watch_cb {
	/* Called for each event, in order; a negative return ends the watch (k8s_api_watch
	 * then returns K8S_API_STOPPED). obj is borrowed for the call. */
	int (*event)(const char *type, json_t *obj, void *ud);
	/* Polled about once a second and between events: true ends the watch (K8S_API_STOPPED). */
	bool (*stop)(void *ud);
	void *ud;
};

#define K8S_API_STOPPED 1

/* Follows a watch until the server ends it (0, *status 200), the callbacks end it
 * (K8S_API_STOPPED), or the connection fails or drops (K8S_API_UNREACHABLE, reason in err).
 * When the server answers with another status than 200, returns 0 with *status and the body
 * (a Status object, or NULL) in *out (json_decref it); *out is NULL otherwise. timeout_s bounds
 * the whole request: pass more than the watch's own timeoutSeconds. */
int k8s_api_watch(struct k8s_api *a, const char *path, int timeout_s,
		  const struct k8s_watch_cb *cb, long *status, json_t **out, char *err,
		  size_t errlen);

/* The "message" of a Kubernetes Status object, or "" (never NULL). */
const char *k8s_api_status_message(json_t *status_obj);

#endif
