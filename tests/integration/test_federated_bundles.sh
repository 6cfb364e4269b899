#!/usr/bin/env bash
# Federated bundles set by hand: two real servers of two trust domains (example.org and
# two.test); the bundle of two.test set on the first with "bundle set" (PEM and SPIFFE JSON),
# listed, shown and deleted; bad trust domains, bad files and the own trust domain refused.
# Delivery: an agent of each domain; of two workloads of example.org (told apart by unix:path),
# the one whose entry federates with two.test gets exactly that bundle (X509-SVID response,
# X.509 and JWT bundles) and validates a JWT-SVID of two.test; the other asks and is refused
# (no foreign bundle, no validation) while still served its own SVID; deleting the bundle
# removes it from an open stream.
source "$(dirname "$0")/lib.sh"

json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

# ---- the second trust domain's server
TD2=two.test
ADMIN2="$T/server2/admin.sock"
SERVER2_PORT=$(free_port)
cat >"$T/server2.json" <<JSON
{
  "trust_domain": "$TD2",
  "data_dir": "$T/server2/data",
  "bind_address": "127.0.0.1",
  "bind_port": $SERVER2_PORT,
  "admin_socket": "$ADMIN2",
  "http_port": $(free_port),
  "log_level": "debug"
}
JSON
"$BIN/lanyard-server" run --config "$T/server2.json" >>"$T/server2.log" 2>&1 &
PIDS+=("$!")
srv2() {
	"$BIN/lanyard-server" "$@" --socket "$ADMIN2"
}
wait_for 20 srv2 bundle show || fail "server of $TD2 did not come up"

start_server
srv2 bundle show >"$T/two.pem"
srv2 bundle show --format spiffe >"$T/two.json"
grep -q "BEGIN CERTIFICATE" "$T/two.pem" || fail "no PEM bundle from $TD2"

# ---- operator errors: each refused with a message naming the problem
out=$(srv bundle set --trust-domain "Bad_TD" --file "$T/two.pem" 2>&1) && fail "bad TD accepted"
echo "$out" | grep -q "invalid trust domain" || fail "bad TD message: $out"
out=$(srv bundle set --trust-domain "$TD" --file "$T/two.pem" 2>&1) && fail "own TD accepted"
echo "$out" | grep -q "own trust domain" || fail "own TD message: $out"
echo "not a bundle" >"$T/garbage"
out=$(srv bundle set --trust-domain "$TD2" --file "$T/garbage" 2>&1) && fail "garbage accepted"
echo "$out" | grep -q "no PEM CERTIFICATE block" || fail "garbage message: $out"
echo '{"keys": 3}' >"$T/bad.json"
out=$(srv bundle set --trust-domain "$TD2" --file "$T/bad.json" 2>&1) && fail "bad JSON accepted"
echo "$out" | grep -q "not a SPIFFE bundle document" || fail "bad JSON message: $out"
out=$(srv bundle set --trust-domain "$TD2" --file "$T/missing.pem" 2>&1) && fail "missing file"
echo "$out" | grep -q "missing.pem" || fail "missing file message: $out"
out=$(srv bundle delete --trust-domain "$TD2" 2>&1) && fail "delete of nothing succeeded"
echo "$out" | grep -q "no federated bundle for $TD2" || fail "delete message: $out"
[ "$(srv bundle list --output json | json_get "len(d['bundles'])")" = 0 ] || fail "not empty"
ok "bad trust domain, own trust domain, bad files and unknown bundles refused clearly"

# ---- set (PEM), list, show
srv bundle set --trust-domain "$TD2" --file "$T/two.pem" >/dev/null || fail "bundle set PEM"
srv bundle list --output json | $PY -c "
import json,sys,time
d=json.load(sys.stdin)
b=d['bundles']
assert len(b)==1, d
b=b[0]
assert b['trust_domain']=='$TD2' and b['source']=='manual' and b['sequence']==0, b
assert abs(b['refreshed_at']-time.time()) < 600 and b['x509_authorities']>=1, b" ||
	fail "bundle list after set: $(srv bundle list --output json)"
srv bundle show --trust-domain "$TD2" >"$T/shown.pem"
cmp -s <(openssl x509 -in "$T/two.pem" -outform DER | sha256sum) \
	<(openssl x509 -in "$T/shown.pem" -outform DER | sha256sum) || fail "shown PEM differs"
# A PEM set again without a sequence: a new version for the workloads.
srv bundle set --trust-domain "spiffe://$TD2" --file "$T/two.pem" >/dev/null
[ "$(srv bundle list --output json | json_get "d['bundles'][0]['sequence']")" = 1 ] ||
	fail "sequence not bumped on a second PEM set"
ok "bundle set (PEM), list and show"

