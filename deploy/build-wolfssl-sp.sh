#!/usr/bin/env bash
# Builds Lanyard's private wolfSSL with SP math (LANYARD_WOLFSSL=sp) and prints its prefix.
#
# Debian's libwolfssl is configured --enable-distro: fastmath with FP_ECC, about a fifth of the
# P-256 speed this machine's hardware gives, and every feature of every distribution user. This
# script takes the same version from Debian's own source package (Debian's patches applied) and
# configures it WITHOUT --enable-distro: only what the daemons use (agent/ server/ common/; list
# it with grep -rhoE "wolfSSL_[A-Za-z0-9_]+|wc_[A-Za-z0-9_]+" agent server common | sort -u),
# listed one by one. Memory is the reason (issue 18, 10,000 agents on one server): --enable-distro
# brings OPENSSL_EXTRA, which forces KEEP_PEER_CERT (every WOLFSSL embeds a 3.7 KB WOLFSSL_X509 of
# the peer and keeps its decoded contents on the heap for the connection's life), and
# WOLFSSL_MULTICAST (3.6 KB of DTLS multicast sequence numbers in every WOLFSSL's Keys):
# sizeof(WOLFSSL) 9,600 -> 1,264 bytes, ~11 KB less per accepted connection (NODISTRO-FINDINGS
# on branch nodistro; README "Performance").
#   --disable-examples --disable-crypttests --disable-benchmark   nothing but the library
#   --enable-tls13 --disable-oldtls   TLS 1.3 and 1.2 only (the daemons set TLS 1.2 as minimum)
#   --enable-ecc --enable-supportedcurves   P-256 keys, ECDHE, the supported_groups extension
#   --enable-sp --enable-sp-asm   single-precision math with x86_64 assembly (3-5x faster P-256)
#   --enable-intelasm             AES-NI and AVX/AVX2 SHA-256 (chosen at run time from CPUID; the
#                                 code is built with -maes -msse4.2: any x86-64 server CPU since
#                                 2010). With SP math a TLS handshake is mostly SHA-256 (HKDF,
#                                 transcript, DRBG health tests): 2.5x faster handshakes
#   --disable-fpecc               no per-thread 800 KB point tables (nothing to release)
#   --disable-sakke               SAKKE would give every thread 1 MB of thread-local caches
#   --enable-aesgcm=small         AES-GCM (TLS 1.3's ciphers and TLS 1.2's ECDHE-ECDSA-AES-GCM)
#                                 without GHASH tables: with AES-NI (intelasm, above) wolfSSL's
#                                 GHASH never reads them, and the default 4-bit table is 512 bytes
#                                 in each of a connection's two Aes contexts
#   --enable-sha384 --enable-sha512   TLS_AES_256_GCM_SHA384 and ECDSA-SHA384 chains
#   --enable-rsapss               RSA-PSS signatures (upstream CAs' and JWT keys: RSA stays on by
#                                 default, with wc_MakeRsaKey for --enable-keygen)
#   --enable-alpn --enable-sni    h2 by ALPN (gRPC), server_name (common/h2conn.c)
#   --disable-session-ticket      no session tickets (the default, spelled out): the server issues
#                                 none and caches no sessions, the agents never resume. With
#                                 HAVE_SESSION_TICKET a server-side WOLFSSL keeps its 168-byte DRBG
#                                 after every TLS 1.3 handshake (to encrypt tickets it never sends)
#   --enable-certgen --enable-certreq --enable-certext --enable-keygen   the CA (certificates,
#                                 CSRs, SKID/AKID extensions, key generation: common/x509_build.c)
#   --disable-sessioncerts        no SESSION_CERTS: each connection's WOLFSSL_SESSION would carry
#                                 two static peer chains (MAX_CHAIN_DEPTH=9 certificates of
#                                 MAX_X509_SIZE, 37.5 KB) plus a decoded copy of the peer's leaf.
#                                 The daemons take the peer's leaf in the verify callback instead
#                                 (common/tls_leaf.c) and never call wolfSSL_get_peer_chain
#   --disable-postauth            no TLS 1.3 post-handshake authentication (the daemons never ask
#                                 for it): with it wolfSSL keeps the handshake hashes, the key
#                                 exchange arrays and the peer's key after every TLS 1.3 handshake
#   CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB  the verify callback sees the leaf of every handshake, not
#                                 only failures (tls_leaf.c needs it and refuses to compile without)
#            -DWOLFSSL_ALT_NAMES  Cert.altNames (the SPIFFE ID URI SAN, common/x509_build.c)
#            -DUSE_ECC_B_PARAM    wc_ecc_point_is_on_curve (common/keys.c, common/jwt.c check peers'
#                                 and files' points)
#   CFLAGS=-g -O2 -ffunction-sections -fdata-sections
#                                 Debian's -g -O2 (configure defaults CFLAGS to empty: without this
#                                 the C code was built at -O0), and one section per function, so
#                                 that the daemons' link (--gc-sections) keeps only the code they
#                                 reach: a process's code is mapped 64 KB at a time as it runs (the
#                                 kernel's fault-around), and dead code between live functions is RSS
# No PKCS#11 (nothing calls wc_Pkcs11*), no OpenSSL-compatibility layer: code that needs it
# (liblanyard, lib/) uses Debian's library. The one exception is bench_tls, which measures
# liblanyard's handshake with SP math: `build-wolfssl-sp.sh --liblanyard` builds the flag set below
# (--enable-distro with the same SP math and the same per-connection cuts), for that program only.
# CPPFLAGS land in the installed wolfssl/options.h (configure writes every -D there), so code
# compiled against this prefix sees the struct layouts the library was built with (checked below).
# Installs it as a static library into a cache directory, so that it never replaces or shadows
# the system library: the daemons link it statically; liblanyard keeps Debian's, because its
# API hands wolfSSL objects to applications that use Debian's.
#
# Usage: deploy/build-wolfssl-sp.sh [--liblanyard] [PREFIX]
#   (default PREFIX: a directory under ~/.cache/lanyard named after the flag set's hash)
# Needs root for the deb-src entry and build tools the first time (apt-get), or both present.
set -euo pipefail

