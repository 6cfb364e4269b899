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
# and, for the memory of every TLS connection the server holds (10,000 agents, issue 18: the
# same build measured 81.6 KB of wolfSSL heap per accepted mutual-TLS connection before these):
#   --disable-sessioncerts        no SESSION_CERTS: each connection's WOLFSSL_SESSION carried two
#                                 static peer chains (MAX_CHAIN_DEPTH=9 certificates of
#                                 MAX_X509_SIZE, 37.5 KB) plus a decoded copy of the peer's leaf,
#                                 for the connection's life. The daemons take the peer's leaf in the
#                                 verify callback instead (common/tls_leaf.c) and never call
#                                 wolfSSL_get_peer_chain. --enable-distro turns these on, and each
#                                 forces SESSION_CERTS back on, none used by the daemons:
#     --disable-psk (TLS 1.3 + external PSK), --disable-qt, --disable-nginx, --disable-lighty,
#     --disable-openvpn, --disable-stunnel
#   CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB  what --enable-nginx/--enable-lighty gave: the verify
#                                 callback sees the leaf of every handshake, not only failures
#                                 (tls_leaf.c needs it and refuses to compile without it)
#   --disable-postauth            no TLS 1.3 post-handshake authentication (the daemons never ask
#                                 for it): with it wolfSSL keeps the handshake hashes, the key
#                                 exchange arrays and the peer's key after every TLS 1.3 handshake
#   --disable-opensslall          no OPENSSL_ALL (OPENSSL_EXTRA stays: the compatibility calls the
#                                 daemons and tests make, wolfSSL_CTX_set_session_cache_mode,
#                                 wolfSSL_X509_*, are OPENSSL_EXTRA ones). With OPENSSL_ALL every
#                                 accepted connection's embedded copy of the peer certificate
#                                 (KEEP_PEER_CERT, which OPENSSL_EXTRA forces) also decoded the
#                                 peer's public key into an EVP_PKEY/EC_KEY with big-number
#                                 copies: ~17 KB per connection for the life of the connection,
#                                 never read (heaptrack, fleet section, 500 agents). Its one call
#                                 the daemons made, wolfSSL_get_verify_mode, is gone: the verify
#                                 mode is set with the leaf callback (common/tls_leaf.h). These
#                                 --enable-distro features force OPENSSL_ALL back on, none used by
#                                 the daemons: --disable-smime, --disable-libwebsockets,
#                                 --disable-asio
# CPPFLAGS land in the installed wolfssl/options.h (configure writes every -D there), so code
# compiled against this prefix sees the struct layouts the library was built with (checked below).
# Installs it as a static library into a cache directory, so that it never replaces or shadows
# the system library: the daemons link it statically; liblanyard keeps Debian's, because its
# API hands wolfSSL objects to applications that use Debian's.
#
# Usage: deploy/build-wolfssl-sp.sh [PREFIX]   (default: a directory under ~/.cache/lanyard)
# Needs root for the deb-src entry and build tools the first time (apt-get), or both present.
set -euo pipefail

flags=(--enable-distro --enable-pkcs11 --disable-examples
	--enable-sp --enable-sp-asm --enable-intelasm --disable-fpecc --disable-sakke
	--disable-sessioncerts --disable-psk --disable-qt --disable-nginx --disable-lighty
	--disable-openvpn --disable-stunnel --disable-postauth
	--disable-opensslall --disable-smime --disable-libwebsockets --disable-asio
	--enable-static --disable-shared --with-pic CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB
	"CFLAGS=-g -O2 -ffunction-sections -fdata-sections")

