#!/usr/bin/env bash
# Builds Lanyard's private wolfSSL with SP math (LANYARD_WOLFSSL=sp) and prints its prefix.
#
# Debian's libwolfssl is configured --enable-distro: fastmath with FP_ECC, about a fifth of the
# P-256 speed this machine's hardware gives. This script takes the same version from Debian's own
# source package (Debian's patches applied), configures it the way debian/rules does plus
#   --enable-sp --enable-sp-asm   single-precision math with x86_64 assembly (3-5x faster P-256)
#   --enable-intelasm             AES-NI and AVX/AVX2 SHA-256 (chosen at run time from CPUID; the
#                                 code is built with -maes -msse4.2: any x86-64 server CPU since
#                                 2010). With SP math a TLS handshake is mostly SHA-256 (HKDF,
#                                 transcript, DRBG health tests): 2.5x faster handshakes
#   --disable-fpecc               no per-thread 800 KB point tables (nothing to release)
#   --disable-sakke               SAKKE would give every thread 1 MB of thread-local caches
#   CFLAGS=-g -O2 -ffunction-sections -fdata-sections
#                                 Debian's -g -O2 (debian/rules passes dpkg-buildflags;
#                                 --enable-distro adds no optimisation of its own and configure
#                                 defaults CFLAGS to empty: without this the C code was built
#                                 at -O0), and one section per function, so that the daemons'
#                                 link (--gc-sections) keeps only the code they reach: a process's
#                                 code is mapped 64 KB at a time as it runs (the kernel's
#                                 fault-around), and dead code between live functions is RSS
# and installs it as a static library into a cache directory, so that it never replaces or shadows
# the system library: the daemons link it statically; liblanyard keeps Debian's, because its
# API hands wolfSSL objects to applications that use Debian's.
#
# Usage: deploy/build-wolfssl-sp.sh [PREFIX]   (default: a directory under ~/.cache/lanyard)
# Needs root for the deb-src entry and build tools the first time (apt-get), or both present.
set -euo pipefail

flags=(--enable-distro --enable-pkcs11 --disable-examples
	--enable-sp --enable-sp-asm --enable-intelasm --disable-fpecc --disable-sakke
	--enable-static --disable-shared --with-pic
	"CFLAGS=-g -O2 -ffunction-sections -fdata-sections")

say() { echo "build-wolfssl-sp: $*" >&2; }
die() { say "$*"; exit 1; }

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

version=$(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null) ||
	die "libwolfssl-dev is not installed (deploy/install-deps.sh installs it)"
stamp="$version ${flags[*]}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lanyard"
prefix="${1:-$cache/wolfssl-sp-$(printf '%s' "$stamp" | sha256sum | cut -c1-12)}"

if [ -f "$prefix/.lanyard-stamp" ] && [ "$(cat "$prefix/.lanyard-stamp")" = "$stamp" ]; then
	echo "$prefix"
	exit 0
fi

# Debian 12 lists binary packages only: add the matching deb-src stanza once.
if ! apt-get source --print-uris "wolfssl=$version" >/dev/null 2>&1; then
	src_list=/etc/apt/sources.list.d/debian-src.sources
	[ -f /etc/apt/sources.list.d/debian.sources ] ||
		die "no /etc/apt/sources.list.d/debian.sources to derive a deb-src entry from"
	say "adding $src_list (deb-src of the configured Debian mirrors)"
	sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
		$sudo tee "$src_list" >/dev/null
	$sudo apt-get update -q >&2
fi
tools=(dpkg-dev autoconf automake libtool make gcc)
missing=()
for p in "${tools[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

work=$(mktemp -d /tmp/lanyard-wolfssl-sp.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
say "fetching the source of wolfssl $version"
apt-get source --download-only "wolfssl=$version" >&2 2>"$work/fetch.log" ||
	die "apt-get source wolfssl=$version failed: $(tail -3 "$work/fetch.log")"
dpkg-source -x ./*.dsc src >"$work/extract.log" 2>&1 ||
	die "dpkg-source -x failed: $(tail -3 "$work/extract.log")"
cd src
say "configuring (${flags[*]})"
{ ./autogen.sh && ./configure --prefix="$prefix" "${flags[@]}"; } >"$work/configure.log" 2>&1 ||
	die "configure failed: see the last lines: $(tail -5 "$work/configure.log")"
# The guarantees this build exists for; configure may silently ignore a flag.
grep -q '^#define WOLFSSL_SP_X86_64_ASM' wolfssl/options.h ||
	grep -q '^#define WOLFSSL_HAVE_SP_ECC' wolfssl/options.h || die "configure did not enable SP math"
grep -q '^#define USE_INTEL_SPEEDUP' wolfssl/options.h || die "configure did not enable intelasm"
! grep -qE '^#define (FP_ECC|WOLFCRYPT_HAVE_SAKKE)$' wolfssl/options.h ||
	die "configure left FP_ECC or SAKKE on"
say "building (a few minutes)"
make -j"$(nproc)" >"$work/make.log" 2>&1 || die "make failed: $(tail -5 "$work/make.log")"
rm -rf "$prefix"
make install >"$work/install.log" 2>&1 || die "make install failed: $(tail -5 "$work/install.log")"
# An --enable-distro install leaves options.h out: without it, code compiled against this prefix
# would silently pick up the system's options.h and a struct layout that does not match.
install -m 0644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
# Static only: a shared copy would carry the system library's soname.
rm -f "$prefix"/lib/libwolfssl.so* "$prefix"/lib/libwolfssl.la
printf '%s' "$stamp" >"$prefix/.lanyard-stamp"
say "installed in $prefix"
echo "$prefix"
