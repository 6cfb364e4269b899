/* csi.c: the CSI node plugin of lanyard-agent (see csi.h for the contract).
 *
 * One table lists the served calls with their request type and handler; a single on_request
 * unpacks the request, runs the handler and finishes the call: a handler returns a gRPC status
 * and, for OK, has sent its response. Refusals are logged once here, with the reason the caller
 * gets in grpc-message. Paths not in the table are answered UNIMPLEMENTED by grpc_server. */
#include "csi.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi_mount.h"
#include "grpc.h"
#include "grpc_server.h"
#include "log.h"
#include "unix_socket.h"
#include "util.h"

#include "csi/csi.pb-c.h"

#define DEFAULT_SOURCE_DIR "/run/lanyard/agent"
#define MAX_VOLUME_ID 256  /* the kubelet's are "csi-" and 64 hex digits */
#define MAX_REQUEST (64 * 1024)
#define MAX_CONNS 16       /* one kubelet, a registrar, probes */
#define SHUTDOWN_GRACE_MS 2000
#define POD_KEY_PREFIX "csi.storage.k8s.io/pod."
#define N_METHODS 7        /* csi_methods */

typedef Csi__V1__NodePublishVolumeRequest PublishRequest;
typedef Csi__V1__NodeUnpublishVolumeRequest UnpublishRequest;
typedef Csi__V1__VolumeCapability VolumeCapability;

struct csi_plugin {
	uv_loop_t *loop;
	struct grpc_server *server;
	struct stat sock_st;
	/* The grpc_server's method table (it must outlive the server): csi_methods' paths. */
	struct grpc_method methods[N_METHODS];
	char *socket_path, *source_dir, *node_id, *target_root, *driver_name;
	bool stopping;
};

/* ---- helpers ---- */

/* The gRPC code the CSI spec asks for each failure of csi_mount.h. */
static int status_of_errno(int r)
{
	switch (r) {
	case -EINVAL:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case -EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	case -ENOENT:
	case -ENOTDIR:
	case -ENOTEMPTY:
	case -EBUSY:
		return GRPC_STATUS_FAILED_PRECONDITION;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static int check_volume_id(const char *id, char *err, size_t errlen)
{
	if (!id[0])
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT, "volume_id is missing");
	if (strlen(id) > MAX_VOLUME_ID || has_control(id))
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "volume_id is longer than %d bytes or has control characters",
			          MAX_VOLUME_ID);
	return GRPC_STATUS_OK;
}

/* target_path: clean, absolute, below --target-root, and clear of the socket directory (a
 * target inside it would put a directory next to the agent's socket, one above it would hide
 * it). */
static int check_target(struct csi_plugin *p, const char *target, char *err, size_t errlen)
{
	char why[256];

	if (!target[0])
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT, "target_path is missing");
	if (csi_path_check(target, p->target_root, why, sizeof(why)) < 0)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT, "target_path: %s", why);
	if (csi_path_overlaps(target, p->source_dir))
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "target_path %s overlaps the workload socket directory %s", target,
			          p->source_dir);
	return GRPC_STATUS_OK;
}

/* A mounted directory, used by one node's pods: any single-node mode, or read-only by many. */
static int check_capability(const VolumeCapability *cap, char *err, size_t errlen)
{
	if (!cap)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "volume_capability is missing");
	if (cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "block access is not supported: the volume is a directory");
	if (cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "volume_capability has no access type (mount expected)");
	if (!cap->access_mode)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT, "access_mode is missing");
	switch (cap->access_mode->mode) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY:
		return GRPC_STATUS_OK;
	default:
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "access mode %d is not supported (single node, or read-only)",
			          (int)cap->access_mode->mode);
	}
}

static const char *context_value(const PublishRequest *r, const char *key)
{
	for (size_t i = 0; i < r->n_volume_context; i++)
		if (strcmp(r->volume_context[i]->key, key) == 0)
			return r->volume_context[i]->value;
	return NULL;
}

