/* config.h: JSON configuration files described by a table of options (STYLE.md habit 7).
 * Each option is declared once with its name, type, bounds and default; unknown keys and
 * out-of-range values are errors that name the key, the value and the file. */
#ifndef LANYARD_CONFIG_H
#define LANYARD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cfg_type {
	CFG_STRING,      /* char *, NULL when unset without default */
	CFG_INT,         /* int64_t within [min, max] */
	CFG_DURATION,    /* int64_t seconds within [min, max]; "90s", "5m", "1h", "2d" or a number */
	CFG_BOOL,        /* bool */
	CFG_DOUBLE,      /* double within [dmin, dmax] */
	CFG_ENUM,        /* char *, one of choices */
	CFG_STRING_LIST, /* struct cfg_list */
	CFG_JSON,        /* json_t *, any JSON value kept as is (checked by the caller); NULL = unset */
};

struct cfg_list {
	char **v;
	size_t n;
};

struct cfg_option {
	const char *name;
	enum cfg_type type;
	size_t offset;                 /* offsetof the field in the config struct */
	const char *def;               /* default as text (parsed like a value); NULL = none */
	int64_t min, max;              /* CFG_INT, CFG_DURATION */
	double dmin, dmax;             /* CFG_DOUBLE */
	const char *const *choices;    /* CFG_ENUM, NULL-terminated */
	bool required;
	const char *doc;               /* one line for the README and --help */
};

/* Applies defaults, then reads path. On error returns -1 with a message naming file, key and
 * value in err; the struct then holds whatever was set and must still be freed. */
int config_load(const char *path, const struct cfg_option *opts, size_t n, void *out,
		char *err, size_t errlen);
/* Applies only the defaults (no file). */
int config_defaults(const struct cfg_option *opts, size_t n, void *out, char *err, size_t errlen);
/* Sets one option from text, as a command-line override would. */
int config_set(const struct cfg_option *opts, size_t n, void *out, const char *key,
	       const char *value, char *err, size_t errlen);
/* Frees every string and list the table describes. */
void config_free(const struct cfg_option *opts, size_t n, void *out);

#endif
