#!/usr/bin/env bash
# Servers know each other (server b takes its connection string from the environment): two lanyard-servers on one PostgreSQL database each list both
# (`server list`, /status, /metrics); one stopped leaves the list after the liveness window while
# the other stays ready; /metrics has the change feed's lag (an entry made on B), datastore latency
# per operation and error counters; the database stopped makes /ready fail naming it (and the
# errors are counted), and started again makes it ready again. Skipped (77) where PostgreSQL is not installed, except under CI.
source "$(dirname "$0")/lib.sh"

start_pg

# cluster_config NAME [env]: starts server NAME; with "env", the connection string comes from
# LANYARD_DATABASE_CONNECTION_STRING instead of the config (as from a Kubernetes Secret).
declare -A PID HTTP
cluster_config() {
	local n=$1 key="\"database_connection_string\": \"$PG_CONNSTR\","
	local env=()
	if [ "${2:-}" = env ]; then
		key=
		env=(env "LANYARD_DATABASE_CONNECTION_STRING=$PG_CONNSTR")
	fi
	mkdir -p "$T/$n"
	HTTP[$n]=$(free_port)
	cat >"$T/$n.json" <<JSON
{
  "trust_domain": "$TD",
  "data_dir": "$T/$n/data",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
  "admin_socket": "$T/$n/admin.sock",
  "http_address": "127.0.0.1",
  "http_port": ${HTTP[$n]},
  "database_type": "postgres",
  $key
  "database_max_connections": 4
}
JSON
	"${env[@]}" "$BIN/lanyard-server" run --config "$T/$n.json" >>"$T/server-$n.log" 2>&1 &
	PID[$n]=$!
	PIDS+=("$!")
	wait_for 30 "$BIN/lanyard-server" bundle show --socket "$T/$n/admin.sock" >/dev/null ||
		fail "server $n did not come up: $(tail -5 "$T/server-$n.log")"
}

# n_servers NODE: how many servers NODE's `server list --output json` shows.
n_servers() {
	"$BIN/lanyard-server" server list --output json --socket "$T/$1/admin.sock" |
		$PY -c 'import json,sys; d=json.load(sys.stdin); print(len(d["servers"]))'
}

# servers_are NODE N, ready_is NODE CODE: conditions for wait_for (evaluated on every try).
servers_are() {
	test "$(n_servers "$1")" = "$2"
}

ready_is() {
	test "$(get "$1" /ready)" = "$2"
}

get() {
	curl -s -o "$T/body" -w '%{http_code}' "http://127.0.0.1:${HTTP[$1]}$2"
}

cluster_config a
cluster_config b env
for n in a b; do
	wait_for 30 servers_are $n 2 || fail "server $n does not list both servers"
done
"$BIN/lanyard-server" server list --output json --socket "$T/a/admin.sock" >"$T/list.json"
$PY - "$T/list.json" "$T/a/data/server_id" "$T/b/data/server_id" <<'PY' || fail "server list JSON: $(cat "$T/list.json")"
import json, sys
d = json.load(open(sys.argv[1]))
ids = {open(p).read().strip() for p in sys.argv[2:]}
got = {s["id"] for s in d["servers"]}
assert got == ids, (got, ids)
for s in d["servers"]:
    assert s["address"].startswith("127.0.0.1:") and s["version"] and s["last_seen"] > 0, s
    assert s["authorities"] >= 1, s
PY
"$BIN/lanyard-server" server list --socket "$T/b/admin.sock" >"$T/list.txt"
grep -q "^ID .*ADDRESS" "$T/list.txt" && grep -q "^2 servers$" "$T/list.txt" ||
	fail "server list text: $(cat "$T/list.txt")"
ok "two servers on one database list each other (server list, text and JSON)"

wait_for 15 bash -c "curl -s 'http://127.0.0.1:${HTTP[a]}/status' | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d[\"cluster\"][\"live\"] == 2 and len(d[\"cluster\"][\"servers\"]) == 2, d[\"cluster\"]'" ||
	fail "/status has no cluster of 2: $(curl -s "http://127.0.0.1:${HTTP[a]}/status")"
