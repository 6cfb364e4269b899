#!/usr/bin/env bash
# The /metrics-only listeners (metrics_bind_address/metrics_bind_port) of both daemons, bound to
# every address as in a pod and scraped over loopback: they serve the daemon's metrics and
# nothing else, while the operator endpoints stay on 127.0.0.1 with everything.
source "$(dirname "$0")/lib.sh"

SERVER_METRICS_PORT=$(free_port)
AGENT_METRICS_PORT=$(free_port)
write_server_config "\"metrics_bind_address\": \"0.0.0.0\", \"metrics_bind_port\": $SERVER_METRICS_PORT"
start_server
write_agent_config "\"metrics_bind_address\": \"0.0.0.0\", \"metrics_bind_port\": $AGENT_METRICS_PORT"
start_agent --join-token "$(new_token)"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"

code() { # METHOD URL
	curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" "$2"
}
scrape_has() { # PORT PATTERN
	curl -sf --max-time 10 "http://127.0.0.1:$1/metrics" | grep -q "$2"
}
for d in server agent; do
	if [ $d = server ]; then mport=$SERVER_METRICS_PORT; hport=$SERVER_HTTP_PORT
	else mport=$AGENT_METRICS_PORT; hport=$AGENT_HTTP_PORT; fi
	wait_for 20 scrape_has "$mport" "^lanyard_${d}_ready 1" ||
		fail "$d: no lanyard_${d}_ready 1 on the metrics listener"
	for p in / /live /ready /status /metrics/ /nope; do
		c=$(code GET "http://127.0.0.1:$mport$p")
		[ "$c" = 404 ] || fail "$d metrics listener answered $c for $p"
	done
	c=$(code POST "http://127.0.0.1:$mport/metrics")
	[ "$c" = 405 ] || fail "$d metrics listener answered $c for POST /metrics"
	c=$(code GET "http://127.0.0.1:$hport/status")
	[ "$c" = 200 ] || fail "$d operator endpoint answered $c for /status"
	ok "$d: /metrics on 0.0.0.0:$mport, every other path 404, POST 405; /status still on $hport"
done

# A port in use: exit 1, the key named.
stop_agent
AGENT_HTTP_PORT=$(free_port)
write_agent_config "\"metrics_bind_address\": \"127.0.0.1\", \"metrics_bind_port\": $SERVER_METRICS_PORT"
rc=0
timeout 30 "$BIN/lanyard-agent" run --config "$T/agent.json" >"$T/busy.log" 2>&1 || rc=$?
[ $rc = 1 ] || fail "agent with a busy metrics port: exit $rc"
grep -q "metrics_bind_address:metrics_bind_port 127.0.0.1:$SERVER_METRICS_PORT: cannot listen" \
	"$T/busy.log" || fail "no message naming the metrics listener: $(tail -n 2 "$T/busy.log")"
ok "agent: metrics port in use -> exit 1 naming metrics_bind_address:metrics_bind_port"
