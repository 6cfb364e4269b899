/* k8s_http.h: one blocking HTTP request to a Kubernetes component (the kubelet, the API server)
 * with libcurl: bearer token from a file, cluster CA, timeouts, a bounded response.
 *
 * The token file is read on every request, because projected service account tokens are rotated
 * by the kubelet while the daemon runs; the copy is wiped after use. The token is only sent over
 * https (the kubelet's read-only port needs none). Redirects are not followed and only http and
 * https are allowed. Blocking: call from a worker thread, never from an event loop. */
#ifndef LANYARD_K8S_HTTP_H
#define LANYARD_K8S_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define K8S_HTTP_DEFAULT_TIMEOUT_MS 5000
#define K8S_HTTP_DEFAULT_MAX_RESPONSE (64u * 1024 * 1024)

struct k8s_http_opts {
	const char *token_path;    /* bearer token file; NULL or "" = no Authorization header */
	const char *ca_path;       /* PEM CA bundle for https; NULL = the system store */
	bool insecure_skip_verify; /* no certificate or host name check (loudly logged by callers) */
	int64_t timeout_ms;        /* whole request; <= 0: K8S_HTTP_DEFAULT_TIMEOUT_MS */
	size_t max_response;       /* 0: K8S_HTTP_DEFAULT_MAX_RESPONSE */
	/* Streaming (watches): when set, the body goes to stream() as it arrives instead of into
	 * out->body (left empty), without the max_response bound; a return other than len aborts
	 * the transfer (K8S_HTTP_ERR_TRANSPORT). stop() (may be NULL) is polled about once a
	 * second, also while nothing arrives: true aborts the transfer the same way. */
	size_t (*stream)(const char *data, size_t len, void *ud);
	bool (*stop)(void *ud);
	void *stream_ud;
};

struct k8s_http_resp {
	long status;  /* HTTP status code */
	char *body;   /* NUL-terminated, owned */
	size_t len;
};

enum {
	K8S_HTTP_ERR_TRANSPORT = -1, /* no HTTP answer: refused, timed out, TLS failure, too large */
	K8S_HTTP_ERR_TOKEN = -2,     /* the token file could not be read */
	K8S_HTTP_ERR_INTERNAL = -3,  /* allocation or libcurl setup failure */
};

/* Loads libcurl (curl_dyn.h) and initialises it, once; call before starting threads that use
 * k8s_http_request. 0, or -1 with the reason in err (libcurl is not installed). */
int k8s_http_global_init(char *err, size_t errlen);

/* Sends method to url with an optional body (content_type applies to it) and stores any HTTP
 * answer, whatever its status, in out (free with k8s_http_resp_free). curl may be a CURL * to
 * reuse (made with curl_fns_load()->easy_init(); the connection is kept alive between calls and
 * the caller serialises its use) or NULL for a fresh handle. 0, or a K8S_HTTP_ERR_* code with a
 * reason in err. */
int k8s_http_request(void *curl, const struct k8s_http_opts *o, const char *method,
		     const char *url, const char *body, const char *content_type,
		     struct k8s_http_resp *out, char *err, size_t errlen);
void k8s_http_resp_free(struct k8s_http_resp *r);

/* Appends s to buf (of size len, at offset *pos) percent-encoded as one URL path segment. false
 * when it does not fit. */
bool k8s_http_path_escape(char *buf, size_t len, size_t *pos, const char *s);

#endif
