/* fuzz_csi_path: the target path rules of the CSI node plugin (agent/csi_mount.h), the check
 * that stands between a NodePublishVolume request and a mount(2) as root.
 *
 * The input is "PATH" or "PATH|OTHER" (an embedded NUL ends it early, as in the C strings the
 * plugin gets from protobuf-c). csi_path_check must agree exactly with a reference written the
 * other way round (split into components, judge each), with and without a target root;
 * csi_path_overlaps must be symmetric and agree with a component-wise reference on clean paths. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "csi_mount.h"
#include "fuzz.h"

#define ROOT "/var/lib/kubelet/pods"

static bool ref_clean(const char *p)
{
	size_t len = strlen(p);

	if (len == 0 || len >= CSI_PATH_MAX || p[0] != '/' || len == 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return false;
	/* Every component between two slashes (or a slash and the end) is a real name. */
	for (size_t start = 1;;) {
		const char *slash = strchr(p + start, '/');
		size_t n = slash ? (size_t)(slash - (p + start)) : len - start;
		if (n == 0 || (n == 1 && p[start] == '.') ||
		    (n == 2 && p[start] == '.' && p[start + 1] == '.'))
			return false;
		if (!slash)
			return true;
		start += n + 1;
	}
}

/* a is b, or an ancestor of b, by whole components. */
static bool ref_ancestor_or_self(const char *a, const char *b)
{
	size_t la = strlen(a);

	return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size), *other = strchr(s, '|');
	char err[256];
	bool clean;

	if (other)
		*other++ = '\0';
	clean = ref_clean(s);
	err[0] = '\0';
	FUZZ_CHECK((csi_path_check(s, NULL, err, sizeof(err)) == 0) == clean);
	FUZZ_CHECK(clean || err[0] != '\0');
	FUZZ_CHECK((csi_path_check(s, ROOT, err, sizeof(err)) == 0) ==
		   (clean && strncmp(s, ROOT "/", strlen(ROOT) + 1) == 0));
	if (other) {
		bool o = csi_path_overlaps(s, other);
		FUZZ_CHECK(o == csi_path_overlaps(other, s));
		if (clean && ref_clean(other))
			FUZZ_CHECK(o == (ref_ancestor_or_self(s, other) ||
					 ref_ancestor_or_self(other, s)));
	}
	free(s);
	return 0;
}
