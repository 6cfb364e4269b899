/* test_pq_dyn.c: libpq is loaded on demand, and a library that cannot serve gives a clear error
 * naming it (and the missing function), never a crash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "datastore.h"
#include "pq_dyn.h"

/* A name no system has: dlopen fails, the message names the library and the package. */
static void test_missing_library(void **state)
{
	(void)state;
	struct pq_fns fns, before;
	char err[512] = "";
	memset(&fns, 0x5a, sizeof(fns));
	before = fns;

	assert_int_equal(pq_dyn_open("liblanyard-no-such-pq.so.5", &fns, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot load liblanyard-no-such-pq.so.5"));
	assert_non_null(strstr(err, "libpq5"));
	assert_memory_equal(&fns, &before, sizeof(fns)); /* untouched */
}

/* A library that loads but is not libpq: the message names the first missing function. */
static void test_library_without_symbols(void **state)
{
	(void)state;
	struct pq_fns fns, before;
	char err[512] = "";
	memset(&fns, 0x5a, sizeof(fns));
	before = fns;

	assert_int_equal(pq_dyn_open("libm.so.6", &fns, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "libm.so.6 has no PQ"));
	assert_memory_equal(&fns, &before, sizeof(fns));
	/* A short buffer truncates, never overflows. */
	char tiny[8];
	assert_int_equal(pq_dyn_open("libm.so.6", &fns, tiny, sizeof(tiny)), -1);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

/* The real library: loaded once, every function resolved and working without a server. */
static void test_load_once(void **state)
{
	(void)state;
	char err[512] = "";
	assert_int_equal(pq_dyn_load(err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(pq_dyn_load(NULL, 0), 0);
	assert_true(pq_dyn.clear && pq_dyn.connectdb_params && pq_dyn.consume_input);

	char *msg = NULL;
	PQconninfoOption *opts = pq_dyn.conninfo_parse("host=db.example port=5433 dbname=x", &msg);
	assert_non_null(opts);
	bool port = false;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "port") == 0 && o->val && strcmp(o->val, "5433") == 0)
			port = true;
	assert_true(port);
	pq_dyn.conninfo_free(opts);
	msg = NULL;
	assert_null(pq_dyn.conninfo_parse("host", &msg)); /* no '=' */
	assert_non_null(msg);
	pq_dyn.freemem(msg);
	/* No connection at all: libpq's own answers. */
	assert_int_equal(pq_dyn.status(NULL), CONNECTION_BAD);
	assert_int_equal(pq_dyn.result_status(NULL), PGRES_FATAL_ERROR);
}

/* The backend's entry point loads it too, and still checks the string. */
static void test_conninfo_check_loads(void **state)
{
	(void)state;
	char safe[256] = "", err[512] = "";
	assert_int_equal(datastore_pg_conninfo_check("host=h dbname=d password=sekrit", safe,
						     sizeof(safe), err, sizeof(err)),
			 0);
	assert_null(strstr(safe, "sekrit"));
	assert_non_null(strstr(safe, "dbname=d"));
	assert_int_equal(datastore_pg_conninfo_check("not a = valid 'string", NULL, 0, err,
						     sizeof(err)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_library),
		cmocka_unit_test(test_library_without_symbols),
		cmocka_unit_test(test_load_once),
		cmocka_unit_test(test_conninfo_check_loads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
