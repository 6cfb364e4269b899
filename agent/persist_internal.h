/* persist_internal.h: what the pieces of persist share: persist.c (the state's JSON, loading and
 * saving) and persist_file.c (data_dir, checked reads of state files, PEM). Only those files
 * include this.
 *
 * Threads: the sync thread only. */
#ifndef LANYARD_PERSIST_INTERNAL_H
#define LANYARD_PERSIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "persist.h"

#define MAX_FILE (512u << 20)

/* Shared between the pieces of this module. */
char *certs_to_pem(const uint8_t *der, size_t len);
int load_pem_certs(const char *path, uint8_t **der, size_t *der_len, char *err,
			  size_t errlen);
void path_of(char *buf, size_t len, const char *dir, const char *name);
int read_private(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen);
int read_public(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen);

#endif
