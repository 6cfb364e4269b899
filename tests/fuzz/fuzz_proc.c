/* fuzz_proc: the agent's readers of /proc files (agent/attestor.h proc_stat_start_time, and
 * agent/cgroup.h). A workload chooses its own comm (the stat file's second field, which may hold
 * spaces and parentheses) and, with a cgroup namespace, shapes what it sees of its cgroup paths.
 *
 * The first input byte chooses ('0'..'2' in the seed files): 0 a stat file, 1 a whole cgroup
 * file, 2 one cgroup path. */
#include <stdint.h>
#include <string.h>

#include "attestor.h"
#include "cgroup.h"
#include "fuzz.h"

static void check_k8s(const struct cgroup_k8s *k)
{
	/* "" (not shown), 8-4-4-4-12 lower-case hex, or 32 hex digits (a static pod's UID). */
	size_t ul = strnlen(k->pod_uid, sizeof(k->pod_uid));
	FUZZ_CHECK(ul == 0 || ul == 32 || ul == CGROUP_POD_UID_LEN);
	for (size_t i = 0; i < ul; i++) {
		char c = k->pod_uid[i];
		if (ul == CGROUP_POD_UID_LEN && (i == 8 || i == 13 || i == 18 || i == 23))
			FUZZ_CHECK(c == '-');
		else
			FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
	}
	FUZZ_CHECK(strnlen(k->container_id, sizeof(k->container_id)) == CGROUP_CONTAINER_ID_LEN);
	for (size_t i = 0; i < CGROUP_CONTAINER_ID_LEN; i++) {
		char c = k->container_id[i];
		FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 3;
	/* An exact-size copy (no NUL after it): the parsers take a length and must keep to it. */
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	struct cgroup_k8s k;
	char err[256] = "";
	uint64_t st;
	int r;

	switch (mode) {
	case 0:
		if (proc_stat_start_time(p, n, &st) == 0) {
			/* The value came from the text: it has at least as many digits. */
			FUZZ_CHECK(n > 0);
		}
		break;
	case 1:
		memset(&k, 0, sizeof(k));
		r = cgroup_k8s_parse(p, n, &k, err, sizeof(err));
		FUZZ_CHECK(r >= -1 && r <= 1);
		if (r == 1)
			check_k8s(&k);
		else if (r < 0)
			FUZZ_CHECK(err[0] != '\0');
		break;
	case 2:
		memset(&k, 0, sizeof(k));
		r = cgroup_k8s_parse_path(p, n, &k, err, sizeof(err));
		FUZZ_CHECK(r >= -1 && r <= 1);
		if (r == 1)
			check_k8s(&k);
		else if (r < 0)
			FUZZ_CHECK(err[0] != '\0');
		break;
	}
	return 0;
}
