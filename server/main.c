/* lanyard-server: the signing authority of one trust domain. `run` starts the daemon; the other
 * commands are clients of its admin socket (cli.c). */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "admin_api.h"
#include "admin_tls.h"
#include "bundle.h"
#include "bundle_endpoint.h"
#include "ca.h"
#include "cli.h"
#include "datastore.h"
#include "federation.h"
#include "k8s_api.h"
#include "k8s_bundle.h"
#include "k8s_reg.h"
#include "log.h"
#include "mem_trim.h"
#include "migrate.h"
#include "node_api.h"
#include "oidc.h"
#include "psat.h"
#include "server_config.h"
#include "server_http.h"
#include "signer.h"
#include "util.h"

/* How long an expired join token stays in the datastore before it is pruned. */
#define EXPIRED_TOKEN_KEEP_S (24 * 3600)

struct server {
	struct server_config cfg;
	uv_loop_t loop;
	struct datastore *ds;
	struct ca *ca;
	struct signer *signer; /* the process holding the CA keys */
	struct node_api *node;
	struct admin_api *admin;
	struct admin_tls *admin_tls; /* admin_bind_port; NULL when off */
	struct server_http *http;
	struct oidc *oidc;
	struct bundle_endpoint *bundle_ep;
	struct federation *fed;
	struct psat *psat;
	struct k8s_reg *reg; /* automatic registration from pods (optional) */
	/* The bundle ConfigMap publisher (optional): one publication in flight at a time. */
	struct k8s_api *k8s;
	char cm_ns[256], cm_name[256];
	uv_work_t publish_work;
	bool publishing, publish_again;
	int64_t next_publish;
	char *publish_pem;
	char publish_err[256];
	int publish_rc;
	bool publish_changed;
	uv_async_t changed;
	uv_timer_t tick;
	uv_signal_t sigterm, sigint, sigchld;
	int lock_fd;
	int64_t next_prune;
	/* The cluster: this server's record, refreshed every DS_SERVER_HEARTBEAT_S. */
	char server_uid[40];
	char node_address[320];
	int64_t started_at, next_heartbeat;
	bool heartbeat_failing;
	bool stopping;
	int64_t seen_bundle_seq; /* the CA's bundle sequence the node API last refreshed for */
	struct mem_trim mem_trim;
};

/* ---- admin API hooks (they run on the admin API's thread) ---- */

static int hook_bundle_pem(void *ud, char **out)
{
	struct server *s = ud;
	struct ca_bundle b;
	if (ca_bundle_get(s->ca, &b) < 0)
		return -1;
	*out = bundle_to_pem(b.x509, b.x509_len);
	ca_bundle_free(&b);
	return *out ? 0 : -1;
}

static int hook_bundle_json(void *ud, char **out)
{
	struct server *s = ud;
	struct ca_bundle b;
	if (ca_bundle_get(s->ca, &b) < 0)
		return -1;
	*out = bundle_to_spiffe_json(b.x509, b.x509_len, b.jwt, b.sequence, 300);
	ca_bundle_free(&b);
	return *out ? 0 : -1;
}

static int hook_mint_x509(void *ud, const char *spiffe_id, const char *const *dns, size_t n_dns,
			  const uint8_t *spki, size_t spki_len, int64_t ttl, uint8_t **chain,
			  size_t *chain_len, int64_t *not_after, char *err, size_t errlen)
{
	struct server *s = ud;
	return ca_sign_x509(s->ca, spiffe_id, dns, n_dns, spki, spki_len, ttl, now_unix(), chain,
			    chain_len, not_after, err, errlen);
}

static int hook_mint_jwt(void *ud, const char *spiffe_id, const char *const *aud, size_t n_aud,
			 int64_t ttl, char **token, int64_t *exp, char *err, size_t errlen)
{
	struct server *s = ud;
	return ca_sign_jwt(s->ca, spiffe_id, aud, n_aud, ttl, now_unix(), token, exp, err, errlen);
}

static void hook_changed(void *ud)
{
	struct server *s = ud;
	uv_async_send(&s->changed);
}

static void hook_fed_refresh(void *ud, const char *td)
{
	struct server *s = ud;
	federation_refresh(s->fed, td);
}

static void hook_fed_deleted(void *ud, const char *td)
{
	struct server *s = ud;
	federation_forget(s->fed, td);
}

