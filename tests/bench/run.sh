#!/usr/bin/env bash
# Lanyard's benchmarks: builds a release build, starts servers and agents in a temporary
# directory, and prints every figure as "BENCH <name> <value> <unit>" (lines starting with '#'
# explain them), then a summary table with the targets of issue 7.
#
# Timing on a shared machine is noisy: each figure is a median of several rounds, and speeds are
# also given as ratios against a limit measured in the same run. Benchmarks never fail on a
# number; the exit status is non-zero only when something could not be set up.
#
# Environment:
#   LANYARD_BENCH_QUICK=1      short smoke mode (CI): small sizes, one round; figures keep their
#                              names but are NOT comparable (the output says so)
#   LANYARD_BENCH_BUILD=DIR    build directory (default: <source>/build-release)
#   LANYARD_BENCH_NO_BUILD=1   use DIR as it is (bin/ and bench/ must exist), e.g. a test build
#   LANYARD_BENCH_ONLY="..."   a subset of: issue sync agent sp pg admin fleet storm (default: all). sp
#                              builds a second release tree with LANYARD_WOLFSSL=sp (<DIR>-sp) and
#                              prints the issuance and idle-agent figures of both wolfSSL builds
#                              side by side (_system / _sp suffixes). pg runs the issue and sync
#                              benchmarks on two servers sharing a throwaway PostgreSQL cluster
#                              (tests/pg_cluster.sh; _pg suffix); skipped without PostgreSQL.
#                              admin times the operator's bulk paths: one --data batch of 10,000
#                              entries and a listing of all 100,000. fleet: 10,000 simulated
#                              agents holding entry streams over 100,000 entries (server CPU
#                              and memory); storm: 5,000 of them and one lanyard-agent
#                              reconnecting after a server restart
#   LANYARD_BENCH_FLEET_AGENTS=N  the fleet benchmark with N simulated agents instead of the mode's
#                              (10 entries each): memory per connection at a chosen scale
#   LANYARD_BENCH_FLEET_ENTRIES=N  entries per simulated agent in fleet (default 10): two runs that
#                              differ only in it give the memory per entry
#   LANYARD_BENCH_FLEET_WOLFSSL=system|sp  the build fleet and storm measure (default sp, what the
#                              images run: the LANYARD_WOLFSSL=sp tree the sp section uses, built
#                              unless NO_BUILD; system: DIR, Debian's wolfSSL)
#   LANYARD_BENCH_SP_NGHTTP2=patched|system  the nghttp2 of that sp tree (default patched, what
#                              the images run: LANYARD_NGHTTP2=patched, deploy/build-nghttp2.sh;
#                              system: Debian's, for a before/after of the patch. The tree is
#                              reconfigured, so the two share <DIR>-sp in turn)
#   LANYARD_BENCH_KEEP=1       keep the temporary directory (logs, data) for inspection
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${LANYARD_BENCH_BUILD:-$SRC/build-release}"
QUICK="${LANYARD_BENCH_QUICK:-0}"
ONLY="${LANYARD_BENCH_ONLY:-issue sync agent sp pg admin fleet storm}"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ -z "${LANYARD_BENCH_NO_BUILD:-}" ]; then
	echo "# building a release build in $BUILD" >&2
	cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLANYARD_SANITIZE=OFF \
		-DLANYARD_WERROR=OFF >/dev/null
	cmake --build "$BUILD" -j"$(nproc)" --target lanyard-server lanyard-agent bench_server \
		bench_agent bench_tls bench_fleet >/dev/null
fi
BIN="$BUILD/bin"
BENCH="$BUILD/bench"
for f in "$BIN/lanyard-server" "$BIN/lanyard-agent" "$BENCH/bench_server" "$BENCH/bench_agent"; do
	[ -x "$f" ] || { echo "run.sh: $f is missing" >&2; exit 1; }
done

# State lives on tmpfs when there is one: the datastore fsyncs every change, and on a slow disk
# setting up 10,000 entries would measure the disk, not Lanyard.
BASE=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && BASE=/dev/shm
T="$(mktemp -d "$BASE/lanyard-bench.XXXXXX")"
chmod 755 "$T"
PIDS=()
PG_DIR=""
OUT="$T/bench.out"
: >"$OUT"