/* A volume_context value for the log: bounded, control characters shown as '?'. */
static void log_value(char *out, size_t outlen, const char *v)
{
	size_t i = 0;

	for (; v && v[i] && i + 1 < outlen; i++)
		out[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
	out[i] = '\0';
}

/* Sends the one response of a unary call: OK, or INTERNAL when the call is gone. */
static int respond(struct grpc_call *call, const ProtobufCMessage *resp, char *err, size_t errlen)
{
	if (grpc_call_send_pb(call, resp) < 0)
		return csi_errorf(err, errlen, GRPC_STATUS_INTERNAL, "cannot send the response");
	return GRPC_STATUS_OK;
}

/* ---- Identity ---- */

static int get_plugin_info(struct csi_plugin *p, struct grpc_call *call, const void *req,
			   char *err, size_t errlen)
{
	Csi__V1__GetPluginInfoResponse resp = CSI__V1__GET_PLUGIN_INFO_RESPONSE__INIT;

	resp.name = p->driver_name;
	resp.vendor_version = LANYARD_VERSION;
	return respond(call, &resp.base, err, errlen);
}

/* No capability: a node-only plugin (no Controller service, no topology). */
static int get_plugin_capabilities(struct csi_plugin *p, struct grpc_call *call, const void *req,
				   char *err, size_t errlen)
{
	Csi__V1__GetPluginCapabilitiesResponse resp = CSI__V1__GET_PLUGIN_CAPABILITIES_RESPONSE__INIT;

	return respond(call, &resp.base, err, errlen);
}

/* Ready while the socket directory is there: the agent's socket may come and go inside it (a
 * restart), the mounts follow it. */
static int probe(struct csi_plugin *p, struct grpc_call *call, const void *req, char *err,
		 size_t errlen)
{
	Csi__V1__ProbeResponse resp = CSI__V1__PROBE_RESPONSE__INIT;
	Google__Protobuf__BoolValue ready = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
	struct stat st;

	if (stat(p->source_dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return csi_errorf(err, errlen, GRPC_STATUS_FAILED_PRECONDITION,
			          "the workload socket directory %s is missing", p->source_dir);
	ready.value = true;
	resp.ready = &ready;
	return respond(call, &resp.base, err, errlen);
}

/* ---- Node ---- */

static int validate_publish(struct csi_plugin *p, const PublishRequest *r, char *err,
			    size_t errlen)
{
	const char *eph;
	int s;

	if ((s = check_volume_id(r->volume_id, err, errlen)) != GRPC_STATUS_OK ||
	    (s = check_target(p, r->target_path, err, errlen)) != GRPC_STATUS_OK ||
	    (s = check_capability(r->volume_capability, err, errlen)) != GRPC_STATUS_OK)
		return s;
	eph = context_value(r, CSI_EPHEMERAL_KEY);
	if (!eph || strcmp(eph, "true") != 0)
		return csi_errorf(err, errlen, GRPC_STATUS_INVALID_ARGUMENT,
			          "only ephemeral inline volumes are served (volume_context "
			          CSI_EPHEMERAL_KEY "=\"true\")");
	return GRPC_STATUS_OK;
}

static void log_published(const PublishRequest *r, bool already)
{
	char ns[128], name[256], uid[64];

	log_value(ns, sizeof(ns), context_value(r, POD_KEY_PREFIX "namespace"));
	log_value(name, sizeof(name), context_value(r, POD_KEY_PREFIX "name"));
	log_value(uid, sizeof(uid), context_value(r, POD_KEY_PREFIX "uid"));
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("volume_id", r->volume_id),
			     LOG_STR("target_path", r->target_path), LOG_STR("pod_namespace", ns),
			     LOG_STR("pod_name", name), LOG_STR("pod_uid", uid)),
		  "csi: %s volume %s at %s (pod %s/%s)",
		  already ? "already published" : "published", r->volume_id, r->target_path,
		  ns[0] ? ns : "?", name[0] ? name : "?");
}

/* Always read-only, whatever `readonly` says: workloads only connect to the socket, and a
 * read-only mount still lets them. */
static int node_publish_volume(struct csi_plugin *p, struct grpc_call *call, const void *req,
			       char *err, size_t errlen)
{
	const PublishRequest *r = req;
	Csi__V1__NodePublishVolumeResponse resp = CSI__V1__NODE_PUBLISH_VOLUME_RESPONSE__INIT;
	bool already;
	int s = validate_publish(p, r, err, errlen), rc;

	if (s != GRPC_STATUS_OK)
		return s;
	rc = csi_mount_publish(p->source_dir, r->target_path, &already, err, errlen);
	if (rc < 0)
		return status_of_errno(rc);
	log_published(r, already);
	return respond(call, &resp.base, err, errlen);
}

static int node_unpublish_volume(struct csi_plugin *p, struct grpc_call *call, const void *req,
				 char *err, size_t errlen)
{
	const UnpublishRequest *r = req;
	Csi__V1__NodeUnpublishVolumeResponse resp = CSI__V1__NODE_UNPUBLISH_VOLUME_RESPONSE__INIT;
	bool was;
	int s, rc;

	if ((s = check_volume_id(r->volume_id, err, errlen)) != GRPC_STATUS_OK ||
	    (s = check_target(p, r->target_path, err, errlen)) != GRPC_STATUS_OK)
		return s;
	rc = csi_mount_unpublish(p->source_dir, r->target_path, &was, err, errlen);
	if (rc < 0)
		return status_of_errno(rc);
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("volume_id", r->volume_id),
			     LOG_STR("target_path", r->target_path)),
		  "csi: unpublished volume %s from %s%s", r->volume_id, r->target_path,
		  was ? "" : " (was not mounted)");
	return respond(call, &resp.base, err, errlen);
}

