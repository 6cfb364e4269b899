#!/usr/bin/env bash
# Taint and revocation across two lanyard-servers on one PostgreSQL database: B's authority is
# rotated on B (A may not activate it), tainted from A; B learns it from the datastore and its
# agent re-issues every SVID; revoked from A once the agent is clear, it leaves both servers'
# bundles and B's key directory. Skipped (77) where PostgreSQL is not installed, except under CI.
source "$(dirname "$0")/lib.sh"

start_pg
start_pg_server a
start_pg_server b

jq_py() { $PY -c "import json,sys; d=json.load(sys.stdin); $1"; }
# x509_id SERVER STATE: the ID of SERVER's own x509 authority in STATE.
x509_id() { on_server "$1" authority show --output json | jq_py "print(next((a['id'] for a in d['authorities'] if a['kind']=='x509' and a['server']=='this' and a['state']=='$2'), ''))"; }
# tainted_on SERVER ID: SERVER shows ID tainted; absent_on SERVER ID: SERVER does not list it.
tainted_on() { on_server "$1" authority show --output json | jq_py "sys.exit(0 if any(a['id']=='$2' and a['tainted'] for a in d['authorities']) else 1)"; }
absent_on() { on_server "$1" authority show --output json | jq_py "sys.exit(1 if any(a['id']=='$2' for a in d['authorities']) else 0)"; }
fp_of() { on_server "$1" authority show --output json | jq_py "
import base64,hashlib,re
pem=next(a['certificate'] for a in d['authorities'] if a['kind']=='x509' and a['id']=='$2')
b=re.search(r'-----BEGIN CERTIFICATE-----(.*?)-----END', pem, re.S).group(1)
print(hashlib.sha256(base64.b64decode(''.join(b.split()))).hexdigest())"; }

# An agent connected to B, with one entry.
ADMIN="$T/b/admin.sock"
SERVER_PORT=$($PY -c "import json; print(json.load(open('$T/b.json'))['bind_port'])")
wait_for 20 test "$(on_server b bundle show | grep -c 'BEGIN CERTIFICATE')" -ge 2 ||
	fail "B's bundle lacks A's authority"
write_agent_config
tok=$(new_token)
start_agent --join-token "$tok"
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
wait_for 30 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect to B"
SID="spiffe://$TD/wl/pg"
srv entry create --spiffe-id "$SID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" >/dev/null
issuer() { $PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" x509 | jq_py "print(d['svids'][0]['issuer'] if d.get('svids') else '')"; }
B_OLD=$(x509_id b active)
B_OLD_FP=$(fp_of b "$B_OLD")
issued_by() { [ "$(issuer)" = "$1" ]; }
wait_for 30 issued_by "$B_OLD_FP" || fail "the agent's SVID is not signed by B's authority"
ok "agent on B serves $SID, signed by B's authority $B_OLD"

B_NEW=$(on_server b authority prepare --output json | jq_py "print(d['prepared'])")
if on_server a authority activate --id "$B_NEW" >"$T/out" 2>&1; then fail "A activated B's authority"; fi
grep -q "belongs to another server" "$T/out" || fail "activate on A: $(cat "$T/out")"
on_server b authority activate --id "$B_NEW" >/dev/null || fail "activate on B"
if on_server a authority taint --id "$B_NEW" >"$T/out" 2>&1; then fail "A tainted B's active authority"; fi
grep -q "active authority of another server" "$T/out" || fail "taint on A: $(cat "$T/out")"
ok "B's authority rotated on B; A refuses to activate it or taint the active one, with the reason"

on_server a authority taint --id "$B_OLD" >/dev/null || fail "taint of B's old authority on A"
wait_for 30 tainted_on b "$B_OLD" || fail "B did not learn the taint made on A"
B_NEW_FP=$(fp_of b "$B_NEW")
wait_for 60 issued_by "$B_NEW_FP" || fail "the agent did not re-issue its SVID with $B_NEW"
wait_for 60 grep -q "clear of 1 tainted CA authority" "$T/agent.log" ||
	fail "the agent did not acknowledge the taint"
ok "taint made on A reached B and its agent: SVID re-issued by $B_NEW"

revoked() { on_server a authority revoke --id "$B_OLD" >/dev/null; }
wait_for 30 revoked || fail "revoke on A refused: $(on_server a authority revoke --id "$B_OLD" 2>&1)"
wait_for 30 absent_on b "$B_OLD" || fail "B still lists the revoked authority"
absent_on a "$B_OLD" || fail "A still lists the revoked authority"
[ ! -e "$T/b/data/ca/$B_OLD.key" ] || fail "B kept the key of the revoked authority"
for n in a b; do
	[ "$(on_server "$n" bundle show | grep -c 'BEGIN CERTIFICATE')" = 2 ] ||
		fail "server $n's bundle is not A's and B's active authorities"
done
$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" x509 | jq_py "assert d['svids'][0]['issuer']" ||
	fail "the agent no longer serves a valid SVID"
ok "revoked on A: gone from both bundles and from B's disk; the agent keeps serving"
