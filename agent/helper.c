/* helper.c: the file helper (see helper.h).
 *
 * Threads: a watch thread follows FetchX509SVID (common/workload_client) and, for every message,
 * writes the files and notifies under the `busy` mutex; the main thread only waits for SIGTERM
 * or SIGINT (blocked everywhere, taken with sigwait). On a signal the main thread takes `busy`,
 * so that no file is left half-done and no command is cut short, and ends the process: the
 * watch thread may be blocked in poll() on the agent's socket, which workload_client offers no
 * way to interrupt, and it holds nothing that needs an orderly release (files are replaced
 * atomically). */
#include "helper.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "grpc.h"
#include "keys.h"
#include "log.h"
#include "spiffeid.h"
#include "util.h"
#include "workload_client.h"
#include "x509.h"

extern char **environ;

#define CONNECT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define FILE_MAX (1024 * 1024)
#define ONCE_DEFAULT_TIMEOUT_S 60

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{"SIGHUP", SIGHUP},   {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGTERM", SIGTERM},
	{"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGWINCH", SIGWINCH},
};
static const char *const signal_names[] = {"SIGHUP",  "SIGUSR1", "SIGUSR2",  "SIGTERM",
					   "SIGINT",  "SIGQUIT", "SIGWINCH", NULL};

#define F(x) offsetof(struct helper_config, x)
const struct cfg_option helper_config_options[] = {
	{.name = "agent_socket", .type = CFG_STRING, .offset = F(agent_socket),
	 .doc = "Workload API socket, a path or unix:///path (default: $SPIFFE_ENDPOINT_SOCKET, "
		"then " WORKLOAD_DEFAULT_SOCKET ")"},
	{.name = "spiffe_id", .type = CFG_STRING, .offset = F(spiffe_id),
	 .doc = "the SVID to write when several are served (default: the first)"},
	{.name = "cert_path", .type = CFG_STRING, .offset = F(cert_path), .required = true,
	 .doc = "certificate chain PEM, leaf first (mode 0644)"},
	{.name = "key_path", .type = CFG_STRING, .offset = F(key_path), .required = true,
	 .doc = "private key PEM, PKCS#8 (mode 0600)"},
	{.name = "bundle_path", .type = CFG_STRING, .offset = F(bundle_path), .required = true,
	 .doc = "trust bundle PEM: the CA certificates of the SVID's trust domain (mode 0644)"},
	{.name = "federated_bundles", .type = CFG_BOOL, .offset = F(federated_bundles),
	 .def = "false", .doc = "append the federated trust domains' CAs to the bundle file"},
	{.name = "pid_file", .type = CFG_STRING, .offset = F(pid_file),
	 .doc = "after each renewal, signal the process whose pid this file holds"},
	{.name = "pid", .type = CFG_INT, .offset = F(pid), .def = "0", .min = 0, .max = INT_MAX,
	 .doc = "after each renewal, signal this process (0: none)"},
	{.name = "signal", .type = CFG_ENUM, .offset = F(signal_name), .def = "SIGHUP",
	 .choices = signal_names, .doc = "the signal sent to pid or pid_file"},
	{.name = "cmd", .type = CFG_STRING, .offset = F(cmd),
	 .doc = "after each renewal, run this with /bin/sh -c"},
	{.name = "cmd_timeout", .type = CFG_DURATION, .offset = F(cmd_timeout), .def = "30s",
	 .min = 1, .max = 3600, .doc = "kill cmd (and its process group) after this long"},
	{.name = "log_level", .type = CFG_ENUM, .offset = F(log_level), .def = "info",
	 .choices = log_levels, .doc = "debug, info, warn or error"},
	{.name = "log_format", .type = CFG_ENUM, .offset = F(log_format), .def = "text",
	 .choices = log_formats, .doc = "text or json (one object per line)"},
};
#undef F
const size_t helper_config_n_options = ARRAY_LEN(helper_config_options);

struct helper {
	struct helper_config cfg;
	int sig;
	pthread_mutex_t busy;
	/* Under busy: what the files hold (read from disk at start), NULL when unknown. */
	char *cert, *key, *bundle;
	bool disk_read;
	/* Watch thread only: the last attempt got an SVID written; problems are logged as
	 * warnings only when this changes. */
	bool healthy;
};

static int signal_number(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (strcmp(signals[i].name, name) == 0)
			return signals[i].sig;
	return -1;
}

