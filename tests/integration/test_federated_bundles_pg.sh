#!/usr/bin/env bash
# Federated bundles shared by two lanyard-servers on one PostgreSQL database: a bundle set on A
# is listed by B and reaches, through the shared change feed, a workload whose agent is
# connected to B; a delete on B removes it from that workload. Skipped (77) where PostgreSQL is
# not installed, except under CI.
source "$(dirname "$0")/lib.sh"

start_pg
json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

start_pg_server a
start_pg_server b
on() {
	on_server "$@"
}

# A foreign trust domain's CA, made here.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/two.key" \
	-out "$T/two.pem" -days 2 -subj /CN=two-ca -addext "subjectAltName=URI:spiffe://two.test" \
	-addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || fail "openssl CA"

# An agent attested through B; its workload's entry federates with two.test.
ADMIN="$T/b/admin.sock"
SERVER_PORT=$($PY -c "import json; print(json.load(open('$T/b.json'))['bind_port'])")
write_agent_config
tok=$(new_token)
start_agent --join-token "$tok"
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
wait_for 30 test -S "$AGENT_SOCK" || fail "agent socket did not appear"
on a entry create --parent-id "$AGENT_ID" --spiffe-id "spiffe://$TD/fed" \
	--selector "unix:uid:$(id -u)" --federates-with two.test >/dev/null
wl() {
	$PY "$SRC/tests/integration/fedwl.py" "$AGENT_SOCK" "$@"
}
wait_for 30 sh -c "$PY '$SRC/tests/integration/fedwl.py' '$AGENT_SOCK' x509 | grep -q 'spiffe://$TD/fed'" ||
	fail "entry not served: $(wl x509)"
[ "$(wl x509 | json_get "d['federated']")" = "{}" ] || fail "a bundle before any was set"

on a bundle set --trust-domain two.test --file "$T/two.pem" >/dev/null
[ "$(on b bundle list --output json | json_get "[b['trust_domain'] for b in d['bundles']]")" = \
	"['two.test']" ] || fail "B does not list the bundle set on A"
start=$(date +%s.%N)
wait_for 30 sh -c "$PY '$SRC/tests/integration/fedwl.py' '$AGENT_SOCK' x509 | grep -q 'spiffe://two.test'" ||
	fail "the bundle set on A did not reach the agent on B: $(wl x509)"
echo "# bundle set on A -> workload of B's agent in $($PY -c "import time; print(round(time.time()-$start, 2))")s"
ok "a bundle set on A reaches a workload whose agent is connected to B"

on b bundle delete --trust-domain two.test >/dev/null
[ "$(on a bundle list --output json | json_get "len(d['bundles'])")" = 0 ] || fail "A still lists it"
wait_for 30 sh -c "$PY '$SRC/tests/integration/fedwl.py' '$AGENT_SOCK' x509 | grep -q '\"federated\": {}'" ||
	fail "the bundle deleted on B is still delivered: $(wl x509)"
ok "a delete on B removes it from the workload"
