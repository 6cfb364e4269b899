/* der_pem.c: the strict DER reader refuses what DER forbids, PEM round-trips, the concatenating
 * decoder keeps only its label, and pem_decode_first takes the earliest of several labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "der_pem.h"
#include "util.h"

static void der_reader_is_strict(void **state)
{
	const uint8_t *v;
	size_t vl, pos = 0;
	uint8_t tag;
	(void)state;

	static const uint8_t ok[] = {0x30, 0x03, 0x02, 0x01, 0x05};
	assert_int_equal(der_next(ok, sizeof(ok), &pos, &tag, &v, &vl), 0);
	assert_int_equal(tag, 0x30);
	assert_int_equal(vl, 3);
	assert_int_equal(pos, sizeof(ok));
	/* der_expect with the wrong tag leaves pos where it was. */
	pos = 0;
	assert_int_equal(der_expect(ok, sizeof(ok), &pos, 0x31, &v, &vl), -1);
	assert_int_equal(pos, 0);

	static const uint8_t non_minimal[] = {0x04, 0x81, 0x01, 0xaa};  /* 1 in long form */
	static const uint8_t leading_zero[] = {0x04, 0x82, 0x00, 0x81}; /* padded length */
	static const uint8_t indefinite[] = {0x30, 0x80, 0x00, 0x00};
	static const uint8_t truncated[] = {0x04, 0x05, 0x01};
	static const uint8_t multi_byte_tag[] = {0x1f, 0x81, 0x01, 0x00};
	const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {{non_minimal, sizeof(non_minimal)},   {leading_zero, sizeof(leading_zero)},
		   {indefinite, sizeof(indefinite)},     {truncated, sizeof(truncated)},
		   {multi_byte_tag, sizeof(multi_byte_tag)}, {ok, 1}};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		pos = 0;
		assert_int_equal(der_next(bad[i].p, bad[i].n, &pos, &tag, &v, &vl), -1);
	}
}

static void pem_round_trip_and_concat(void **state)
{
	uint8_t a[100], b[3] = {1, 2, 3}, *der;
	size_t len;
	(void)state;

	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7);
	char *pa = pem_encode("CERTIFICATE", a, sizeof(a));
	char *pk = pem_encode("PRIVATE KEY", b, sizeof(b));
	char *pb = pem_encode("CERTIFICATE", b, sizeof(b));
	assert_non_null(pa);
	assert_non_null(strstr(pa, "-----BEGIN CERTIFICATE-----\n"));
	/* 64-column lines: 100 bytes are 136 base64 characters, so lines of 64, 64 and 8. */
	char *first_nl = strchr(pa, '\n');
	assert_int_equal(strchr(first_nl + 1, '\n') - first_nl - 1, 64);

	size_t cap = strlen(pa) + strlen(pk) + strlen(pb) + 1;
	char *all = xcalloc(1, cap);
	snprintf(all, cap, "%s%s%s", pa, pk, pb);
	assert_int_equal(pem_decode_concat(all, strlen(all), "CERTIFICATE", &der, &len), 0);
	assert_int_equal(len, sizeof(a) + sizeof(b));
	assert_memory_equal(der, a, sizeof(a));
	assert_memory_equal(der + sizeof(a), b, sizeof(b));
	free(der);

	/* None of the label: success with nothing. A block without its END line: an error. */
	assert_int_equal(pem_decode_concat(pk, strlen(pk), "CERTIFICATE", &der, &len), 0);
	assert_int_equal(len, 0);
	free(der);
	size_t cut_len = (size_t)(strstr(all, pb) - all) + 30; /* past its BEGIN line */
	assert_int_equal(pem_decode_concat(all, cut_len, "CERTIFICATE", &der, &len), -1);
	assert_null(der);
	free(all);
	free(pa);
	free(pk);
	free(pb);
}

static void pem_first_takes_the_earliest_label(void **state)
{
	static const char *const labels[] = {"PRIVATE KEY", "EC PRIVATE KEY"};
	uint8_t x[2] = {0xaa, 0xbb}, y[1] = {0xcc}, *der;
	size_t len;
	(void)state;

	char *pe = pem_encode("EC PRIVATE KEY", x, sizeof(x));
	char *pp = pem_encode("PRIVATE KEY", y, sizeof(y));
	char *pc = pem_encode("CERTIFICATE", y, sizeof(y));
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s%s%s", pc, pe, pp);
	assert_int_equal(pem_decode_first(buf, strlen(buf), labels, 2, &der, &len), 0);
	assert_int_equal(len, sizeof(x));
	assert_memory_equal(der, x, sizeof(x));
	free(der);
	/* Only other labels: nothing found. */
	assert_int_equal(pem_decode_first(pc, strlen(pc), labels, 2, &der, &len), -1);
	assert_null(der);
	/* The earliest block has no END line: an error, not the next block. */
	snprintf(buf, sizeof(buf), "-----BEGIN EC PRIVATE KEY-----\nqrs=\n%s", pp);
	assert_int_equal(pem_decode_first(buf, strlen(buf), labels, 2, &der, &len), -1);
	/* Not base64 (encrypted PEM's headers): an error. */
	snprintf(buf, sizeof(buf),
		 "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nqg==\n-----END PRIVATE KEY-----\n");
	assert_int_equal(pem_decode_first(buf, strlen(buf), labels, 2, &der, &len), -1);
	free(pe);
	free(pp);
	free(pc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(der_reader_is_strict),
		cmocka_unit_test(pem_round_trip_and_concat),
		cmocka_unit_test(pem_first_takes_the_earliest_label),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
