/* k8s_bundle.c: the trust bundle ConfigMap publisher (see k8s_bundle.h). */
#include "k8s_bundle.h"

#include <stdio.h>
#include <string.h>

#include "k8s_http.h"

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

int k8s_bundle_parse_ref(const char *ref, char *ns, size_t nslen, char *name, size_t namelen,
			 char *err, size_t errlen)
{
	const char *slash = ref ? strchr(ref, '/') : NULL;

	if (!slash || !name_ok(ref, (size_t)(slash - ref)) || !name_ok(slash + 1, strlen(slash + 1)) ||
	    (size_t)(slash - ref) >= nslen || strlen(slash + 1) >= namelen) {
		snprintf(err, errlen, "ConfigMap \"%s\" is not \"namespace/name\"", ref ? ref : "");
		return -1;
	}
	snprintf(ns, nslen, "%.*s", (int)(slash - ref), ref);
	snprintf(name, namelen, "%s", slash + 1);
	return 0;
}

int k8s_bundle_publish(struct k8s_api *api, const char *ns, const char *name, const char *key,
		       const char *pem, bool *changed, char *err, size_t errlen)
{
	char path[1024], why[256];
	size_t pos = 0;
	json_t *cm = NULL, *patch = NULL, *resp = NULL;
	const char *cur;
	long status;
	int ret = -1;

	*changed = false;
	if (!key || !*key)
		key = K8S_BUNDLE_DEFAULT_KEY;
	if (strlen("/api/v1/namespaces/") + 3 * (strlen(ns) + strlen(name)) + 20 >= sizeof(path)) {
		snprintf(err, errlen, "ConfigMap name too long");
		return -1;
	}
	memcpy(path, "/api/v1/namespaces/", 20);
	pos = 19;
	k8s_http_path_escape(path, sizeof(path), &pos, ns);
	memcpy(path + pos, "/configmaps/", 13);
	pos += 12;
	k8s_http_path_escape(path, sizeof(path), &pos, name);

	if (k8s_api_call(api, "GET", path, NULL, NULL, &status, &cm, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot read ConfigMap %s/%s: %s", ns, name, why);
		goto out;
	}
	if (status == 404) {
		snprintf(err, errlen,
			 "ConfigMap %s/%s does not exist: create it (empty) with the deploy manifests",
			 ns, name);
		goto out;
	}
	if (status != 200) {
		snprintf(err, errlen, "cannot read ConfigMap %s/%s: HTTP %ld %.160s%s", ns, name,
			 status, k8s_api_status_message(cm),
			 status == 403 ? " (the server's service account needs get and patch on it)"
				       : "");
		goto out;
	}
	cur = json_string_value(json_object_get(json_object_get(cm, "data"), key));
	if (cur && strcmp(cur, pem) == 0) {
		ret = 0;
		goto out;
	}
	patch = json_pack("{s:{s:s}}", "data", key, pem);
	if (!patch) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (k8s_api_call(api, "PATCH", path, patch, "application/merge-patch+json", &status, &resp,
			 why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot update ConfigMap %s/%s: %s", ns, name, why);
		goto out;
	}
	if (status != 200) {
		snprintf(err, errlen, "cannot update ConfigMap %s/%s: HTTP %ld %.160s%s", ns, name,
			 status, k8s_api_status_message(resp),
			 status == 403 ? " (the server's service account needs patch on it)" : "");
		goto out;
	}
	*changed = true;
	ret = 0;
out:
	json_decref(cm);
	json_decref(patch);
	json_decref(resp);
	return ret;
}
