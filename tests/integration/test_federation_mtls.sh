#!/usr/bin/env bash
# Workloads of two federated trust domains complete mutual TLS with the liblanyard echo example:
# one.test and two.test federate both ways over https_spiffe bundle endpoints, each has an agent,
# the echo server (one.test) allows the client's ID of two.test and the client allows the
# server's ID of one.test; each workload's entry federates with the other trust domain. After
# `federation delete` on one.test, its workload drops two.test's bundle and refuses the client,
# while a client of one.test itself (same ID as the server, allowed too) keeps working.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fed_lib.sh"

EX="${LANYARD_BUILD:?LANYARD_BUILD must point at the build directory}/examples"
[ -x "$EX/echo_server" ] && [ -x "$EX/echo_client" ] || fail "examples not built in $EX"

start_td one.test
start_td two.test
federate one.test two.test
federate two.test one.test
start_agent_td one.test
start_agent_td two.test
me=$(id -u)
s one.test entry create --spiffe-id spiffe://one.test/echo-server \
	--parent-id "${AGENT_ID_OF[one.test]}" --selector "unix:uid:$me" \
	--federates-with two.test >/dev/null
s two.test entry create --spiffe-id spiffe://two.test/echo-client \
	--parent-id "${AGENT_ID_OF[two.test]}" --selector "unix:uid:$me" \
	--federates-with one.test >/dev/null

PORT=$(free_port)
"$EX/echo_server" --socket "${AGENT_SOCK_OF[one.test]}" --listen "127.0.0.1:$PORT" \
	--allow spiffe://two.test/echo-client --allow spiffe://one.test/echo-server \
	>"$T/echo-server.log" 2>&1 &
PIDS+=("$!")
wait_for 60 grep -q "^listening" "$T/echo-server.log" || fail "echo_server did not start"

# client TD ID: one echo from a workload of TD expecting the server's ID.
client() {
	"$EX/echo_client" --socket "${AGENT_SOCK_OF[$1]}" --connect "127.0.0.1:$PORT" \
		--allow spiffe://one.test/echo-server --count 1 >>"$T/echo-client-$1.log" 2>&1
}
wait_for 60 client two.test || fail "no mTLS between two.test's client and one.test's server"
grep -q "accepted peer=spiffe://two.test/echo-client" "$T/echo-server.log" ||
	fail "the server did not log the two.test peer"
ok "a workload of two.test and one of one.test completed mutual TLS"

s one.test federation delete --trust-domain two.test >/dev/null
refused() { ! client two.test; }
wait_for 60 refused || fail "one.test's workload still accepts two.test after federation delete"
grep -q "^refused" "$T/echo-server.log" || fail "the server did not log the refusal"
wait_for 60 client one.test || fail "one.test's own client stopped working"
ok "federation delete: one.test's workload drops two.test's bundle, its own clients keep working"
