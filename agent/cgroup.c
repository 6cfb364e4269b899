/* cgroup.c: pod UID and container ID from /proc/<pid>/cgroup (see cgroup.h for the formats). */
#include "cgroup.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_lhex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t sl = strlen(suffix);

	return n >= sl && memcmp(s + n - sl, suffix, sl) == 0;
}

/* A runtime prefix such as "docker-", "crio-" or "cri-containerd" (the part of the last segment
 * before the container ID): lower-case letters and dashes only. */
static bool runtime_prefix_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'))
			return false;
	return true;
}

/* The pod UID of a cgroup segment that ends in "pod<uid>" or "pod<uid>.slice", where "pod"
 * starts the segment or follows a '-' (kubepods-burstable-pod<uid>.slice). The systemd driver
 * writes the UID with '_' for '-'; static pods have a UID of 32 hex digits without separators
 * (a hash of their manifest). Copies the form the kubelet lists into uid and returns true. */
static bool segment_pod_uid(const char *seg, size_t n, char uid[CGROUP_POD_UID_LEN + 1])
{
	static const size_t dash_at[] = {8, 13, 18, 23};
	const char *u;
	size_t ulen;
	char sep;

	if (ends_with(seg, n, ".slice"))
		n -= 6;
	if (n < 3 + 32)
		return false;
	ulen = n >= 3 + CGROUP_POD_UID_LEN && (seg[n - 28] == '-' || seg[n - 28] == '_')
		       ? CGROUP_POD_UID_LEN
		       : 32;
	u = seg + n - ulen;
	if (memcmp(u - 3, "pod", 3) != 0)
		return false;
	if (u - 3 != seg && u[-4] != '-')
		return false;
	if (ulen == 32) {
		for (size_t i = 0; i < 32; i++) {
			if (!is_lhex(u[i]))
				return false;
			uid[i] = u[i];
		}
		uid[32] = '\0';
		return true;
	}
	sep = u[8];
	for (size_t i = 0, d = 0; i < CGROUP_POD_UID_LEN; i++) {
		if (d < 4 && i == dash_at[d]) {
			if (u[i] != sep)
				return false;
			uid[i] = '-';
			d++;
			continue;
		}
		if (!is_lhex(u[i]))
			return false;
		uid[i] = u[i];
	}
	uid[CGROUP_POD_UID_LEN] = '\0';
	return true;
}