# ---- set (SPIFFE JSON, with its JWT authorities and sequence)
srv bundle set --trust-domain "$TD2" --file "$T/two.json" >/dev/null || fail "bundle set JSON"
srv bundle show --trust-domain "$TD2" --output json | $PY -c "
import json,sys
d=json.load(sys.stdin)
src=json.load(open('$T/two.json'))
assert d['jwt_authorities']>=1 and d['sequence']==src.get('spiffe_sequence',0), d
kids=sorted(k['kid'] for k in d['spiffe_bundle']['keys'] if k.get('use')=='jwt-svid')
want=sorted(k['kid'] for k in src['keys'] if k.get('use')=='jwt-svid')
assert kids==want, (kids, want)" || fail "JSON bundle not stored as given"
ok "bundle set (SPIFFE JSON) keeps the JWT authorities and the sequence"

# ---- delete
srv bundle delete --trust-domain "$TD2" >/dev/null || fail "bundle delete"
[ "$(srv bundle list --output json | json_get "len(d['bundles'])")" = 0 ] || fail "not deleted"
ok "bundle delete"

# ---- delivery to workloads
write_agent_config '"unix_workload_path_selectors": true'
tok=$(new_token)
start_agent --join-token "$tok"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
FEDPY="$T/fedpy"
cp "$(readlink -f $PY)" "$FEDPY"
chmod 755 "$FEDPY"
PLAINPY="$(readlink -f $PY)"
[ "$(readlink -f "$FEDPY")" = "$FEDPY" ] || skip "$T is reached through a symbolic link"
srv entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/fed" \
	--selector "unix:uid:$(id -u)" --selector "unix:path:$FEDPY" \
	--federates-with "spiffe://$TD2" >"$T/fed_entry.txt" || fail "entry with --federates-with"
grep -q "Federates with: $TD2" "$T/fed_entry.txt" || fail "entry show: $(cat "$T/fed_entry.txt")"
srv entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/plain" \
	--selector "unix:uid:$(id -u)" --selector "unix:path:$PLAINPY" >/dev/null
