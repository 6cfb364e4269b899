#!/usr/bin/env bash
# Workload API interop with a second, independent gRPC stack: @grpc/grpc-js and @grpc/proto-loader
# from the npm registry, loading proto/workload.proto at run time (wlclient.js), checked with Node's
# crypto: the X509-SVID, its key and its bundle, a JWT-SVID and its signature against the JWT
# bundle, and INVALID_ARGUMENT without the security header. The packages are installed into a
# cache outside the tree that survives between runs; without npm or the registry the test skips.
if [ ! -x "${LANYARD_BIN:-}/lanyard-server" ] || [ ! -x "${LANYARD_BIN:-}/lanyard-agent" ]; then
	echo "SKIP: lanyard-server or lanyard-agent not built in '${LANYARD_BIN:-}'"
	exit 0
fi
source "$(dirname "$0")/lib.sh"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "SKIP: node or npm is not installed"
	exit 0
fi
NPM_DIR="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/lanyard-test-npm"
mkdir -p "$NPM_DIR" || fail "cannot create the npm cache directory $NPM_DIR"

# Both packages load from NPM_DIR: that is what "already installed" means, so a half-finished
# install is redone rather than trusted.
modules_present() {
	(cd "$NPM_DIR" && node -e 'require("@grpc/grpc-js"); require("@grpc/proto-loader")') \
		>/dev/null 2>&1
}
# Concurrent runs share the cache: one installs while the others wait for it.
exec 9>"$NPM_DIR/.lock"
flock -w 300 9 || fail "timed out waiting for the lock on $NPM_DIR"
if ! modules_present; then
	rc=0
	timeout 240 npm install --no-audit --no-fund --prefix "$NPM_DIR" \
		@grpc/grpc-js@1 @grpc/proto-loader@0 >"$T/npm.log" 2>&1 || rc=$?
	if [ $rc -ne 0 ]; then
		# Only an unreachable registry is a reason to skip; any other install failure is shown.
		if [ $rc -eq 124 ]; then
			skip "npm install did not finish in 240 s (registry unreachable?)"
		fi
		if grep -qE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ERR_SOCKET_TIMEOUT|E50[234]|network' "$T/npm.log"; then
			skip "npm cannot reach its registry: $(grep -m1 -E 'npm (ERR|error) (code|errno|network)' "$T/npm.log" || true)"
		fi
		cat "$T/npm.log" >&2
		fail "npm install of @grpc/grpc-js and @grpc/proto-loader failed (exit $rc)"
	fi
	modules_present || fail "npm install succeeded but the packages do not load from $NPM_DIR"
fi
flock -u 9
versions=$(cd "$NPM_DIR" && node -e 'for (const p of ["@grpc/grpc-js", "@grpc/proto-loader"])
	process.stdout.write(p + "@" + require(p + "/package.json").version + " ")')
ok "npm packages in $NPM_DIR: $versions"

start_server_and_agent

WL="$SRC/tests/integration/wlclient.js"
# Node's own timeout plus timeout(1): a stuck client cannot hang the test.
wl() {
	timeout 60 node "$WL" --modules "$NPM_DIR" --proto-dir "$SRC/proto" --socket "$AGENT_SOCK" "$@"
}

uid=$(id -u)
NODE_ID="spiffe://$TD/interop/node"
srv entry create --output json --spiffe-id "$NODE_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$uid" >/dev/null || fail "entry create"

wait_for 30 wl --timeout 5 x509 --expect-id "$NODE_ID" ||
	fail "grpc-js: the agent does not serve $NODE_ID"

# ---- X509-SVID: identity, certificate, key, chain to the bundle
out=$(wl x509 --expect-id "$NODE_ID") || fail "grpc-js: X509-SVID checks"
ok "grpc-js FetchX509SVID: one SVID, SAN, key and bundle check out: $out"

# The client's checks can fail: another expected ID is refused with a reason.
if err=$(wl x509 --expect-id "spiffe://$TD/interop/other" 2>&1); then
	fail "the client accepted an SVID for the wrong SPIFFE ID: $err"
fi
case "$err" in
*"spiffe_id is $NODE_ID"*) ;;
*) fail "the client failed for another reason than the SPIFFE ID: $err" ;;
esac
ok "the client rejects an unexpected SPIFFE ID"

# ---- JWT-SVID
out=$(wl jwt --expect-id "$NODE_ID" --audience node-interop) || fail "grpc-js: JWT-SVID checks"
ok "grpc-js FetchJWTSVID: header alg/kid/typ, claims sub/aud/exp, signature by the bundle key: $out"

# ---- the security header
for m in FetchX509SVID FetchX509Bundles FetchJWTSVID FetchJWTBundles ValidateJWTSVID; do
	out=$(wl no-header --method "$m") || fail "grpc-js: $m without the security header"
done
ok "grpc-js without workload.spiffe.io: INVALID_ARGUMENT (3) on every method"

echo "PASS"
