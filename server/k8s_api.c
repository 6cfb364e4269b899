/* k8s_api.c: JSON calls to the Kubernetes API server (see k8s_api.h). */
#include "k8s_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s_http.h"
#include "log.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_RESPONSE (8u * 1024 * 1024)

struct k8s_api {
	char *url, *token_path, *ca_path;
	struct k8s_http_opts http;
};

static char *dup_or_null(const char *s)
{
	return s && s[0] ? strdup(s) : NULL;
}

struct k8s_api *k8s_api_new(const struct k8s_api_options *o, char *err, size_t errlen)
{
	struct k8s_api *a = calloc(1, sizeof(*a));
	const char *host, *port;
	size_t n;

	if (!a)
		goto nomem;
	if (o->url && o->url[0]) {
		if (strncmp(o->url, "https://", 8) != 0 && strncmp(o->url, "http://", 7) != 0) {
			snprintf(err, errlen,
				 "Kubernetes API URL \"%s\" must start with https:// or http://",
				 o->url);
			goto fail;
		}
		n = strlen(o->url);
		while (n && o->url[n - 1] == '/')
			n--;
		a->url = strndup(o->url, n);
	} else {
		host = getenv("KUBERNETES_SERVICE_HOST");
		port = getenv("KUBERNETES_SERVICE_PORT");
		if (!host || !host[0] || !port || !port[0]) {
			snprintf(err, errlen,
				 "no Kubernetes API URL configured and KUBERNETES_SERVICE_HOST/_PORT "
				 "are not set (not running in a pod?)");
			goto fail;
		}
		/* An IPv6 service address needs brackets in a URL. */
		if (asprintf(&a->url, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
			     port) < 0)
			a->url = NULL;
	}
	if (!a->url)
		goto nomem;
	a->token_path = o->token_path ? dup_or_null(o->token_path) : strdup(K8S_API_SA_DIR "/token");
	a->ca_path = o->ca_path ? dup_or_null(o->ca_path) : strdup(K8S_API_SA_DIR "/ca.crt");
	if ((!o->token_path && !a->token_path) || (!o->ca_path && !a->ca_path) ||
	    (o->token_path && o->token_path[0] && !a->token_path) ||
	    (o->ca_path && o->ca_path[0] && !a->ca_path))
		goto nomem;
	a->http.token_path = a->token_path;
	a->http.ca_path = a->ca_path;
	a->http.insecure_skip_verify = o->insecure_skip_verify;
	a->http.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	a->http.max_response = MAX_RESPONSE;
	if (k8s_http_global_init(err, errlen) < 0)
		goto fail;
	if (o->insecure_skip_verify && strncmp(a->url, "https://", 8) == 0)
		log_warnx("k8s: the API server's certificate at %s is NOT verified", a->url);
	return a;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	k8s_api_free(a);
	return NULL;
}

void k8s_api_free(struct k8s_api *a)
{
	if (!a)
		return;
	free(a->url);
	free(a->token_path);
	free(a->ca_path);
	free(a);
}

const char *k8s_api_url(const struct k8s_api *a)
{
	return a->url;
}

int k8s_api_call(struct k8s_api *a, const char *method, const char *path, json_t *body,
		 const char *content_type, long *status, json_t **out, char *err, size_t errlen)
{
	struct k8s_http_resp resp;
	char *url = NULL, *text = NULL;
	int r, ret = K8S_API_INTERNAL;

	*out = NULL;
	*status = 0;
	if (asprintf(&url, "%s%s", a->url, path) < 0) {
		url = NULL;
		goto nomem;
	}
	if (body && !(text = json_dumps(body, JSON_COMPACT)))
		goto nomem;
	r = k8s_http_request(NULL, &a->http, method, url, text, content_type, &resp, err, errlen);
	if (r == K8S_HTTP_ERR_TRANSPORT || r == K8S_HTTP_ERR_TOKEN) {
		ret = K8S_API_UNREACHABLE;
		goto out;
	}
	if (r < 0)
		goto out;
	*status = resp.status;
	*out = json_loadb(resp.body, resp.len, 0, NULL);
	k8s_http_resp_free(&resp);
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
out:
	if (text) {
		/* A TokenReview body holds the caller's token. */
		secure_zero(text, strlen(text));
		free(text);
	}
	free(url);
	return ret;
}

const char *k8s_api_status_message(json_t *status_obj)
{
	const char *m = json_string_value(json_object_get(status_obj, "message"));

	return m ? m : "";
}