int helper_config_load(const char *path, struct helper_config *cfg, char *err, size_t errlen)
{
	char e[256];

	memset(cfg, 0, sizeof(*cfg));
	if (config_load(path, helper_config_options, helper_config_n_options, cfg, err, errlen) < 0)
		return -1;
	if (cfg->pid_file && cfg->pid) {
		snprintf(err, errlen, "%s: pid_file and pid: set only one of them", path);
		return -1;
	}
	if (cfg->spiffe_id && spiffeid_validate_leaf(cfg->spiffe_id, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "%s: spiffe_id: %s", path, e);
		return -1;
	}
	if (!cfg->cert_path[0] || !cfg->key_path[0] || !cfg->bundle_path[0]) {
		snprintf(err, errlen, "%s: cert_path, key_path and bundle_path must not be empty",
			 path);
		return -1;
	}
	if (strcmp(cfg->cert_path, cfg->key_path) == 0 ||
	    strcmp(cfg->cert_path, cfg->bundle_path) == 0 ||
	    strcmp(cfg->key_path, cfg->bundle_path) == 0) {
		snprintf(err, errlen, "%s: cert_path, key_path and bundle_path must be three "
				      "different files",
			 path);
		return -1;
	}
	if (cfg->agent_socket) {
		char sock[4096];

		if (workload_resolve_socket(cfg->agent_socket, sock, sizeof(sock), e, sizeof(e)) < 0) {
			snprintf(err, errlen, "%s: agent_socket: %s", path, e);
			return -1;
		}
	}
	return 0;
}

void helper_config_free(struct helper_config *cfg)
{
	config_free(helper_config_options, helper_config_n_options, cfg);
}

/* ---- rendering the files ---- */

struct rendered {
	char *cert, *key, *bundle;
	char spiffe_id[SPIFFEID_MAX + 1];
	char serial[80];
	int64_t not_after;
};

static void rendered_free(struct rendered *r)
{
	free(r->cert);
	if (r->key)
		secure_zero(r->key, strlen(r->key));
	free(r->key);
	free(r->bundle);
}

/* Appends the PEM of the DER certificates in der to *out. */
static int append_pem(char **out, const uint8_t *der, size_t len)
{
	char *pem = bundle_to_pem(der, len);
	size_t a = *out ? strlen(*out) : 0, b;
	char *n;

	if (!pem)
		return -1;
	b = strlen(pem);
	n = realloc(*out, a + b + 1);
	if (!n) {
		free(pem);
		return -1;
	}
	memcpy(n + a, pem, b + 1);
	*out = n;
	free(pem);
	return 0;
}

static int render(const struct helper_config *cfg, const struct workload_x509_context *x,
		  struct rendered *r, char *err, size_t errlen)
{
	const struct workload_x509_svid *s = NULL;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	struct x509_info leaf = {0};
	lkey *key = NULL;
	int ret = -1;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < x->n_svids && !s; i++)
		if (!cfg->spiffe_id || strcmp(cfg->spiffe_id, x->svids[i].spiffe_id) == 0)
			s = &x->svids[i];
	if (!s) {
		snprintf(err, errlen, "the agent serves %zu SVID(s), none with ID %s", x->n_svids,
			 cfg->spiffe_id ? cfg->spiffe_id : "?");
		return -1;
	}
	if (x509_split_der(s->chain, s->chain_len, &certs, &lens, &n) < 0 || n == 0 ||
	    x509_parse(certs[0], lens[0], &leaf, err, errlen) < 0) {
		if (n == 0)
			snprintf(err, errlen, "SVID %s: malformed certificate chain", s->spiffe_id);
		goto out;
	}
	if (strcmp(leaf.spiffe_id, s->spiffe_id) != 0) {
		snprintf(err, errlen, "SVID %s: the certificate holds %.300s", s->spiffe_id,
			 leaf.spiffe_id);
		goto out;
	}
	/* Never write a key that does not go with the certificate. */
	if (lkey_from_der(s->key, s->key_len, &key) < 0 ||
	    !lkey_matches_cert(key, certs[0], lens[0])) {
		snprintf(err, errlen, "SVID %s: the key is malformed or does not match", s->spiffe_id);
		goto out;
	}
	if (!s->bundle_len) {
		snprintf(err, errlen, "SVID %s comes without a trust bundle", s->spiffe_id);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (append_pem(&r->cert, certs[i], lens[i]) < 0)
			goto nomem;
	if (lkey_to_pem(key, &r->key) < 0 || append_pem(&r->bundle, s->bundle, s->bundle_len) < 0)
		goto nomem;
	for (size_t i = 0; cfg->federated_bundles && i < x->n_federated; i++)
		if (append_pem(&r->bundle, x->federated[i].data, x->federated[i].len) < 0) {
			snprintf(err, errlen, "federated bundle of %s is malformed",
				 x->federated[i].trust_domain_id);
			goto out;
		}
	snprintf(r->spiffe_id, sizeof(r->spiffe_id), "%s", s->spiffe_id);
	snprintf(r->serial, sizeof(r->serial), "%s", leaf.serial);
	r->not_after = leaf.not_after;
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "cannot encode the files (out of memory or malformed DER)");
out:
	if (ret < 0)
		rendered_free(r);
	lkey_free(key);
	x509_info_free(&leaf);
	free(certs);
	free(lens);
	return ret;
}

