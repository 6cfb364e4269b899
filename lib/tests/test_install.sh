#!/usr/bin/env bash
# liblanyard as a user gets it: `cmake --install` into a temp prefix, then a program built with
# pkg-config against the shared library and against the static archive. Also checks that only
# the public header is installed, that both libraries export nothing but lanyard_*, the SONAME,
# and that the header stands alone (C99, pedantic, and C++ when a compiler is there).
# usage: test_install.sh BUILD_DIR
set -euo pipefail

BUILD=${1:?build dir}
T=$(mktemp -d /tmp/lanyard-install.XXXXXX)
trap 'rm -rf "$T"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

cmake --install "$BUILD" --prefix "$T/prefix" --component liblanyard >"$T/install.log" ||
	{ cat "$T/install.log"; fail "cmake --install"; }
PC=$(find "$T/prefix" -name lanyard.pc)
[ -n "$PC" ] || fail "lanyard.pc not installed"
LIBDIR=$(dirname "$(dirname "$PC")")
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$PC")

headers=$(cd "$T/prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./lanyard.h " ] || fail "installed headers: $headers"
for f in liblanyard.so liblanyard.so.0 liblanyard.a; do
	[ -e "$LIBDIR/$f" ] || fail "$f not installed in $LIBDIR"
done
readelf -d "$LIBDIR/liblanyard.so" | grep -q 'SONAME.*\[liblanyard.so.0\]' || fail "SONAME"
echo "ok - installed: lanyard.h, liblanyard.so.0, liblanyard.a, lanyard.pc"

leaks=$(nm -D --defined-only "$LIBDIR/liblanyard.so" | awk '$2 != "A" {print $3}' |
	grep -v '^lanyard_' || true)
[ -z "$leaks" ] || fail "shared library exports internal symbols: $(echo $leaks | head -c 300)"
leaks=$(nm -g --defined-only "$LIBDIR/liblanyard.a" | awk 'NF == 3 {print $3}' |
	grep -v '^lanyard_' || true)
[ -z "$leaks" ] || fail "static archive exports internal symbols: $(echo $leaks | head -c 300)"
n=$(nm -D --defined-only "$LIBDIR/liblanyard.so" | grep -c ' lanyard_')
[ "$n" -ge 50 ] || fail "only $n lanyard_ symbols exported"
echo "ok - only the $n lanyard_* symbols are exported (shared and static)"

# The libraries of a sanitizer build need the sanitizer runtime in the program too.
SAN=""
if readelf -d "$LIBDIR/liblanyard.so" | grep -q libasan; then
	SAN="-fsanitize=address,undefined"
fi

cat >"$T/prog.c" <<'EOF'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <lanyard.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	lanyard_x509_source *src = NULL;
	lanyard_authorizer *a = lanyard_authorize_member_of("example.org");
	lanyard_tls *t = NULL;
	char err[256];
	int r;

	if (argc != 3)
		return 2;
	if (strcmp(lanyard_version(), argv[1]) != 0) {
		fprintf(stderr, "version %s != %s\n", lanyard_version(), argv[1]);
		return 1;
	}
	lanyard_set_log_level(LANYARD_LOG_NONE);
	if (lanyard_x509_source_new(argv[2], &src, err, sizeof(err)) != LANYARD_OK)
		return 1;
	r = lanyard_x509_source_wait_ready(src, 100, err, sizeof(err));
	if (r != LANYARD_ETIMEDOUT || !strstr(err, "cannot connect")) {
		fprintf(stderr, "wait_ready: %d %s\n", r, err);
		return 1;
	}
	if (lanyard_tls_client_new(src, a, &t, err, sizeof(err)) != LANYARD_OK)
		return 1;
	if (lanyard_authorizer_check(a, "spiffe://example.org/x") != LANYARD_OK)
		return 1;
	lanyard_tls_free(t);
	lanyard_authorizer_free(a);
	lanyard_x509_source_free(src);
	wolfSSL_Cleanup();
	puts("works");
	return 0;
}
EOF
VERSION=$(pkg-config --modversion lanyard)
cc -std=c11 -Wall -Wextra -Werror $SAN -o "$T/prog-shared" "$T/prog.c" \
	$(pkg-config --cflags --libs lanyard) -Wl,-rpath,"$LIBDIR" ||
	fail "build against the shared library"
[ "$("$T/prog-shared" "$VERSION" "$T/nothing.sock")" = works ] || fail "shared program"
ldd "$T/prog-shared" | grep 'liblanyard.so.0 =>' | grep -q "$T/" ||
	fail "not linked to the installed .so"
echo "ok - a program builds with pkg-config and runs against liblanyard.so"

cc -std=c11 -Wall -Wextra -Werror $SAN -o "$T/prog-static" "$T/prog.c" \
	$(pkg-config --cflags lanyard) "$LIBDIR/liblanyard.a" \
	$(pkg-config --static --libs lanyard | sed 's/-llanyard//') ||
	fail "build against the static archive"
[ "$("$T/prog-static" "$VERSION" "$T/nothing.sock")" = works ] || fail "static program"
! ldd "$T/prog-static" | grep -q liblanyard || fail "static program uses the .so"
echo "ok - the same program links statically (pkg-config --static)"

# The header alone: no other include needed, strict C99, and C++.
printf '#include <lanyard.h>\nint main(void) { return lanyard_version() == 0; }\n' >"$T/h.c"
cc -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -I"$T/prefix/include" "$T/h.c" ||
	fail "lanyard.h alone in C99"
if command -v c++ >/dev/null; then
	c++ -x c++ -Wall -Wextra -Werror -fsyntax-only -I"$T/prefix/include" "$T/h.c" ||
		fail "lanyard.h in C++"
fi
echo "ok - lanyard.h is self-contained"