cleanup() {
	local rc=$?
	# An agent bench_agent started itself (restart) and could not stop: its pid is in the lock.
	local lock="$T/agent/data/agent.lock" p
	if [ -f "$lock" ]; then
		p=$(head -n 1 "$lock" 2>/dev/null || true)
		if [ -n "$p" ] && grep -qs "$T/agent/agent.json" "/proc/$p/cmdline"; then
			PIDS+=("$p")
		fi
	fi
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	if [ $rc -ne 0 ]; then
		for f in "$T"/*/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 30 lines)" >&2
			tail -n 30 "$f" >&2
		done
	fi
	if [ -n "$PG_DIR" ]; then
		bash "$SRC/tests/pg_cluster.sh" stop "$PG_DIR" || true
	fi
	if [ -n "${LANYARD_BENCH_KEEP:-}" ]; then
		echo "# kept $T" >&2
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT

# Runs a benchmark program, showing its output and keeping the BENCH lines for the summary.
# Every figure is followed by the load average it was measured under (the machine is shared).
run() {
	"$@" | while IFS= read -r line; do
		printf '%s\n' "$line"
		case "$line" in
		"BENCH "*) echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at ${line#BENCH }" ;;
		esac
	done | tee -a "$OUT"
}

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {
	local secs=$1
	shift
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	"$@"
}

# start_server NAME [KEYS]: a server with its state in $T/NAME (sets SRV_PID, SRV_PORT, ADMIN,
# DIR); KEYS: more configuration lines ('"key": value,') for a new configuration.
start_server() {
	DIR="$T/$1"
	mkdir -p "$DIR"
	if [ ! -f "$DIR/server.json" ]; then
		cat >"$DIR/server.json" <<JSON
{
${2:-}
  "trust_domain": "example.org",
  "data_dir": "$DIR/server",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
  "admin_socket": "$DIR/admin.sock",
  "http_port": $(free_port)
}
JSON
	fi
	SRV_PORT=$(sed -n 's/^ *"bind_port": \([0-9]*\),$/\1/p' "$DIR/server.json")
	ADMIN="$DIR/admin.sock"
	"$BIN/lanyard-server" run --config "$DIR/server.json" >>"$DIR/server.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	wait_for 30 "$BIN/lanyard-server" bundle show --socket "$ADMIN" || {
		echo "run.sh: the server did not come up" >&2
		exit 1
	}
	"$BIN/lanyard-server" bundle show --socket "$ADMIN" >"$DIR/bundle.pem"
}

# start_agent DIR: a lanyard-agent of the server start_server last started, with its state in
# DIR, attesting with a new join token (sets AGENT_PID, AGENT_TOKEN).
start_agent() {
	mkdir -p "$1"
	cat >"$1/agent.json" <<JSON
{
  "trust_domain": "example.org",
  "server_address": "127.0.0.1",
  "server_port": $SRV_PORT,
  "trust_bundle_path": "$DIR/bundle.pem",
  "data_dir": "$1/data",
  "socket_path": "$1/api.sock",
  "http_port": $(free_port)
}
JSON
	AGENT_TOKEN=$("$BIN/lanyard-server" token generate --output json --socket "$ADMIN" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	"$BIN/lanyard-agent" run --config "$1/agent.json" --join-token "$AGENT_TOKEN" \
		>>"$1/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
echo "# date $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) cores ($cpu_model), ${mem_gib} GiB RAM;" \
	"$(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# commit $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	"$( [ -n "$(git -C "$SRC" status --porcelain 2>/dev/null)" ] && echo '(with local changes)')"
if [ "$QUICK" = 1 ]; then
	echo "# QUICK MODE (smoke test): small sizes and single short rounds; the figures below only" \
		"show that every benchmark runs and are NOT comparable with a full run"
	ISSUE_ARGS=(--agents 8 --entries 10 --threads 4 --seconds 1 --runs 1)
	SYNC_ARGS=(--agents 50 --entries 10 --idle-seconds 1 --seconds 3)
	N_FETCH=100 N_MID=150 N_BIG=300 N_STREAMS=50 FETCH_ARGS=(--count 200 --seconds 1 --runs 1)
	N_STREAMS_10K=200 JWT_COUNT=200
	STREAM_RUNS=1 RESTART_RUNS=2 TLS_ARGS=(--count 3 --warmup 1) HA_ROUNDS=3 HA_WATCH_S=6
	ADMIN_BATCH=500 ADMIN_BATCHES=2
	FLEET_ARGS=(--agents 200 --entries 10 --idle-seconds 1 --seconds 3)
	STORM_ARGS=(--agents 100 --entries 1 --workers 16 --timeout 120)
else
	ISSUE_ARGS=(--agents 64 --entries 10 --threads 8 --seconds 5 --runs 5)
	SYNC_ARGS=(--agents 1000 --entries 10 --idle-seconds 15 --seconds 40)
	N_FETCH=100 N_MID=1000 N_BIG=10000 N_STREAMS=1000 FETCH_ARGS=(--count 3000 --seconds 3 --runs 5)
	N_STREAMS_10K=10000 JWT_COUNT=5000
	STREAM_RUNS=7 RESTART_RUNS=7 TLS_ARGS=(--count 300 --warmup 20) HA_ROUNDS=30 HA_WATCH_S=8
	ADMIN_BATCH=10000 ADMIN_BATCHES=10
	FLEET_ARGS=(--agents 10000 --entries 10 --idle-seconds 15 --seconds 60)
	STORM_ARGS=(--agents 5000 --entries 1 --workers 64 --timeout 300)
fi
[ -n "${LANYARD_BENCH_FLEET_AGENTS:-}" ] && FLEET_ARGS[1]=$LANYARD_BENCH_FLEET_AGENTS
[ -n "${LANYARD_BENCH_FLEET_ENTRIES:-}" ] && FLEET_ARGS[3]=$LANYARD_BENCH_FLEET_ENTRIES
SP_BUILD="${LANYARD_BENCH_SP_BUILD:-$BUILD-sp}"
FLEET_WOLFSSL="${LANYARD_BENCH_FLEET_WOLFSSL:-sp}"
case "$FLEET_WOLFSSL" in
system | sp) ;;
*) echo "run.sh: LANYARD_BENCH_FLEET_WOLFSSL=$FLEET_WOLFSSL: expected system or sp" >&2; exit 1 ;;
esac
# 10,000 simulated agents hold 10,000 connections: the load generator and the server need the
# descriptors (bench_server raises its own soft limit too).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- server: issuance rate against the raw cryptography ----
if [[ " $ONLY " == *" issue "* ]]; then
	echo "# == issue: SignX509 end to end vs the raw cryptography"
	start_server issue
	run "$BENCH/bench_server" issue --admin "$ADMIN" --port "$SRV_PORT" --bundle "$DIR/bundle.pem" \
		--server-pid "$SRV_PID" --pool "${UV_THREADPOOL_SIZE:-4}" "${ISSUE_ARGS[@]}"
	stop_pid "$SRV_PID"
fi

# ---- server: CPU per connected agent ----
if [[ " $ONLY " == *" sync "* ]]; then
	echo "# == sync: server CPU with many agents holding entry streams"
	start_server sync
	run "$BENCH/bench_server" sync --admin "$ADMIN" --port "$SRV_PORT" --bundle "$DIR/bundle.pem" \
		--server-pid "$SRV_PID" "${SYNC_ARGS[@]}"
	stop_pid "$SRV_PID"
fi

# ---- agent ----
if [[ " $ONLY " == *" agent "* ]]; then
	echo "# == agent: memory, Workload API latency and rate, streams, restart"
	start_server agent-server
	A="$T/agent"
	mkdir -p "$A"
	AGENT_SOCK="$A/api.sock"
	cat >"$A/agent.json" <<JSON
{
  "trust_domain": "example.org",
  "server_address": "127.0.0.1",
  "server_port": $SRV_PORT,
  "trust_bundle_path": "$DIR/bundle.pem",
  "data_dir": "$A/data",
  "socket_path": "$AGENT_SOCK",
  "http_port": $(free_port),
  "max_conns_per_uid": 0,
  "max_conns_per_process": 100000
}
JSON
	tok=$("$BIN/lanyard-server" token generate --output json --socket "$ADMIN" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	AGENT_ID="spiffe://example.org/lanyard/agent/join_token/$tok"
	"$BIN/lanyard-agent" run --config "$A/agent.json" --join-token "$tok" >>"$A/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
	wait_for 30 test -S "$AGENT_SOCK" || { echo "run.sh: no agent socket" >&2; exit 1; }
	wait_for 30 test -f "$A/data/agent_svid.pem" || { echo "run.sh: agent not attested" >&2; exit 1; }

	run "$BENCH/bench_agent" rss --pid "$AGENT_PID" --name agent_rss_kib_0 --seconds 1
	# N_FETCH entries; the first is this uid's, the rest belong to uids nobody here has.
	run "$BENCH/bench_agent" populate --admin "$ADMIN" --parent "$AGENT_ID" --from 0 \
		--to "$N_FETCH" --mine 1 --ids-out "$A/mine.ids" --state "$A/data"
	echo "# fetch: the caller is entitled to 1 of the $N_FETCH SVIDs the agent holds"
	run "$BENCH/bench_agent" fetch --socket "$AGENT_SOCK" --pid "$AGENT_PID" --procs 2 \
		"${FETCH_ARGS[@]}"
	run "$BENCH/bench_agent" streams --socket "$AGENT_SOCK" --pid "$AGENT_PID" --admin "$ADMIN" \
		--entry-id "$(head -n 1 "$A/mine.ids")" --count "$N_STREAMS" --runs "$STREAM_RUNS" \
		--timeout 60 --fetch-name fetch_p99_us_c1000 --procs 2
	# 10,000 streams, 5 per connection: the agent pins 3 descriptors per connection (the socket,
	# the caller's /proc directory and pidfd), and 10,000 connections would need 30,000.
	run "$BENCH/bench_agent" streams --socket "$AGENT_SOCK" --pid "$AGENT_PID" --admin "$ADMIN" \
		--entry-id "$(head -n 1 "$A/mine.ids")" --count "$N_STREAMS_10K" --per-conn 5 \
		--suffix _10k --runs "$STREAM_RUNS" --timeout 120
	run "$BENCH/bench_agent" jwt --socket "$AGENT_SOCK" --count "$JWT_COUNT"

	# Restart from disk: the server is stopped first, so whatever is served comes from data_dir.
	stop_pid "$AGENT_PID"
	stop_pid "$SRV_PID"
	run "$BENCH/bench_agent" restart --agent-bin "$BIN/lanyard-agent" --config "$A/agent.json" \
		--socket "$AGENT_SOCK" --log "$A/agent.log" --server-port "$SRV_PORT" \
		--runs "$RESTART_RUNS" --timeout 10
	start_server agent-server

	# Memory with N_MID and N_BIG entries: the entries are registered while the agent is down,
	# then it starts, gets the whole set in one snapshot, has it signed, and settles.
	prev=$N_FETCH
	for level in "$N_MID" "$N_BIG"; do
		stop_pid "$AGENT_PID"
		run "$BENCH/bench_agent" populate --admin "$ADMIN" --parent "$AGENT_ID" --from "$prev" \
			--to "$level"
		"$BIN/lanyard-agent" run --config "$A/agent.json" >>"$A/agent.log" 2>&1 &
		AGENT_PID=$!
		PIDS+=("$AGENT_PID")
		name=agent_rss_kib_1000
		[ "$level" = "$N_BIG" ] && name=agent_rss_kib_10000
		run "$BENCH/bench_agent" rss --pid "$AGENT_PID" --name "$name" --state "$A/data" \
			--to "$level" --seconds 2 --timeout 480
		prev=$level
	done
	# Restart again, now with N_BIG persisted SVIDs to load.
	stop_pid "$AGENT_PID"
	stop_pid "$SRV_PID"
	run "$BENCH/bench_agent" restart --agent-bin "$BIN/lanyard-agent" --config "$A/agent.json" \
		--socket "$AGENT_SOCK" --log "$A/agent.log" --server-port "$SRV_PORT" \
		--runs 3 --timeout 60 --name restart_ready_10000_ms
fi

# ---- the two wolfSSL builds: Debian's (system) and the SP-math one (sp) ----
# Each figure of the same run gets the build's suffix: issue_per_s_system, issue_per_s_sp, ...
suffixed() {
	local suffix=$1
	shift
	"$@" | sed -E "s/^BENCH ([^ ]+) /BENCH \1_$suffix /" | tee -a "$OUT"
}
SP_BUILT=""
SP_NGHTTP2="${LANYARD_BENCH_SP_NGHTTP2:-patched}"
build_sp() {
	[ -n "${LANYARD_BENCH_NO_BUILD:-}" ] || [ -n "$SP_BUILT" ] && return 0
	echo "# building a release build with LANYARD_WOLFSSL=sp LANYARD_NGHTTP2=$SP_NGHTTP2 in $SP_BUILD" >&2
	# Empty prefixes: deploy/build-wolfssl-sp.sh's and deploy/build-nghttp2.sh's builds for their
	# current flag sets and patches (cached).
	cmake -S "$SRC" -B "$SP_BUILD" -DCMAKE_BUILD_TYPE=Release -DLANYARD_SANITIZE=OFF \
		-DLANYARD_WERROR=OFF -DLANYARD_WOLFSSL=sp \
		-DLANYARD_WOLFSSL_SP_PREFIX="${LANYARD_WOLFSSL_SP_PREFIX:-}" \
		-DLANYARD_NGHTTP2="$SP_NGHTTP2" -DLANYARD_NGHTTP2_PREFIX="${LANYARD_NGHTTP2_PREFIX:-}" >/dev/null
	cmake --build "$SP_BUILD" -j"$(nproc)" --target lanyard-server lanyard-agent \
		bench_server bench_agent bench_tls bench_fleet >/dev/null
	SP_BUILT=1
}
if [[ " $ONLY " == *" sp "* ]]; then
	echo "# == sp: issuance and idle agent memory, Debian's wolfSSL vs LANYARD_WOLFSSL=sp"
	build_sp
	SYS_BIN="$BIN" SYS_BENCH="$BENCH"
	for variant in system sp; do
		if [ "$variant" = sp ]; then
			BIN="$SP_BUILD/bin" BENCH="$SP_BUILD/bench"
		fi
		[ -x "$BIN/lanyard-server" ] || { echo "run.sh: no $BIN/lanyard-server" >&2; exit 1; }
		start_server "issue-$variant"
		suffixed "$variant" "$BENCH/bench_server" issue --admin "$ADMIN" --port "$SRV_PORT" \
			--bundle "$DIR/bundle.pem" --server-pid "$SRV_PID" \
			--pool "${UV_THREADPOOL_SIZE:-4}" "${ISSUE_ARGS[@]}"
		# An idle agent of this build: attested, no entries.
		A="$T/agent-$variant"
		start_agent "$A"
		apid=$AGENT_PID tok=$AGENT_TOKEN
		wait_for 30 test -f "$A/data/agent_svid.pem" ||
			{ echo "run.sh: $variant agent not attested" >&2; exit 1; }
		suffixed "$variant" "$BENCH/bench_agent" rss --pid "$apid" --name agent_rss_kib_0 --seconds 1
		# One mutual-TLS handshake through liblanyard, both sides, with this agent's SVIDs.
		"$BIN/lanyard-server" entry create --socket "$ADMIN" --parent-id \
			"spiffe://example.org/lanyard/agent/join_token/$tok" \
			--spiffe-id spiffe://example.org/bench/tls --selector "unix:uid:$(id -u)" >/dev/null
		suffixed "$variant" "$BENCH/bench_tls" handshake --socket "$A/api.sock" "${TLS_ARGS[@]}"
		# The same with liblanyard's session resumption (TLS 1.2 session IDs, peer re-checked).
		suffixed "$variant" "$BENCH/bench_tls" resume --socket "$A/api.sock" "${TLS_ARGS[@]}"
		stop_pid "$apid"
		stop_pid "$SRV_PID"
	done
	BIN="$SYS_BIN" BENCH="$SYS_BENCH"
	awk '$1 == "BENCH" && $2 == "issue_per_s_system" {s = $3} $1 == "BENCH" && $2 == "issue_per_s_sp" {p = $3}
	     END {if (s > 0) printf "BENCH issue_sp_speedup %.2f ratio\n", p / s
	          else print "# no system-build SVID was issued in its round (a starved quick run): speedup 0 is a placeholder\nBENCH issue_sp_speedup 0 ratio"}' \
		"$OUT" | tee -a "$OUT"
fi

# ---- two servers on PostgreSQL: the issue and sync benchmarks again (_pg suffix) ----
# Simulated agents alternate between the two servers; sync changes alternate between the two
# admin APIs (half of them reach their agent through the shared change feed); server CPU is
# both servers'. PostgreSQL itself runs on the same machine and its CPU is not counted.
# The ha round of the pg section: servers A and B on the database, one agent that may use either
# (server_addresses). ha_propagation_ms: an entry created on the server the agent is NOT
# connected to, until the agent serves its SVID to this process (agent_wl.py: Workload API,
# from just before "entry create"), p50 and p99 of HA_ROUNDS entries. ha_failover_ms: kill -9
# of the agent's server until its entry stream is resumed on the other (the agent's log), and
# the Workload API fetches that failed meanwhile (agent_wl.py watch).
pg_ha_round() {
	local wl="$SRC/tests/integration/agent_wl.py" A="$T/agent-ha" secs=() i tok aid on other
	pg_server pg-ha-b
	local pid_b=$SRV_PID port_b=$SRV_PORT admin_b=$ADMIN
	pg_server pg-ha-a
	local pid_a=$SRV_PID port_a=$SRV_PORT admin_a=$ADMIN
	wait_for 30 n_auth "$admin_a" || { echo "run.sh: pg bundle incomplete" >&2; exit 1; }
	"$BIN/lanyard-server" bundle show --socket "$admin_a" >"$T/ha-bundle.pem"
	mkdir -p "$A"
	cat >"$A/agent.json" <<JSON
{
  "trust_domain": "example.org",
  "server_addresses": ["127.0.0.1:$port_a", "127.0.0.1:$port_b"],
  "trust_bundle_path": "$T/ha-bundle.pem",
  "data_dir": "$A/data",
  "socket_path": "$A/api.sock",
  "http_port": $(free_port)
}
JSON
	tok=$("$BIN/lanyard-server" token generate --output json --socket "$admin_a" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	aid="spiffe://example.org/lanyard/agent/join_token/$tok"
	"$BIN/lanyard-agent" run --config "$A/agent.json" --join-token "$tok" >>"$A/agent.log" 2>&1 &
	local apid=$!
	PIDS+=("$apid")
	wait_for 30 grep -q "connected to server" "$A/agent.log" ||
		{ echo "run.sh: ha agent not connected" >&2; exit 1; }
	on=$(grep -o 'connected to server 127.0.0.1:[0-9]*' "$A/agent.log" | tail -n 1)
	on=${on##*:}
	if [ "$on" = "$port_a" ]; then other=$admin_b; else other=$admin_a; fi
	for ((i = 0; i < HA_ROUNDS; i++)); do
		secs+=("$($PY "$wl" "$A/api.sock" until present "spiffe://example.org/ha/$i" 30 -- \
			"$BIN/lanyard-server" entry create --socket "$other" --parent-id "$aid" \
			--spiffe-id "spiffe://example.org/ha/$i" --selector "unix:uid:$(id -u)")") ||
			{ echo "run.sh: entry $i not served" >&2; exit 1; }
	done
	printf '%s\n' "${secs[@]}" | $PY -c '
import sys
v = sorted(float(x) * 1000 for x in sys.stdin.read().split())
q = lambda f: v[min(len(v) - 1, int(f * len(v)))]
print("# ha: %d entries created on the other server, served by the agent" % len(v))
print("BENCH ha_propagation_ms_p50 %.0f ms" % q(0.5))
print("BENCH ha_propagation_ms_p99 %.0f ms" % q(0.99))' | tee -a "$OUT"
	# Failover, with a workload fetching meanwhile.
	$PY "$wl" "$A/api.sock" watch "$HA_WATCH_S" >"$T/ha-watch.json" &
	local watcher=$!
	sleep 1
	local mark kill_ms line
	mark=$(wc -l <"$A/agent.log")
	kill_ms=$(date +%s%3N)
	if [ "$on" = "$port_a" ]; then kill -9 "$pid_a"; else kill -9 "$pid_b"; fi
	wait_for 30 sh -c "tail -n +$((mark + 1)) '$A/agent.log' | grep -q 'entry stream resumed'" ||
		{ echo "run.sh: the ha agent did not fail over" >&2; exit 1; }
	line=$(tail -n +"$((mark + 1))" "$A/agent.log" | grep -m1 'entry stream resumed')
	wait "$watcher" || true
	$PY - "$line" "$kill_ms" "$T/ha-watch.json" <<'PY' | tee -a "$OUT"
import datetime, json, sys
t = datetime.datetime.strptime(sys.argv[1].split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
ms = t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000 - int(sys.argv[2])
w = json.load(open(sys.argv[3]))
print("BENCH ha_failover_ms %.0f ms" % ms)
print("BENCH ha_failover_failed_fetches %d count" % len(w["failures"]))
PY
	stop_pid "$apid"
	stop_pid "$pid_a"
	stop_pid "$pid_b"
}

if [[ " $ONLY " == *" pg "* ]]; then
	echo "# == pg: issue and sync on two servers sharing one PostgreSQL database"
	PG_DIR="$T/pg"
	pg_rc=0
	PG_CONNSTR=$(bash "$SRC/tests/pg_cluster.sh" start "$PG_DIR" 2>"$T/pg-start.log") || pg_rc=$?
	if [ $pg_rc -eq 77 ]; then
		echo "# pg: skipped: $(tail -n 1 "$T/pg-start.log")"
	elif [ $pg_rc -ne 0 ]; then
		cat "$T/pg-start.log" >&2
		exit 1
	else
		# pg_server NAME: a server on the shared database (sets what start_server sets).
		pg_server() {
			mkdir -p "$T/$1"
			cat >"$T/$1/server.json" <<JSON
{
  "trust_domain": "example.org",
  "data_dir": "$T/$1/server",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
  "admin_socket": "$T/$1/admin.sock",
  "http_port": $(free_port),
  "database_type": "postgres",
  "database_connection_string": "$PG_CONNSTR",
  "database_max_connections": 8
}
JSON
			start_server "$1"
		}
		n_auth() {
			[ "$("$BIN/lanyard-server" bundle show --socket "$1" | grep -c 'BEGIN CERTIFICATE')" -ge 2 ]
		}
		for round in issue sync; do
			pg_server "pg-$round-b"
			PID_B=$SRV_PID PORT_B=$SRV_PORT ADMIN_B=$ADMIN
			pg_server "pg-$round-a"
			# Both authorities in the bundle the load generator trusts.
			wait_for 30 n_auth "$ADMIN" || { echo "run.sh: pg bundle incomplete" >&2; exit 1; }
			"$BIN/lanyard-server" bundle show --socket "$ADMIN" >"$DIR/bundle.pem"
			two=(--port2 "$PORT_B" --admin2 "$ADMIN_B" --server-pid2 "$PID_B")
			if [ "$round" = issue ]; then
				suffixed pg "$BENCH/bench_server" issue --admin "$ADMIN" --port "$SRV_PORT" \
					--bundle "$DIR/bundle.pem" --server-pid "$SRV_PID" "${two[@]}" \
					--pool "${UV_THREADPOOL_SIZE:-4}" "${ISSUE_ARGS[@]}"
			else
				suffixed pg "$BENCH/bench_server" sync --admin "$ADMIN" --port "$SRV_PORT" \
					--bundle "$DIR/bundle.pem" --server-pid "$SRV_PID" "${two[@]}" \
					"${SYNC_ARGS[@]}"
			fi
			stop_pid "$SRV_PID"
			stop_pid "$PID_B"
			# The next round starts from an empty database.
			bash "$SRC/tests/pg_cluster.sh" stop "$PG_DIR"
			rm -rf "$PG_DIR"
			PG_CONNSTR=$(bash "$SRC/tests/pg_cluster.sh" start "$PG_DIR")
		done
		pg_ha_round
	fi
fi

# ---- admin: the operator's bulk paths on one SQLite server ----
# entry_batch_create_10k_ms: the first `entry create --data` of ADMIN_BATCH entries (one
# transaction); the other batches fill the datastore to ADMIN_BATCH x ADMIN_BATCHES entries,
# then entry_list_100k_ms: `entry show --output json` of all of them (CLI included: the request,
# the server's listing and JSON, the CLI's parse and print).
if [[ " $ONLY " == *" admin "* ]]; then
	echo "# == admin: entry create --data ($ADMIN_BATCH per batch) and entry show of" \
		"$((ADMIN_BATCH * ADMIN_BATCHES)) entries"
	start_server admin
	for ((b = 0; b < ADMIN_BATCHES; b++)); do
		$PY - "$b" "$ADMIN_BATCH" >"$T/batch.json" <<'PY'
import json, sys
b, n = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"entries": [{"spiffe_id": "spiffe://example.org/bulk/%d/%d" % (b, i),
                               "parent_id": "spiffe://example.org/node/%d" % (i % 100),
                               "selectors": ["unix:uid:%d" % (100000 + i)]} for i in range(n)]}))
PY
		t0=$(date +%s%N)
		"$BIN/lanyard-server" entry create --socket "$ADMIN" --data "$T/batch.json" >/dev/null
		t1=$(date +%s%N)
		[ "$b" -gt 0 ] || echo "BENCH entry_batch_create_10k_ms $(((t1 - t0) / 1000000)) ms" |
			tee -a "$OUT"
	done
	# The server's peak RSS during the listing: VmHWM reset first (clear_refs 5), when allowed.
	hwm_reset=0
	echo 5 2>/dev/null >"/proc/$SRV_PID/clear_refs" && hwm_reset=1
	rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status")
	t0=$(date +%s%N)
	"$BIN/lanyard-server" entry show --socket "$ADMIN" --output json >"$T/list.json"
	t1=$(date +%s%N)
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SRV_PID/status")
	n=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entries"]))' "$T/list.json")
	[ "$n" = $((ADMIN_BATCH * ADMIN_BATCHES)) ] || { echo "run.sh: listed $n entries" >&2; exit 1; }
	echo "# $n entries listed"
	echo "BENCH entry_list_100k_ms $(((t1 - t0) / 1000000)) ms" | tee -a "$OUT"
	if [ "$hwm_reset" = 1 ]; then
		echo "# the server's RSS before the listing: $rss0 KiB; its peak during it:"
		echo "BENCH entry_list_100k_server_peak_kib $hwm KiB" | tee -a "$OUT"
	else
		echo "# entry_list_100k_server_peak_kib: cannot reset the server's VmHWM here"
	fi
	stop_pid "$SRV_PID"
fi

# ---- fleet: 10,000 agents on one server ----
# sync10k_*: as sync, with 10,000 simulated agents x 10 entries (100,000 entries), one change per
# second; server_rss_kib_100k: the server's VmRSS at the end of that window (all streams open).
# The load generator is one poll() thread over all connections (set up on 4 threads).
FLEET_KEYS='"node_api_max_connections_per_source": 0,'

# reconnect_storm_s: STORM_ARGS simulated agents and one real lanyard-agent connected, the server
# restarted (bench_fleet stops and starts it): until every simulated agent has reconnected with
# its agent SVID, read its entry snapshot and renewed an SVID. reconnect_storm_agent_s: the
# real agent, until it logged its entry stream resumed.
storm_round() {
	start_server storm "$FLEET_KEYS"
	local A="$T/agent-storm" mark line pid apid
	start_agent "$A"
	apid=$AGENT_PID
	wait_for 30 grep -q "connected to server" "$A/agent.log" ||
		{ echo "run.sh: storm agent not connected" >&2; exit 1; }
	mark=$(wc -l <"$A/agent.log")
	run "$BENCH/bench_fleet" storm --admin "$ADMIN" --port "$SRV_PORT" --bundle "$DIR/bundle.pem" \
		--server-pid "$SRV_PID" --config "$DIR/server.json" --server-bin "$BIN/lanyard-server" \
		--server-log "$DIR/server.log" --pid-file "$DIR/restarted.pid" "${STORM_ARGS[@]}"
	pid=$(cat "$DIR/restarted.pid")
	PIDS+=("$pid")
	wait_for 60 sh -c "tail -n +$((mark + 1)) '$A/agent.log' | grep -q 'entry stream resumed'" ||
		{ echo "run.sh: the real agent did not resume after the restart" >&2; exit 1; }
	line=$(tail -n +"$((mark + 1))" "$A/agent.log" | grep -m1 'entry stream resumed')
	$PY - "$line" "$(sed -n 's/^# storm: SIGTERM to the server at unix_ms=//p' "$OUT" | tail -n 1)" \
		<<'PY' | tee -a "$OUT"
import datetime, sys
t = datetime.datetime.strptime(sys.argv[1].split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
s = (t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000 - int(sys.argv[2])) / 1000
print("BENCH reconnect_storm_agent_s %.1f s" % s)
PY
	stop_pid "$apid"
	# Not run.sh's child any more: wait for it by polling.
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}
# fleet and storm run on the build LANYARD_BENCH_FLEET_WOLFSSL names (BIN and BENCH switched
# for the section, then restored).
fleet_build() {
	SYS_BIN="$BIN" SYS_BENCH="$BENCH"
	if [ "$FLEET_WOLFSSL" = sp ]; then
		build_sp
		BIN="$SP_BUILD/bin" BENCH="$SP_BUILD/bench"
	fi
	[ -x "$BIN/lanyard-server" ] || { echo "run.sh: no $BIN/lanyard-server" >&2; exit 1; }
	echo "# $1: server $BIN/lanyard-server, built with LANYARD_WOLFSSL=$(sed -n \
		's/^LANYARD_WOLFSSL:[A-Z]*=//p' "$BIN/../CMakeCache.txt" 2>/dev/null || true)" \
		"LANYARD_NGHTTP2=$(sed -n 's/^LANYARD_NGHTTP2:[A-Z]*=//p' "$BIN/../CMakeCache.txt" \
		2>/dev/null || true)"
}
if [[ " $ONLY " == *" fleet "* ]]; then
	echo "# == fleet: ${FLEET_ARGS[1]} agents holding entry streams, $((FLEET_ARGS[1] * FLEET_ARGS[3])) entries"
	fleet_build fleet
	start_server fleet "$FLEET_KEYS"
	run "$BENCH/bench_server" sync --admin "$ADMIN" --port "$SRV_PORT" \
		--bundle "$DIR/bundle.pem" --server-pid "$SRV_PID" --name sync10k \
		--rss-name server_rss_kib_100k "${FLEET_ARGS[@]}"
	stop_pid "$SRV_PID"
	BIN="$SYS_BIN" BENCH="$SYS_BENCH"
fi
if [[ " $ONLY " == *" storm "* ]]; then
	echo "# == storm: ${STORM_ARGS[1]} simulated agents and one lanyard-agent, the server restarted"
	fleet_build storm
	storm_round
	BIN="$SYS_BIN" BENCH="$SYS_BENCH"
fi

# ---- summary ----
echo "# == summary (targets from issues 7 and 18; a benchmark never fails on a number);" \
	"run took ${SECONDS} s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$OUT" "$QUICK" <<'PY'
import sys
targets = {
    "issue_ratio": (">=", 0.8), "fetch_p99_us": ("<=", 1000), "fetch_per_s": (">=", 5000),
    "agent_rss_kib_0": ("<=", 8 * 1024), "agent_rss_kib_1000": ("<=", 12 * 1024),
    "agent_rss_kib_10000": ("<=", 40 * 1024), "stream_kib_each": ("<=", 16),
    "fanout_ms": ("<=", 250), "restart_ready_ms": ("<=", 100),
    # issue 18
    "issue_sp_speedup": (">=", 2.5), "issue_cpu_ratio_sp": (">=", 0.9),
    "agent_rss_kib_0_sp": ("<=", 8 * 1024),
    # issue 12
    "ha_propagation_ms_p99": ("<=", 1000), "ha_failover_ms": ("<=", 3000),
    "ha_failover_failed_fetches": ("<=", 0),
    # issue 18
    "entry_batch_create_10k_ms": ("<=", 5000), "entry_list_100k_ms": ("<=", 1000),
    "stream_kib_each_10k": ("<=", 8), "fanout_10k_ms": ("<=", 500),
    "fetch_p99_us_c1000": ("<=", 1000), "jwt_fetch_p99_us": ("<=", 200),
    "jwt_fetch_cold_p99_ms": ("<=", 5),
    "sync10k_cpu_us_per_agent": ("<=", 300), "server_rss_kib_100k": ("<=", 100 * 1024),
    "reconnect_storm_s": ("<=", 30),
}
rows = []
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) >= 4 and p[0] == "BENCH":
        rows.append((p[1], p[2], p[3]))
print("| figure | value | unit | target | |")
print("|---|---|---|---|---|")
for name, value, unit in rows:
    t = targets.get(name)
    verdict = ""
    if t and sys.argv[2] != "1":
        v = float(value)
        ok = v >= t[1] if t[0] == ">=" else v <= t[1]
        verdict = "met" if ok else "MISSED"
    print(f"| {name} | {value} | {unit} | {t[0] + ' ' + str(t[1]) if t else ''} | {verdict} |")
PY
