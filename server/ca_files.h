/* ca_files.h: the rules for the files the CA trusts (certificates, the key directory, key files)
 * and the reading and writing of PEM key files. Used by the network-facing process for public
 * files (ca.c) and by the signer process alone for private keys (signer.c).
 *
 * Stateless; safe from any thread. Errors: -1 with a message naming the file in err. */
#ifndef LANYARD_CA_FILES_H
#define LANYARD_CA_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "keys.h"

/* A file the CA trusts at load: a regular file (not a symlink) owned by the server's effective
 * uid that no other user may change; with secret, not readable by them either. */
int ca_file_check(const char *path, const char *what, bool secret, char *err, size_t errlen);
/* The directory of the CA keys: owned by the server's uid, not writable by group or others. */
int ca_key_dir_check(const char *dir, char *err, size_t errlen);
/* Reads a private key file after ca_file_check(secret); the PEM is wiped after use. */
int ca_key_file_load(const char *path, lkey **out, char *err, size_t errlen);
/* Writes k as PKCS#8 PEM, mode 0600, atomically. */
int ca_key_file_save(const char *path, const lkey *k, char *err, size_t errlen);

#endif
