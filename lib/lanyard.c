/* lanyard.c: error codes, memory, logging and small helpers shared by the liblanyard modules. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc.h"
#include "internal.h"
#include "log.h"
#include "util.h"

#define LY_STR2(x) #x
#define LY_STR(x) LY_STR2(x)

LANYARD_API const char *lanyard_version(void)
{
	return LY_STR(LANYARD_VERSION_MAJOR) "." LY_STR(LANYARD_VERSION_MINOR) "." LY_STR(
		LANYARD_VERSION_PATCH);
}

LANYARD_API const char *lanyard_strerror(int code)
{
	switch (code) {
	case LANYARD_OK:
		return "success";
	case LANYARD_EINVAL:
		return "invalid argument or malformed data";
	case LANYARD_ENOMEM:
		return "out of memory";
	case LANYARD_EIO:
		return "cannot reach the agent";
	case LANYARD_ETIMEDOUT:
		return "timed out";
	case LANYARD_EDENIED:
		return "the agent has no identity for this process";
	case LANYARD_EAGENT:
		return "the agent answered with an error";
	case LANYARD_EREJECTED:
		return "rejected by validation";
	case LANYARD_ENOTFOUND:
		return "not found";
	default:
		return "unknown error";
	}
}

LANYARD_API void lanyard_free(void *p)
{
	free(p);
}

LANYARD_API void lanyard_free_secret(char *p)
{
	if (!p)
		return;
	secure_zero(p, strlen(p));
	free(p);
}

LANYARD_API void lanyard_set_log_level(enum lanyard_log_level level)
{
	/* log.c has no "off" level: a threshold above ERROR silences it. */
	if (level > LANYARD_LOG_NONE)
		level = LANYARD_LOG_NONE;
	log_setup((enum log_level)level, false);
}

/* The application's function and argument, behind log.c's sink (which passes one pointer). */
struct app_log {
	lanyard_log_func fn;
	void *arg;
	struct app_log *older;
};
static _Atomic(struct app_log *) app_logs; /* every one set, kept reachable */

static void app_log_sink(enum log_level level, const char *line, const char *msg, void *arg)
{
	const struct app_log *a = arg;

	(void)line;
	a->fn((enum lanyard_log_level)level, msg, a->arg);
}

LANYARD_API void lanyard_set_log_func(lanyard_log_func fn, void *arg)
{
	struct app_log *a;

	if (!fn) {
		log_set_sink(NULL, NULL);
		return;
	}
	/* Never freed: a library thread may still be logging through the previous one. */
	a = malloc(sizeof(*a));
	if (!a)
		return;
	a->fn = fn;
	a->arg = arg;
	a->older = atomic_load(&app_logs);
	while (!atomic_compare_exchange_weak(&app_logs, &a->older, a))
		;
	log_set_sink(app_log_sink, a);
}

LANYARD_API int lanyard_spiffeid_check(const char *id, char *err, size_t errlen)
{
	char e[256];

	if (!id)
		return ly_err(err, errlen, LANYARD_EINVAL, "no SPIFFE ID");
	if (spiffeid_validate_leaf(id, e, sizeof(e)) < 0)
		return ly_err(err, errlen, LANYARD_EINVAL, "%s: %s", id, e);
	return LANYARD_OK;
}

int ly_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

int ly_code_from_grpc(int status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return LANYARD_OK;
	case GRPC_STATUS_PERMISSION_DENIED:
		return LANYARD_EDENIED;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return LANYARD_ETIMEDOUT;
	default:
		return LANYARD_EAGENT;
	}
}

static pthread_once_t wolfssl_once = PTHREAD_ONCE_INIT;

static void wolfssl_init_once(void)
{
	wolfSSL_Init();
}

void ly_wolfssl_init(void)
{
	pthread_once(&wolfssl_once, wolfssl_init_once);
}

int ly_trust_domain(const char *in, char *td)
{
	const char *name = in;
	size_t n;

	if (!in)
		return -1;
	if (strncasecmp(in, "spiffe://", 9) == 0)
		name = in + 9;
	n = strlen(name);
	if (n == 0 || n > TRUST_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		td[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	td[n] = '\0';
	return trust_domain_validate(td, NULL, 0) < 0 ? -1 : 0;
}
