#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

static void *field(const struct cfg_option *o, void *out)
{
	return (char *)out + o->offset;
}

/* Renders a JSON value for an error message, shortened. */
static void show(json_t *v, char *buf, size_t len)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	snprintf(buf, len, "%s", s ? s : "?");
	if (s && strlen(s) >= len && len > 4)
		strcpy(buf + len - 4, "...");
	free(s);
}

static int set_string_list(struct cfg_list *l, json_t *v, const char *where,
			   const struct cfg_option *o, char *err, size_t errlen)
{
	char shown[128];
	if (!json_is_array(v)) {
		show(v, shown, sizeof(shown));
		return errorf(err, errlen, "%s: key '%s': value %s is not a list of strings", where,
			    o->name, shown);
	}
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->n = json_array_size(v);
	l->v = xcalloc(l->n + 1, sizeof(char *));
	for (size_t i = 0; i < l->n; i++) {
		json_t *e = json_array_get(v, i);
		if (!json_is_string(e)) {
			show(e, shown, sizeof(shown));
			l->n = i;
			return errorf(err, errlen, "%s: key '%s': element %s is not a string", where,
				    o->name, shown);
		}
		l->v[i] = xstrdup(json_string_value(e));
	}
	return 0;
}

/* Sets one option from a JSON value (strings are parsed for numeric types, so defaults and
 * command-line overrides share this path). */
static int set_value(const struct cfg_option *o, void *out, json_t *v, const char *where,
		     char *err, size_t errlen)
{
	char shown[128];
	show(v, shown, sizeof(shown));
	void *f = field(o, out);
	switch (o->type) {
	case CFG_STRING:
	case CFG_ENUM: {
		if (!json_is_string(v))
			return errorf(err, errlen, "%s: key '%s': value %s is not a string", where,
				    o->name, shown);
		const char *s = json_string_value(v);
		if (o->type == CFG_ENUM) {
			bool found = false;
			char allowed[256] = "";
			for (const char *const *c = o->choices; c && *c; c++) {
				if (strcmp(*c, s) == 0)
					found = true;
				size_t l = strlen(allowed);
				snprintf(allowed + l, sizeof(allowed) - l, "%s%s", l ? ", " : "", *c);
			}
			if (!found)
				return errorf(err, errlen, "%s: key '%s': value %s is not one of: %s",
					    where, o->name, shown, allowed);
		}
		free(*(char **)f);
		*(char **)f = xstrdup(s);
		return 0;
	}
	case CFG_INT:
	case CFG_DURATION: {
		int64_t n;
		if (json_is_integer(v)) {
			n = json_integer_value(v);
		} else if (json_is_string(v)) {
			const char *s = json_string_value(v);
			if (o->type == CFG_DURATION) {
				if (duration_parse(s, &n) < 0)
					return errorf(err, errlen,
						    "%s: key '%s': value %s is not a duration (use 90s, "
						    "5m, 1h, 2d or a number of seconds)",
						    where, o->name, shown);
			} else {
				char *end;
				errno = 0;
				long long ll = strtoll(s, &end, 10);
				if (errno || end == s || *end)
					return errorf(err, errlen,
						    "%s: key '%s': value %s is not an integer", where,
						    o->name, shown);
				n = ll;
			}
		} else {
			return errorf(err, errlen, "%s: key '%s': value %s is not %s", where, o->name,
				    shown, o->type == CFG_DURATION ? "a duration" : "an integer");
		}
		if (n < o->min || n > o->max)
			return errorf(err, errlen,
				    "%s: key '%s': value %s is out of range (%lld to %lld)", where,
				    o->name, shown, (long long)o->min, (long long)o->max);
		*(int64_t *)f = n;
		return 0;
	}
	case CFG_BOOL:
		if (json_is_boolean(v)) {
			*(bool *)f = json_is_true(v);
			return 0;
		}
		if (json_is_string(v) && (strcmp(json_string_value(v), "true") == 0 ||
					  strcmp(json_string_value(v), "false") == 0)) {
			*(bool *)f = strcmp(json_string_value(v), "true") == 0;
			return 0;
		}
		return errorf(err, errlen, "%s: key '%s': value %s is not true or false", where,
			    o->name, shown);
	case CFG_DOUBLE: {
		double d;
		if (json_is_number(v)) {
			d = json_number_value(v);
		} else if (json_is_string(v)) {
			char *end;
			d = strtod(json_string_value(v), &end);
			if (end == json_string_value(v) || *end)
				return errorf(err, errlen, "%s: key '%s': value %s is not a number",
					    where, o->name, shown);
		} else {
			return errorf(err, errlen, "%s: key '%s': value %s is not a number", where,
				    o->name, shown);
		}
		if (!isfinite(d) || d < o->dmin || d > o->dmax)
			return errorf(err, errlen, "%s: key '%s': value %s is out of range (%g to %g)",
				    where, o->name, shown, o->dmin, o->dmax);
		*(double *)f = d;
		return 0;
	}
	case CFG_STRING_LIST:
		return set_string_list(f, v, where, o, err, errlen);
	case CFG_JSON:
		json_decref(*(json_t **)f);
		*(json_t **)f = json_incref(v);
		return 0;
	}
	return errorf(err, errlen, "%s: key '%s': unsupported type", where, o->name);
}

