/* curl_dyn.c: resolves the libcurl functions Lanyard uses, on first use. */
#include "curl_dyn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct curl_fns fns;
static const struct curl_fns *loaded;
static char load_error[512];

/* Resolves one symbol into *slot (a function pointer stored through a void pointer: POSIX
 * guarantees dlsym results convert to function pointers). */
static int resolve(void *lib, const char *name, void *slot)
{
	void *sym;

	dlerror();
	sym = dlsym(lib, name);
	if (!sym) {
		const char *why = dlerror();

		snprintf(load_error, sizeof(load_error), "%s has no %s: %s", CURL_DYN_SONAME, name,
			 why ? why : "symbol is NULL");
		return -1;
	}
	memcpy(slot, &sym, sizeof(sym));
	return 0;
}

static void load(void)
{
	CURLcode (*global_init)(long flags) = NULL;
	void *lib = dlopen(CURL_DYN_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (!lib) {
		const char *why = dlerror();

		snprintf(load_error, sizeof(load_error),
			 "cannot load %s (Debian package libcurl4): %s", CURL_DYN_SONAME,
			 why ? why : "unknown error");
		return;
	}
	if (resolve(lib, "curl_global_init", &global_init) < 0 ||
	    resolve(lib, "curl_easy_init", &fns.easy_init) < 0 ||
	    resolve(lib, "curl_easy_setopt", &fns.easy_setopt) < 0 ||
	    resolve(lib, "curl_easy_perform", &fns.easy_perform) < 0 ||
	    resolve(lib, "curl_easy_getinfo", &fns.easy_getinfo) < 0 ||
	    resolve(lib, "curl_easy_reset", &fns.easy_reset) < 0 ||
	    resolve(lib, "curl_easy_cleanup", &fns.easy_cleanup) < 0 ||
	    resolve(lib, "curl_easy_strerror", &fns.easy_strerror) < 0 ||
	    resolve(lib, "curl_easy_escape", &fns.easy_escape) < 0 ||
	    resolve(lib, "curl_free", &fns.free) < 0 ||
	    resolve(lib, "curl_slist_append", &fns.slist_append) < 0 ||
	    resolve(lib, "curl_slist_free_all", &fns.slist_free_all) < 0)
		return; /* the library stays open: unloading a half-used libcurl buys nothing */
	if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(load_error, sizeof(load_error), "curl_global_init failed");
		return;
	}
	loaded = &fns;
}

const struct curl_fns *curl_fns_load(char *err, size_t errlen)
{
	pthread_once(&once, load);
	if (!loaded && err && errlen)
		snprintf(err, errlen, "%s", load_error);
	return loaded;
}
