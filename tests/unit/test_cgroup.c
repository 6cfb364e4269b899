/* Unit tests for agent/cgroup.c: pod UID and container ID from /proc/<pid>/cgroup in every
 * format of SPIFFE-NOTES.md, non-Kubernetes processes, and malformed or forged files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"
#include "util.h"

#define CID "57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2e"
#define CID2 "6a466717d7e73da70c6bd9d00356ffec0724943325165528d1038d6e7922f5e3"
#define UID "8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d"
#define UID_ "8d2f3b1a_6c4e_4f7a_9b2d_3e5f7a9c1b4d"
#define UID2 "c3d4e5f6-a7b8-49c0-8d1e-2f3a4b5c6d7e"
#define STATIC_UID "e4f6bd5a2fb5c8e5c2d3f1a4b6c8d0e2"

static int parse(const char *text, struct cgroup_k8s *out, char *err, size_t errlen)
{
	return cgroup_k8s_parse(text, strlen(text), out, err, errlen);
}

/* Expects text to parse as pod uid (may be "") and container cid. */
static void expect(const char *text, const char *uid, const char *cid)
{
	struct cgroup_k8s k;
	char err[256] = "";
	int r = parse(text, &k, err, sizeof(err));

	if (r != 1)
		fail_msg("\"%s\": expected a match, got %d (%s)", text, r, err);
	assert_string_equal(k.pod_uid, uid);
	assert_string_equal(k.container_id, cid);
}

static void expect_none(const char *text)
{
	struct cgroup_k8s k;
	char err[256] = "";
	int r = parse(text, &k, err, sizeof(err));

	if (r != 0)
		fail_msg("\"%s\": expected no match, got %d (%s)", text, r, err);
	assert_string_equal(k.container_id, "");
}

static void expect_error(const char *text, size_t len, const char *msg_part)
{
	struct cgroup_k8s k;
	char err[256] = "";

	if (len == SIZE_MAX)
		len = strlen(text);
	assert_int_equal(cgroup_k8s_parse(text, len, &k, err, sizeof(err)), -1);
	if (!strstr(err, msg_part))
		fail_msg("error \"%s\" does not mention \"%s\"", err, msg_part);
}

static char *fixture(const char *name)
{
	char dir[4096], path[4400];
	uint8_t *buf;
	size_t len;

	snprintf(dir, sizeof(dir), "%s", __FILE__);
	snprintf(path, sizeof(path), "%s/../integration/fixtures/k8s/cgroup/%s", dirname(dir), name);
	if (file_read_all(path, 1 << 20, &buf, &len) < 0)
		fail_msg("cannot read %s", path);
	return (char *)buf;
}

static void expect_fixture(const char *name, const char *uid, const char *cid)
{
	char *t = fixture(name);

	expect(t, uid, cid);
	free(t);
}

static void cgroup_v1_cgroupfs(void **state)
{
	expect_fixture("v1-cgroupfs-containerd.txt", UID, CID);
	expect("12:pids:/kubepods/burstable/pod" UID "/" CID "\n", UID, CID);
	/* Guaranteed pods have no QoS level in the path. */
	expect("4:memory:/kubepods/pod" UID "/" CID "\n", UID, CID);
	/* No trailing newline. */
	expect("0::/kubepods/besteffort/pod" UID "/" CID, UID, CID);
}

static void cgroup_systemd_slices(void **state)
{
	expect_fixture("v1-systemd-docker.txt", UID, CID);
	expect_fixture("v2-systemd-containerd.txt", UID, CID);
	expect_fixture("v2-systemd-crio.txt", UID, CID);
	expect("0::/kubepods.slice/kubepods-pod" UID_ ".slice/cri-containerd-" CID ".scope\n", UID,
	       CID);
	/* containerd's systemd cgroup paths in the "slice:prefix:id" form. */
	expect("11:memory:/kubepods-besteffort-pod" UID_ ".slice:cri-containerd:" CID "\n", UID, CID);
	expect("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
	       ".slice:cri-containerd:" CID "\n",
	       UID, CID);
}

