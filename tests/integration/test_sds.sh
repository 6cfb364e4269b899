#!/usr/bin/env bash
# Envoy SDS v3 on the agent's Workload API socket, driven by a real gRPC client (Debian's
# python3-grpcio with stubs generated now from proto/envoy, sdsclient.py) and checked with
# python3-cryptography: a Secret per SPIFFE ID whose key matches its certificate, `default`,
# `ROOTCA`, a trust domain ID, `ALL` with the SPIFFE validator, no names, FetchSecrets,
# DeltaSecrets UNIMPLEMENTED, ACK holds, NACK logged and not answered, stale nonce ignored,
# changed names answered at once, a rotation (15 s SVIDs) pushed on an open stream, a caller
# without an entry gets nothing (and the log says why), and another workload's SPIFFE ID is
# refused, never served; metrics and /status count the streams and pushes.
# With LANYARD_ENVOY_API=DIR the client speaks with stubs from Envoy's own API files (see below).
if [ ! -x "${LANYARD_BIN:-}/lanyard-server" ] || [ ! -x "${LANYARD_BIN:-}/lanyard-agent" ]; then
	echo "SKIP: lanyard-server or lanyard-agent not built in '${LANYARD_BIN:-}'"
	exit 77
fi
source "$(dirname "$0")/lib.sh"

if ! $PY -c 'import grpc, grpc_tools, cryptography' 2>/dev/null; then
	echo "SKIP: $PY lacks grpcio, grpc_tools or cryptography"
	exit 77
fi
if ! command -v setpriv >/dev/null || [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root and setpriv to run clients as other uids"
	exit 77
fi
# A copy in the test's 0755 directory: the checkout may sit where other uids cannot read.
SDS="$T/sdsclient.py"
cp "$SRC/tests/integration/sdsclient.py" "$SDS"
chmod 644 "$SDS"
STUBS="$T/stubs"
mkdir -m 755 "$STUBS"
if [ -n "${LANYARD_ENVOY_API:-}" ]; then
	# Envoy's own API files instead of Lanyard's subset, to prove the subset wire-exact: a
	# directory with envoy-api/, xds/, googleapis/ and protoc-gen-validate/ (as the npm package
	# @grpc/grpc-js-xds ships them under deps/). Every file the SDS ones import is compiled.
	roots="$LANYARD_ENVOY_API/envoy-api:$LANYARD_ENVOY_API/xds:$LANYARD_ENVOY_API/googleapis:$LANYARD_ENVOY_API/protoc-gen-validate"
	files=$($PY - "$roots" envoy/service/secret/v3/sds.proto \
		envoy/extensions/transport_sockets/tls/v3/secret.proto \
		envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto <<'PY'
import os, re, sys
roots, todo, seen = sys.argv[1].split(":"), sys.argv[2:], []
while todo:
    f = todo.pop()
    if f in seen or f.startswith("google/protobuf/"):
        continue
    p = next((os.path.join(r, f) for r in roots if os.path.exists(os.path.join(r, f))), None)
    if not p:
        sys.exit("missing " + f)
    seen.append(f)
    todo += re.findall(r'^import\s+(?:public\s+)?"([^"]+)";', open(p).read(), re.M)
print(" ".join(seen))
PY
) || fail "Envoy API files in $LANYARD_ENVOY_API"
	$PY -m grpc_tools.protoc $(echo "$roots" | sed 's/^/-I /; s/:/ -I /g') \
		--python_out="$STUBS" --grpc_python_out="$STUBS" $files || fail "stub generation"
	echo "# client stubs from Envoy's API in $LANYARD_ENVOY_API"
else
	# Only Envoy's and google.rpc's files: google.protobuf comes with python3-protobuf.
	(cd "$SRC/proto" && $PY -m grpc_tools.protoc -I . --python_out="$STUBS" \
		--grpc_python_out="$STUBS" $(find envoy google/rpc -name '*.proto')) ||
		fail "stub generation"
fi
chmod -R a+rX "$STUBS"
export PYTHONDONTWRITEBYTECODE=1

mkdir -m 755 "$T/agent"
start_server_and_agent

sds() {
	$PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" "$@"
}
as_uid() {
	local uid=$1
	shift
	setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}
# jcheck FILE PYTHON-EXPRESSION: the expression over d (the JSON in FILE) must be true.
jcheck() {
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$1" "$2" || fail "check '$2' on $(cat "$1")"
}

MAIN_ID="spiffe://$TD/envoy/front"
OTHER_ID="spiffe://$TD/envoy/other"
ROT_ID="spiffe://$TD/envoy/rotating"
OTHER_UID=65533
ROT_UID=65532
SECRET_URL=type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret

srv entry create --spiffe-id "$MAIN_ID" --parent-id "$AGENT_ID" --selector "unix:uid:0" >/dev/null
srv entry create --spiffe-id "$OTHER_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$OTHER_UID" >/dev/null
srv entry create --spiffe-id "$ROT_ID" --parent-id "$AGENT_ID" --selector "unix:uid:$ROT_UID" \
	--x509-svid-ttl 15 >/dev/null

wait_for 30 sds --timeout 5 --wait 3 stream "$MAIN_ID" || fail "the agent does not serve $MAIN_ID over SDS"
wait_for 30 as_uid $OTHER_UID $PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 5 \
	--wait 3 stream "$OTHER_ID" || fail "the agent does not serve $OTHER_ID over SDS"

# ---- one SPIFFE ID: tls_certificate, PEM chain + PKCS#8 key that matches it
sds stream "$MAIN_ID" >"$T/id.json" || fail "stream $MAIN_ID: $(cat "$T/id.json")"
jcheck "$T/id.json" "d['type_url'] == '$SECRET_URL' and d['version_info'] and d['nonce']"
jcheck "$T/id.json" "len(d['resources']) == 1"
jcheck "$T/id.json" "(lambda r: r['type_url'] == '$SECRET_URL' and r['name'] == '$MAIN_ID' and
	r['kind'] == 'tls_certificate' and r['spiffe_id'] == '$MAIN_ID' and r['key_matches'] and
	r['key_pkcs8'])(d['resources'][0])"
