/* k8s_fake.h: a fake kubelet / Kubernetes API server for unit tests (header only, included by
 * test_kubelet.c, test_attestor_k8s.c and test_psat.c). A libmicrohttpd daemon on 127.0.0.1 (a
 * free port), plain http or https with a throwaway self-signed certificate made by openssl,
 * answering every request through a handler the test supplies. It counts requests and records
 * the last Authorization header and body, so tests can check what the client sent. */
#ifndef LANYARD_TEST_K8S_FAKE_H
#define LANYARD_TEST_K8S_FAKE_H

#include <arpa/inet.h>
#include <libgen.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util.h"

struct fake_req {
	const char *method, *url;
	const char *auth; /* Authorization header or "" */
	const char *body; /* request body or "" */
	size_t body_len;
	unsigned n;       /* 1 for the first request the server answers */
};

struct fake_resp {
	int status;     /* 200 when left 0 */
	char *body;     /* malloc'd by the handler; NULL = empty */
	int delay_ms;   /* sleep before answering */
};

struct fake_k8s;
typedef void (*fake_handler)(struct fake_k8s *f, const struct fake_req *req,
			     struct fake_resp *resp);

struct fake_k8s {
	struct MHD_Daemon *d;
	unsigned short port;
	char url[64];         /* "http(s)://127.0.0.1:<port>" */
	fake_handler handler;
	void *ud;
	pthread_mutex_t lock;
	unsigned requests;
	char last_auth[1024];
	char *last_body;
	char *cert_pem, *key_pem;
};

struct fake_conn {
	char *body;
	size_t len;
};

/* The directory of the k8s fixtures, next to this test's source. */
static inline void fake_fixture_path(const char *name, char *out, size_t len)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s", __FILE__);
	snprintf(out, len, "%s/../integration/fixtures/k8s/%s", dirname(dir), name);
}

/* A fixture file's text (malloc'd), or NULL. */
static inline char *fake_fixture(const char *name)
{
	char path[4400];
	uint8_t *buf;
	size_t len;

	fake_fixture_path(name, path, sizeof(path));
	if (file_read_all(path, 16 << 20, &buf, &len) < 0)
		return NULL;
	return (char *)buf;
}

static inline char *fake_read_file(const char *path)
{
	uint8_t *buf;
	size_t len;

	if (file_read_all(path, 1 << 20, &buf, &len) < 0)
		return NULL;
	return (char *)buf;
}

/* Makes a self-signed EC certificate for 127.0.0.1 with openssl into dir/<name>.crt and
 * dir/<name>.key. 0 on success. */
static inline int fake_make_cert(const char *dir, const char *name)
{
	char cmd[8192];

	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
		 "-keyout '%s/%s.key' -out '%s/%s.crt' >/dev/null 2>&1",
		 dir, name, dir, name);
	return system(cmd) == 0 ? 0 : -1;
}

