#!/usr/bin/env bash
# Both daemons' /metrics pass `promtool check metrics` (names, units, _total on counters, HELP
# and TYPE), carry the standard process_* families, and no name stutters (lanyard_agent_agent_).
# promtool comes from Debian's prometheus package, which tests/run.sh installs; outside CI a
# machine without it skips (77).
source "$(dirname "$0")/lib.sh"

if ! command -v promtool >/dev/null; then
	[ "${CI:-}" = true ] && fail "promtool missing in CI (tests/run.sh installs prometheus)"
	echo "SKIP: promtool not installed (apt-get install prometheus)"
	exit 77
fi

# OIDC discovery on, so that its families are linted too.
OIDC_PORT=$(free_port)
write_server_config "\"oidc_issuer\": \"http://127.0.0.1:$OIDC_PORT\", \"oidc_discovery_address\": \"127.0.0.1\", \"oidc_discovery_port\": $OIDC_PORT"
start_server_and_agent
curl -s -o /dev/null "http://127.0.0.1:$OIDC_PORT/keys" || true
wait_for 30 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
# Some traffic, so that labelled families have samples.
"$BIN/lanyard-agent" api fetch bundles --socket "$AGENT_SOCK" >/dev/null 2>&1 || true

for d in server agent; do
	if [ $d = server ]; then port=$SERVER_HTTP_PORT; else port=$AGENT_HTTP_PORT; fi
	wait_for 20 curl -sf -o "$T/$d.prom" "http://127.0.0.1:$port/metrics" || fail "$d: no /metrics"
	rc=0
	promtool check metrics <"$T/$d.prom" >"$T/$d.lint" 2>&1 || rc=$?
	[ "$rc" = 0 ] || fail "$d: promtool check metrics (exit $rc): $(cat "$T/$d.lint")"
	for f in process_resident_memory_bytes process_cpu_seconds_total process_open_fds \
		process_start_time_seconds process_max_fds process_virtual_memory_bytes; do
		grep -q "^# TYPE $f " "$T/$d.prom" || fail "$d: no $f"
	done
	[ $d = agent ] || grep -q "^# TYPE lanyard_server_oidc_requests_total counter" "$T/$d.prom" ||
		fail "server: no OIDC families"
	! grep -q "lanyard_${d}_${d}_" "$T/$d.prom" ||
		fail "$d: a name stutters: $(grep "lanyard_${d}_${d}_" "$T/$d.prom" | head -3)"
	! grep -q "^lanyard_${d}_process_" "$T/$d.prom" || fail "$d: prefixed process metrics remain"
	echo "  $d: $(grep -c '^# TYPE' "$T/$d.prom") families, promtool clean"
done
ok "promtool check metrics is clean on both daemons; standard process_* names; no stutter"