# LANYARD_WOLFSSL_SP_FLAGS_VARIANT=lean (exploration, issue 18's server_rss_kib_100k; see
# NODISTRO-FINDINGS.md): no --enable-distro, the features the daemons use listed one by one.
# Without --enable-distro there is no OPENSSL_EXTRA and so no KEEP_PEER_CERT: sizeof(WOLFSSL)
# loses the embedded WOLFSSL_X509 of the peer and each connection its decoded contents.
case "${LANYARD_WOLFSSL_SP_FLAGS_VARIANT:-}" in
"") ;;
lean)
	flags=(--disable-examples --disable-crypttests --disable-benchmark
		--enable-tls13 --disable-oldtls --enable-ecc --enable-supportedcurves
		--enable-sp --enable-sp-asm --enable-intelasm --disable-fpecc --disable-sakke
		--enable-aesgcm --enable-sha384 --enable-sha512 --enable-rsapss
		--enable-alpn --enable-sni --enable-session-ticket
		--enable-certgen --enable-certreq --enable-certext --enable-keygen
		--disable-sessioncerts --disable-postauth
		--enable-static --disable-shared --with-pic
		"CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_ALT_NAMES -DUSE_ECC_B_PARAM"
		"CFLAGS=-g -O2 -ffunction-sections -fdata-sections")
	;;
*) echo "build-wolfssl-sp: LANYARD_WOLFSSL_SP_FLAGS_VARIANT=$LANYARD_WOLFSSL_SP_FLAGS_VARIANT: expected lean or empty" >&2
	exit 1 ;;
esac

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
! grep -qE '^#define (SESSION_CERTS|WOLFSSL_POST_HANDSHAKE_AUTH)$' wolfssl/options.h ||
	die "configure left SESSION_CERTS or post-handshake auth on (a flag forced it back)"
! grep -qE '^#define OPENSSL_ALL$' wolfssl/options.h ||
	die "configure left OPENSSL_ALL on (a flag forced it back)"
grep -q '^#define WOLFSSL_ALWAYS_VERIFY_CB$' wolfssl/options.h ||
	die "options.h lacks WOLFSSL_ALWAYS_VERIFY_CB (common/tls_leaf.c needs it)"
say "building (a few minutes)"
make -j"$(nproc)" >"$work/make.log" 2>&1 || die "make failed: $(tail -5 "$work/make.log")"
rm -rf "$prefix"
make install >"$work/install.log" 2>&1 || die "make install failed: $(tail -5 "$work/install.log")"
# An --enable-distro install leaves options.h out: without it, code compiled against this prefix
# would silently pick up the system's options.h and a struct layout that does not match.
install -m 0644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
# The layout guarantee: a program built against the installed options.h sees the public structs
# the daemons read (the verify callback's store, tls_leaf.c) as the library's own flags lay them out.
cat >"$work/layout.c" <<'C'
#ifdef WITH_OPTIONS
#include <wolfssl/options.h>
#endif
#include <wolfssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
int main(void)
{
	printf("%zu %zu %zu %zu %zu\n", sizeof(WOLFSSL_X509_STORE_CTX),
	       offsetof(WOLFSSL_X509_STORE_CTX, userCtx), offsetof(WOLFSSL_X509_STORE_CTX, certs),
	       offsetof(WOLFSSL_X509_STORE_CTX, error_depth), sizeof(WOLFSSL_BUFFER_INFO));
	return 0;
}
C
read -r -a lib_defs <<<"$(sed -n 's/^\(AM_CFLAGS\|CPPFLAGS\|CFLAGS\) = //p' Makefile |
	grep -oE -- '-D[^ ]+' | tr '\n' ' ')"
gcc -DWITH_OPTIONS -I"$prefix/include" "$work/layout.c" -o "$work/layout-installed" &&
	gcc "${lib_defs[@]}" -I. "$work/layout.c" -o "$work/layout-library" ||
	die "cannot compile the layout check"
[ "$("$work/layout-installed")" = "$("$work/layout-library")" ] ||
	die "the installed options.h and the library disagree on struct layouts"
# Static only: a shared copy would carry the system library's soname.
rm -f "$prefix"/lib/libwolfssl.so* "$prefix"/lib/libwolfssl.la
printf '%s' "$stamp" >"$prefix/.lanyard-stamp"
say "installed in $prefix"
echo "$prefix"
