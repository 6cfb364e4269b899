/* csi.h: `lanyard-agent csi`, a CSI node plugin that hands the Workload API socket to pods
 * without a hostPath volume.
 *
 * Serves the CSI v1 Identity service (GetPluginInfo, GetPluginCapabilities, Probe) and the Node
 * calls of a plugin without staging (NodePublishVolume, NodeUnpublishVolume,
 * NodeGetCapabilities, NodeGetInfo) over gRPC on its own Unix socket (0600, callers must be root
 * or our uid, checked with SO_PEERCRED: the kubelet). NodePublishVolume accepts only ephemeral
 * inline volumes (volume_context "csi.storage.k8s.io/ephemeral" = "true", mount access type)
 * and bind-mounts the agent's socket directory read-only onto the target path (csi_mount.h);
 * NodeUnpublishVolume undoes it. Both are idempotent and stateless, so a restarted plugin
 * serves the volumes of the one before. Every other request gets the CSI/gRPC code the spec
 * names (INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION, UNIMPLEMENTED...) and mounts
 * nothing. Stopping leaves the mounts in place: the pods using them keep running.
 *
 * Threading: everything on the loop thread; mount calls block it for a moment. */
#ifndef LANYARD_CSI_H
#define LANYARD_CSI_H

#include <stddef.h>

#include <uv.h>

#define CSI_DRIVER_NAME "csi.lanyard.dev"
/* The volume_context key and value the kubelet sets for an ephemeral inline volume. */
#define CSI_EPHEMERAL_KEY "csi.storage.k8s.io/ephemeral"

struct csi_plugin;

struct csi_opts {
	const char *socket_path; /* the plugin's gRPC socket (--csi-socket) */
	const char *source_dir;  /* the agent's socket directory (--workload-socket-dir); created
				    0755 when missing */
	const char *node_id;     /* NodeGetInfo; NULL: $NODE_NAME, else the host name */
	const char *target_root; /* target paths must lie below it; NULL: anywhere */
	const char *driver_name; /* NULL: CSI_DRIVER_NAME */
};

/* Starts serving. 0, or -1 with the reason in err (nothing left behind). */
int csi_start(uv_loop_t *loop, const struct csi_opts *o, struct csi_plugin **out, char *err,
	      size_t errlen);
/* Stops accepting, removes the socket, frees p once its handles are closed (the loop must keep
 * running). Mounts stay. NULL-safe. */
void csi_stop(struct csi_plugin *p);

/* `lanyard-agent csi ...`: argv[0] is "csi". Runs until SIGTERM or SIGINT; the exit status. */
int csi_main(int argc, char **argv);

#endif