/* ---- notifying ---- */

static void signal_process(struct helper *h)
{
	const struct helper_config *c = &h->cfg;
	long pid = (long)c->pid;

	if (c->pid_file) {
		uint8_t *buf = NULL;
		size_t len = 0;
		char *end;
		int r = file_read_all(c->pid_file, 64, &buf, &len);

		if (r < 0) {
			log_warnx("cannot read pid_file %s: %s", c->pid_file, strerror(-r));
			return;
		}
		errno = 0;
		pid = strtol((char *)buf, &end, 10);
		while (*end == '\n' || *end == ' ' || *end == '\r')
			end++;
		if (errno || end == (char *)buf || *end || pid <= 0 || pid > INT_MAX) {
			log_warnx("pid_file %s does not hold a pid", c->pid_file);
			free(buf);
			return;
		}
		free(buf);
	}
	if (kill((pid_t)pid, h->sig) < 0)
		log_warn("cannot send %s to pid %ld", c->signal_name, pid);
	else
		log_info("sent %s to pid %ld", c->signal_name, pid);
}

static void ms_sleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Runs cmd with /bin/sh -c in its own process group, with default signal handling, and waits
 * for it up to cmd_timeout, then kills the group. */
static void run_cmd(struct helper *h)
{
	const struct helper_config *c = &h->cfg;
	char *argv[] = {"sh", "-c", c->cmd, NULL};
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	int64_t deadline = now_mono_us() + c->cmd_timeout * 1000000;
	pid_t pid;
	int r, st = 0;

	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGINT);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	r = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		log_error("cannot run cmd: %s", strerror(r));
		return;
	}
	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		if (now_mono_us() >= deadline) {
			log_error("cmd still running after %llds: killed", (long long)c->cmd_timeout);
			kill(-pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return;
		}
		ms_sleep(20);
	}
	if (r < 0)
		log_error("waiting for cmd: %s", strerror(errno));
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		log_info("cmd succeeded");
	else if (WIFEXITED(st))
		log_warnx("cmd exited with status %d", WEXITSTATUS(st));
	else
		log_warnx("cmd killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- writing ---- */

static char *read_text(const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	return file_read_all(path, FILE_MAX, &buf, &len) == 0 ? (char *)buf : NULL;
}

static void forget(char **p)
{
	if (*p)
		secure_zero(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

static bool same(const char *a, const char *b)
{
	size_t n = a ? strlen(a) : 0;

	return a && b && strlen(b) == n && ct_equal(a, b, n);
}

static int write_file(const char *path, const char *text, mode_t mode, char *err,
		      size_t errlen)
{
	int r = file_write_atomic(path, text, strlen(text), mode);

	if (r < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
	return r;
}

/* Writes one X.509 context to the files and notifies. Under busy. 0 when the files hold it
 * (written now or already), -1 with the reason in err otherwise. */
static int apply(struct helper *h, const struct workload_x509_context *x, char *err,
		 size_t errlen)
{
	const struct helper_config *c = &h->cfg;
	struct rendered r;

	if (render(c, x, &r, err, errlen) < 0)
		return -1;
	/* After a restart, files that already hold this SVID need no rewrite and the process
	 * no signal. */
	if (!h->disk_read) {
		h->cert = read_text(c->cert_path);
		h->key = read_text(c->key_path);
		h->bundle = read_text(c->bundle_path);
		h->disk_read = true;
	}
	if (same(r.cert, h->cert) && same(r.key, h->key) && same(r.bundle, h->bundle)) {
		log_info("%s serial %s: the files are up to date", r.spiffe_id, r.serial);
		rendered_free(&r);
		return 0;
	}
	/* The certificate last: a reader that watches it finds the key and bundle in place. */
	if (write_file(c->bundle_path, r.bundle, 0644, err, errlen) < 0 ||
	    write_file(c->key_path, r.key, 0600, err, errlen) < 0 ||
	    write_file(c->cert_path, r.cert, 0644, err, errlen) < 0) {
		/* Unknown state on disk: compare against it again next time. */
		forget(&h->cert);
		forget(&h->key);
		forget(&h->bundle);
		h->disk_read = false;
		rendered_free(&r);
		return -1;
	}
	forget(&h->cert);
	forget(&h->key);
	forget(&h->bundle);
	h->cert = r.cert;
	h->key = r.key;
	h->bundle = r.bundle;
	char expires[32];
	time_format_rfc3339(r.not_after, expires, sizeof(expires));
	log_info("wrote %s serial %s (expires %s) to %s", r.spiffe_id, r.serial, expires,
		 c->cert_path);
	if (c->pid || c->pid_file)
		signal_process(h);
	if (c->cmd)
		run_cmd(h);
	return 0;
}

/* ---- following the agent ---- */

static void problem(struct helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs a problem once per outage (then at debug level), so a long outage is one line. */
static void problem(struct helper *h, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (h->healthy)
		log_warnx("%s; keeping the current files and retrying", msg);
	else
		log_debug("%s", msg);
	h->healthy = false;
}

static int on_x509(void *ud, const struct workload_x509_context *x)
{
	struct helper *h = ud;
	char err[512];

	pthread_mutex_lock(&h->busy);
	if (apply(h, x, err, sizeof(err)) == 0)
		h->healthy = true;
	else
		log_error("update not written: %s", err);
	pthread_mutex_unlock(&h->busy);
	return 0;
}

static int backoff_next(int ms)
{
	return ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

static int jittered(int ms)
{
	uint32_t j = 0;

	random_bytes(&j, sizeof(j));
	return ms + (int)(j % (uint32_t)(ms / 4 + 1));
}

static void *watch_main(void *arg)
{
	struct helper *h = arg;
	int backoff = BACKOFF_MIN_MS;

	for (;;) {
		struct workload_client *wc = NULL;
		char err[512];
		int r, status = -1;

		if (workload_client_connect(h->cfg.agent_socket, CONNECT_TIMEOUT_MS, &wc, err,
					    sizeof(err)) < 0) {
			problem(h, "%s", err);
		} else {
			log_debug("connected to the Workload API");
			r = workload_watch_x509(wc, on_x509, h, -1, &status, err, sizeof(err));
			workload_client_close(wc);
			/* on_x509 ran on this thread: healthy says whether this stream delivered. */
			if (h->healthy)
				backoff = BACKOFF_MIN_MS;
			if (r == WORKLOAD_ESTATUS && status == GRPC_STATUS_PERMISSION_DENIED)
				problem(h, "the agent has no identity for this process: %s", err);
			else if (r == WORKLOAD_ESTATUS)
				problem(h, "the agent ended the stream: %s: %s",
					grpc_status_name(status), err);
			else
				problem(h, "connection to the agent lost: %s", err);
		}
		ms_sleep(jittered(backoff));
		backoff = backoff_next(backoff);
	}
	return NULL;
}

/* ---- main ---- */

/* The files are replaced through temporary files in their directories: those must exist and be
 * writable. Checked at start, so that a typo fails at once rather than at every renewal. */
static int check_dirs(const struct helper_config *c, char *err, size_t errlen)
{
	const char *paths[] = {c->cert_path, c->key_path, c->bundle_path};

	for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
		char *d = xstrdup(paths[i]);
		char *slash = strrchr(d, '/');
		int ok;

		if (!slash)
			snprintf(d, strlen(d) + 1, ".");
		else if (slash == d)
			slash[1] = '\0';
		else
			*slash = '\0';
		ok = access(d, W_OK | X_OK) == 0;
		if (!ok)
			snprintf(err, errlen, "cannot write files in %.300s (for %.300s): %s", d,
				 paths[i], strerror(errno));
		free(d);
		if (!ok)
			return -1;
	}
	return 0;
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: lanyard-agent helper --config FILE [--once [--timeout SECONDS]]\n"
		"\n"
		"Writes the X509-SVID, its key and the trust bundle to files on every renewal,\n"
		"then signals a process and/or runs a command. --once writes them once and exits\n"
		"(waiting up to --timeout, default %d s, for the agent).\n"
		"\n"
		"Configuration keys (JSON object in the --config file):\n",
		ONCE_DEFAULT_TIMEOUT_S);
	for (size_t i = 0; i < helper_config_n_options; i++) {
		const struct cfg_option *o = &helper_config_options[i];
		char def[64];

		if (o->required)
			snprintf(def, sizeof(def), "required");
		else if (o->def)
			snprintf(def, sizeof(def), "default %s", o->def);
		else
			snprintf(def, sizeof(def), "unset");
		fprintf(f, "  %-18s %s (%s)\n", o->name, o->doc, def);
	}
	return f == stdout ? 0 : 1;
}

static int run_once(struct helper *h, int timeout_s)
{
	int64_t deadline = now_mono_us() + (int64_t)timeout_s * 1000000;
	int backoff = BACKOFF_MIN_MS;

	for (;;) {
		struct workload_client *wc = NULL;
		struct workload_x509_context x;
		char err[512];
		int status = -1, left_ms, wait_ms;

		if (workload_client_connect(h->cfg.agent_socket, CONNECT_TIMEOUT_MS, &wc, err,
					    sizeof(err)) == 0) {
			int r;

			workload_client_set_timeout(wc, CONNECT_TIMEOUT_MS);
			r = workload_fetch_x509(wc, &x, &status, err, sizeof(err));
			workload_client_close(wc);
			if (r == 0) {
				r = apply(h, &x, err, sizeof(err));
				workload_x509_context_free(&x);
				if (r == 0)
					return 0;
			}
		}
		left_ms = (int)((deadline - now_mono_us()) / 1000);
		if (left_ms <= 0) {
			log_error("no X509-SVID written within %d s: %s", timeout_s, err);
			return 1;
		}
		log_debug("%s (retrying)", err);
		wait_ms = jittered(backoff);
		ms_sleep(wait_ms < left_ms ? wait_ms : left_ms);
		backoff = backoff_next(backoff);
	}
}

int helper_main(int argc, char **argv)
{
	const char *config_path = NULL;
	struct helper *h;
	bool once = false;
	long timeout_s = ONCE_DEFAULT_TIMEOUT_S;
	char err[1024];
	sigset_t set;
	pthread_t thread;
	int sig = 0, ret = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "--once") == 0) {
			once = true;
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;

			timeout_s = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || timeout_s < 1 || timeout_s > 86400) {
				fprintf(stderr, "lanyard-agent helper: --timeout %s: expected 1 to "
						"86400 seconds\n",
					argv[i]);
				return 1;
			}
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			return usage(stdout);
		} else {
			fprintf(stderr, "lanyard-agent helper: unknown argument '%s'\n", argv[i]);
			return usage(stderr);
		}
	}
	if (!config_path) {
		fprintf(stderr, "lanyard-agent helper: --config FILE is required\n");
		return usage(stderr);
	}
	h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->busy, NULL);
	if (helper_config_load(config_path, &h->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-agent helper: %s\n", err);
		goto out;
	}
	h->sig = signal_number(h->cfg.signal_name);
	log_setup(log_level_parse(h->cfg.log_level), strcmp(h->cfg.log_format, "json") == 0);
	if (check_dirs(&h->cfg, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (once) {
		ret = run_once(h, (int)timeout_s);
		goto out;
	}

	/* Blocked before the thread starts, so that it inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	h->healthy = true;
	if (pthread_create(&thread, NULL, watch_main, h) != 0) {
		log_error("cannot start the watch thread");
		goto out;
	}
	log_info("lanyard-agent helper %s: writing %s, %s and %s", LANYARD_VERSION,
		 h->cfg.cert_path, h->cfg.key_path, h->cfg.bundle_path);
	while (sigwait(&set, &sig) != 0)
		;
	log_info("received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	/* Never returns the lock: the process ends once no write or command is in progress (a
	 * command may delay this by up to cmd_timeout).
	 * The helper and its thread stay allocated until then (see the top of the file). */
	pthread_mutex_lock(&h->busy);
	return 0;
out:
	forget(&h->cert);
	forget(&h->key);
	forget(&h->bundle);
	helper_config_free(&h->cfg);
	pthread_mutex_destroy(&h->busy);
	free(h);
	return ret;
}