ok "SPIFFE ID: a tls_certificate whose PKCS#8 key matches its certificate"

# ---- default, ROOTCA, the trust domain ID, ALL
sds stream default >"$T/default.json" || fail "stream default"
jcheck "$T/default.json" "[(r['name'], r['kind'], r['spiffe_id'], r['key_matches']) for r in d['resources']] == [('default', 'tls_certificate', '$MAIN_ID', True)]"
sds stream ROOTCA "spiffe://$TD" >"$T/roots.json" || fail "stream ROOTCA"
jcheck "$T/roots.json" "sorted(r['name'] for r in d['resources']) == sorted(['ROOTCA', 'spiffe://$TD'])"
jcheck "$T/roots.json" "all(r['kind'] == 'validation_context' and r['trusted_ca'] >= 1 and r['ca_is_ca'] and 'validator' not in r for r in d['resources'])"
sds stream ALL >"$T/all.json" || fail "stream ALL"
jcheck "$T/all.json" "(lambda r: r['name'] == 'ALL' and r['kind'] == 'validation_context' and
	r['validator'] == 'envoy.tls.cert_validator.spiffe' and
	r['validator_type_url'] == 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig' and
	[t['name'] for t in r['trust_domains']] == ['$TD'] and r['trust_domains'][0]['cas'] >= 1 and
	'trusted_ca' not in r)(d['resources'][0])"
ok "default, ROOTCA, spiffe://$TD (trusted_ca) and ALL (SPIFFE validator, trust domain $TD)"

# ---- no names: everything the caller may have, and nothing of others
sds stream >"$T/empty.json" || fail "stream with no names"
jcheck "$T/empty.json" "sorted((r['name'], r['kind']) for r in d['resources']) == sorted([('$MAIN_ID', 'tls_certificate'), ('spiffe://$TD', 'validation_context')])"
ok "no names: the caller's SVID and the bundle, nothing else"

# ---- FetchSecrets and DeltaSecrets
sds fetch "$MAIN_ID" ROOTCA >"$T/fetch.json" || fail "FetchSecrets: $(cat "$T/fetch.json")"
jcheck "$T/fetch.json" "sorted(r['name'] for r in d['resources']) == sorted(['$MAIN_ID', 'ROOTCA']) and all(r.get('key_matches', True) for r in d['resources'])"
sds delta >"$T/delta.out" || fail "DeltaSecrets: $(cat "$T/delta.out")"
ok "FetchSecrets answers; DeltaSecrets: $(cat "$T/delta.out")"

# ---- xDS: ACK holds, NACK logged and not answered, stale nonce ignored, new names at once
sds ack-hold "$MAIN_ID" ROOTCA >"$T/ack.out" || fail "ACK: $(cat "$T/ack.out")"
ok "ACK: $(cat "$T/ack.out")"
NACK_MSG="lanyard-sds-test-nack-$$"
sds nack --message "$NACK_MSG" "$MAIN_ID" >"$T/nack.out" || fail "NACK: $(cat "$T/nack.out")"
wait_for 10 grep -q "rejected the secrets .*$NACK_MSG" "$T/agent.log" ||
	fail "the NACK was not logged"
grep "rejected the secrets .*$NACK_MSG" "$T/agent.log" | grep -q "uid 0 (node \"sds-test\")" ||
	fail "the NACK log does not name the caller"
ok "NACK logged with the caller, not answered: $(cat "$T/nack.out")"
sds names-change --add ROOTCA "$MAIN_ID" >"$T/change.json" || fail "names change: $(cat "$T/change.json")"
jcheck "$T/change.json" "d['names'] == sorted(['$MAIN_ID', 'ROOTCA'])"
ok "stale nonce ignored; changed names answered at once with a new version"

