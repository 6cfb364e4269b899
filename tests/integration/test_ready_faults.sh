#!/usr/bin/env bash
# Truthful readiness under faults, and quiet logs. Each fault is caused for real, /ready must fail
# with the reason while it lasts and recover by itself afterwards, each daemon logs it once when it
# starts and once when it ends, and workloads keep their SVIDs meanwhile:
#   - a full file system under both data_dirs (small tmpfs mounts; skipped when mount is denied);
#   - the server's descriptors nearly exhausted (RLIMIT_NOFILE lowered with prlimit, an attacker
#     holding TLS connections to the node API);
#   - every SVID expired while the server is down (the agent says so).
source "$(dirname "$0")/lib.sh"

mkdir -p "$T/server/data" "$T/agent/data"
for d in "$T/server/data" "$T/agent/data"; do
	if ! mount -t tmpfs -o size=8m,mode=0700 tmpfs "$d" 2>/dev/null; then
		umount -l "$T/server/data" 2>/dev/null || true
		echo "SKIP: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)"
		exit 77
	fi
done
# Unmount before lib.sh's cleanup removes $T (its exit status is the test's).
trap 'rc=$?; set +e; for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
	sleep 0.5; umount -l "$T/server/data" 2>/dev/null; umount -l "$T/agent/data" 2>/dev/null
	(exit $rc); cleanup' EXIT
command -v prlimit >/dev/null || { echo "SKIP: prlimit missing"; exit 77; }

wl() {
	$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}
# ready_check PORT CHECK -> prints "<http code> <ok> <detail>" of /ready's checks[CHECK]
ready_check() {
	curl -s --max-time 5 -o "$T/ready.json" -w '%{http_code}' "http://127.0.0.1:$1/ready" \
		>"$T/code.txt" || echo 000 >"$T/code.txt"
	$PY -c "
import json,sys
code=open('$T/code.txt').read().strip()
try: c=json.load(open('$T/ready.json'))['checks'].get('$2', {})
except Exception: c={}
print(code, c.get('ok'), c.get('detail',''))"
}
ready_fails_with() { # PORT CHECK TEXT
	local r
	r=$(ready_check "$1" "$2")
	case "$r" in "503 False "*"$3"*) return 0 ;; *) return 1 ;; esac
}
ready_ok() {
	[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready")" = 200 ]
}
serving() {
	wl x509 | grep -q "\"spiffe://$TD/it/web\""
}
once() { # FILE PATTERN: exactly one line
	[ "$(grep -c "$2" "$1")" = 1 ] || fail "$1: expected one '$2' line, got $(grep -c "$2" "$1")"
}

write_server_config '"default_x509_svid_ttl": "20s"'
start_server_and_agent
srv entry create --spiffe-id "spiffe://$TD/it/web" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$(id -u)" >/dev/null
wait_for 30 serving || fail "workload not served"
wait_for 30 ready_ok "$SERVER_HTTP_PORT" || fail "server not ready: $(ready_check "$SERVER_HTTP_PORT" storage)"
wait_for 30 ready_ok "$AGENT_HTTP_PORT" || fail "agent not ready: $(cat "$T/ready.json")"
ok "server and agent ready, workload served"

# ---- a full file system under both data_dirs
for d in "$T/server/data" "$T/agent/data"; do
	dd if=/dev/zero of="$d/fill" bs=64k count=200 2>/dev/null || true
done
wait_for 30 ready_fails_with "$SERVER_HTTP_PORT" storage "No space left" ||
	fail "server /ready: $(ready_check "$SERVER_HTTP_PORT" storage)"
echo "# server /ready storage: $(ready_check "$SERVER_HTTP_PORT" storage)"
wait_for 30 ready_fails_with "$AGENT_HTTP_PORT" storage "No space left" ||
	fail "agent /ready: $(ready_check "$AGENT_HTTP_PORT" storage)"
echo "# agent /ready storage: $(ready_check "$AGENT_HTTP_PORT" storage)"
serving || fail "the workload lost its SVID while the disk was full"
sleep 5 # several failed probes, still one log line each
rm -f "$T/server/data/fill" "$T/agent/data/fill"
wait_for 30 ready_ok "$SERVER_HTTP_PORT" || fail "server did not recover: $(cat "$T/ready.json")"
wait_for 30 ready_ok "$AGENT_HTTP_PORT" || fail "agent did not recover: $(cat "$T/ready.json")"
for f in "$T/server.log" "$T/agent.log"; do
	once "$f" "health: storage failing"
	once "$f" "health: storage recovered after"
done
grep "health: storage recovered" "$T/agent.log" | sed 's/^/# /'
ok "a full disk fails /ready with the reason, logged once, and recovers by itself"

# ---- the server's descriptors nearly exhausted by held connections
prlimit --pid "$SERVER_PID" --nofile=160:160 || fail "prlimit failed"
$PY "$SRC/tests/integration/hold_conns.py" 127.0.0.1 "$SERVER_PORT" "$SERVER_PID" 154 400 \
	"$T/release" >"$T/hold.txt" 2>&1 &
HOLD_PID=$!
PIDS+=("$HOLD_PID")
wait_for 60 grep -q "^held" "$T/hold.txt" || fail "attacker did not get its connections: $(cat "$T/hold.txt")"
echo "# attacker: $(cat "$T/hold.txt")"
wait_for 20 ready_fails_with "$SERVER_HTTP_PORT" descriptors "descriptors open" ||
	fail "server /ready: $(ready_check "$SERVER_HTTP_PORT" descriptors)"
echo "# server /ready descriptors: $(ready_check "$SERVER_HTTP_PORT" descriptors)"
serving || fail "the workload lost its SVID during the descriptor attack"
touch "$T/release"
wait "$HOLD_PID" || true
wait_for 30 ready_ok "$SERVER_HTTP_PORT" || fail "server did not recover: $(cat "$T/ready.json")"
once "$T/server.log" "health: descriptors failing"
once "$T/server.log" "health: descriptors recovered after"
ok "descriptors close to exhaustion fail /ready with the figures, and it recovers"

# ---- every SVID expired while the server is unreachable
stop_server
wait_for 60 ready_fails_with "$AGENT_HTTP_PORT" identities "every X509-SVID has expired" ||
	fail "agent /ready: $(ready_check "$AGENT_HTTP_PORT" identities)"
echo "# agent /ready identities: $(ready_check "$AGENT_HTTP_PORT" identities)"
once "$T/agent.log" "health: identities failing"
start_server
wait_for 90 ready_ok "$AGENT_HTTP_PORT" || fail "agent did not recover: $(cat "$T/ready.json")"
wait_for 30 serving || fail "workload not served again"
once "$T/agent.log" "health: identities recovered after"
ok "every SVID expired with the server down: the agent says so once, and recovers"