/* No staging, no stats, no expansion: publish and unpublish only. */
static int node_get_capabilities(struct csi_plugin *p, struct grpc_call *call, const void *req,
				 char *err, size_t errlen)
{
	Csi__V1__NodeGetCapabilitiesResponse resp = CSI__V1__NODE_GET_CAPABILITIES_RESPONSE__INIT;

	return respond(call, &resp.base, err, errlen);
}

static int node_get_info(struct csi_plugin *p, struct grpc_call *call, const void *req,
			 char *err, size_t errlen)
{
	Csi__V1__NodeGetInfoResponse resp = CSI__V1__NODE_GET_INFO_RESPONSE__INIT;

	resp.node_id = p->node_id;
	return respond(call, &resp.base, err, errlen);
}

/* ---- dispatch ---- */

struct csi_method {
	const char *path;
	const ProtobufCMessageDescriptor *request;
	int (*handle)(struct csi_plugin *p, struct grpc_call *call, const void *req, char *err,
		      size_t errlen);
};

static const struct csi_method csi_methods[] = {
	{"/csi.v1.Identity/GetPluginInfo", &csi__v1__get_plugin_info_request__descriptor,
	 get_plugin_info},
	{"/csi.v1.Identity/GetPluginCapabilities",
	 &csi__v1__get_plugin_capabilities_request__descriptor, get_plugin_capabilities},
	{"/csi.v1.Identity/Probe", &csi__v1__probe_request__descriptor, probe},
	{"/csi.v1.Node/NodePublishVolume", &csi__v1__node_publish_volume_request__descriptor,
	 node_publish_volume},
	{"/csi.v1.Node/NodeUnpublishVolume", &csi__v1__node_unpublish_volume_request__descriptor,
	 node_unpublish_volume},
	{"/csi.v1.Node/NodeGetCapabilities", &csi__v1__node_get_capabilities_request__descriptor,
	 node_get_capabilities},
	{"/csi.v1.Node/NodeGetInfo", &csi__v1__node_get_info_request__descriptor, node_get_info},
};
_Static_assert(ARRAY_LEN(csi_methods) == N_METHODS, "N_METHODS is the size of csi_methods");

static const struct csi_method *find_method(const char *path)
{
	for (size_t i = 0; i < ARRAY_LEN(csi_methods); i++)
		if (strcmp(csi_methods[i].path, path) == 0)
			return &csi_methods[i];
	return NULL;
}

static void on_request(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct csi_plugin *p = grpc_server_ud(grpc_conn_server(grpc_call_conn(call)));
	const struct csi_method *m = find_method(grpc_call_path(call));
	ProtobufCMessage *req = NULL;
	char err[512] = "";
	int status;

	if (!m) {
		status = csi_errorf(err, sizeof(err), GRPC_STATUS_UNIMPLEMENTED, "unknown method");
	} else if (p->stopping) {
		status = csi_errorf(err, sizeof(err), GRPC_STATUS_UNAVAILABLE, "the plugin is stopping");
	} else if (!(req = protobuf_c_message_unpack(m->request, NULL, len, msg))) {
		status = csi_errorf(err, sizeof(err), GRPC_STATUS_INVALID_ARGUMENT,
				    "malformed request message");
	} else {
		status = m->handle(p, call, req, err, sizeof(err));
	}
	if (status != GRPC_STATUS_OK)
		log_warnx("csi: %s refused with %s: %s", grpc_call_path(call),
			  grpc_status_name(status), err);
	else
		log_debug("csi: %s answered", grpc_call_path(call));
	grpc_call_finish(call, status, status == GRPC_STATUS_OK ? NULL : err);
	if (req)
		protobuf_c_message_free_unpacked(req, NULL);
}