# ---- entitlement: another workload's SPIFFE ID is refused, never served
sds expect-error INVALID_ARGUMENT "$OTHER_ID" >"$T/other.out" ||
	fail "asking for $OTHER_ID: $(cat "$T/other.out")"
sds expect-error INVALID_ARGUMENT "$MAIN_ID" "$OTHER_ID" >>"$T/other.out" ||
	fail "asking for $MAIN_ID and $OTHER_ID: $(cat "$T/other.out")"
sds fetch "$OTHER_ID" >"$T/other-fetch.json" && fail "FetchSecrets served $OTHER_ID to uid 0"
jcheck "$T/other-fetch.json" "d['error'] == 'INVALID_ARGUMENT'"
grep -q "BEGIN" "$T/other.out" "$T/other-fetch.json" && fail "key material in a refusal"
sds stream "$MAIN_ID" >/dev/null || fail "the legitimate caller stopped working"
ok "another workload's SPIFFE ID: INVALID_ARGUMENT, nothing served; the caller's own still works"

# ---- a caller without an entry gets no secret, not even the bundle, and the log says why
for names in "" default ROOTCA "$MAIN_ID"; do
	as_uid 65534 $PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" expect-error \
		PERMISSION_DENIED $names >"$T/nobody.out" ||
		fail "uid 65534 asking for '$names': $(cat "$T/nobody.out")"
done
grep -q "StreamSecrets denied: no entry matches .* uid 65534" "$T/agent.log" ||
	fail "the agent did not log why uid 65534 was denied"
ok "a uid without entry: PERMISSION_DENIED for every name, and the agent logs why"

# ---- rotation of a 15 s SVID pushed on an open, ACKed stream
as_uid $ROT_UID $PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 90 --hold 45 \
	rotation "$ROT_ID" ROOTCA >"$T/rotation.json" || fail "rotation: $(cat "$T/rotation.json")"
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print("ok - rotation pushed after %ss: version %s -> %s" % (d["seconds"], d["before"]["version_info"], d["after"]["version_info"]))' "$T/rotation.json"

# ---- entry changes: a new entry is pushed on an open stream, removing every entry ends it
CHG_UID=65531
CHG_ID1="spiffe://$TD/envoy/changing-1"
CHG_ID2="spiffe://$TD/envoy/changing-2"
entry_id() {
	$PY -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
chg1=$(srv entry create --output json --spiffe-id "$CHG_ID1" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$CHG_UID" | entry_id)
wait_for 30 as_uid $CHG_UID $PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 5 \
	--wait 3 stream "$CHG_ID1" || fail "the agent does not serve $CHG_ID1"
as_uid $CHG_UID $PY "$SDS" --socket "$AGENT_SOCK" --stubs "$STUBS" --timeout 90 \
	follow --end PERMISSION_DENIED >"$T/follow.out" 2>&1 &
follower=$!
PIDS+=("$follower")
wait_for 20 grep -q version_info "$T/follow.out" || fail "no first response: $(cat "$T/follow.out")"
chg2=$(srv entry create --output json --spiffe-id "$CHG_ID2" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$CHG_UID" | entry_id)
wait_for 30 grep -q "$CHG_ID2" "$T/follow.out" || fail "the new entry was not pushed: $(cat "$T/follow.out")"
srv entry delete --id "$chg1" >/dev/null || fail "entry delete"
srv entry delete --id "$chg2" >/dev/null || fail "entry delete"
wait "$follower" || fail "the stream did not end with PERMISSION_DENIED: $(cat "$T/follow.out")"
ok "a new entry pushed on the open stream ($(grep -c version_info "$T/follow.out") versions); deleting its entries ended it: $(tail -n 1 "$T/follow.out")"

# ---- metrics and /status count SDS
$PY - "$AGENT_HTTP_PORT" >"$T/counts.json" <<'PY' || fail "metrics or /status"
import json, sys, urllib.request
port = sys.argv[1]
m = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10).read().decode()
vals = {}
for line in m.splitlines():
    if line.startswith("lanyard_agent_sds_"):
        k, v = line.rsplit(" ", 1)
        vals[k] = float(v)
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/status" % port, timeout=10))
print(json.dumps({"metrics": vals, "status": s["sds"]}))
PY
jcheck "$T/counts.json" "d['metrics']['lanyard_agent_sds_pushes_total'] >= 1 and d['metrics']['lanyard_agent_sds_nacks_total'] >= 1 and d['metrics']['lanyard_agent_sds_responses_total'] >= 10"
jcheck "$T/counts.json" "d['status']['pushes'] >= 1 and d['status']['responses'] >= 10 and 'streams' in d['status']"
ok "metrics and /status: $(cat "$T/counts.json")"

echo "PASS"
