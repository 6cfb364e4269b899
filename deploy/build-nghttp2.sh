#!/usr/bin/env bash
# Builds Lanyard's private nghttp2 (LANYARD_NGHTTP2=patched) and prints its prefix.
#
# Why: memory per connection (issue 18, 10,000 agents each holding an HTTP/2 connection to one
# server). Debian 12's nghttp2 1.52 allocates, for every session, a 256-bucket stream map (4 KiB),
# two 128-slot HPACK rings (1 KiB each) and the HPACK encoder's 128-bucket header map (1 KiB of
# the session struct) whether the connection ever uses them or not; an idle node API connection
# uses one stream and no HPACK table at all (SETTINGS_HEADER_TABLE_SIZE 0 both ways). The patches in deploy/nghttp2/ (each says what and why) make those tables start
# empty and grow on demand, as upstream's later releases do for the map. Everything else is
# Debian's: the same version, from Debian's own source package with Debian's patches (security
# fixes included), built lib-only, static, with Debian's hardening flags and one section per
# function (the daemons link with --gc-sections, like the private wolfSSL: build-wolfssl-sp.sh).
#   --enable-lib-only                       no applications, no Python, no C++
#   --enable-static --disable-shared --with-pic   linked into the daemons, never a shared copy
#                                           that could shadow or be confused with the system one
#   CFLAGS/CPPFLAGS                         Debian's -g -O2 and hardening (stack protector,
#                                           _FORTIFY_SOURCE=2) plus -fstack-clash-protection and
#                                           -fcf-protection (tests/integration/test_hardening.sh
#                                           checks the daemons for CET landing pads)
# liblanyard keeps Debian's shared libnghttp2 (applications linking it may use nghttp2 too: never
# two nghttp2s in one process). The install goes to a cache directory named after a hash of the
# source version, the patches and the flags: a changed patch is a new build, never a stale one.
#
# Usage: deploy/build-nghttp2.sh [PREFIX]
#   (default PREFIX: a directory under ~/.cache/lanyard named after that hash)
# Needs root for the deb-src entry and build tools the first time (apt-get), or both present.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
flags=(--enable-lib-only --enable-static --disable-shared --with-pic
	"CPPFLAGS=-D_FORTIFY_SOURCE=2"
	"CFLAGS=-g -O2 -fstack-protector-strong -fstack-clash-protection -fcf-protection -ffunction-sections -fdata-sections")
patches=("$here"/nghttp2/*.patch)

say() { echo "build-nghttp2: $*" >&2; }
die() { say "$*"; exit 1; }

# shellcheck source=deploy/debian-source.sh
. "$here/debian-source.sh"

[ -f "${patches[0]}" ] || die "no patches in $here/nghttp2"
version=$(dpkg-query -W -f='${Version}' libnghttp2-dev 2>/dev/null) ||
	die "libnghttp2-dev is not installed (deploy/install-deps.sh installs it)"
stamp="$version $(cat "${patches[@]}" | sha256sum | cut -c1-16) ${flags[*]}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lanyard"
prefix="${1:-$cache/nghttp2-$(printf '%s' "$stamp" | sha256sum | cut -c1-12)}"

if [ -f "$prefix/.lanyard-stamp" ] && [ "$(cat "$prefix/.lanyard-stamp")" = "$stamp" ]; then
	echo "$prefix"
	exit 0
fi

debsrc_prepare "nghttp2=$version" dpkg-dev autoconf automake libtool make gcc pkg-config

work=$(mktemp -d /tmp/lanyard-nghttp2.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
debsrc_unpack nghttp2 "$version" src
cd src
for p in "${patches[@]}"; do
	say "applying $(basename "$p")"
	patch -p1 --no-backup-if-mismatch <"$p" >"$work/patch.log" 2>&1 ||
		die "$(basename "$p") does not apply to nghttp2 $version: $(tail -3 "$work/patch.log")"
done
say "configuring (${flags[*]})"
{ autoreconf -fi && ./configure --prefix="$prefix" "${flags[@]}"; } >"$work/configure.log" 2>&1 ||
	die "configure failed: see the last lines: $(tail -5 "$work/configure.log")"
say "building"
make -C lib -j"$(nproc)" >"$work/make.log" 2>&1 || die "make failed: $(tail -5 "$work/make.log")"
rm -rf "$prefix"
make -C lib install >"$work/install.log" 2>&1 ||
	die "make install failed: $(tail -5 "$work/install.log")"
rm -f "$prefix"/lib/libnghttp2.so* "$prefix"/lib/libnghttp2.la

# The guarantee this build exists for: a server session that has not opened a stream allocates
# neither the stream map nor an HPACK ring nor the encoder's header map (256 x 16, 128 x 8 and
# 128 x 8 bytes).
cat >"$work/lazy.c" <<'C'
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
static int bad;
static void *m(size_t n, void *ud) { (void)ud; if (n == 4096 || n == 1024) bad = 1; return malloc(n); }
static void f(void *p, void *ud) { (void)ud; free(p); }
static void *c(size_t k, size_t n, void *ud) { (void)ud; if (k * n == 4096 || k * n == 1024) bad = 1; return calloc(k, n); }
static void *r(void *p, size_t n, void *ud) { (void)ud; return realloc(p, n); }
int main(void)
{
	nghttp2_mem mem = {NULL, m, f, c, r};
	nghttp2_session_callbacks *cbs;
	nghttp2_session *s;
	if (nghttp2_session_callbacks_new(&cbs) || nghttp2_session_server_new3(&s, cbs, NULL, NULL, &mem))
		return 2;
	nghttp2_session_del(s);
	nghttp2_session_callbacks_del(cbs);
	printf("%s\n", bad ? "eager" : "lazy");
	return 0;
}
C
gcc -I"$prefix/include" "$work/lazy.c" "$prefix/lib/libnghttp2.a" -o "$work/lazy" ||
	die "cannot compile the lazy-table check"
[ "$("$work/lazy")" = lazy ] || die "a new session still allocates the stream map or an HPACK ring"
printf '%s' "$stamp" >"$prefix/.lanyard-stamp"
say "installed in $prefix"
echo "$prefix"
