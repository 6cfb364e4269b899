#!/usr/bin/env bash
# Workload API interop with a third-party gRPC client: Debian's python3-grpcio with stubs generated
# now from proto/workload.proto, checking what a real server+agent serve with python3-cryptography
# (wlclient.py): X509-SVID rules, chain and key, bundles, JWT fetch and validation (by the agent and
# independently), the security header, a uid without entry, rotation on an open stream, and an
# entry deletion ending the stream.
if [ ! -x "${LANYARD_BIN:-}/lanyard-server" ] || [ ! -x "${LANYARD_BIN:-}/lanyard-agent" ]; then
	echo "SKIP: lanyard-server or lanyard-agent not built in '${LANYARD_BIN:-}'"
	exit 0
fi
source "$(dirname "$0")/lib.sh"

if ! $PY -c 'import grpc, grpc_tools, cryptography' 2>/dev/null; then
	echo "SKIP: $PY lacks grpcio, grpc_tools or cryptography"
	exit 0
fi
# A copy in the test's 0755 directory: the checkout may sit where other uids cannot read.
WL="$T/wlclient.py"
cp "$SRC/tests/integration/wlclient.py" "$WL"
chmod 644 "$WL"
STUBS="$T/stubs"
mkdir -m 755 "$STUBS"
$PY -m grpc_tools.protoc -I "$SRC/proto" --python_out="$STUBS" --grpc_python_out="$STUBS" \
	"$SRC/proto/workload.proto" || fail "stub generation"
chmod -R a+rX "$STUBS"
export PYTHONDONTWRITEBYTECODE=1

# Other uids must reach the socket: its directory (which also holds the agent's private data_dir
# in lib.sh's layout) must be traversable before the agent creates data_dir in it.
mkdir -m 755 "$T/agent"
start_server_and_agent

wl() {
	$PY "$WL" --socket "$AGENT_SOCK" --stubs "$STUBS" --trust-domain "$TD" "$@"
}
# as_uid UID CMD...: runs CMD as another user with no supplementary groups.
as_uid() {
	local uid=$1
	shift
	setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}
entry_id() {
	$PY -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

uid=$(id -u)
MAIN_ID="spiffe://$TD/interop/main"
JWT_ID="spiffe://$TD/interop/second"
DOOMED_ID="spiffe://$TD/interop/doomed"
DOOMED_UID=65533

srv entry create --output json --spiffe-id "$MAIN_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$uid" --x509-svid-ttl 30 --hint main >/dev/null
srv entry create --output json --spiffe-id "$JWT_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$uid" --selector "unix:gid:$(id -g)" >/dev/null
doomed=$(srv entry create --output json --spiffe-id "$DOOMED_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$DOOMED_UID" | entry_id)

wait_for 30 wl --timeout 5 x509 --expect-id "$MAIN_ID" --expect-id "$JWT_ID" ||
	fail "the agent does not serve the interop entries"
ok "agent serves the entries"

# ---- X509-SVIDs: every SVID passes the rules, verifies against its bundle, key matches
wl x509 --expect-id "$MAIN_ID" --expect-id "$JWT_ID" >"$T/x509.json" || fail "X509-SVID checks"
ok "X509-SVIDs pass the SPIFFE rules: $(cat "$T/x509.json")"

# ---- bundles
wl bundles >/dev/null || fail "bundle checks"
ok "X.509 and JWT bundles"

# ---- JWT-SVIDs: one per identity, validated by the agent and independently
wl jwt --audience interop-aud --audience second-aud >/dev/null || fail "JWT-SVID checks"
wl jwt --audience interop-aud --spiffe-id "$JWT_ID" >/dev/null || fail "JWT-SVID for one ID"
ok "JWT-SVIDs fetched, validated by the agent and against the JWT bundle"

# ---- the rules of the endpoint
for m in FetchX509SVID FetchX509Bundles FetchJWTSVID FetchJWTBundles ValidateJWTSVID; do
	wl expect-status --method "$m" --no-header --status INVALID_ARGUMENT >/dev/null ||
		fail "$m without the security header"
done
ok "no security header: INVALID_ARGUMENT on every method"

as_uid 65534 $PY "$WL" --socket "$AGENT_SOCK" --stubs "$STUBS" expect-status \
	--status PERMISSION_DENIED >/dev/null || fail "uid 65534 without entry"
as_uid 65534 $PY "$WL" --socket "$AGENT_SOCK" --stubs "$STUBS" expect-status \
	--method FetchJWTSVID --status PERMISSION_DENIED >/dev/null || fail "uid 65534 JWT"
grep -q "denied: no entry matches .* uid 65534" "$T/agent.log" ||
	fail "the agent did not log why uid 65534 was denied"
ok "a uid without entry: PERMISSION_DENIED, and the agent logs why"

# ---- rotation reaches an open stream before the old SVID expires (TTL 30 s)
wl --timeout 60 watch-rotation --spiffe-id "$MAIN_ID" >"$T/rotation.out" ||
	fail "no rotation on the open stream: $(cat "$T/rotation.out")"
ok "rotated SVID received on the open stream: $(tail -n 1 "$T/rotation.out")"

# ---- deleting the only entry of a stream ends it with PERMISSION_DENIED
wait_for 30 as_uid $DOOMED_UID $PY "$WL" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 5 \
	x509 --expect-id "$DOOMED_ID" || fail "the doomed entry is not served"
as_uid $DOOMED_UID $PY "$WL" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 60 \
	expect-end --status PERMISSION_DENIED >"$T/end.out" 2>&1 &
watcher=$!
PIDS+=("$watcher")
wait_for 20 grep -q READY "$T/end.out" || fail "the watcher got no first message: $(cat "$T/end.out")"
srv entry delete --id "$doomed" >/dev/null || fail "entry delete"
wait "$watcher" || fail "stream did not end with PERMISSION_DENIED: $(cat "$T/end.out")"
ok "entry deleted: the open stream ended with PERMISSION_DENIED"

echo "PASS"
