#!/usr/bin/env bash
# Soak (slow: about 2.5 minutes): the proof that SVIDs hot-swap. A real server and agent issue
# 15 s X509-SVIDs; the liblanyard examples (deploy/examples) talk mutual TLS for at least two
# minutes, the client making a NEW connection for every message while both sides' SVIDs rotate
# underneath. Asserts zero failed handshakes and at least 8 changes of the server's certificate
# serial (and of the client's). Then the refusals: a client with an SPIFFE ID the server does
# not allow, and a client of another trust domain (a second server and agent, other.org).
#
# Two identities from one agent: the server runs as root (unix:uid:0 -> echo-server), the client
# as uid 65534 (unix:uid:65534 -> echo-client) through setpriv; the intruder as uid 65533.
# LANYARD_SOAK_SECONDS shortens or lengthens the traffic phase (default 130).
source "$(dirname "$0")/lib.sh"

SOAK=${LANYARD_SOAK_SECONDS:-130}
MIN_CHANGES=${LANYARD_SOAK_MIN_CHANGES:-8}
[ "$(id -u)" = 0 ] || skip "needs root (setpriv to other uids)"
EX="${LANYARD_BUILD:?LANYARD_BUILD must point at the build directory}/examples"
[ -x "$EX/echo_server" ] && [ -x "$EX/echo_client" ] || fail "examples not built in $EX"
# Copies every user can run, in the test's 0755 directory.
cp "$EX/echo_server" "$EX/echo_client" "$T/"
chmod 755 "$T/echo_server" "$T/echo_client"
as_uid() {
	local uid=$1
	shift
	setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}

write_server_config '"default_x509_svid_ttl": "15s"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
entry() {
	srv entry create --spiffe-id "spiffe://$TD/$1" --parent-id "$AGENT_ID" \
		--selector "unix:uid:$2" --x509-svid-ttl 15 >/dev/null || fail "entry $1"
}
entry echo-server 0
entry echo-client 65534
entry intruder 65533
# The agent's socket must be usable by the other uids: parent 0755, socket 0777.
[ "$(stat -c %a "$(dirname "$AGENT_SOCK")")" = 755 ] || fail "socket dir not 0755"
[ "$(stat -c %a "$AGENT_SOCK")" = 777 ] || fail "socket not 0777"

PORT=$(free_port)
"$T/echo_server" --socket "$AGENT_SOCK" --listen "127.0.0.1:$PORT" \
	--allow "spiffe://$TD/echo-client" >"$T/echo-server.log" 2>&1 &
SRV=$!
PIDS+=("$SRV")
wait_for 30 grep -q "^listening" "$T/echo-server.log" || fail "echo_server did not start"
ok "echo_server up: $(grep "^listening" "$T/echo-server.log")"

# ---- the soak
echo "# ${SOAK}s of new mTLS connections while 15 s SVIDs rotate"
rc=0
timeout $((SOAK + 60)) setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$T/echo_client" --socket "$AGENT_SOCK" --connect "127.0.0.1:$PORT" \
	--allow "spiffe://$TD/echo-server" --duration "$SOAK" --interval 20 \
	>"$T/echo-client.log" 2>&1 || rc=$?
summary=$(grep '^summary:' "$T/echo-client.log" || true)
echo "# client $summary"
[ -n "$summary" ] || { tail -n 20 "$T/echo-client.log"; fail "no summary from echo_client"; }
field() {
	echo "$summary" | grep -o "$1=[0-9]*" | cut -d= -f2
}
okn=$(field ok)
failed=$(field failed)
if [ "$failed" != 0 ] || [ "$rc" != 0 ]; then
	grep '^FAIL' "$T/echo-client.log" | head -n 10
	fail "$failed failed connections out of $((okn + failed)) (exit $rc)"
fi
[ "$okn" -ge 100 ] || fail "only $okn connections in ${SOAK}s"
# Changes seen by the client, in order (distinct consecutive serials).
changes() {
	grep '^ok ' "$T/echo-client.log" | grep -o "$1=[0-9a-f]*" | uniq | wc -l
}
srv_changes=$(($(changes server_serial) - 1))
cli_changes=$(($(changes " serial") - 1))
echo "# server certificate changed $srv_changes times, client certificate $cli_changes times"
[ "$srv_changes" -ge "$MIN_CHANGES" ] || fail "server serial changed only $srv_changes times"
[ "$cli_changes" -ge "$MIN_CHANGES" ] || fail "client serial changed only $cli_changes times"
grep -q "server=spiffe://$TD/echo-server " "$T/echo-client.log" || fail "server ID not seen"
accepted=$(grep -c "^accepted peer=spiffe://$TD/echo-client " "$T/echo-server.log" || true)
refused=$(grep -c "^refused\|^error" "$T/echo-server.log" || true)
[ "$refused" = 0 ] || { grep "^refused\|^error" "$T/echo-server.log" | head; fail "server errors"; }
[ "$accepted" = "$okn" ] || fail "server accepted $accepted connections, client saw $okn"
ok "$okn connections, 0 failed; server SVID rotated $srv_changes times, client's $cli_changes"

