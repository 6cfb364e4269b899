#!/usr/bin/env bash
# Installs Lanyard's build and test dependencies from Debian 12's packages, skipping what is
# already there. Non-interactive; needs root (or sudo) only when something is missing.
# --test adds what only the test suite needs (a PostgreSQL server for the throwaway clusters of
# the datastore and several-servers tests; prometheus for promtool, which lints both daemons'
# /metrics; python3-jwt, the independent JOSE implementation that validates JWT-SVIDs through OIDC
# discovery); the quick start does not pass it.
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config
	libwolfssl-dev libmicrohttpd-dev libgnutls28-dev libjansson-dev libcmocka-dev libnghttp2-dev
	libprotobuf-c-dev protobuf-c-compiler libsqlite3-dev libpq-dev libuv1-dev libcurl4-openssl-dev
	openssl curl util-linux procps sqlite3 chromium python3-yaml
	python3 python3-grpcio python3-grpc-tools python3-cryptography
)
if [ "${1:-}" = --test ]; then
	pkgs+=(postgresql prometheus python3-jwt)
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
