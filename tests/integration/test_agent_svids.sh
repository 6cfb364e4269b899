#!/usr/bin/env bash
# lanyard-agent with a real server: attestation, an SVID served through the Workload API, entry
# created -> served and deleted -> gone (timed), rotation before expiry with a 20 s TTL, the
# agent's own SVID renewed, JWT-SVIDs cached, and a clean SIGTERM.
source "$(dirname "$0")/lib.sh"

wl() {
	$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}
json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

write_server_config '"default_x509_svid_ttl": "20s", "agent_svid_ttl": "30s"'
start_server_and_agent
wait_for 20 grep -q "attested as $AGENT_ID" "$T/agent.log" || fail "agent did not attest as $AGENT_ID"
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
ok "attested with a join token as $AGENT_ID"

# libpq is loaded only for a PostgreSQL datastore (server/pq_dyn.h): a SQLite server has served an
# attestation and node API stream without mapping it, nor has the agent.
for pid in "$SERVER_PID" "$AGENT_PID"; do
	[ -r "/proc/$pid/maps" ] || fail "cannot read /proc/$pid/maps"
	! grep -q 'libpq\.so' "/proc/$pid/maps" || fail "process $pid maps libpq: $(grep libpq "/proc/$pid/maps")"
done
ok "neither the SQLite server nor the agent maps libpq"

D="$T/agent/data"
[ "$(stat -c %a "$D")" = 700 ] || fail "data_dir mode $(stat -c %a "$D")"
for f in agent_key.pem state.json; do
	[ "$(stat -c %a "$D/$f")" = 600 ] || fail "$f mode $(stat -c %a "$D/$f")"
done
grep -q "BEGIN CERTIFICATE" "$D/agent_svid.pem" && grep -q "BEGIN CERTIFICATE" "$D/bundle.pem" ||
	fail "agent SVID or bundle not persisted"
ok "identity persisted in data_dir (0700, keys 0600)"

# ---- entry created -> served
SID="spiffe://$TD/it/workload"
secs=$(wl until present "$SID" 20 -- "$BIN/lanyard-server" entry create --socket "$ADMIN" \
	--spiffe-id "$SID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" --x509-svid-ttl 20) ||
	fail "entry not served: $secs"
echo "# entry created -> SVID served in ${secs}s"
first=$(wl x509)
echo "$first" | $PY -c "
import json,sys,time
d=json.load(sys.stdin)
assert len(d['svids'])==1, d
s=d['svids'][0]
assert s['spiffe_id']=='$SID' and s['key_matches'] and s['bundle_certs']>=1, s
# The entry's 20 s TTL (plus the server's few seconds of notBefore backdating), and still valid:
# how long ago it was issued depends on this machine's load, so that is not asserted.
assert 20 <= s['not_after']-s['not_before'] <= 20+60, s
assert s['not_after'] > time.time(), s" || fail "served SVID wrong: $first"
ok "entry served with a matching key and the bundle"

# ---- rotation before expiry: a new certificate while the old one is still valid
serial=$(echo "$first" | json_get "d['svids'][0]['serial']")
old_na=$(echo "$first" | json_get "d['svids'][0]['not_after']")
rotated=""
for _ in $(seq 1 200); do
	cur=$(wl x509)
	s=$(echo "$cur" | json_get "d['svids'][0]['serial'] if d.get('svids') else ''")
	if [ -n "$s" ] && [ "$s" != "$serial" ]; then
		rotated=$cur
		break
	fi
	sleep 0.1
done
[ -n "$rotated" ] || fail "no rotation within 20 s"
now=$(date +%s)
echo "$rotated" | $PY -c "
import json,sys
s=json.load(sys.stdin)['svids'][0]
assert s['key_matches'], s
assert s['not_after'] > $old_na, ('not newer', s)
assert $old_na - $now >= 5, ('rotated only %d s before expiry' % ($old_na - $now))" ||
	fail "rotation wrong: $rotated (old not_after $old_na, now $now)"
echo "# rotated $((old_na - now))s before the old SVID expired"
ok "X509-SVID rotated before expiry (new serial, new key)"

# ---- the agent's own SVID (30 s) is renewed and the agent stays in sync
wait_for 30 grep -q "agent SVID $AGENT_ID renewed" "$T/agent.log" || fail "agent SVID not renewed"
serial=$(wl x509 | json_get "d['svids'][0]['serial']")
wl until absent "$SID" 1 >/dev/null && fail "SVID vanished after the agent renewal"
ok "agent SVID renewed, workload SVID still served"

# ---- JWT-SVIDs: issued, and cached until half-life
j1=$(wl jwt audience-a)
j2=$(wl jwt audience-a)
t1=$(echo "$j1" | json_get "d['svids'][0]['svid']") || fail "no JWT-SVID: $j1"
t2=$(echo "$j2" | json_get "d['svids'][0]['svid']")
[ "$t1" = "$t2" ] || fail "second JWT fetch was not served from the cache"
echo "$t1" | $PY -c "
import base64,json,sys
p=sys.stdin.read().strip().split('.')[1]
c=json.loads(base64.urlsafe_b64decode(p+'='*(-len(p)%4)))
assert c['sub']=='$SID' and c['aud'] in ('audience-a',['audience-a']), c" || fail "JWT claims wrong"
t3=$(wl jwt audience-b | json_get "d['svids'][0]['svid']")
[ "$t3" != "$t1" ] || fail "another audience got the cached token"
ok "JWT-SVID fetched and cached per audience"

# ---- entry deleted -> gone
id=$(srv entry show --output json --selector "unix:uid:$(id -u)" | json_get "d['entries'][0]['id']")
secs=$(wl until absent "$SID" 20 -- "$BIN/lanyard-server" entry delete --socket "$ADMIN" --id "$id") ||
	fail "deleted entry still served: $secs"
echo "# entry deleted -> SVID gone in ${secs}s"
$PY -c "import sys; sys.exit(0 if float('$secs') < 5 else 1)" || fail "removal took ${secs}s"
ok "deleted entry no longer served"

# ---- SIGTERM: exit 0, state flushed
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
[ "$rc" = 0 ] || fail "agent exited with $rc on SIGTERM"
grep -q "lanyard-agent stopped" "$T/agent.log" || fail "no clean stop"
$PY -c "import json; d=json.load(open('$D/state.json')); assert d['entries']==[], d" ||
	fail "state.json not flushed on exit"
[ ! -S "$AGENT_SOCK" ] || fail "socket left behind"
ok "SIGTERM: clean exit 0 with the state flushed"

if grep -q "PRIVATE KEY" "$T/agent.log"; then fail "key material in the log"; fi
ok "no key material in the log"
