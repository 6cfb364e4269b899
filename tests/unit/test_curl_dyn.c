/* test_curl_dyn.c: libcurl is found and its functions resolved on first use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "curl_dyn.h"

static void test_load_once(void **state)
{
	(void)state;
	char err[256] = "";
	const struct curl_fns *a = curl_fns_load(err, sizeof(err));
	const struct curl_fns *b = curl_fns_load(NULL, 0);

	assert_non_null(a);
	assert_string_equal(err, "");
	assert_ptr_equal(a, b);
}

/* The resolved pointers are the real functions: escaping and an option round trip work. */
static void test_functions_work(void **state)
{
	(void)state;
	const struct curl_fns *cu = curl_fns_load(NULL, 0);
	assert_non_null(cu);

	char *esc = cu->easy_escape(NULL, "a b/c?", 0);
	assert_non_null(esc);
	assert_string_equal(esc, "a%20b%2Fc%3F");
	cu->free(esc);

	CURL *h = cu->easy_init();
	assert_non_null(h);
	assert_int_equal(cu->easy_setopt(h, CURLOPT_URL, "http://127.0.0.1:1/x"), CURLE_OK);
	/* An unknown option number is refused by the real libcurl, not by a stub. */
	assert_int_not_equal(cu->easy_setopt(h, (CURLoption)999999, 0L), CURLE_OK);
	char *url = NULL;
	assert_int_equal(cu->easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
	assert_non_null(url);
	assert_string_equal(cu->easy_strerror(CURLE_COULDNT_CONNECT), "Couldn't connect to server");
	struct curl_slist *l = cu->slist_append(NULL, "X-A: 1");
	assert_non_null(l);
	l = cu->slist_append(l, "X-B: 2");
	assert_string_equal(l->next->data, "X-B: 2");
	cu->slist_free_all(l);
	cu->easy_reset(h);
	cu->easy_cleanup(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_once),
		cmocka_unit_test(test_functions_work),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