static void cgroup_namespaces(void **state)
{
	expect_fixture("v2-cgroupns-cgroupfs.txt", UID, CID);
	expect("0::/../../kubepods-besteffort-pod" UID_ ".slice/cri-containerd-" CID ".scope\n", UID,
	       CID);
	/* CRI-O seen from a sibling's namespace: no pod in the path, the container is enough. */
	expect("0::/../crio-" CID ".scope\n", "", CID);
	expect("0::/../../cri-containerd-" CID ".scope\n", "", CID);
}

static void cgroup_kind_and_static(void **state)
{
	/* A kind node is itself a docker container: the node's ID comes first. */
	expect("5:cpu,cpuacct:/docker/" CID2 "/kubepods/besteffort/pod" UID "/" CID "\n", UID, CID);
	/* Static pods have a 32-digit UID (the hash of their manifest). */
	expect("0::/kubepods/burstable/pod" STATIC_UID "/" CID "\n", STATIC_UID, CID);
	expect("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" STATIC_UID
	       ".slice/cri-containerd-" CID ".scope\n",
	       STATIC_UID, CID);
}

static void cgroup_hybrid_lines_agree(void **state)
{
	/* In hybrid mode the unified line may show "/" while v1 lines show the container. */
	expect("3:cpuset:/kubepods/pod" UID "/" CID "\n0::/\n", UID, CID);
	/* One line hides the pod (cgroup namespace), another shows it: the UID is kept. */
	expect("1:name=systemd:/../crio-" CID ".scope\n0::/kubepods/pod" UID "/crio-" CID ".scope\n",
	       UID, CID);
}

static void cgroup_not_kubernetes(void **state)
{
	expect_none("0::/user.slice/user-1000.slice/session-3.scope\n");
	expect_none("0::/system.slice/containerd.service\n");
	expect_none("0::/\n");
	expect_none("");
	expect_none("\n\n");
	/* Plain docker, cgroupfs and systemd drivers, not in a pod. */
	expect_none("12:pids:/docker/" CID "\n1:name=systemd:/docker/" CID "\n");
	expect_none("0::/system.slice/docker-" CID ".scope\n");
	/* A process in the pod's cgroup itself, not in one of its containers. */
	expect_none("0::/kubepods/burstable/pod" UID "\n");
	expect_none("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
		    ".slice\n");
	/* A bare ID under a cgroup namespace, with no runtime prefix: not a layout we know. */
	expect_none("0::/../" CID "\n");
	/* Near misses: 63 and 65 hex digits, upper case, a bad separator, "xpod". */
	expect_none("0::/kubepods/pod" UID "/" "57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2\n");
	expect_none("0::/kubepods/pod" UID "/a" CID "\n");
	expect_none("0::/kubepods/pod" UID "/57AD2393E04AAAA660C9A27225DEAEE5264F2857495F766B512DD1FCF8B1FF2E\n");
	expect_none("0::/kubepods/pod8d2f3b1a-6c4e_4f7a-9b2d-3e5f7a9c1b4d/" CID "\n");
	expect_none("0::/kubepods/xpod" UID "/" CID "\n");
	expect_none("0::/kubepods/pod" UID "/docker_" CID ".scope\n");
	expect_none("0::/kubepods/pod" UID "/DOCKER-" CID ".scope\n");
	/* A pod in the path, but not right above the container. */
	expect_none("0::/kubepods/pod" UID "/sub/" CID "\n");
}

static void cgroup_malformed(void **state)
{
	static const char nul[] = "0::/kubepods/pod" UID "/" CID "\0\n";

	expect_error("garbage\n", 8, "line 1 is malformed");
	expect_error("0::/\n12pids/kubepods\n", 21, "line 2 is malformed");
	expect_error(":cpu:/x\n", 8, "malformed");
	expect_error("a:cpu:/x\n", 9, "hierarchy ID");
	expect_error("0::relative/path\n", 17, "malformed");
	expect_error("0::\n", 4, "malformed");
	expect_error(nul, sizeof(nul) - 1, "NUL");
}

