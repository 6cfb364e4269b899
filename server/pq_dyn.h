/* pq_dyn.h: libpq, loaded the first time the server is configured for PostgreSQL.
 *
 * libpq brings libssl, libcrypto, Kerberos, GSSAPI and LDAP with it: some 2.4 MB of an idle
 * server's resident memory (a fifth of it), spent even when the datastore is SQLite, the
 * default. So nothing links libpq: its headers are used as they are, and the functions the
 * PostgreSQL backend calls are resolved with dlopen() once, on the first PostgreSQL connection
 * string the server checks (datastore_pg_conninfo_check, which every path to a PostgreSQL
 * datastore goes through first). A server on SQLite never maps it.
 *
 * The table mirrors the libpq functions it names, their exact types taken from libpq-fe.h:
 * PQresultStatus -> pq_dyn.result_status, PQgetvalue -> pq_dyn.getvalue.
 *
 * Threads: pq_dyn_load may be called from any thread, any number of times (pthread_once). The
 * table pq_dyn is written once, inside that, and only read afterwards: use it only after a
 * successful pq_dyn_load, in this thread or in one that learnt of the load through a lock or a
 * thread start (a datastore handed over, a thread created by its opener). */
#ifndef LANYARD_PQ_DYN_H
#define LANYARD_PQ_DYN_H

#include <stddef.h>

#include <libpq-fe.h>

/* The shared object Debian's libpq5 package installs (the ABI libpq-fe.h describes). */
#define PQ_DYN_SONAME "libpq.so.5"

struct pq_fns {
	__typeof__(PQclear) *clear;
	__typeof__(PQgetvalue) *getvalue;
	__typeof__(PQntuples) *ntuples;
	__typeof__(PQresultStatus) *result_status;
	__typeof__(PQfinish) *finish;
	__typeof__(PQexecParams) *exec_params;
	__typeof__(PQexecPrepared) *exec_prepared;
	__typeof__(PQexec) *exec;
	__typeof__(PQerrorMessage) *error_message;
	__typeof__(PQstatus) *status;
	__typeof__(PQgetisnull) *getisnull;
	__typeof__(PQfreemem) *freemem;
	__typeof__(PQconnectdbParams) *connectdb_params;
	__typeof__(PQresultErrorField) *result_error_field;
	__typeof__(PQconninfoParse) *conninfo_parse;
	__typeof__(PQconninfoFree) *conninfo_free;
	__typeof__(PQcmdTuples) *cmd_tuples;
	__typeof__(PQunescapeBytea) *unescape_bytea;
	__typeof__(PQtransactionStatus) *transaction_status;
	__typeof__(PQsocket) *socket;
	__typeof__(PQprepare) *prepare;
	__typeof__(PQnotifies) *notifies;
	__typeof__(PQconsumeInput) *consume_input;
};

/* The functions, once pq_dyn_load has succeeded (all NULL before). */
extern struct pq_fns pq_dyn;

/* Loads PQ_DYN_SONAME into pq_dyn, once per process. Returns 0, or -1 with the reason in err
 * (naming the library, and the symbol if one is missing); later calls give the same answer. The
 * library stays loaded until the process exits. */
int pq_dyn_load(char *err, size_t errlen);

/* The work of pq_dyn_load, without the once: loads soname and resolves every function into *out.
 * Returns 0, or -1 with the reason in err (*out is then untouched). For tests of the failure
 * paths; the library stays loaded (dlclose would not give the memory back reliably). */
int pq_dyn_open(const char *soname, struct pq_fns *out, char *err, size_t errlen);

#endif
