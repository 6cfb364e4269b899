/* cgroup.h: which Kubernetes pod and container a process runs in, from the text of its
 * /proc/<pid>/cgroup file.
 *
 * The cgroup file is written by the kernel and a container cannot rewrite it without write access
 * to the cgroup hierarchy, unlike mountinfo, which a workload can shape with its own mounts. The
 * formats understood (cgroup v1 and v2, cgroupfs and systemd drivers, docker, containerd, CRI-O,
 * and paths seen through a cgroup namespace):
 *   /kubepods/burstable/pod<uid>/<64hex>
 *   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/
 *       docker-<64hex>.scope          (also crio-<64hex>.scope, cri-containerd-<64hex>.scope)
 *   /kubepods-besteffort-pod<uid_with_underscores>.slice:cri-containerd:<64hex>
 *   /docker/<64hex>/kubepods/besteffort/pod<uid>/<64hex>     (kind: a node inside docker)
 *   /../../pod<uid>/<64hex>           (cgroup namespace)
 *   /../crio-<64hex>.scope            (cgroup namespace; the pod is not visible) */
#ifndef LANYARD_CGROUP_H
#define LANYARD_CGROUP_H

#include <stddef.h>

#define CGROUP_POD_UID_LEN 36       /* 8-4-4-4-12 (static pods: 32 hex digits) */
#define CGROUP_CONTAINER_ID_LEN 64  /* lower-case hex */

struct cgroup_k8s {
	/* Lower case with dashes, or 32 hex digits for a static pod; "" when the path hides it. */
	char pod_uid[CGROUP_POD_UID_LEN + 1];
	char container_id[CGROUP_CONTAINER_ID_LEN + 1]; /* lower-case hex */
};

/* Parses one cgroup path (the third field of a line). Returns 1 when it names a container of a
 * pod (out filled; pod_uid may be "" for the cgroup-namespace CRI-O form), 0 when it does not,
 * and -1 (with a reason in err) when it is ambiguous: pod cgroups nested inside a pod, which only
 * a process that can write the cgroup hierarchy could build. */
int cgroup_k8s_parse_path(const char *path, size_t len, struct cgroup_k8s *out, char *err,
			  size_t errlen);

/* Parses the whole file ("hierarchy-ID:controller-list:cgroup-path" lines). Returns 1 with out
 * filled when the process is in a Kubernetes container, 0 when it is not (a host process, a
 * plain docker container), or -1 with a reason in err when a line is malformed or two lines name
 * different containers or pods. */
int cgroup_k8s_parse(const char *text, size_t len, struct cgroup_k8s *out, char *err,
		     size_t errlen);

#endif
