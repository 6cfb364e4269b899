/* ca_files.c: the ownership and mode rules for the CA's files (ca_files.h). */
#include "ca_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "util.h"

/* A file the CA trusts at load: a regular file (not a symlink) owned by the server's effective
 * uid that no other user may change; a key file (secret) must not be readable by them either.
 * Another owner, or write access for others, would let someone else choose what the server
 * signs with. Returns 0, or -1 with an error naming the file. */
int ca_file_check(const char *path, const char *what, bool secret, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errorf(err, errlen, "cannot use %s %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return errorf(err, errlen, "refusing %s %s: not a regular file%s", what, path,
			      S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
	if (st.st_uid != geteuid())
		return errorf(err, errlen, "refusing %s %s: owned by uid %u, not by the server's "
			      "uid %u (chown it)", what, path, (unsigned)st.st_uid,
			      (unsigned)geteuid());
	unsigned mode = (unsigned)(st.st_mode & 0777);
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)))
		return errorf(err, errlen, "refusing %s %s: mode %03o: it is readable by group or "
			      "others, or writable by them (chmod 600)", what, path, mode);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return errorf(err, errlen, "refusing %s %s: mode %03o: group or others can change it "
			      "(chmod 644)", what, path, mode);
	return 0;
}

/* The directory of the CA keys: whoever can write to it can swap a key file. */
int ca_key_dir_check(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(dir, &st) < 0)
		return errorf(err, errlen, "cannot use the CA key directory %s: %s", dir,
			      strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return errorf(err, errlen, "refusing the CA key directory %s: not a directory", dir);
	if (st.st_uid != geteuid())
		return errorf(err, errlen, "refusing the CA key directory %s: owned by uid %u, not by "
			      "the server's uid %u", dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return errorf(err, errlen, "refusing the CA key directory %s: mode %03o lets group or "
			      "others change it (chmod 700)", dir, (unsigned)(st.st_mode & 0777));
	return 0;
}

int ca_key_file_load(const char *path, lkey **out, char *err, size_t errlen)
{
	if (ca_file_check(path, "key file", true, err, errlen) < 0)
		return -1;
	uint8_t *pem = NULL;
	size_t len;
	int r = file_read_all(path, 1 << 20, &pem, &len);
	if (r < 0)
		return errorf(err, errlen, "cannot read key file %s: %s", path, strerror(-r));
	r = lkey_from_pem((const char *)pem, len, out);
	secure_zero(pem, len);
	free(pem);
	if (r < 0)
		return errorf(err, errlen, "key file %s does not hold a usable private key", path);
	return 0;
}

int ca_key_file_save(const char *path, const lkey *k, char *err, size_t errlen)
{
	char *pem = NULL;
	if (lkey_to_pem(k, &pem) < 0)
		return errorf(err, errlen, "cannot encode a CA key");
	int r = file_write_atomic(path, pem, strlen(pem), 0600);
	secure_zero(pem, strlen(pem));
	free(pem);
	if (r < 0)
		return errorf(err, errlen, "cannot write key file %s: %s", path, strerror(-r));
	return 0;
}