static json_t *hook_fed_state(void *ud, const char *td)
{
	struct server *s = ud;
	return federation_state_json(s->fed, td);
}


/* ---- the bundle ConfigMap (Kubernetes), published from a worker thread ---- */

static void publish_work(uv_work_t *w)
{
	struct server *s = w->data;
	s->publish_rc = k8s_bundle_publish(s->k8s, s->cm_ns, s->cm_name,
					   s->cfg.k8s_bundle_configmap_key, s->publish_pem,
					   &s->publish_changed, s->publish_err,
					   sizeof(s->publish_err));
}

static void publish_bundle(struct server *s);

static void publish_done(uv_work_t *w, int status)
{
	struct server *s = w->data;
	s->publishing = false;
	free(s->publish_pem);
	s->publish_pem = NULL;
	if (status == 0 && s->publish_rc == 0) {
		if (s->publish_changed)
			log_info("bundle published to ConfigMap %s/%s", s->cm_ns, s->cm_name);
		s->next_publish = now_unix() + 300;
	} else {
		log_warnx("cannot publish the bundle to ConfigMap %s/%s (will retry): %s", s->cm_ns,
			 s->cm_name, status ? "cancelled" : s->publish_err);
		s->next_publish = now_unix() + 10;
	}
	if (s->publish_again && !s->stopping) {
		s->publish_again = false;
		publish_bundle(s);
	}
}

static void publish_bundle(struct server *s)
{
	if (!s->k8s || s->stopping)
		return;
	if (s->publishing) {
		s->publish_again = true;
		return;
	}
	if (hook_bundle_pem(s, &s->publish_pem) < 0)
		return;
	s->publishing = true;
	s->publish_work.data = s;
	if (uv_queue_work(&s->loop, &s->publish_work, publish_work, publish_done) != 0) {
		s->publishing = false;
		free(s->publish_pem);
		s->publish_pem = NULL;
	}
}

/* ---- the cluster ---- */

static bool uid_ok(const char *s, size_t len)
{
	if (len < 8 || len > 36)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || s[i] == '-'))
			return false;
	return true;
}

/* The id of this server in the cluster: data_dir/server_id, made once (a UUID). */
static int load_server_uid(struct server *s, char *err, size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/server_id", s->cfg.data_dir);
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = file_read_all(path, 64, &buf, &len);
	if (r == 0) {
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
			len--;
		bool ok = uid_ok((const char *)buf, len);
		if (ok)
			snprintf(s->server_uid, sizeof(s->server_uid), "%.*s", (int)len, buf);
		free(buf);
		return ok ? 0 : errorf(err, errlen, "%s: not a server id (delete it to make a new one)",
				       path);
	}
	if (r != -ENOENT)
		return errorf(err, errlen, "cannot read %s: %s", path, strerror(-r));
	if (uuid_v4(s->server_uid) < 0)
		return errorf(err, errlen, "cannot make a server id: no randomness");
	r = file_write_atomic(path, s->server_uid, strlen(s->server_uid), 0600);
	if (r < 0)
		return errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
	return 0;
}

/* host:port of the node API as other servers and operators should see it: the bind address,
 * or this host's name when it binds every address. */
static void node_address(struct server *s)
{
	const char *b = s->cfg.bind_address;
	char host[256];
	if (!*b || strcmp(b, "0.0.0.0") == 0 || strcmp(b, "::") == 0) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		b = host;
	}
	bool v6 = strchr(b, ':') != NULL;
	snprintf(s->node_address, sizeof(s->node_address), "%s%s%s:%d", v6 ? "[" : "", b,
		 v6 ? "]" : "", node_api_port(s->node));
}

/* On the loop, like the CA's calls: the record is one small upsert. */
static void heartbeat(struct server *s, int64_t now)
{
	struct ca_authority_info *auth = NULL;
	size_t n_auth = 0;
	ca_authorities(s->ca, &auth, &n_auth);
	free(auth);
	struct server_record r = {
		.id = s->server_uid,
		.address = s->node_address,
		.version = (char *)LANYARD_VERSION,
		.started_at = s->started_at,
		.authorities = (int64_t)n_auth,
	};
	int rc = ds_server_heartbeat(s->ds, &r);
	if (rc < 0 && !s->heartbeat_failing)
		log_warn("cluster: cannot record this server's heartbeat (will retry): %s",
			 strerror(-rc));
	else if (rc == 0 && s->heartbeat_failing)
		log_info("cluster: heartbeat recorded again");
	s->heartbeat_failing = rc < 0;
	s->next_heartbeat = now + DS_SERVER_HEARTBEAT_S;
}