wait_for 15 bash -c "curl -s 'http://127.0.0.1:${HTTP[a]}/metrics' | grep -qx 'lanyard_server_cluster_servers 2'" ||
	fail "/metrics: $(curl -s "http://127.0.0.1:${HTTP[a]}/metrics" | grep cluster)"
ok "/status lists the cluster and /metrics counts 2 live servers"

# Datastore and change-feed metrics: an entry made on B reaches A through the feed, and A's
# /metrics shows that change's lag, its datastore operations' latency, and no errors.
metric() {
	$PY "$SRC/tests/integration/http_metrics.py" get "$T/metrics" "$@"
}
scrape_a() {
	curl -sf "http://127.0.0.1:${HTTP[a]}/metrics" >"$T/metrics" &&
		$PY "$SRC/tests/integration/http_metrics.py" check "$T/metrics" lanyard_server >/dev/null
}
scrape_a || fail "A's /metrics does not parse: $($PY "$SRC/tests/integration/http_metrics.py" check "$T/metrics" lanyard_server 2>&1)"
lag0=$(metric lanyard_server_change_feed_lag_seconds_count)
"$BIN/lanyard-server" entry create --socket "$T/b/admin.sock" --spiffe-id "spiffe://$TD/metrics/w" \
	--parent-id "spiffe://$TD/metrics/agent" --selector unix:uid:1 >/dev/null || fail "entry on B"
lag_grew() {
	scrape_a && [ "$(metric lanyard_server_change_feed_lag_seconds_count)" -gt "$lag0" ]
}
wait_for 20 lag_grew || fail "A's change-feed lag histogram did not count B's change"
echo "# A: change feed lag sum $(metric lanyard_server_change_feed_lag_seconds_sum) s over" \
	"$(metric lanyard_server_change_feed_lag_seconds_count) changes"
[ "$(metric lanyard_server_datastore_operation_duration_seconds_count op=ping)" -gt 0 ] ||
	fail "no ping latency on A"
[ "$(metric lanyard_server_datastore_operation_duration_seconds_count op=server_heartbeat)" -gt 0 ] ||
	fail "no heartbeat latency on A"
[ "$(metric lanyard_server_datastore_operation_errors_total op=ping)" = 0 ] || fail "ping errors on A"
metric lanyard_server_datastore_retries_total >/dev/null || fail "no retries counter"
metric lanyard_server_change_feed_holes_total >/dev/null || fail "no feed holes counter"
[ "$(metric lanyard_server_cluster_servers)" = 2 ] || fail "cluster_servers on A"
ok "/metrics: change-feed lag, datastore latency per operation, error and retry counters, live servers"

kill -TERM "${PID[b]}"
wait "${PID[b]}" 2>/dev/null || true
t0=$(date +%s)
wait_for 40 servers_are a 1 || fail "the stopped server is still listed as live"
echo "# the stopped server left the list after $(($(date +%s) - t0)) s"
[ "$(get a /ready)" = 200 ] || fail "/ready of the remaining server: $(cat "$T/body")"
ok "a stopped server leaves the list after the liveness window; the other stays ready"

bash "$SRC/tests/pg_cluster.sh" stop "$PG_DIR"
wait_for 30 ready_is a 503 || fail "/ready still answers with the database stopped"
grep -q '"datastore"' "$T/body" && grep -qi 'database' "$T/body" ||
	fail "/ready does not name the database: $(cat "$T/body")"
echo "# /ready with the database down: $(cat "$T/body")"
ping_errors() {
	scrape_a && [ "$(metric lanyard_server_datastore_operation_errors_total op=ping)" -gt 0 ]
}
wait_for 15 ping_errors || fail "datastore errors not counted while the database is down"
ok "/ready fails, naming the database, and datastore errors are counted while PostgreSQL is down"

bash "$SRC/tests/pg_cluster.sh" restart "$PG_DIR" >/dev/null
wait_for 60 ready_is a 200 || fail "/ready did not recover with the database: $(cat "$T/body")"
wait_for 30 servers_are a 1 || fail "server list after the database came back"
ok "ready again once PostgreSQL is back"