# ---- refusals: an SPIFFE ID the server does not allow
out=$(as_uid 65533 "$T/echo_client" --socket "$AGENT_SOCK" --connect "127.0.0.1:$PORT" \
	--allow "spiffe://$TD/echo-server" --count 3 2>&1) && fail "intruder accepted: $out"
echo "$out" | grep -q "summary: ok=0 failed=3" || fail "intruder: $out"
wait_for 5 grep -q "spiffe://$TD/intruder is not authorized" "$T/echo-server.log" ||
	fail "server did not log the refusal of the intruder"
grep -q "^accepted peer=spiffe://$TD/intruder" "$T/echo-server.log" && fail "intruder accepted"
ok "a client with an ID the server does not allow is refused"

# ---- refusals: another trust domain (its own server and agent)
O="$T/other"
mkdir -p "$O"
OPORT=$(free_port)
OHTTP=$(free_port)
cat >"$O/server.json" <<JSON
{"trust_domain": "other.org", "data_dir": "$O/server/data", "bind_address": "127.0.0.1",
 "bind_port": $OPORT, "admin_socket": "$O/server/admin.sock", "http_port": $OHTTP,
 "default_x509_svid_ttl": "60s"}
JSON
"$BIN/lanyard-server" run --config "$O/server.json" >>"$T/other-server.log" 2>&1 &
PIDS+=($!)
osrv() {
	"$BIN/lanyard-server" "$@" --socket "$O/server/admin.sock"
}
wait_for 20 osrv bundle show || fail "other.org server did not come up"
osrv bundle show >"$O/bootstrap.pem"
otok=$(osrv token generate --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
cat >"$O/agent.json" <<JSON
{"trust_domain": "other.org", "server_address": "127.0.0.1", "server_port": $OPORT,
 "trust_bundle_path": "$O/bootstrap.pem", "data_dir": "$O/agent/data",
 "socket_path": "$O/agent/api.sock", "http_port": $(free_port)}
JSON
"$BIN/lanyard-agent" run --config "$O/agent.json" --join-token "$otok" >>"$T/other-agent.log" 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "connected to server" "$T/other-agent.log" || fail "other.org agent"
osrv entry create --spiffe-id "spiffe://other.org/echo-client" \
	--parent-id "spiffe://other.org/lanyard/agent/join_token/$otok" \
	--selector "unix:uid:65534" >/dev/null || fail "other.org entry"

# The foreign client: it cannot even verify our server (no bundle of example.org).
out=$(as_uid 65534 "$T/echo_client" --socket "$O/agent/api.sock" --connect "127.0.0.1:$PORT" \
	--allow-td "$TD" --count 2 2>&1) && fail "foreign client accepted: $out"
echo "$out" | grep -q "summary: ok=0 failed=2" || fail "foreign client: $out"
# And our server refuses its certificate by itself: present it with OpenSSL, which is told not
# to check the server. The files come from the other.org agent (lanyard-agent api fetch).
mkdir -p "$O/files"
chmod 777 "$O/files"
wait_for 20 as_uid 65534 "$BIN/lanyard-agent" api fetch x509 --socket "$O/agent/api.sock" \
	--write "$O/files" || fail "no SVID from the other.org agent"
before=$(grep -c "no trust bundle for trust domain other.org" "$T/echo-server.log" || true)
echo hello | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -cert "$O/files/svid.0.pem" \
	-key "$O/files/svid.0.key" -brief >"$O/s_client.out" 2>&1 || true
wait_for 5 sh -c "[ \$(grep -c 'no trust bundle for trust domain other.org' '$T/echo-server.log') -gt $before ]" ||
	{ tail -n 5 "$T/echo-server.log"; fail "server did not refuse the other.org client"; }
grep -q "^accepted peer=spiffe://other.org" "$T/echo-server.log" && fail "other.org accepted"
ok "a client from another trust domain is refused"

# The server is still serving the allowed client afterwards.
as_uid 65534 "$T/echo_client" --socket "$AGENT_SOCK" --connect "127.0.0.1:$PORT" \
	--allow "spiffe://$TD/echo-server" --count 2 >"$T/after.log" 2>&1 ||
	{ cat "$T/after.log"; fail "allowed client refused after the negative checks"; }
kill -TERM "$SRV"
wait "$SRV" || fail "echo_server exited with $? on SIGTERM"
ok "echo_server still serves the allowed client, and stops cleanly"
