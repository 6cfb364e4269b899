#!/usr/bin/env bash
# Verified state at load (issue 14, point 6), from the attacker's side: with the server DOWN,
# state.json is tampered with (a key swapped for another SVID's, the SPIFFE ID and not_after
# metadata edited, a garbage chain, an expired certificate made to look valid) and, later, made
# world-writable. The restarted agent must never serve a tampered SVID: each workload gets its
# real SVID (ID taken from the certificate) or none (PermissionDenied/Unavailable, or a stream
# that waits for the fresh SVID until its deadline) while the server is down, an untampered
# workload keeps being served, and everything is fetched anew once the server is back.
source "$(dirname "$0")/lib.sh"

setpriv --reuid=1001 --regid=1001 --clear-groups true 2>/dev/null ||
	skip "setpriv cannot switch uids here"

# The client and the protos it compiles, readable by the other uids (the source tree may be in
# a directory only its owner can enter, as a clone in `mktemp -d` is).
WLSRC="$T/wlsrc"
mkdir -p "$WLSRC/tests/integration"
cp -r "$SRC/proto" "$WLSRC/"
cp "$SRC/tests/integration/agent_wl.py" "$WLSRC/tests/integration/"
chmod -R a+rX "$WLSRC"
# wl UID ARGS...: agent_wl.py as uid UID.
wl() {
	local uid=$1
	shift
	LANYARD_SRC="$WLSRC" setpriv --reuid="$uid" --regid="$uid" --clear-groups \
		$PY "$WLSRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}
# served UID: "ID key_matches not_after" of the one SVID served to UID, or the error code.
served() {
	wl "$1" x509 | $PY -c '
import json,sys
d=json.load(sys.stdin)
if "error" in d: print(d["error"])
else: print(" ".join("%s %s %d" % (s["spiffe_id"], s["key_matches"], s["not_after"]) for s in d["svids"]))'
}
sid() { echo "spiffe://$TD/tamper/u$1"; }

write_server_config '"default_x509_svid_ttl": "1h"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
for u in 0 1001 1002 1003; do
	srv entry create --parent-id "$AGENT_ID" --spiffe-id "$(sid $u)" --selector "unix:uid:$u" \
		>/dev/null
done
# uid 1004's SVID lives 8 seconds, so that an expired certificate can be left on disk.
srv entry create --parent-id "$AGENT_ID" --spiffe-id "$(sid 1004)" --selector "unix:uid:1004" \
	--x509-svid-ttl 8 >/dev/null
for u in 0 1001 1002 1003 1004; do
	wait_for 30 sh -c "$(declare -f wl served sid); PY=$PY SRC=$SRC WLSRC=$WLSRC AGENT_SOCK=$AGENT_SOCK \
		TD=$TD; served $u | grep -q '^$(sid $u) True'" || fail "uid $u not served"
done
ok "five workloads served"

# ---- server down, agent stopped (it flushes state.json), state tampered with, agent restarted
stop_server -KILL
stop_agent -TERM
sleep 9 # uid 1004's certificate expires on disk
STATE="$T/agent/data/state.json"
$PY - "$STATE" "$TD" <<'EOF' || fail "could not tamper with state.json"
import base64, json, os, sys, time
path, td = sys.argv[1], sys.argv[2]
st = json.load(open(path))
by = {e["spiffe_id"]: e for e in st["entries"]}
sid = lambda u: "spiffe://%s/tamper/u%d" % (td, u)
for u in (0, 1001, 1002, 1003, 1004):
    assert "svid" in by[sid(u)], "no persisted SVID for uid %d" % u
# A valid key, but another SVID's.
by[sid(1001)]["svid"]["key"] = by[sid(0)]["svid"]["key"]
# The metadata claims root's SPIFFE ID and a far expiry.
by[sid(1002)]["svid"]["spiffe_id"] = sid(0)
by[sid(1002)]["svid"]["not_after"] = int(time.time()) + 10**8
# Garbage that is valid base64.
by[sid(1003)]["svid"]["chain"] = base64.b64encode(os.urandom(600)).decode()
# An expired certificate whose metadata says it is valid for years.
by[sid(1004)]["svid"]["not_after"] = int(time.time()) + 10**8
by[sid(1004)]["svid"]["renew_at"] = int(time.time()) + 10**8
open(path + ".tmp", "w").write(json.dumps(st))
os.chmod(path + ".tmp", 0o600)
os.rename(path + ".tmp", path)
EOF
start_agent
wait_for 20 test -S "$AGENT_SOCK" || fail "agent did not restart"

got=$(served 0)
case "$got" in "$(sid 0) True "*) ;; *) fail "untampered uid 0 not served with the server down: $got" ;; esac
for u in 1001 1003 1004; do
	got=$(served $u)
	case "$got" in
	PERMISSION_DENIED | UNAVAILABLE | DEADLINE_EXCEEDED) ;;
	*) fail "uid $u was served tampered state: $got" ;;
	esac
done
got=$(served 1002)
case "$got" in
"$(sid 1002) True "* | PERMISSION_DENIED | UNAVAILABLE | DEADLINE_EXCEEDED) ;;
*) fail "uid 1002 was served the ID from the metadata: $got" ;;
esac
for why in "entry .*: the key does not match the certificate" \
	"entry .*: the chain is not DER certificates\|entry .*: unreadable certificate" \
	"SVID of entry .* has expired"; do
	grep -q "$why" "$T/agent.log" || fail "no log line '$why'"
done
ok "server down: swapped key, garbage chain and expired certificate discarded; edited ID ignored; uid 0 still served"

start_server
for u in 0 1001 1002 1003 1004; do
	wait_for 40 sh -c "$(declare -f wl served sid); PY=$PY SRC=$SRC WLSRC=$WLSRC AGENT_SOCK=$AGENT_SOCK \
		TD=$TD; served $u | grep -q '^$(sid $u) True'" || fail "uid $u not served anew"
done
ok "server back: every workload gets a fresh, valid SVID"

# ---- a world-writable state.json: discarded whole, fetched anew
stop_server -KILL
stop_agent -TERM
chmod 666 "$STATE"
start_agent
wait_for 20 test -S "$AGENT_SOCK" || fail "agent did not restart"
grep -q "discarding $STATE: mode 0666 lets group or others write it" "$T/agent.log" ||
	fail "no log line for the world-writable state.json"
for u in 0 1001; do
	got=$(served $u)
	case "$got" in
	PERMISSION_DENIED | UNAVAILABLE | DEADLINE_EXCEEDED) ;;
	*) fail "uid $u was served from a world-writable state.json: $got" ;;
	esac
done
start_server
for u in 0 1001; do
	wait_for 40 sh -c "$(declare -f wl served sid); PY=$PY SRC=$SRC WLSRC=$WLSRC AGENT_SOCK=$AGENT_SOCK \
		TD=$TD; served $u | grep -q '^$(sid $u) True'" || fail "uid $u not served anew"
done
wait_for 20 sh -c "[ \$(stat -c %a '$STATE') = 600 ]" || fail "state.json not rewritten 0600"
ok "world-writable state.json: nothing served from it, state fetched anew and rewritten 0600"
