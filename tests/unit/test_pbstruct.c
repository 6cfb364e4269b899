/* test_pbstruct.c: JWT claims (JSON) as a google.protobuf.Struct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pbstruct.h"

static const Google__Protobuf__Value *field(const Google__Protobuf__Struct *s, const char *key)
{
	for (size_t i = 0; i < s->n_fields; i++)
		if (strcmp(s->fields[i]->key, key) == 0)
			return s->fields[i]->value;
	return NULL;
}

static void every_kind(void **state)
{
	(void)state;
	json_t *j = json_loads("{\"sub\":\"spiffe://example.org/w\",\"exp\":17,\"r\":1.5,"
			       "\"t\":true,\"n\":null,\"aud\":[\"a\",2],\"o\":{\"k\":false}}",
			       0, NULL);
	assert_non_null(j);
	Google__Protobuf__Struct *s = pbstruct_from_json(j);
	assert_non_null(s);
	assert_int_equal(s->n_fields, 7);
	const Google__Protobuf__Value *v = field(s, "sub");
	assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE);
	assert_string_equal(v->string_value, "spiffe://example.org/w");
	v = field(s, "exp");
	assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
	assert_true(v->number_value == 17.0);
	assert_true(field(s, "r")->number_value == 1.5);
	assert_true(field(s, "t")->bool_value);
	assert_int_equal(field(s, "n")->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
	v = field(s, "aud");
	assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
	assert_int_equal(v->list_value->n_values, 2);
	assert_string_equal(v->list_value->values[0]->string_value, "a");
	v = field(s, "o");
	assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE);
	assert_int_equal(v->struct_value->fields[0]->value->kind_case,
			 GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE);
	/* It packs: the answer goes on the wire. */
	assert_true(protobuf_c_message_get_packed_size(&s->base) > 0);
	pbstruct_free(s);
	json_decref(j);
	pbstruct_free(NULL);
}

/* Objects nested n deep inside the top-level object. */
static json_t *nested(int n)
{
	json_t *j = json_object();
	for (int i = 0; i < n; i++) {
		json_t *outer = json_object();
		json_object_set_new(outer, "a", j);
		j = outer;
	}
	return j;
}

static void depth_bounded(void **state)
{
	(void)state;
	/* Each nested object costs two levels (its value and its struct). */
	json_t *ok = nested(PBSTRUCT_MAX_DEPTH / 2), *deep = nested(PBSTRUCT_MAX_DEPTH / 2 + 1);
	Google__Protobuf__Struct *s = pbstruct_from_json(ok);
	assert_non_null(s);
	pbstruct_free(s);
	assert_null(pbstruct_from_json(deep));
	json_decref(ok);
	json_decref(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_kind),
		cmocka_unit_test(depth_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