/* Only the kubelet (root) and our own uid: whoever may call NodePublishVolume mounts as root. */
static int on_connect(struct grpc_conn *conn, int fd)
{
	struct ucred cred;
	socklen_t sl = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) < 0) {
		log_warn("csi: SO_PEERCRED");
		return -1;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		log_warnx("csi: refused a connection from uid %u (pid %d): only root may call",
			  (unsigned)cred.uid, (int)cred.pid);
		return -1;
	}
	return 0;
}

/* ---- lifecycle ---- */

static void plugin_free(struct csi_plugin *p)
{
	if (!p)
		return;
	free(p->socket_path);
	free(p->source_dir);
	free(p->node_id);
	free(p->target_root);
	free(p->driver_name);
	free(p);
}

static void on_server_done(void *arg)
{
	plugin_free(arg);
}

static char *default_node_id(void)
{
	char host[HOST_NAME_MAX + 1];
	const char *env = getenv("NODE_NAME");

	if (env && *env)
		return xstrdup(env);
	if (gethostname(host, sizeof(host)) < 0)
		return xstrdup("unknown");
	host[HOST_NAME_MAX] = '\0';
	return xstrdup(host);
}

/* The socket directory, created when missing and resolved, so that targets are compared with
 * the path the kernel reports. */
static int prepare_source(struct csi_plugin *p, const char *dir, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;
	int r;

	if (dir[0] != '/')
		return errorf(err, errlen, "--workload-socket-dir %s: not an absolute path", dir);
	/* In a container the directory is usually a read-only mount: only create what is missing. */
	r = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : mkdir_p(dir, 0755);
	if (r < 0)
		return errorf(err, errlen, "--workload-socket-dir %s: %s", dir, strerror(-r));
	if (!realpath(dir, real))
		return errorf(err, errlen, "--workload-socket-dir %s: %s", dir, strerror(errno));
	p->source_dir = xstrdup(real);
	return 0;
}

static int copy_opts(struct csi_plugin *p, const struct csi_opts *o, char *err, size_t errlen)
{
	char why[256];

	if (!o->socket_path || !o->socket_path[0])
		return errorf(err, errlen, "no CSI socket path (--csi-socket or CSI_ENDPOINT)");
	if (o->target_root && csi_path_check(o->target_root, NULL, why, sizeof(why)) < 0)
		return errorf(err, errlen, "--target-root: %s", why);
	if (prepare_source(p, o->source_dir ? o->source_dir : DEFAULT_SOURCE_DIR, err, errlen) < 0)
		return -1;
	p->socket_path = xstrdup(o->socket_path);
	p->node_id = o->node_id && *o->node_id ? xstrdup(o->node_id) : default_node_id();
	p->target_root = o->target_root ? xstrdup(o->target_root) : NULL;
	p->driver_name = xstrdup(o->driver_name ? o->driver_name : CSI_DRIVER_NAME);
	return 0;
}

int csi_start(uv_loop_t *loop, const struct csi_opts *o, struct csi_plugin **out, char *err,
	      size_t errlen)
{
	struct unix_socket_opts so = {.who = "lanyard-agent csi", .log_prefix = "csi",
				      .dir_mode = 0750, .mode = 0600, .backlog = 16,
				      .nonblock = true};
	struct csi_plugin *p = xcalloc(1, sizeof(*p));
	struct grpc_server_config gc = {
		.methods = p->methods, .n_methods = N_METHODS, .on_connect = on_connect,
		.max_message_size = MAX_REQUEST, .max_conns = MAX_CONNS, .ud = p};
	int fd;

	*out = NULL;
	p->loop = loop;
	for (size_t i = 0; i < N_METHODS; i++)
		p->methods[i] = (struct grpc_method){.path = csi_methods[i].path,
						     .on_request = on_request};
	if (copy_opts(p, o, err, errlen) < 0)
		goto fail;
	fd = unix_socket_listen(p->socket_path, &so, &p->sock_st, err, errlen);
	if (fd < 0)
		goto fail;
	if (grpc_server_listen_fd(loop, fd, NULL, &gc, &p->server, err, errlen) < 0) {
		unix_socket_remove(p->socket_path, &p->sock_st);
		goto fail;
	}
	log_info("csi: driver %s on %s: node %s, publishes %s read-only%s%s", p->driver_name,
		 p->socket_path, p->node_id, p->source_dir, p->target_root ? " below " : "",
		 p->target_root ? p->target_root : "");
	*out = p;
	return 0;
fail:
	plugin_free(p);
	return -1;
}

void csi_stop(struct csi_plugin *p)
{
	if (!p || p->stopping)
		return;
	p->stopping = true;
	unix_socket_remove(p->socket_path, &p->sock_st);
	grpc_server_shutdown(p->server, SHUTDOWN_GRACE_MS, on_server_done, p);
}

