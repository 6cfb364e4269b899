#!/usr/bin/env bash
# lanyard-agent across CA rotations (ca_ttl 30 s, SVIDs 10 s): bundle updates reach the agent and
# its workloads, every SVID served is valid and chains to the bundle served with it, and the
# agent keeps reconnecting (its own SVID rotates every few seconds) to servers whose certificate
# comes from the new authority.
source "$(dirname "$0")/lib.sh"

wl() {
	$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}

write_server_config '"ca_ttl": "30s", "default_x509_svid_ttl": "10s", "agent_svid_ttl": "10s", "default_jwt_svid_ttl": "10s"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
SID="spiffe://$TD/it/rotation"
wl until present "$SID" 20 -- "$BIN/lanyard-server" entry create --socket "$ADMIN" \
	--spiffe-id "$SID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" >/dev/null ||
	fail "entry not served"
ok "serving $SID"

summary=$(wl watch 65)
echo "# $summary"
echo "$summary" | $PY -c "
import json,sys
d=json.load(sys.stdin)
assert d['fetches'] > 100, d
assert not d['failures'], d['failures'][:5]
assert len(d['issuers']) >= 2, ('SVIDs from only one authority', d)
assert d['serials'] >= 8, ('too few rotations', d)
assert 2 in d['bundle_sizes'], ('the bundle never held two authorities', d)" ||
	fail "rotation summary: $summary"
ok "65 s across CA rotations: every SVID valid and chained to the served bundle"

n=$(grep -c "trust bundle of $TD updated" "$T/agent.log")
[ "$n" -ge 3 ] || fail "agent saw only $n bundle updates"
if grep -q "TLS handshake" "$T/agent.log"; then fail "a reconnection failed the TLS handshake"; fi
r=$(grep -c "agent SVID $AGENT_ID renewed" "$T/agent.log")
[ "$r" -ge 5 ] || fail "agent SVID renewed only $r times"
ok "agent followed $n bundle updates and renewed its SVID $r times without TLS errors"