flags=(--disable-examples --disable-crypttests --disable-benchmark
	--enable-tls13 --disable-oldtls --enable-ecc --enable-supportedcurves
	--enable-sp --enable-sp-asm --enable-intelasm --disable-fpecc --disable-sakke
	--enable-aesgcm=small --enable-sha384 --enable-sha512 --enable-rsapss
	--enable-alpn --enable-sni --disable-session-ticket
	--enable-certgen --enable-certreq --enable-certext --enable-keygen
	--disable-sessioncerts --disable-postauth
	--enable-static --disable-shared --with-pic
	"CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_ALT_NAMES -DUSE_ECC_B_PARAM"
	"CFLAGS=-g -O2 -ffunction-sections -fdata-sections")
set_name=daemons

# --liblanyard: liblanyard's code (ex_data, session callbacks, X509 objects: OPENSSL_EXTRA) with
# SP math, for bench_tls. The daemons' flag set before issue 18's lean pass: --enable-distro, and
# per connection: --disable-sessioncerts and what forces SESSION_CERTS back on (--disable-psk,
# -qt, -nginx, -lighty, -openvpn, -stunnel), --disable-postauth, --disable-opensslall and what
# forces OPENSSL_ALL back on (--disable-smime, -libwebsockets, -asio).
if [ "${1:-}" = --liblanyard ]; then
	shift
	flags=(--enable-distro --enable-pkcs11 --disable-examples
		--enable-sp --enable-sp-asm --enable-intelasm --disable-fpecc --disable-sakke
		--disable-sessioncerts --disable-psk --disable-qt --disable-nginx --disable-lighty
		--disable-openvpn --disable-stunnel --disable-postauth
		--disable-opensslall --disable-smime --disable-libwebsockets --disable-asio
		--enable-static --disable-shared --with-pic CPPFLAGS=-DWOLFSSL_ALWAYS_VERIFY_CB
		"CFLAGS=-g -O2 -ffunction-sections -fdata-sections")
	set_name=liblanyard
fi

say() { echo "build-wolfssl-sp: $*" >&2; }
die() { say "$*"; exit 1; }

# shellcheck source=deploy/debian-source.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian-source.sh"

version=$(dpkg-query -W -f='${Version}' libwolfssl-dev 2>/dev/null) ||
	die "libwolfssl-dev is not installed (deploy/install-deps.sh installs it)"
stamp="$version ${flags[*]}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/lanyard"
prefix="${1:-$cache/wolfssl-sp-$(printf '%s' "$stamp" | sha256sum | cut -c1-12)}"

if [ -f "$prefix/.lanyard-stamp" ] && [ "$(cat "$prefix/.lanyard-stamp")" = "$stamp" ]; then
	echo "$prefix"
	exit 0
fi

debsrc_prepare "wolfssl=$version" dpkg-dev autoconf automake libtool make gcc

work=$(mktemp -d /tmp/lanyard-wolfssl-sp.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
debsrc_unpack wolfssl "$version" src
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
if [ "$set_name" = daemons ]; then
	! grep -qE '^#define (OPENSSL_EXTRA|KEEP_PEER_CERT|WOLFSSL_MULTICAST|GCM_TABLE|GCM_TABLE_4BIT|HAVE_SESSION_TICKET)$' \
		wolfssl/options.h || die "configure left OPENSSL_EXTRA, KEEP_PEER_CERT, multicast, a GHASH table or tickets on"
	for d in WOLFSSL_ALT_NAMES USE_ECC_B_PARAM HAVE_ALPN HAVE_SNI \
		WOLFSSL_CERT_GEN WOLFSSL_CERT_REQ WOLFSSL_CERT_EXT WOLFSSL_KEY_GEN WC_RSA_PSS GCM_SMALL; do
		grep -q "^#define $d\$" wolfssl/options.h || die "options.h lacks $d (the daemons need it)"
	done
fi
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
