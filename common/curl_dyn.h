/* curl_dyn.h: libcurl, loaded the first time it is needed.
 *
 * libcurl pulls in some thirty shared libraries (OpenSSL, GnuTLS, Kerberos, LDAP, SSH, ...)
 * whose relocation and constructors cost a process about 5 MB of resident memory, more than
 * half of an idle agent. Yet the daemons need it only to talk to a kubelet or a Kubernetes API
 * server, and the command-line tools only for their one request. So nothing links libcurl: the
 * functions Lanyard uses are resolved with dlopen() on first use, and a node agent without the
 * Kubernetes attestor never maps it at all.
 *
 * The table mirrors the libcurl functions of the same names (curl_easy_setopt -> easy_setopt).
 * Note that calls through it bypass curl's compile-time option type checks: pass long for long
 * options (1L, not 1) and curl_off_t where curl asks for it. */
#ifndef LANYARD_CURL_DYN_H
#define LANYARD_CURL_DYN_H

#include <stddef.h>

#include <curl/curl.h>

/* The shared object Debian's libcurl4 package installs (the ABI curl/curl.h describes). */
#define CURL_DYN_SONAME "libcurl.so.4"

struct curl_fns {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_perform)(CURL *h);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	void (*easy_reset)(CURL *h);
	void (*easy_cleanup)(CURL *h);
	const char *(*easy_strerror)(CURLcode code);
	char *(*easy_escape)(CURL *h, const char *s, int len);
	void (*free)(void *p);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
};

/* Loads libcurl and runs curl_global_init, once per process (thread-safe: pthread_once, and the
 * libcurl of curl/curl.h, >= 7.84 with the "threadsafe" feature, has a thread-safe
 * curl_global_init, so the first call may come from any thread at any time). Returns the table, or
 * NULL with the reason in err when libcurl cannot be loaded; later calls give the same answer.
 * The library stays loaded until the process exits. */
const struct curl_fns *curl_fns_load(char *err, size_t errlen);

#endif