int cgroup_k8s_parse_path(const char *path, size_t len, struct cgroup_k8s *out, char *err,
			  size_t errlen)
{
	const char *last, *cid, *podseg = NULL, *colon1 = NULL, *colon2 = NULL;
	size_t n = len, lastlen, podseglen = 0, prefixlen, pods = 0;
	char uid[CGROUP_POD_UID_LEN + 1];
	bool has_pod;

	memset(out, 0, sizeof(*out));
	if (n == 0 || path[0] != '/')
		return 0;
	if (ends_with(path, n, ".scope"))
		n -= 6;

	last = memrchr(path, '/', n);
	last++;
	lastlen = (size_t)(path + n - last);
	if (lastlen < CGROUP_CONTAINER_ID_LEN)
		return 0;

	/* The container ID ends the last segment: after ':' in the containerd form
	 * "<pod slice>:cri-containerd:<id>", else after a runtime prefix ending in '-'. */
	cid = last + lastlen - CGROUP_CONTAINER_ID_LEN;
	for (size_t i = 0; i < CGROUP_CONTAINER_ID_LEN; i++)
		if (!is_lhex(cid[i]))
			return 0;
	colon1 = memchr(last, ':', lastlen);
	if (colon1) {
		colon2 = memrchr(last, ':', lastlen);
		if (colon2 == colon1 || colon2 + 1 != cid ||
		    !runtime_prefix_ok(colon1 + 1, (size_t)(colon2 - colon1 - 1)))
			return 0;
		podseg = last;
		podseglen = (size_t)(colon1 - last);
		prefixlen = (size_t)(colon2 - colon1);
	} else {
		prefixlen = (size_t)(cid - last);
		if (prefixlen && (cid[-1] != '-' || !runtime_prefix_ok(last, prefixlen)))
			return 0;
		if (last - 1 > path) {
			const char *parent_end = last - 1;
			const char *ps = memrchr(path, '/', (size_t)(parent_end - path));

			podseg = ps + 1;
			podseglen = (size_t)(parent_end - podseg);
		}
	}

	/* Pod cgroups nested inside another pod's container can only be made by a process that
	 * writes the hierarchy; such a path is refused rather than read either way. */
	for (const char *s = path + 1; s < last;) {
		const char *e = memchr(s, '/', (size_t)(last - s));
		size_t sl = e ? (size_t)(e - s) : (size_t)(last - s);
		char tmp[CGROUP_POD_UID_LEN + 1];

		if (segment_pod_uid(s, sl, tmp))
			pods++;
		s += sl + 1;
	}
	if (colon1 && segment_pod_uid(podseg, podseglen, uid))
		pods++;
	if (pods > 1) {
		snprintf(err, errlen, "cgroup path names %zu pods (nested pod cgroups)", pods);
		return -1;
	}

	has_pod = podseg && segment_pod_uid(podseg, podseglen, uid);
	if (!has_pod) {
		/* A pod elsewhere in the path but not right above the container is no layout a
		 * kubelet makes. Without any pod, only a runtime scope seen through a cgroup
		 * namespace ("/../crio-<id>.scope") is taken as a pod's container. */
		if (pods || prefixlen == 0 || n < 3 || memcmp(path, "/..", 3) != 0)
			return 0;
		uid[0] = '\0';
	}
	memcpy(out->pod_uid, uid, sizeof(out->pod_uid));
	memcpy(out->container_id, cid, CGROUP_CONTAINER_ID_LEN);
	out->container_id[CGROUP_CONTAINER_ID_LEN] = '\0';
	return 1;
}

int cgroup_k8s_parse(const char *text, size_t len, struct cgroup_k8s *out, char *err,
		     size_t errlen)
{
	const char *p = text, *end = text + len;
	bool found = false;
	int lineno = 0;

	memset(out, 0, sizeof(*out));
	if (memchr(text, '\0', len)) {
		snprintf(err, errlen, "cgroup file contains a NUL byte");
		return -1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *c1, *c2;
		struct cgroup_k8s cur;
		char why[128];
		int r;

		lineno++;
		if (le == p) {
			p = le + 1;
			continue;
		}
		c1 = memchr(p, ':', (size_t)(le - p));
		c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
		if (!c1 || !c2 || c1 == p || c2 + 1 >= le || c2[1] != '/') {
			snprintf(err, errlen, "cgroup file line %d is malformed", lineno);
			return -1;
		}
		for (const char *q = p; q < c1; q++) {
			if (*q < '0' || *q > '9') {
				snprintf(err, errlen,
					 "cgroup file line %d is malformed (hierarchy ID)", lineno);
				return -1;
			}
		}
		r = cgroup_k8s_parse_path(c2 + 1, (size_t)(le - c2 - 1), &cur, why, sizeof(why));
		if (r < 0) {
			snprintf(err, errlen, "cgroup file line %d: %s", lineno, why);
			return -1;
		}
		if (r > 0) {
			if (!found) {
				*out = cur;
				found = true;
			} else if (strcmp(out->container_id, cur.container_id) != 0 ||
				   (out->pod_uid[0] && cur.pod_uid[0] &&
				    strcmp(out->pod_uid, cur.pod_uid) != 0)) {
				snprintf(err, errlen,
					 "cgroup file line %d names another container or pod than "
					 "the lines before it",
					 lineno);
				memset(out, 0, sizeof(*out));
				return -1;
			} else if (!out->pod_uid[0]) {
				memcpy(out->pod_uid, cur.pod_uid, sizeof(out->pod_uid));
			}
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return found ? 1 : 0;
}
