/* k8s_api.c: JSON calls to the Kubernetes API server (see k8s_api.h). */
#include "k8s_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_dyn.h"
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

/* ---- watches ---- */

#define WATCH_LINE_MAX (4u * 1024 * 1024)

struct watch {
	const struct k8s_watch_cb *cb;
	const struct curl_fns *cu;
	void *curl;
	long status;
	char *buf;       /* a partial line (200) or the whole body (any other status) */
	size_t len, cap;
	bool stopped, too_long;
};

static int watch_line(struct watch *w, const char *line, size_t n)
{
	json_error_t je;
	json_t *ev;
	const char *type;
	int r = 0;

	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n == 0)
		return 0;
	ev = json_loadb(line, n, 0, &je);
	type = json_string_value(json_object_get(ev, "type"));
	if (!type || !json_is_object(json_object_get(ev, "object"))) {
		log_warnx("k8s: watch: skipping a line that is not an event: %.120s", line);
	} else {
		r = w->cb->event(type, json_object_get(ev, "object"), w->cb->ud);
	}
	json_decref(ev);
	return r;
}

static size_t watch_data(const char *data, size_t n, void *ud)
{
	struct watch *w = ud;
	size_t start = 0;

	if (w->status == 0)
		w->cu->easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 65536;
		char *nb;

		while (cap < w->len + n + 1)
			cap *= 2;
		if (cap > WATCH_LINE_MAX + 65536) {
			w->too_long = true;
			return 0;
		}
		if (!(nb = realloc(w->buf, cap)))
			return 0;
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, data, n);
	w->len += n;
	w->buf[w->len] = '\0';
	if (w->status != 200)
		return n; /* kept whole: a Status object, parsed at the end */
	for (size_t i = 0; i < w->len; i++) {
		if (w->buf[i] != '\n')
			continue;
		if (watch_line(w, w->buf + start, i - start) < 0 ||
		    (w->cb->stop && w->cb->stop(w->cb->ud))) {
			w->stopped = true;
			return 0;
		}
		start = i + 1;
	}
	memmove(w->buf, w->buf + start, w->len - start);
	w->len -= start;
	return n;
}

static bool watch_stop(void *ud)
{
	struct watch *w = ud;

	if (w->cb->stop && w->cb->stop(w->cb->ud))
		w->stopped = true;
	return w->stopped;
}

int k8s_api_watch(struct k8s_api *a, const char *path, int timeout_s,
		  const struct k8s_watch_cb *cb, long *status, json_t **out, char *err,
		  size_t errlen)
{
	struct watch w = {.cb = cb};
	struct k8s_http_opts o = a->http;
	struct k8s_http_resp resp;
	char *url = NULL;
	int r, ret = K8S_API_INTERNAL;

	*out = NULL;
	*status = 0;
	w.cu = curl_fns_load(err, errlen);
	if (!w.cu)
		return K8S_API_INTERNAL;
	if (!(w.curl = w.cu->easy_init()) || asprintf(&url, "%s%s", a->url, path) < 0) {
		url = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	o.timeout_ms = (int64_t)timeout_s * 1000;
	o.stream = watch_data;
	o.stop = watch_stop;
	o.stream_ud = &w;
	r = k8s_http_request(w.curl, &o, "GET", url, NULL, NULL, &resp, err, errlen);
	k8s_http_resp_free(&resp);
	if (w.stopped) {
		ret = K8S_API_STOPPED;
		goto out;
	}
	if (r == K8S_HTTP_ERR_TRANSPORT || r == K8S_HTTP_ERR_TOKEN) {
		if (w.too_long)
			snprintf(err, errlen, "%s: a watch event longer than %u bytes", url,
				 WATCH_LINE_MAX);
		ret = K8S_API_UNREACHABLE;
		goto out;
	}
	if (r < 0)
		goto out;
	w.cu->easy_getinfo(w.curl, CURLINFO_RESPONSE_CODE, status);
	if (*status == 200) {
		/* A last line without its newline. */
		if (w.len && watch_line(&w, w.buf, w.len) < 0) {
			ret = K8S_API_STOPPED;
			goto out;
		}
	} else if (w.len) {
		*out = json_loadb(w.buf, w.len, 0, NULL);
	}
	ret = 0;
out:
	if (w.curl)
		w.cu->easy_cleanup(w.curl);
	free(w.buf);
	free(url);
	return ret;
}

const char *k8s_api_status_message(json_t *status_obj)
{
	const char *m = json_string_value(json_object_get(status_obj, "message"));

	return m ? m : "";
}
