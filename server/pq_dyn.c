/* pq_dyn.c: resolves the libpq functions the PostgreSQL backend uses, on first use (pq_dyn.h). */
#include "pq_dyn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct pq_fns pq_dyn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_ret = -1;
static char load_error[512];

/* Every member of struct pq_fns, by the libpq name it is resolved from. */
static const struct {
	const char *name;
	size_t offset;
} syms[] = {
	{"PQclear", offsetof(struct pq_fns, clear)},
	{"PQgetvalue", offsetof(struct pq_fns, getvalue)},
	{"PQntuples", offsetof(struct pq_fns, ntuples)},
	{"PQresultStatus", offsetof(struct pq_fns, result_status)},
	{"PQfinish", offsetof(struct pq_fns, finish)},
	{"PQexecParams", offsetof(struct pq_fns, exec_params)},
	{"PQexecPrepared", offsetof(struct pq_fns, exec_prepared)},
	{"PQexec", offsetof(struct pq_fns, exec)},
	{"PQerrorMessage", offsetof(struct pq_fns, error_message)},
	{"PQstatus", offsetof(struct pq_fns, status)},
	{"PQgetisnull", offsetof(struct pq_fns, getisnull)},
	{"PQfreemem", offsetof(struct pq_fns, freemem)},
	{"PQconnectdbParams", offsetof(struct pq_fns, connectdb_params)},
	{"PQresultErrorField", offsetof(struct pq_fns, result_error_field)},
	{"PQconninfoParse", offsetof(struct pq_fns, conninfo_parse)},
	{"PQconninfoFree", offsetof(struct pq_fns, conninfo_free)},
	{"PQcmdTuples", offsetof(struct pq_fns, cmd_tuples)},
	{"PQunescapeBytea", offsetof(struct pq_fns, unescape_bytea)},
	{"PQtransactionStatus", offsetof(struct pq_fns, transaction_status)},
	{"PQsocket", offsetof(struct pq_fns, socket)},
	{"PQprepare", offsetof(struct pq_fns, prepare)},
	{"PQnotifies", offsetof(struct pq_fns, notifies)},
	{"PQconsumeInput", offsetof(struct pq_fns, consume_input)},
};

int pq_dyn_open(const char *soname, struct pq_fns *out, char *err, size_t errlen)
{
	struct pq_fns fns;
	void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!lib) {
		const char *why = dlerror();

		snprintf(err, errlen, "cannot load %s (Debian package libpq5), which a PostgreSQL "
			 "datastore needs: %s", soname, why ? why : "unknown error");
		return -1;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		dlerror();
		void *sym = dlsym(lib, syms[i].name);
		if (!sym) {
			const char *why = dlerror();

			snprintf(err, errlen, "%s has no %s: %s", soname, syms[i].name,
				 why ? why : "symbol is NULL");
			return -1; /* the library stays open: unloading it buys nothing */
		}
		/* POSIX guarantees dlsym results convert to function pointers. */
		memcpy((char *)&fns + syms[i].offset, &sym, sizeof(sym));
	}
	*out = fns;
	return 0;
}

static void load(void)
{
	load_ret = pq_dyn_open(PQ_DYN_SONAME, &pq_dyn, load_error, sizeof(load_error));
}

int pq_dyn_load(char *err, size_t errlen)
{
	pthread_once(&once, load);
	if (load_ret < 0 && err && errlen)
		snprintf(err, errlen, "%s", load_error);
	return load_ret;
}
