/* persist_file.c: the files of the agent's state (see persist.h): data_dir itself, the ownership
 * and mode checks every state file passes before it is read, bounded reads, PEM certificates in
 * and out.
 *
 * Threads: the sync thread only (like the rest of persist). */
#include "persist.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "der_pem.h"
#include "jwt.h"
#include "keys.h"
#include "log.h"
#include "spiffeid.h"
#include "strv.h"
#include "util.h"
#include "x509.h"

#include "persist_internal.h"

void path_of(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

int persist_prepare_dir(const char *dir, char *err, size_t errlen)
{
	int r = mkdir_p(dir, 0700);
	if (r < 0)
		return errorf(err, errlen, "cannot create data_dir %s: %s", dir, strerror(-r));
	struct stat st;
	if (stat(dir, &st) < 0)
		return errorf(err, errlen, "cannot stat data_dir %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return errorf(err, errlen, "data_dir %s is not a directory", dir);
	if (st.st_uid != geteuid())
		return errorf(err, errlen, "data_dir %s belongs to uid %u, not to this agent (uid %u)",
			    dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		/* The directory holds private keys: tighten it rather than refuse, since we own it. */
		if (chmod(dir, st.st_mode & 0700) < 0)
			return errorf(err, errlen, "data_dir %s has mode %04o and chmod 0700 failed: %s",
				    dir, (unsigned)(st.st_mode & 07777), strerror(errno));
	}
	return 0;
}

/* How a state file may be used. Every file must be a regular file owned by the agent's uid that
 * neither group nor others may write: anyone else who can write it can plant a key or a trust
 * anchor. Such a file is discarded (FILE_DISCARD, one log line), so that what it held is fetched
 * anew. A private file (a key) that group or others may merely read is an operator error that
 * may have leaked the key: the agent refuses to start (FILE_REFUSE) rather than hide it. */
enum file_verdict { FILE_ABSENT, FILE_OK, FILE_DISCARD, FILE_REFUSE };

static enum file_verdict check_file(const char *path, bool private, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return FILE_ABSENT;
		errorf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
		return FILE_REFUSE;
	}
	if (!S_ISREG(st.st_mode)) {
		log_warnx("discarding %s: not a regular file; what it held will be fetched anew",
			 path);
		return FILE_DISCARD;
	}
	if (st.st_uid != geteuid()) {
		log_warnx("discarding %s: owned by uid %u, not by this agent (uid %u); what it held "
			 "will be fetched anew",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		return FILE_DISCARD;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		log_warnx("discarding %s: mode %04o lets group or others write it; what it held "
			 "will be fetched anew",
			 path, (unsigned)(st.st_mode & 07777));
		return FILE_DISCARD;
	}
	if (private && (st.st_mode & (S_IRWXG | S_IRWXO))) {
		errorf(err, errlen,
		       "refusing to use %s: it holds private keys and its mode %04o lets group "
		       "or others access it (run: chmod 600 %s)",
		       path, (unsigned)(st.st_mode & 07777), path);
		return FILE_REFUSE;
	}
	return FILE_OK;
}

/* Reads a state file after check_file. *out NULL (and 0) when it is absent or discarded. */
static int read_state_file(const char *path, bool private, uint8_t **out, size_t *len, char *err,
			   size_t errlen)
{
	*out = NULL;
	*len = 0;
	switch (check_file(path, private, err, errlen)) {
	case FILE_ABSENT:
	case FILE_DISCARD:
		return 0;
	case FILE_REFUSE:
		return -1;
	case FILE_OK:
		break;
	}
	/* O_NOFOLLOW through file_read_all is not available; lstat above refused links, and the
	 * directory is the agent's own 0700 one, so nobody else can swap one in meanwhile. */
	int r = file_read_all(path, MAX_FILE, out, len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return errorf(err, errlen, "cannot read %s: %s", path, strerror(-r));
	return 0;
}

int read_private(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	return read_state_file(path, true, out, len, err, errlen);
}

int read_public(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	return read_state_file(path, false, out, len, err, errlen);
}

int load_pem_certs(const char *path, uint8_t **der, size_t *der_len, char *err,
			  size_t errlen)
{
	uint8_t *buf;
	size_t len;
	*der = NULL;
	*der_len = 0;
	if (read_public(path, &buf, &len, err, errlen) < 0)
		return -1;
	if (!buf)
		return 0;
	int r = pem_decode_concat((const char *)buf, len, "CERTIFICATE", der, der_len);
	free(buf);
	if (r < 0)
		return errorf(err, errlen, "%s: malformed PEM", path);
	if (*der_len == 0) {
		free(*der);
		*der = NULL;
		return errorf(err, errlen, "%s: no CERTIFICATE block", path);
	}
	return 0;
}

char *certs_to_pem(const uint8_t *der, size_t len)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	if (x509_split_der(der, len, &certs, &lens, &n) < 0 || n == 0) {
		free(certs);
		free(lens);
		return NULL;
	}
	size_t total = 0, cap = 0;
	char *out = NULL;
	for (size_t i = 0; i < n; i++) {
		char *p = pem_encode("CERTIFICATE", certs[i], lens[i]);
		if (!p) {
			free(out);
			out = NULL;
			break;
		}
		size_t pl = strlen(p);
		if (total + pl + 1 > cap) {
			cap = (total + pl + 1) * 2;
			out = xrealloc(out, cap);
		}
		memcpy(out + total, p, pl + 1);
		total += pl;
		free(p);
	}
	free(certs);
	free(lens);
	return out;
}
