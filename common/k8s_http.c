/* k8s_http.c: blocking libcurl requests (libcurl loaded on first use, see curl_dyn.h) to the kubelet and the Kubernetes API server. */
#include "k8s_http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_dyn.h"
#include "util.h"

#define TOKEN_MAX (64 * 1024)

struct sink {
	char *buf;
	size_t len, cap, max;
	bool too_large;
	const struct k8s_http_opts *o;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;

	if (s->o->stream)
		return s->o->stream(data, n, s->o->stream_ud);
	if (n > s->max - s->len) {
		s->too_large = true;
		return 0; /* aborts the transfer */
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 16384;
		char *nb;

		while (cap < s->len + n + 1)
			cap *= 2;
		nb = realloc(s->buf, cap);
		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	const struct k8s_http_opts *o = ud;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return o->stop && o->stop(o->stream_ud) ? 1 : 0;
}

int k8s_http_global_init(char *err, size_t errlen)
{
	return curl_fns_load(err, errlen) ? 0 : -1;
}

/* Reads the token file and trims the trailing newline the kubelet does not write but
 * hand-made files have. Returns 0 or -errno; -EINVAL for an empty or non-printable token. */
static int read_token(const char *path, char **out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = file_read_all(path, TOKEN_MAX, &buf, &len);

	if (r < 0)
		return r;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (buf[i] <= ' ' || buf[i] > '~') {
			len = 0;
			break;
		}
	}
	if (len == 0) {
		secure_zero(buf, strlen((char *)buf));
		free(buf);
		return -EINVAL;
	}
	*out = (char *)buf;
	return 0;
}

static void wipe_slist(const struct curl_fns *cu, struct curl_slist *l)
{
	for (struct curl_slist *p = l; p; p = p->next)
		if (p->data)
			secure_zero(p->data, strlen(p->data));
	cu->slist_free_all(l);
}

int k8s_http_request(void *curl, const struct k8s_http_opts *o, const char *method,
		     const char *url, const char *body, const char *content_type,
		     struct k8s_http_resp *out, char *err, size_t errlen)
{
	CURL *h = curl;
	struct curl_slist *hdrs = NULL, *nh;
	struct sink s = {.max = o->max_response ? o->max_response : K8S_HTTP_DEFAULT_MAX_RESPONSE,
			 .o = o};
	char errbuf[CURL_ERROR_SIZE] = "", *token = NULL, *auth = NULL;
	bool https = strncasecmp(url, "https://", 8) == 0;
	long timeout = o->timeout_ms > 0 ? (long)o->timeout_ms : K8S_HTTP_DEFAULT_TIMEOUT_MS;
	CURLcode cr;
	int ret = K8S_HTTP_ERR_INTERNAL, r;

	memset(out, 0, sizeof(*out));
	const struct curl_fns *cu = curl_fns_load(err, errlen);
	if (!cu)
		return K8S_HTTP_ERR_INTERNAL;
	if (https && o->token_path && o->token_path[0]) {
		r = read_token(o->token_path, &token);
		if (r < 0) {
			snprintf(err, errlen, "cannot read the service account token %s: %s",
				 o->token_path, r == -EINVAL ? "empty or not a token" : strerror(-r));
			return K8S_HTTP_ERR_TOKEN;
		}
		if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
			auth = NULL;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (h)
		cu->easy_reset(h);
	else if (!(h = cu->easy_init())) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto out;
	}
	if (!(nh = cu->slist_append(hdrs, "Accept: application/json")))
		goto nomem;
	hdrs = nh;
	if (auth) {
		if (!(nh = cu->slist_append(hdrs, auth)))
			goto nomem;
		hdrs = nh;
	}
	if (body) {
		char ct[128];

		snprintf(ct, sizeof(ct), "Content-Type: %s",
			 content_type ? content_type : "application/json");
		if (!(nh = cu->slist_append(hdrs, ct)))
			goto nomem;
		hdrs = nh;
		/* No "Expect: 100-continue" round trip before the body. */
		if (!(nh = cu->slist_append(hdrs, "Expect:")))
			goto nomem;
		hdrs = nh;
	}
	cu->easy_setopt(h, CURLOPT_URL, url);
	cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	cu->easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
	cu->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout);
	cu->easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	cu->easy_setopt(h, CURLOPT_WRITEDATA, &s);
	cu->easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	cu->easy_setopt(h, CURLOPT_USERAGENT, "lanyard/" LANYARD_VERSION);
	if (o->stop) {
		cu->easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		cu->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		cu->easy_setopt(h, CURLOPT_XFERINFODATA, (void *)o);
	}
	if (https) {
		if (o->insecure_skip_verify) {
			cu->easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
			cu->easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		} else if (o->ca_path && o->ca_path[0]) {
			cu->easy_setopt(h, CURLOPT_CAINFO, o->ca_path);
		}
	}
	if (body) {
		cu->easy_setopt(h, CURLOPT_POSTFIELDS, body);
		cu->easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	if (method && strcmp(method, "GET") != 0)
		cu->easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

	cr = cu->easy_perform(h);
	if (cr != CURLE_OK) {
		if (s.too_large)
			snprintf(err, errlen, "%s: response larger than %zu bytes", url, s.max);
		else
			snprintf(err, errlen, "%s: %s", url, errbuf[0] ? errbuf : cu->easy_strerror(cr));
		ret = K8S_HTTP_ERR_TRANSPORT;
		goto out;
	}
	cu->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
	if (!s.buf && !(s.buf = calloc(1, 1)))
		goto nomem;
	out->body = s.buf;
	out->len = s.len;
	s.buf = NULL;
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	ret = K8S_HTTP_ERR_INTERNAL;
out:
	if (h) {
		/* The handle keeps pointers to our header list and buffers: drop them before they go,
		 * since a reused handle outlives this call. */
		cu->easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		cu->easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		if (!curl)
			cu->easy_cleanup(h);
	}
	wipe_slist(cu, hdrs);
	if (auth) {
		secure_zero(auth, strlen(auth));
		free(auth);
	}
	if (token) {
		secure_zero(token, strlen(token));
		free(token);
	}
	free(s.buf);
	return ret;
}

void k8s_http_resp_free(struct k8s_http_resp *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

bool k8s_http_path_escape(char *buf, size_t len, size_t *pos, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t p = *pos;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			if (p + 1 >= len)
				return false;
			buf[p++] = (char)c;
		} else {
			if (p + 3 >= len)
				return false;
			buf[p++] = '%';
			buf[p++] = hex[c >> 4];
			buf[p++] = hex[c & 15];
		}
	}
	if (p >= len)
		return false;
	buf[p] = '\0';
	*pos = p;
	return true;
}