/* ---- the `csi` command ---- */

struct csi_cmd {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	struct csi_plugin *plugin;
};

static void on_signal(uv_signal_t *sig, int signum)
{
	struct csi_cmd *c = sig->data;

	log_info("csi: received %s: stopping (mounts stay)", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	csi_stop(c->plugin);
	c->plugin = NULL;
	uv_close((uv_handle_t *)&c->sigterm, NULL);
	uv_close((uv_handle_t *)&c->sigint, NULL);
}

static int csi_usage(FILE *f)
{
	fprintf(f,
		"usage: lanyard-agent csi --csi-socket PATH [--workload-socket-dir DIR]\n"
		"                         [--node-id ID] [--target-root DIR] [--driver-name NAME]\n"
		"                         [--log-level LEVEL] [--log-format text|json]\n"
		"  --csi-socket PATH         the plugin's gRPC socket (default: $CSI_ENDPOINT)\n"
		"  --workload-socket-dir DIR the agent's socket directory, bind-mounted read-only\n"
		"                            into pods (default " DEFAULT_SOURCE_DIR ")\n"
		"  --node-id ID              NodeGetInfo's node ID (default $NODE_NAME, else the "
		"host name)\n"
		"  --target-root DIR         refuse target paths outside DIR (e.g. "
		"/var/lib/kubelet/pods)\n"
		"  --driver-name NAME        default " CSI_DRIVER_NAME "\n");
	return f == stdout ? 0 : 1;
}

struct csi_args {
	struct csi_opts o;
	const char *log_level, *log_format;
};

/* 0, 1 for --help, -1 on a usage error (printed). */
static int parse_args(int argc, char **argv, struct csi_args *a)
{
	static const char *const names[] = {"--csi-socket", "--workload-socket-dir", "--node-id",
					    "--target-root", "--driver-name", "--log-level",
					    "--log-format"};
	const char **slots[] = {&a->o.socket_path, &a->o.source_dir, &a->o.node_id,
				&a->o.target_root, &a->o.driver_name, &a->log_level,
				&a->log_format};

	for (int i = 1; i < argc; i++) {
		size_t k = 0;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return csi_usage(stdout) == 0 ? 1 : -1;
		for (; k < ARRAY_LEN(names); k++) {
			size_t n = strlen(names[k]);

			if (strcmp(argv[i], names[k]) == 0 && i + 1 < argc) {
				*slots[k] = argv[++i];
				break;
			}
			if (strncmp(argv[i], names[k], n) == 0 && argv[i][n] == '=') {
				*slots[k] = argv[i] + n + 1;
				break;
			}
		}
		if (k == ARRAY_LEN(names)) {
			fprintf(stderr, "lanyard-agent csi: unknown argument '%s'\n", argv[i]);
			csi_usage(stderr);
			return -1;
		}
	}
	if (!a->o.socket_path) {
		const char *ep = getenv("CSI_ENDPOINT");

		if (ep && strncmp(ep, "unix://", 7) == 0)
			ep += 7;
		a->o.socket_path = ep;
	}
	return 0;
}

int csi_main(int argc, char **argv)
{
	struct csi_args a = {.log_level = "info", .log_format = "text"};
	struct csi_cmd c = {0};
	char err[512];
	int level, pr = parse_args(argc, argv, &a);

	if (pr != 0)
		return pr > 0 ? 0 : 1;
	level = log_level_parse(a.log_level);
	if (level < 0 || (strcmp(a.log_format, "text") != 0 && strcmp(a.log_format, "json") != 0)) {
		fprintf(stderr, "lanyard-agent csi: bad --log-level '%s' or --log-format '%s'\n",
			a.log_level, a.log_format);
		return 1;
	}
	log_setup((enum log_level)level, strcmp(a.log_format, "json") == 0);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&c.loop);
	if (csi_start(&c.loop, &a.o, &c.plugin, err, sizeof(err)) < 0) {
		log_error("csi: %s", err);
		uv_loop_close(&c.loop);
		return 1;
	}
	uv_signal_init(&c.loop, &c.sigterm);
	uv_signal_init(&c.loop, &c.sigint);
	c.sigterm.data = c.sigint.data = &c;
	uv_signal_start(&c.sigterm, on_signal, SIGTERM);
	uv_signal_start(&c.sigint, on_signal, SIGINT);
	uv_run(&c.loop, UV_RUN_DEFAULT);
	uv_loop_close(&c.loop);
	log_info("csi: stopped");
	return 0;
}
