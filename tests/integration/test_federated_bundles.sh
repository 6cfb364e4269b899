#!/usr/bin/env bash
# Federated bundles set by hand: two real servers of two trust domains (example.org and
# two.test); the bundle of two.test set on the first with "bundle set" (PEM and SPIFFE JSON),
# listed, shown and deleted; bad trust domains, bad files and the own trust domain refused.
source "$(dirname "$0")/lib.sh"

json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

# ---- the second trust domain's server
TD2=two.test
ADMIN2="$T/server2/admin.sock"
cat >"$T/server2.json" <<JSON
{
  "trust_domain": "$TD2",
  "data_dir": "$T/server2/data",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
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