out=$(srv entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/bad" \
	--selector "unix:uid:1" --federates-with "$TD" 2>&1) && fail "own TD in federates_with"
echo "$out" | grep -q "own trust domain" || fail "federates_with own TD message: $out"
srv entry show --output json | $PY -c "
import json,sys
e={x['spiffe_id']:x for x in json.load(sys.stdin)['entries']}
assert e['spiffe://$TD/fed']['federates_with']==['$TD2'], e
assert e['spiffe://$TD/plain']['federates_with']==[], e" || fail "federates_with in entry JSON"
ok "entries with and without --federates-with stored and shown"

fed() {
	"$FEDPY" "$SRC/tests/integration/fedwl.py" "$AGENT_SOCK" "$@"
}
plain() {
	"$PLAINPY" "$SRC/tests/integration/fedwl.py" "$AGENT_SOCK" "$@"
}
srv bundle set --trust-domain "$TD2" --file "$T/two.json" >/dev/null
wait_for 30 sh -c "'$FEDPY' '$SRC/tests/integration/fedwl.py' '$AGENT_SOCK' x509 |
	grep -q 'spiffe://$TD2'" || fail "federated bundle not delivered: $(fed x509)"
fed x509 | $PY -c "
import json,sys
d=json.load(sys.stdin)
assert d['svids']==['spiffe://$TD/fed'], d
assert list(d['federated'])==['spiffe://$TD2'] and d['federated']['spiffe://$TD2']>=1, d" ||
	fail "X509SVIDResponse of the federating workload: $(fed x509)"
fed x509bundles | $PY -c "
import json,sys
d=json.load(sys.stdin)
assert sorted(d)==['spiffe://$TD','spiffe://$TD2'], d" || fail "FetchX509Bundles: $(fed x509bundles)"
fed jwtbundles | $PY -c "
import json,sys
d=json.load(sys.stdin)
src=json.load(open('$T/two.json'))
want=sorted(k['kid'] for k in src['keys'] if k.get('use')=='jwt-svid')
assert sorted(d)==['spiffe://$TD','spiffe://$TD2'] and d['spiffe://$TD2']==want and want, d" ||
	fail "FetchJWTBundles: $(fed jwtbundles)"
ok "the federating workload gets exactly its federated bundle (X509-SVID, X.509 and JWT bundles)"

# The other workload asks for everything and gets no foreign bundle.
plain x509 | $PY -c "
import json,sys
d=json.load(sys.stdin)
assert d['svids']==['spiffe://$TD/plain'] and d['federated']=={}, d" ||
	fail "X509SVIDResponse of the plain workload: $(plain x509)"
[ "$(plain x509bundles | json_get "sorted(d)")" = "['spiffe://$TD']" ] ||
	fail "FetchX509Bundles of the plain workload: $(plain x509bundles)"
[ "$(plain jwtbundles | json_get "sorted(d)")" = "['spiffe://$TD']" ] ||
	fail "FetchJWTBundles of the plain workload: $(plain jwtbundles)"
ok "a workload without federates_with gets no foreign bundle"

# ---- ValidateJWTSVID of a JWT-SVID of two.test: an agent of two.test mints one.
A2_SOCK="$T/agent2/api.sock"
srv2 bundle show >"$T/bootstrap2.pem"
cat >"$T/agent2.json" <<JSON
{
  "trust_domain": "$TD2",
  "server_address": "127.0.0.1",
  "server_port": $SERVER2_PORT,
  "trust_bundle_path": "$T/bootstrap2.pem",
  "data_dir": "$T/agent2/data",
  "socket_path": "$A2_SOCK",
  "http_port": $(free_port),
  "unix_workload_path_selectors": true,
  "log_level": "debug"
}
JSON
tok2=$(srv2 token generate --output json | json_get "d['token']")
"$BIN/lanyard-agent" run --config "$T/agent2.json" --join-token "$tok2" >>"$T/agent2.log" 2>&1 &
PIDS+=("$!")
wait_for 20 test -S "$A2_SOCK" || fail "agent of $TD2 did not start"
srv2 entry create --parent-id "spiffe://$TD2/lanyard/agent/join_token/$tok2" \
	--spiffe-id "spiffe://$TD2/client" --selector "unix:uid:$(id -u)" >/dev/null
wait_for 30 sh -c "$PY '$SRC/tests/integration/agent_wl.py' '$A2_SOCK' jwt fedtest |
	grep -q 'spiffe://$TD2/client'" || fail "no JWT-SVID from the agent of $TD2"
JWT=$($PY "$SRC/tests/integration/agent_wl.py" "$A2_SOCK" jwt fedtest | json_get "d['svids'][0]['svid']")
[ "$(fed validate fedtest "$JWT" | json_get "d.get('spiffe_id')")" = "spiffe://$TD2/client" ] ||
	fail "ValidateJWTSVID by the federating workload: $(fed validate fedtest "$JWT")"
[ "$(fed validate other "$JWT" | json_get "d.get('error')")" = INVALID_ARGUMENT ] ||
	fail "wrong audience accepted"
out=$(plain validate fedtest "$JWT")
[ "$(echo "$out" | json_get "d.get('error')")" = INVALID_ARGUMENT ] ||
	fail "the plain workload validated a token of $TD2: $out"
echo "$out" | grep -q "no keys found for trust domain" || fail "refusal reason: $out"
[ "$(plain x509 | json_get "d['svids']")" = "['spiffe://$TD/plain']" ] ||
	fail "the plain workload is no longer served"
ok "ValidateJWTSVID of a $TD2 token: accepted for the federating workload, refused for the other"

# ---- Envoy SDS: the trust domain's name and ALL include the federated bundle, for it only
STUBS="$T/stubs"
mkdir -m 755 "$STUBS"
(cd "$SRC/proto" && $PY -m grpc_tools.protoc -I . --python_out="$STUBS" \
	--grpc_python_out="$STUBS" $(find envoy google/rpc -name '*.proto')) || fail "SDS stubs"
sds() {
	"$1" "$SRC/tests/integration/sdsclient.py" --socket "$AGENT_SOCK" --stubs "$STUBS" "${@:2}"
}
sds "$FEDPY" fetch "spiffe://$TD2" ALL | $PY -c "
import json,sys
d=json.load(sys.stdin)
r={x['name']:x for x in d['resources']}
assert r['spiffe://$TD2']['kind']=='validation_context' and r['spiffe://$TD2']['trusted_ca']>=1, d
tds=sorted(t['name'] for t in r['ALL']['trust_domains'])
assert tds==sorted(['$TD','$TD2']), d" || fail "SDS of the federating workload: $(sds "$FEDPY" fetch ALL)"
sds "$PLAINPY" fetch ALL | $PY -c "
import json,sys
d=json.load(sys.stdin)
assert [t['name'] for t in d['resources'][0]['trust_domains']]==['$TD'], d" ||
	fail "SDS ALL of the plain workload: $(sds "$PLAINPY" fetch ALL)"
sds "$PLAINPY" expect-error INVALID_ARGUMENT "spiffe://$TD2" >/dev/null ||
	fail "SDS gave the plain workload the bundle of $TD2"
ok "SDS: spiffe://$TD2 and ALL carry the federated bundle for the federating workload only"

# ---- lanyard-agent api fetch x509 --write also writes federated_bundle.<i>.<j>.pem
AGENT_BIN="$(readlink -f "$BIN/lanyard-agent")"
srv entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/cli" \
	--selector "unix:uid:$(id -u)" --selector "unix:path:$AGENT_BIN" \
	--federates-with "$TD2" >/dev/null
wait_for 30 sh -c "'$AGENT_BIN' api fetch x509 --socket '$AGENT_SOCK' --write '$T/out' &&
	test -f '$T/out/federated_bundle.0.0.pem'" || fail "federated_bundle.0.0.pem not written"
diff <(openssl x509 -in "$T/two.pem" -noout -fingerprint -sha256) \
	<(openssl x509 -in "$T/out/federated_bundle.0.0.pem" -noout -fingerprint -sha256) >/dev/null ||
	fail "federated_bundle.0.0.pem is not the bundle of $TD2"
"$AGENT_BIN" api fetch x509 --socket "$AGENT_SOCK" --output json |
	json_get "d['federated_bundles']" | grep -q "spiffe://$TD2" || fail "api fetch x509 JSON"
ok "api fetch x509 --write writes federated_bundle.0.0.pem"

# ---- liblanyard mutual TLS across the two trust domains (deploy/examples echo programs): each
# side federates with the other; the server accepts the peer of two.test against two.test's
# bundle only, and refuses it once that bundle is deleted.
EX="${LANYARD_BUILD:-}/examples"
if [ -x "$EX/echo_server" ] && [ -x "$EX/echo_client" ]; then
	cp "$EX/echo_server" "$EX/echo_client" "$T/"
	srv bundle show --format spiffe >"$T/one.json"
	srv2 bundle set --trust-domain "$TD" --file "$T/one.json" >/dev/null
	srv entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/echo-server" \
		--selector "unix:uid:$(id -u)" --selector "unix:path:$T/echo_server" \
		--federates-with "$TD2" >/dev/null
	srv2 entry create --parent-id "spiffe://$TD2/lanyard/agent/join_token/$tok2" \
		--spiffe-id "spiffe://$TD2/echo-client" --selector "unix:uid:$(id -u)" \
		--selector "unix:path:$T/echo_client" --federates-with "$TD" >/dev/null
	EPORT=$(free_port)
	"$T/echo_server" --socket "$AGENT_SOCK" --listen "127.0.0.1:$EPORT" --allow-td "$TD2" \
		>"$T/echo-server.log" 2>&1 &
	PIDS+=("$!")
	wait_for 30 grep -q "^listening" "$T/echo-server.log" || fail "echo_server did not start"
	wait_for 40 "$T/echo_client" --socket "$A2_SOCK" --connect "127.0.0.1:$EPORT" \
		--allow "spiffe://$TD/echo-server" --count 1 ||
		fail "mTLS between $TD2 and $TD failed: $(tail -n 5 "$T/echo-server.log")"
	grep -q "accepted peer=spiffe://$TD2/" "$T/echo-server.log" ||
		fail "echo_server log: $(cat "$T/echo-server.log")"
	ok "liblanyard mutual TLS between a workload of $TD2 and one of $TD (federated both ways)"
else
	echo "# examples not built in $EX: liblanyard mutual TLS not exercised"
	EPORT=""
fi

# ---- deleting the bundle removes it from an open stream
"$FEDPY" "$SRC/tests/integration/fedwl.py" "$AGENT_SOCK" watch 60 >"$T/watch.out" 2>>"$T/watch.err" &
WATCH=$!
PIDS+=("$WATCH")
wait_for 20 grep -q "spiffe://$TD2" "$T/watch.out" || fail "open stream without the bundle"
srv bundle delete --trust-domain "$TD2" >/dev/null
wait_for 30 sh -c "tail -n 1 '$T/watch.out' | grep -qv '$TD2'" ||
	fail "the open stream still has the bundle: $(cat "$T/watch.out")"
[ "$(tail -n 1 "$T/watch.out")" = "[\"spiffe://$TD\"]" ] || fail "last message: $(tail -n 1 "$T/watch.out")"
kill "$WATCH" 2>/dev/null || true
[ "$(fed x509 | json_get "d['federated']")" = "{}" ] || fail "still delivered after delete"
ok "bundle delete removes the bundle from an open FetchX509Bundles stream"

if [ -n "$EPORT" ]; then
	# The client of two.test is now refused: its trust domain's bundle is gone.
	refused=""
	for _ in $(seq 1 100); do
		if ! "$T/echo_client" --socket "$A2_SOCK" --connect "127.0.0.1:$EPORT" \
			--allow "spiffe://$TD/echo-server" --count 1 >/dev/null 2>&1; then
			refused=1
			break
		fi
		sleep 0.2
	done
	[ -n "$refused" ] || fail "the client of $TD2 is still accepted after the bundle delete"
	wait_for 10 grep -q "no trust bundle for trust domain $TD2" "$T/echo-server.log" ||
		fail "refusal reason: $(tail -n 3 "$T/echo-server.log")"
	ok "after the delete, the peer of $TD2 is refused by the liblanyard server"
fi