static void cgroup_forged_or_conflicting(void **state)
{
	/* A pod cgroup nested inside a pod's container: only a process that can write the
	 * hierarchy could make it, and it must not be read as the inner pod. */
	expect_error("0::/kubepods/burstable/pod" UID "/" CID "/pod" UID2 "/" CID2 "\n", SIZE_MAX,
		     "nested");
	/* Two lines for two different containers or pods. */
	expect_error("4:memory:/kubepods/pod" UID "/" CID "\n3:cpu:/kubepods/pod" UID "/" CID2 "\n",
		     SIZE_MAX, "line 2");
	expect_error("4:memory:/kubepods/pod" UID "/" CID "\n3:cpu:/kubepods/pod" UID2 "/" CID "\n",
		     SIZE_MAX, "another container or pod");
}

static void cgroup_path_api(void **state)
{
	struct cgroup_k8s k;
	char err[128];
	const char *p = "/kubepods/besteffort/pod" UID "/" CID;

	assert_int_equal(cgroup_k8s_parse_path(p, strlen(p), &k, err, sizeof(err)), 1);
	assert_string_equal(k.pod_uid, UID);
	/* The length is honoured: a path cut before the ID does not match. */
	assert_int_equal(cgroup_k8s_parse_path(p, strlen(p) - 1, &k, err, sizeof(err)), 0);
	assert_int_equal(cgroup_k8s_parse_path("", 0, &k, err, sizeof(err)), 0);
	assert_int_equal(cgroup_k8s_parse_path("relative", 8, &k, err, sizeof(err)), 0);
}

/* Every prefix of every fixture line and random bytes parse without crashing (ASan checks
 * the reads stay inside the given length). */
static void cgroup_truncations_and_noise(void **state)
{
	static const char *const names[] = {"v1-cgroupfs-containerd.txt", "v1-systemd-docker.txt",
					    "v2-systemd-containerd.txt", "v2-systemd-crio.txt",
					    "v2-cgroupns-cgroupfs.txt"};
	struct cgroup_k8s k;
	char err[256];

	for (size_t f = 0; f < ARRAY_LEN(names); f++) {
		char *t = fixture(names[f]);
		size_t n = strlen(t);

		for (size_t i = 0; i <= n; i++) {
			char *copy = malloc(i ? i : 1);

			memcpy(copy, t, i);
			int r = cgroup_k8s_parse(copy, i, &k, err, sizeof(err));
			assert_true(r >= -1 && r <= 1);
			free(copy);
		}
		free(t);
	}
	srand(42);
	for (int round = 0; round < 2000; round++) {
		char buf[256];
		size_t n = (size_t)(rand() % (int)sizeof(buf));

		for (size_t i = 0; i < n; i++) {
			static const char alphabet[] = "0123456789abcdef-_:/.podkube\n";
			buf[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
		}
		char *copy = malloc(n ? n : 1);
		memcpy(copy, buf, n);
		int r = cgroup_k8s_parse(copy, n, &k, err, sizeof(err));
		assert_true(r >= -1 && r <= 1);
		free(copy);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cgroup_v1_cgroupfs),
		cmocka_unit_test(cgroup_systemd_slices),
		cmocka_unit_test(cgroup_namespaces),
		cmocka_unit_test(cgroup_kind_and_static),
		cmocka_unit_test(cgroup_hybrid_lines_agree),
		cmocka_unit_test(cgroup_not_kubernetes),
		cmocka_unit_test(cgroup_malformed),
		cmocka_unit_test(cgroup_forged_or_conflicting),
		cmocka_unit_test(cgroup_path_api),
		cmocka_unit_test(cgroup_truncations_and_noise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
