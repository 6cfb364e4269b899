#!/usr/bin/env bash
# Exec-safe unix attestation (issue 14, point 3), from the attacker's side: a process that is not
# entitled connects to the Workload API, forks, and execs an entitled binary (unix:path) while its
# child sends FetchX509SVID on the inherited connection. pid and start time do not change across
# exec, so only the executable's identity, pinned at accept and compared at each request, tells.
# The call must be refused with a reason in the log; the entitled binary connecting by itself,
# and an entitled process that forks without exec'ing, must still be served.
source "$(dirname "$0")/lib.sh"

start_server_and_agent_file '"unix_workload_path_selectors": true'

# The entitled program: a copy of the Python interpreter (so it can run the test clients too).
ENTITLED="$T/entitled"
cp "$(readlink -f $PY)" "$ENTITLED"
chmod 755 "$ENTITLED"
[ "$(readlink -f "$ENTITLED")" = "$ENTITLED" ] || skip "$T is reached through a symbolic link"
SID="spiffe://$TD/exec/entitled"
srv entry create --parent-id "$AGENT_ID" --spiffe-id "$SID" --selector "unix:uid:$(id -u)" \
	--selector "unix:path:$ENTITLED" >/dev/null
RACE="$SRC/tests/integration/exec_race.py"

wl_as() {
	"$1" "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" x509
}
wait_for 30 sh -c "'$ENTITLED' '$SRC/tests/integration/agent_wl.py' '$AGENT_SOCK' x509 |
	grep -q '$SID'" || fail "the entitled binary is not served"
wl_as "$PY" | grep -q PERMISSION_DENIED || fail "the plain interpreter should not be entitled"
ok "entitled binary served, another binary of the same uid refused"

# race MODE RUNNER: runs exec_race.py under RUNNER; prints the sender's result.
race() {
	local mode=$1 runner=$2 out="$T/result.$1"
	rm -f "$out"
	timeout 60 "$runner" "$RACE" "$AGENT_SOCK" "$mode" "$out" \
		"$ENTITLED" -c "import time; time.sleep(30)" >>"$T/race.log" 2>&1 || true
	wait_for 30 test -f "$out" || fail "$mode: no result"
	cat "$out"
}

r=$(race no-exec "$ENTITLED")
[ "$r" = SERVED ] || fail "an entitled process whose child uses its connection was refused: $r"
ok "entitled process forks, the child calls on the inherited connection: served"

before=$(grep -c "executed another program since it connected" "$T/agent.log" || true)
r=$(race parent-execs "$PY")
[ "$r" = REFUSED ] || fail "connect, fork, parent execs the entitled binary, child calls: $r"
after=$(grep -c "executed another program since it connected" "$T/agent.log" || true)
[ "$after" -gt "$before" ] || fail "no log line saying why the exec race was refused"
grep "executed another program" "$T/agent.log" | tail -n 1 | cut -c1-200
ok "connect, fork, parent execs the entitled binary, child calls: refused (logged)"

r=$(race child-execs "$PY")
[ "$r" = REFUSED ] || fail "connect, fork, child execs the entitled binary, parent calls: $r"
ok "connect, fork, child execs the entitled binary, parent calls: refused"

wl_as "$ENTITLED" | grep -q "$SID" || fail "the entitled binary is no longer served"
ok "the entitled binary is still served after the attacks"