static inline enum MHD_Result fake_access(void *cls, struct MHD_Connection *conn, const char *url,
				   const char *method, const char *version,
				   const char *upload_data, size_t *upload_data_size,
				   void **con_cls)
{
	struct fake_k8s *f = cls;
	struct fake_conn *c = *con_cls;
	struct fake_resp resp = {0};
	struct fake_req req;
	struct MHD_Response *r;
	const char *auth;
	enum MHD_Result ret;

	if (!c) {
		/* The first call only sets up: queuing now would force "Connection: close". */
		c = calloc(1, sizeof(*c));
		*con_cls = c;
		return MHD_YES;
	}
	if (*upload_data_size) {
		c->body = realloc(c->body, c->len + *upload_data_size + 1);
		memcpy(c->body + c->len, upload_data, *upload_data_size);
		c->len += *upload_data_size;
		c->body[c->len] = '\0';
		*upload_data_size = 0;
		return MHD_YES;
	}
	auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	pthread_mutex_lock(&f->lock);
	req.n = ++f->requests;
	snprintf(f->last_auth, sizeof(f->last_auth), "%s", auth ? auth : "");
	free(f->last_body);
	f->last_body = strdup(c->body ? c->body : "");
	pthread_mutex_unlock(&f->lock);
	req.method = method;
	req.url = url;
	req.auth = auth ? auth : "";
	req.body = c->body ? c->body : "";
	req.body_len = c->len;
	f->handler(f, &req, &resp);
	if (resp.delay_ms > 0) {
		struct timespec ts = {.tv_sec = resp.delay_ms / 1000,
				      .tv_nsec = (resp.delay_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	r = MHD_create_response_from_buffer(resp.body ? strlen(resp.body) : 0,
					    resp.body ? resp.body : (char *)"",
					    MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(conn, resp.status ? (unsigned)resp.status : 200, r);
	MHD_destroy_response(r);
	free(resp.body);
	(void)version;
	return ret;
}

static inline void fake_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	struct fake_conn *c = *con_cls;

	if (c) {
		free(c->body);
		free(c);
		*con_cls = NULL;
	}
	(void)cls;
	(void)conn;
	(void)toe;
}

/* Starts a fake on 127.0.0.1. tls_dir: NULL for http, else a directory holding <name>.crt and
 * <name>.key (fake_make_cert). Returns NULL on failure. */
static inline struct fake_k8s *fake_start(fake_handler h, void *ud, const char *tls_dir,
					  const char *tls_name)
{
	struct fake_k8s *f = calloc(1, sizeof(*f));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
	const union MHD_DaemonInfo *info;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->handler = h;
	f->ud = ud;
	pthread_mutex_init(&f->lock, NULL);
	if (tls_dir) {
		char p[4200];

		snprintf(p, sizeof(p), "%s/%s.crt", tls_dir, tls_name);
		f->cert_pem = fake_read_file(p);
		snprintf(p, sizeof(p), "%s/%s.key", tls_dir, tls_name);
		f->key_pem = fake_read_file(p);
		if (!f->cert_pem || !f->key_pem)
			goto fail;
		f->d = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, fake_access, f,
					MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
					fake_completed, f, MHD_OPTION_HTTPS_MEM_KEY, f->key_pem,
					MHD_OPTION_HTTPS_MEM_CERT, f->cert_pem, MHD_OPTION_END);
	} else {
		f->d = MHD_start_daemon(flags, 0, NULL, NULL, fake_access, f, MHD_OPTION_SOCK_ADDR,
					&sa, MHD_OPTION_NOTIFY_COMPLETED, fake_completed, f,
					MHD_OPTION_END);
	}
	if (!f->d)
		goto fail;
	info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port)
		goto fail;
	f->port = info->port;
	snprintf(f->url, sizeof(f->url), "%s://127.0.0.1:%u", tls_dir ? "https" : "http",
		 (unsigned)f->port);
	return f;
fail:
	if (f->d)
		MHD_stop_daemon(f->d);
	free(f->cert_pem);
	free(f->key_pem);
	free(f);
	return NULL;
}

static inline unsigned fake_requests(struct fake_k8s *f)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->requests;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static inline void fake_stop(struct fake_k8s *f)
{
	if (!f)
		return;
	MHD_stop_daemon(f->d);
	pthread_mutex_destroy(&f->lock);
	free(f->last_body);
	free(f->cert_pem);
	free(f->key_pem);
	free(f);
}

/* A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
static inline unsigned short fake_closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	return ntohs(sa.sin_port);
}

/* A temporary directory (mkdtemp) and its recursive removal. */
static inline char *fake_tmpdir(void)
{
	char *d = strdup("/tmp/lanyard-k8s-test.XXXXXX");

	return mkdtemp(d) ? d : NULL;
}

static inline void fake_rmdir(char *d)
{
	char cmd[4200];

	if (!d)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", d);
	free(d);
}

static inline void fake_write(const char *dir, const char *name, const char *content)
{
	char path[4400];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	if (!fp)
		return;
	fputs(content, fp);
	fclose(fp);
}

#endif