int config_defaults(const struct cfg_option *opts, size_t n, void *out, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_option *o = &opts[i];
		if (!o->def)
			continue;
		json_t *v;
		if (o->type == CFG_STRING_LIST || o->type == CFG_JSON)
			v = json_loads(o->def, 0, NULL);
		else if (o->type == CFG_BOOL)
			v = json_boolean(strcmp(o->def, "true") == 0);
		else
			v = json_string(o->def);
		int r = v ? set_value(o, out, v, "default", err, errlen) : -1;
		json_decref(v);
		if (r < 0)
			return -1;
	}
	return 0;
}

int config_set(const struct cfg_option *opts, size_t n, void *out, const char *key,
	       const char *value, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(opts[i].name, key) != 0)
			continue;
		json_t *v = opts[i].type == CFG_BOOL && (!strcmp(value, "true") || !strcmp(value, "false"))
				    ? json_boolean(strcmp(value, "true") == 0)
				    : json_string(value);
		int r = set_value(&opts[i], out, v, "command line", err, errlen);
		json_decref(v);
		return r;
	}
	return errorf(err, errlen, "unknown option '%s'", key);
}

int config_load(const char *path, const struct cfg_option *opts, size_t n, void *out,
		char *err, size_t errlen)
{
	if (config_defaults(opts, n, out, err, errlen) < 0)
		return -1;
	uint8_t *buf = NULL;
	size_t len;
	int r = file_read_all(path, 1 << 20, &buf, &len);
	if (r < 0)
		return errorf(err, errlen, "cannot read config file %s: %s", path, strerror(-r));
	json_error_t je;
	json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!root)
		return errorf(err, errlen, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column,
			    je.text);
	int ret = -1;
	if (!json_is_object(root)) {
		errorf(err, errlen, "%s: the configuration must be a JSON object", path);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		const struct cfg_option *o = NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(opts[i].name, key) == 0)
				o = &opts[i];
		if (!o) {
			errorf(err, errlen, "%s: unknown key '%s'", path, key);
			goto out;
		}
		if (json_is_null(v))
			continue;
		if (set_value(o, out, v, path, err, errlen) < 0)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (!opts[i].required)
			continue;
		void *f = field(&opts[i], out);
		bool missing = (opts[i].type == CFG_STRING || opts[i].type == CFG_ENUM) &&
			       !*(char **)f;
		if (missing) {
			errorf(err, errlen, "%s: required key '%s' is missing", path, opts[i].name);
			goto out;
		}
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

void config_free(const struct cfg_option *opts, size_t n, void *out)
{
	for (size_t i = 0; i < n; i++) {
		void *f = field(&opts[i], out);
		if (opts[i].type == CFG_STRING || opts[i].type == CFG_ENUM) {
			free(*(char **)f);
			*(char **)f = NULL;
		} else if (opts[i].type == CFG_STRING_LIST) {
			struct cfg_list *l = f;
			for (size_t j = 0; j < l->n; j++)
				free(l->v[j]);
			free(l->v);
			l->v = NULL;
			l->n = 0;
		} else if (opts[i].type == CFG_JSON) {
			json_decref(*(json_t **)f);
			*(json_t **)f = NULL;
		}
	}
}
