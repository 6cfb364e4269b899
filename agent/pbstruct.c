/* pbstruct.c: JSON to google.protobuf.Struct (see pbstruct.h). Every builder frees what it
 * built so far when it fails, so a NULL return leaks nothing. */
#include "pbstruct.h"

#include <stdlib.h>
#include <string.h>

static Google__Protobuf__Struct *struct_from_json(const json_t *obj, int depth);

static void value_free(Google__Protobuf__Value *v);

void pbstruct_free(Google__Protobuf__Struct *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_fields; i++) {
		if (!s->fields[i])
			continue;
		free(s->fields[i]->key);
		value_free(s->fields[i]->value);
		free(s->fields[i]);
	}
	free(s->fields);
	free(s);
}

static void value_free(Google__Protobuf__Value *v)
{
	if (!v)
		return;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		free(v->string_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		pbstruct_free(v->struct_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		if (v->list_value) {
			for (size_t i = 0; i < v->list_value->n_values; i++)
				value_free(v->list_value->values[i]);
			free(v->list_value->values);
			free(v->list_value);
		}
		break;
	default:
		break;
	}
	free(v);
}

static Google__Protobuf__Value *value_from_json(const json_t *j, int depth)
{
	Google__Protobuf__Value *v = malloc(sizeof(*v));

	if (!v)
		return NULL;
	google__protobuf__value__init(v);
	if (depth > PBSTRUCT_MAX_DEPTH)
		goto fail;
	switch (json_typeof(j)) {
	case JSON_STRING:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		v->string_value = strdup(json_string_value(j));
		if (!v->string_value)
			goto fail;
		break;
	case JSON_INTEGER:
	case JSON_REAL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = json_number_value(j);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_is_true(j);
		break;
	case JSON_NULL:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
		break;
	case JSON_OBJECT:
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		v->struct_value = struct_from_json(j, depth + 1);
		if (!v->struct_value)
			goto fail;
		break;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);

		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		v->list_value = malloc(sizeof(*v->list_value));
		if (!v->list_value)
			goto fail;
		google__protobuf__list_value__init(v->list_value);
		v->list_value->values = calloc(n ? n : 1, sizeof(*v->list_value->values));
		if (!v->list_value->values)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			v->list_value->values[i] = value_from_json(json_array_get(j, i), depth + 1);
			if (!v->list_value->values[i])
				goto fail;
			v->list_value->n_values++;
		}
		break;
	}
	}
	return v;
fail:
	value_free(v);
	return NULL;
}

static Google__Protobuf__Struct *struct_from_json(const json_t *obj, int depth)
{
	Google__Protobuf__Struct *s = malloc(sizeof(*s));
	const char *key;
	json_t *val;

	if (!s)
		return NULL;
	google__protobuf__struct__init(s);
	s->fields = calloc(json_object_size(obj) + 1, sizeof(*s->fields));
	if (!s->fields || depth > PBSTRUCT_MAX_DEPTH)
		goto fail;
	json_object_foreach((json_t *)obj, key, val) {
		Google__Protobuf__Struct__FieldsEntry *f = malloc(sizeof(*f));

		if (!f)
			goto fail;
		google__protobuf__struct__fields_entry__init(f);
		s->fields[s->n_fields++] = f;
		f->key = strdup(key);
		f->value = value_from_json(val, depth + 1);
		if (!f->key || !f->value)
			goto fail;
	}
	return s;
fail:
	pbstruct_free(s);
	return NULL;
}

Google__Protobuf__Struct *pbstruct_from_json(const json_t *obj)
{
	return struct_from_json(obj, 0);
}