/* ---- the loop ---- */

/* On a datastore thread. */
static void ds_changed(void *ud)
{
	struct server *s = ud;
	uv_async_send(&s->changed);
}

static void on_changed(uv_async_t *a)
{
	struct server *s = a->data;
	if (s->stopping)
		return;
	int64_t seq = ca_bundle_sequence(s->ca);
	if (ca_sync(s->ca, now_unix()) > 0 || seq != s->seen_bundle_seq) {
		/* Another server's authorities, or the operator's "authority" commands. */
		s->seen_bundle_seq = ca_bundle_sequence(s->ca);
		node_api_ca_changed(s->node); /* refreshes the streams too */
		publish_bundle(s);
	} else {
		node_api_refresh(s->node);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct server *s = t->data;
	int64_t now = now_unix();
	if (now >= ca_next_rotation(s->ca)) {
		char err[256];
		int r = ca_rotate(s->ca, now, err, sizeof(err));
		if (r < 0)
			log_error("CA rotation failed (will retry): %s", err);
		else if (r) {
			node_api_ca_changed(s->node);
			if (r & CA_CHANGED_BUNDLE)
				publish_bundle(s);
		}
	}
	/* Other servers' authorities (shared datastore): trusted as soon as they are published. */
	if (ca_sync(s->ca, now) > 0) {
		node_api_ca_changed(s->node);
		publish_bundle(s);
	}
	if (s->k8s && now >= s->next_publish)
		publish_bundle(s);
	oidc_reload_tls(s->oidc, now);
	bundle_endpoint_tick(s->bundle_ep, now);
	admin_tls_tick(s->admin_tls, now);
	if (now >= s->next_heartbeat)
		heartbeat(s, now);
	mem_trim_tick(&s->mem_trim, now);
	if (now >= s->next_prune) {
		/* An expired token is kept for a while, so that an agent presenting it is told
		 * "join token expired" rather than "unknown" (which would send its operator looking
		 * for a typo). */
		ds_token_prune(s->ds, now - EXPIRED_TOKEN_KEEP_S);
		s->next_prune = now + 60;
		/* Entries may have reached their expires_at: let the streams drop them. */
		node_api_refresh(s->node);
	}
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Every handle of struct server is initialised here, before anything can fail on the loop, so
 * that every exit path may close them all (uv_close on a handle never initialised aborts). */
static void init_loop(struct server *s)
{
	uv_loop_init(&s->loop);
	uv_async_init(&s->loop, &s->changed, on_changed);
	uv_timer_init(&s->loop, &s->tick);
	uv_signal_init(&s->loop, &s->sigterm);
	uv_signal_init(&s->loop, &s->sigint);
	uv_signal_init(&s->loop, &s->sigchld);
	s->changed.data = s->tick.data = s->sigterm.data = s->sigint.data = s->sigchld.data = s;
}

static void close_loop_handles(struct server *s)
{
	close_handle((uv_handle_t *)&s->changed);
	close_handle((uv_handle_t *)&s->tick);
	close_handle((uv_handle_t *)&s->sigterm);
	close_handle((uv_handle_t *)&s->sigint);
	close_handle((uv_handle_t *)&s->sigchld);
}

static void node_stopped(void *arg)
{
	struct server *s = arg;
	s->node = NULL;
	ds_set_change_hook(s->ds, NULL, NULL);
	close_loop_handles(s);
}

/* The signer process is the only child: without it the server cannot sign (signer.h). */
static void on_sigchld(uv_signal_t *sig, int signum)
{
	(void)signum;
	struct server *s = sig->data;
	signer_check(s->signer);
}

/* Signing runs on the node API's workers (UV_THREADPOOL_SIZE, 4 by default) plus the loop, the
 * admin API and the OIDC endpoint: a channel each, so no signature waits for another's. */
static size_t signer_channels(void)
{
	const char *e = getenv("UV_THREADPOOL_SIZE");
	long n = e ? strtol(e, NULL, 10) : 4;
	if (n < 1 || n > 1024)
		n = 4;
	return (size_t)n + 4;
}

static int start_signer(struct server *s, char *err, size_t errlen)
{
	enum key_type kt;
	char dir[PATH_MAX];
	key_type_parse(s->cfg.ca_key_type, &kt);
	snprintf(dir, sizeof(dir), "%s/ca", s->cfg.data_dir);
	struct signer_options so = {
		.key_dir = dir,
		.upstream_key_path = s->cfg.upstream_ca_key,
		.key_type = kt,
		.channels = signer_channels(),
	};
	return signer_start(&so, &s->signer, err, errlen);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct server *s = sig->data;
	if (s->stopping)
		return;
	s->stopping = true;
	log_info("received %s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	server_http_stop(s->http);
	s->http = NULL;
	oidc_stop(s->oidc);
	s->oidc = NULL;
	bundle_endpoint_stop(s->bundle_ep);
	s->bundle_ep = NULL;
	/* The admin API finishes its in-flight requests before it returns; its TLS listener first
	 * (it serves the API's routes). */
	admin_tls_stop(s->admin_tls);
	s->admin_tls = NULL;
	admin_api_stop(s->admin);
	s->admin = NULL;
	/* After the admin API (its hooks call the fetcher), before the loop ends (the fetcher
	 * wakes it). */
	federation_stop(s->fed);
	s->fed = NULL;
	uv_timer_stop(&s->tick);
	node_api_shutdown(s->node, node_stopped, s);
}

/* One server per data_dir: a second one would race the first on CA rotation. */
static int lock_data_dir(struct server *s, char *err, size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/server.lock", s->cfg.data_dir);
	s->lock_fd = lockfile_acquire(path, "lanyard-server", err, errlen);
	return s->lock_fd < 0 ? -1 : 0;
}

/* The optional listeners beside the operator endpoints: OIDC discovery and /metrics alone. */
static int start_side_listeners(struct server *s, char *err, size_t errlen)
{
	const struct server_config *c = &s->cfg;
	char why[384];
	if (c->oidc_discovery_port) {
		/* A relying party that caches the key set must still see a prepared key before it
		 * signs: the next authority is published a third of ca_ttl ahead. */
		int64_t max_age = c->ca_ttl / 6 < 300 ? c->ca_ttl / 6 : 300;
		struct oidc_options oo = {
			.address = c->oidc_discovery_address,
			.port = (int)c->oidc_discovery_port,
			.issuer = c->oidc_issuer,
			.cert_file = c->oidc_discovery_cert_file,
			.key_file = c->oidc_discovery_key_file,
			.ca = s->ca,
			.max_age_s = max_age,
		};
		if (oidc_start(&oo, &s->oidc, why, sizeof(why)) < 0)
			return errorf(err, errlen, "OIDC discovery: %s", why);
		server_http_set_oidc(s->http, s->oidc);
	}
	if (c->metrics_bind_port &&
	    server_http_metrics_listener(s->http, c->metrics_bind_address,
					 (int)c->metrics_bind_port, why, sizeof(why)) < 0)
		return errorf(err, errlen, "metrics listener (metrics_bind_address, "
			      "metrics_bind_port) %s:%lld: %s", c->metrics_bind_address,
			      (long long)c->metrics_bind_port, why);
	return 0;
}

/* The admin API over mutual TLS (admin_tls.h), when admin_bind_port is set. */
static int start_admin_tls(struct server *s)
{
	char err[512];
	if (s->cfg.admin_bind_port == 0)
		return 0;
	if (admin_tls_start(s->admin, s->ca, s->cfg.admin_bind_address,
			    (int)s->cfg.admin_bind_port, &s->admin_tls, err, sizeof(err)) < 0) {
		log_error("admin listener (admin_bind_address, admin_bind_port): %s", err);
		return -1;
	}
	return 0;
}

static int start_bundle_endpoint(struct server *s)
{
	char err[512];
	if (s->cfg.bundle_endpoint_port == 0)
		return 0;
	struct bundle_endpoint_options o = {
		.address = s->cfg.bundle_endpoint_address,
		.port = (int)s->cfg.bundle_endpoint_port,
		.trust_domain = s->cfg.trust_domain,
		.refresh_hint = s->cfg.bundle_endpoint_refresh_hint,
		.https_web = strcmp(s->cfg.bundle_endpoint_profile, "https_web") == 0,
		.cert_file = s->cfg.bundle_endpoint_cert_file,
		.key_file = s->cfg.bundle_endpoint_key_file,
	};
	if (bundle_endpoint_start(&o, s->ca, &s->bundle_ep, err, sizeof(err)) < 0) {
		log_error("bundle endpoint (bundle_endpoint_address, bundle_endpoint_port): %s", err);
		return -1;
	}
	log_info("bundle endpoint (%s) on https://%s:%d/", s->cfg.bundle_endpoint_profile,
		 s->cfg.bundle_endpoint_address, bundle_endpoint_port(s->bundle_ep));
	return 0;
}

/* The node API's workers build every SVID of a batch in a few short-lived blocks of 16-25 KB
 * (wolfSSL's Cert, the DER work buffer). With glibc's default trim threshold (128 KB, or its
 * adaptive value) a worker's arena shrank (madvise, a TLB shootdown on every core) after nearly
 * each batch and grew back (page faults) for the next: about a tenth of the server's CPU under
 * the issue benchmark. A fixed threshold keeps a few MB of free memory at the top of each arena;
 * resident memory still follows the largest batch in flight, not the number of SVIDs. */
static void tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
}

static int cmd_run(int argc, char **argv)
{
	const char *config_path = "/etc/lanyard/server.json";
	tune_malloc();
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: lanyard-server run [--config FILE]\n"
			       "  Starts the server (default config %s).\n", config_path);
			return 0;
		} else {
			fprintf(stderr, "lanyard-server run: unknown argument '%s'\n"
					"usage: lanyard-server run [--config FILE]\n", argv[i]);
			return 1;
		}
	}
	struct server *s = xcalloc(1, sizeof(*s));
	s->lock_fd = -1;
	char err[512];
	int ret = 1;
	bool loop_ready = false;
	if (server_config_load(config_path, &s->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-server: %s\n", err);
		goto out;
	}
	log_setup(log_level_parse(s->cfg.log_level), strcmp(s->cfg.log_format, "json") == 0);
	signal(SIGPIPE, SIG_IGN);

	int r = mkdir_p(s->cfg.data_dir, 0700);
	if (r < 0) {
		log_error("cannot create data_dir %s: %s", s->cfg.data_dir, strerror(-r));
		goto out;
	}
	if (lock_data_dir(s, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	/* First, while this process has no thread, no listener and no key: the keys are only ever
	 * in the signer's memory. */
	if (start_signer(s, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	if (load_server_uid(s, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	s->started_at = now_unix();
	if (datastore_open_config(s->cfg.database_type, s->cfg.data_dir,
				  s->cfg.database_connection_string,
				  (int)s->cfg.database_max_connections, &s->ds, err, sizeof(err)) < 0) {
		log_error("%s: %s", config_path, err);
		goto out;
	}
	enum key_type kt;
	key_type_parse(s->cfg.ca_key_type, &kt);
	struct ca_options co = {
		.signer = s->signer,
		.trust_domain = s->cfg.trust_domain,
		.data_dir = s->cfg.data_dir,
		.key_type = kt,
		.ca_ttl = s->cfg.ca_ttl,
		.upstream_cert_path = s->cfg.upstream_ca_cert,
		.upstream_key_path = s->cfg.upstream_ca_key,
		.shared = strcmp(s->cfg.database_type, "postgres") == 0,
		.jwt_issuer = s->cfg.oidc_issuer,
	};
	if (ca_open(&co, s->ds, now_unix(), &s->ca, err, sizeof(err)) < 0) {
		log_error("CA: %s", err);
		goto out;
	}

	init_loop(s);
	loop_ready = true;
	/* Changes made through other servers (PostgreSQL) wake the loop like the admin API's. */
	ds_set_change_hook(s->ds, ds_changed, s);
	s->fed = federation_start(s->ds, s->cfg.trust_domain, s->cfg.federation_web_ca_file,
				  hook_changed, s);
	if (!s->fed)
		goto out;
	struct admin_hooks hooks = {
		.ud = s,
		.trust_domain = s->cfg.trust_domain,
		.bundle_pem = hook_bundle_pem,
		.bundle_spiffe_json = hook_bundle_json,
		.changed = hook_changed,
		.fed_refresh = hook_fed_refresh,
		.fed_deleted = hook_fed_deleted,
		.fed_state = hook_fed_state,
		.default_token_ttl = s->cfg.join_token_ttl,
		.socket_group = s->cfg.admin_socket_group,
		.ca = s->ca,
		.mint_x509 = hook_mint_x509,
		.mint_jwt = hook_mint_jwt,
	};
	if (admin_api_start(s->cfg.admin_socket, s->ds, &hooks, &s->admin, err, sizeof(err)) < 0) {
		log_error("admin API on admin_socket %s: %s", s->cfg.admin_socket, err);
		goto out;
	}
	if (start_admin_tls(s) < 0)
		goto out;
	if (s->cfg.k8s_psat_cluster || s->cfg.k8s_bundle_configmap) {
		struct k8s_api_options ko = {
			.url = s->cfg.k8s_api_url,
			.token_path = s->cfg.k8s_api_token_path,
			.ca_path = s->cfg.k8s_api_ca_path,
			.insecure_skip_verify = s->cfg.k8s_api_insecure_skip_verify,
		};
		if (s->cfg.k8s_psat_cluster) {
			struct psat_options po = {
				.cluster = s->cfg.k8s_psat_cluster,
				.audience = s->cfg.k8s_psat_audience,
				.allowed_sas = s->cfg.k8s_psat_allowed_service_accounts.v,
				.n_allowed = s->cfg.k8s_psat_allowed_service_accounts.n,
				.api = ko,
			};
			s->psat = psat_new(&po, err, sizeof(err));
			if (!s->psat) {
				log_error("k8s_psat: %s", err);
				goto out;
			}
		}
		if (s->cfg.k8s_bundle_configmap) {
			if (k8s_bundle_parse_ref(s->cfg.k8s_bundle_configmap, s->cm_ns,
						 sizeof(s->cm_ns), s->cm_name, sizeof(s->cm_name),
						 err, sizeof(err)) < 0) {
				log_error("k8s_bundle_configmap: %s", err);
				goto out;
			}
			s->k8s = k8s_api_new(&ko, err, sizeof(err));
			if (!s->k8s) {
				log_error("k8s_bundle_configmap: %s", err);
				goto out;
			}
		}
	}
	struct node_api_options no = {
		.bind_address = s->cfg.bind_address,
		.port = (int)s->cfg.bind_port,
		.trust_domain = s->cfg.trust_domain,
		.default_x509_svid_ttl = s->cfg.default_x509_svid_ttl,
		.default_jwt_svid_ttl = s->cfg.default_jwt_svid_ttl,
		.agent_svid_ttl = s->cfg.agent_svid_ttl,
		.psat = s->psat,
		.max_connections = (unsigned)s->cfg.node_api_max_connections,
		.max_connections_per_source = (unsigned)s->cfg.node_api_max_connections_per_source,
		.max_handshakes = (unsigned)s->cfg.node_api_max_handshakes,
		.handshake_timeout_ms = (unsigned)s->cfg.node_api_handshake_timeout * 1000,
		.idle_timeout_ms = (unsigned)s->cfg.node_api_idle_timeout * 1000,
		.unauthenticated_max_message_size =
			(size_t)s->cfg.node_api_unauthenticated_max_message_size,
	};
	if (node_api_start(&s->loop, &no, s->ds, s->ca, &s->node, err, sizeof(err)) < 0) {
		/* grpc_server's message names the address and port already. */
		log_error("node API (bind_address, bind_port): %s", err);
		goto out;
	}
	if (server_http_start(&s->loop, s->cfg.http_address, (int)s->cfg.http_port, s->ds, s->ca,
			      &s->node, s->cfg.trust_domain, &s->http, err, sizeof(err)) < 0) {
		log_error("HTTP endpoints on http_address:http_port %s:%lld: %s",
			  s->cfg.http_address, (long long)s->cfg.http_port, err);
		goto out;
	}
	server_http_watch_storage(s->http, s->cfg.data_dir);
	if (start_side_listeners(s, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	server_http_set_federation(s->http, s->fed);
	server_http_set_admin_tls(s->http, s->admin_tls);
	if (start_bundle_endpoint(s) < 0)
		goto out;
	if (s->cfg.k8s_reg_rules.n > 0 || s->cfg.k8s_registration_crd) {
		struct k8s_reg_options ro = {
			.rules = &s->cfg.k8s_reg_rules,
			.trust_domain = s->cfg.trust_domain,
			.cluster = s->cfg.k8s_psat_cluster,
			.holder = s->server_uid,
			.crd = s->cfg.k8s_registration_crd,
			.resync_s = s->cfg.k8s_registration_resync,
			.api = {
				.url = s->cfg.k8s_api_url,
				.token_path = s->cfg.k8s_api_token_path,
				.ca_path = s->cfg.k8s_api_ca_path,
				.insecure_skip_verify = s->cfg.k8s_api_insecure_skip_verify,
				/* Lists come in pages of 500 pods. */
				.timeout_ms = 60000,
			},
			.ds = s->ds,
			.changed = hook_changed,
			.ud = s,
		};
		if (k8s_reg_start(&ro, &s->reg, err, sizeof(err)) < 0) {
			log_error("k8s_registration: %s", err);
			goto out;
		}
	}
	node_address(s);
	heartbeat(s, now_unix());
	uv_timer_start(&s->tick, on_tick, 1000, 1000);
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_start(&s->sigchld, on_sigchld, SIGCHLD);
	signer_check(s->signer); /* gone before the handler was set */

	log_info("lanyard-server %s: trust domain %s, node API on %s:%d, admin socket %s",
		 LANYARD_VERSION, s->cfg.trust_domain, s->cfg.bind_address, node_api_port(s->node),
		 s->cfg.admin_socket);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	log_info("lanyard-server stopped");
	ret = 0;
out:
	/* Its threads wake the loop (hook_changed): stopped before the loop's handles close. */
	k8s_reg_stop(s->reg);
	server_http_set_admin_tls(s->http, NULL);
	admin_tls_stop(s->admin_tls);
	admin_api_stop(s->admin);
	server_http_set_federation(s->http, NULL);
	federation_stop(s->fed);
	s->fed = NULL;
	if (loop_ready) {
		server_http_stop(s->http);
		s->http = NULL;
		oidc_stop(s->oidc);
		s->oidc = NULL;
		if (s->node) {
			node_api_shutdown(s->node, node_stopped, s);
			uv_run(&s->loop, UV_RUN_DEFAULT);
		}
		if (s->ds)
			ds_set_change_hook(s->ds, NULL, NULL);
		close_loop_handles(s);
		uv_run(&s->loop, UV_RUN_DEFAULT);
		uv_loop_close(&s->loop);
	}
	bundle_endpoint_stop(s->bundle_ep);
	psat_free(s->psat);
	k8s_api_free(s->k8s);
	free(s->publish_pem);
	ca_close(s->ca);
	signer_stop(s->signer);
	datastore_close(s->ds);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	server_config_free(&s->cfg);
	free(s);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lanyard-server <command> [options]\n"
		"\n"
		"  run --config FILE         start the server\n"
		"  token generate            create a join token for an agent\n"
		"  entry create|show|update|delete|count   manage registration entries\n"
		"  agent list|show|count|evict|ban        manage attested agents\n"
		"  bundle show               print the trust bundle\n"
		"  authority show|prepare|activate|taint|revoke   force a CA rotation, revoke an authority\n"
		"  federation create|list|show|update|delete|refresh   federate with other trust domains\n"
		"  server list               list the live servers sharing the database\n"
		"  datastore migrate --config NEW.json --from-sqlite PATH [--force]\n"
		"                            copy a stopped server's SQLite datastore into PostgreSQL\n"
		"  x509 mint --spiffe-id ID  mint an X509-SVID by hand\n"
		"  jwt mint --spiffe-id ID --audience A  mint a JWT-SVID by hand\n"
		"  healthcheck [--config FILE]  exit 0 when the server is ready (probes /ready)\n"
		"  version                   print the version\n"
		"\n"
		"Client commands take --socket PATH (default %s) and --output json.\n"
		"Run 'lanyard-server <command> --help' for a command's options.\n",
		ADMIN_SOCKET_DEFAULT);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "healthcheck") == 0)
		return server_healthcheck_main(argc - 1, argv + 1);
	if (strcmp(cmd, "datastore") == 0)
		return datastore_cmd_main(argc - 1, argv + 1);
	if (cli_is_command(cmd))
		return cli_main(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("lanyard-server %s\n", LANYARD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "lanyard-server: unknown command '%s'\n", cmd);
	usage(stderr);
	return 1;
}
