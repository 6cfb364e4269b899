#include "spiffeid.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

static int check_td(const char *td, size_t len, char *err, size_t errlen)
{
	if (len == 0)
		return errorf(err, errlen, "trust domain is missing");
	if (len > TRUST_DOMAIN_MAX)
		return errorf(err, errlen, "trust domain is longer than %d bytes", TRUST_DOMAIN_MAX);
	for (size_t i = 0; i < len; i++) {
		if (td[i] >= 'A' && td[i] <= 'Z')
			return errorf(err, errlen, "trust domain must be lower case");
		if (td[i] == ':')
			return errorf(err, errlen, "trust domain must not contain a port");
		if (td[i] == '@')
			return errorf(err, errlen, "trust domain must not contain user info");
		if (!td_char(td[i]))
			return errorf(err, errlen,
				    "trust domain contains '%c': only a-z, 0-9, '.', '-' and '_' are allowed",
				    td[i]);
	}
	return 0;
}

int trust_domain_validate(const char *td, char *err, size_t errlen)
{
	if (!td)
		return errorf(err, errlen, "trust domain is missing");
	if (strncmp(td, "spiffe://", 9) == 0)
		return errorf(err, errlen, "trust domain must be a bare name such as example.org, not a URI");
	return check_td(td, strlen(td), err, errlen);
}

int spiffeid_parse(const char *s, char *td, const char **path_out, char *err, size_t errlen)
{
	if (!s || !*s)
		return errorf(err, errlen, "SPIFFE ID is empty");
	size_t len = strlen(s);
	if (len > SPIFFEID_MAX)
		return errorf(err, errlen, "SPIFFE ID is longer than %d bytes", SPIFFEID_MAX);
	if (strncasecmp(s, "spiffe://", 9) != 0)
		return errorf(err, errlen, "SPIFFE ID must start with spiffe://");
	if (strncmp(s, "spiffe://", 9) != 0)
		return errorf(err, errlen, "SPIFFE ID scheme must be lower case");
	const char *p = s + 9;
	const char *slash = strchr(p, '/');
	size_t tdlen = slash ? (size_t)(slash - p) : strlen(p);
	for (size_t i = 0; i < tdlen; i++) {
		if (p[i] == '?' || p[i] == '#')
			return errorf(err, errlen, "SPIFFE ID must not have a query or fragment");
		if (p[i] == '%')
			return errorf(err, errlen, "SPIFFE ID must not be percent-encoded");
	}
	if (check_td(p, tdlen, err, errlen) < 0)
		return -1;
	if (td) {
		memcpy(td, p, tdlen);
		td[tdlen] = 0;
	}
	const char *path = slash ? slash : p + tdlen;
	if (*path) {
		/* Each segment: non-empty, not "." or "..", only [a-zA-Z0-9._-]. */
		const char *seg = path;
		while (*seg == '/') {
			const char *start = seg + 1;
			const char *end = start;
			while (*end && *end != '/') {
				if (*end == '?' || *end == '#')
					return errorf(err, errlen,
						    "SPIFFE ID must not have a query or fragment");
				if (*end == '%')
					return errorf(err, errlen,
						    "SPIFFE ID must not be percent-encoded");
				if (!path_char(*end))
					return errorf(err, errlen,
						    "SPIFFE ID path contains '%c': only a-z, A-Z, 0-9, "
						    "'.', '-' and '_' are allowed", *end);
				end++;
			}
			size_t seglen = (size_t)(end - start);
			if (seglen == 0)
				return errorf(err, errlen, *end ? "SPIFFE ID path has an empty segment"
							      : "SPIFFE ID must not end with '/'");
			if ((seglen == 1 && start[0] == '.') ||
			    (seglen == 2 && start[0] == '.' && start[1] == '.'))
				return errorf(err, errlen,
					    "SPIFFE ID path must not contain '.' or '..' segments");
			seg = end;
		}
	}
	if (path_out)
		*path_out = path;
	return 0;
}

int spiffeid_validate_leaf(const char *s, char *err, size_t errlen)
{
	const char *path;
	if (spiffeid_parse(s, NULL, &path, err, errlen) < 0)
		return -1;
	if (!*path)
		return errorf(err, errlen, "'%s' is a trust domain ID: a workload SPIFFE ID needs a path",
			    s);
	return 0;
}

bool spiffeid_member_of(const char *s, const char *td)
{
	char got[TRUST_DOMAIN_MAX + 1];
	if (spiffeid_parse(s, got, NULL, NULL, 0) < 0)
		return false;
	return strcmp(got, td) == 0;
}

bool spiffeid_reserved(const char *s, const char *td)
{
	char got[TRUST_DOMAIN_MAX + 1];
	const char *path;
	const size_t n = strlen(SPIFFEID_RESERVED_SEGMENT);
	/* The path compares case-sensitively (SPIFFE-ID.md): /Lanyard/server is another ID, and
	 * agents compare the server's ID byte for byte. */
	if (spiffeid_parse(s, got, &path, NULL, 0) < 0 || strcmp(got, td) != 0)
		return false;
	return path[0] == '/' && strncmp(path + 1, SPIFFEID_RESERVED_SEGMENT, n) == 0 &&
	       (path[1 + n] == '\0' || path[1 + n] == '/');
}
