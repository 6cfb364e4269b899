#!/usr/bin/env bash
# Smoke test of the benchmarks: tests/bench/run.sh in its short mode, on the build under test
# (no release build), must run to the end and print every figure. The values are never checked:
# a benchmark does not fail on a number, and these are not comparable anyway (small sizes, maybe
# sanitizers).
set -euo pipefail

SRC="${LANYARD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
BUILD="${LANYARD_BUILD:?LANYARD_BUILD must point at the build directory}"

out="$(mktemp /tmp/lanyard-bench-smoke.XXXXXX)"
trap 'rm -f "$out"' EXIT

# The sp section runs its two variants on the build under test: the path is exercised, the
# figures (as all of them here) mean nothing.
if ! LANYARD_BENCH_QUICK=1 LANYARD_BENCH_NO_BUILD=1 LANYARD_BENCH_BUILD="$BUILD" \
	LANYARD_BENCH_SP_BUILD="$BUILD" \
	bash "$SRC/tests/bench/run.sh" >"$out" 2>&1; then
	cat "$out"
	echo "FAIL: tests/bench/run.sh failed in quick mode" >&2
	exit 1
fi

# The pg section runs where PostgreSQL is installed (tests/pg_cluster.sh; always under CI).
pg_names=
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	pg_names="issue_per_s_pg sync_cpu_us_per_agent_pg ha_propagation_ms_p50 ha_propagation_ms_p99
		ha_failover_ms ha_failover_failed_fetches"
fi
missing=0
for name in $pg_names issue_ratio issue_per_s issue_cpu_ratio crypto_issue_core_per_s crypto_issue_par_per_s \
	sync_cpu_us_per_agent fetch_p50_us fetch_p99_us fetch_per_s agent_rss_kib_0 \
	agent_rss_kib_1000 agent_rss_kib_10000 stream_kib_each fanout_ms restart_ready_ms \
	fetch_p99_us_c1000 stream_kib_each_10k fanout_10k_ms jwt_fetch_p99_us jwt_fetch_cold_p99_ms \
	issue_per_s_system issue_per_s_sp issue_cpu_ratio_sp crypto_issue_core_per_s_sp \
	agent_rss_kib_0_system agent_rss_kib_0_sp issue_sp_speedup mtls_handshake_us_system \
	mtls_handshake_us_sp mtls_resume_us_system mtls_resume_us_sp entry_batch_create_10k_ms \
	entry_list_100k_ms sync10k_cpu_us_per_agent \
	server_rss_kib_100k reconnect_storm_s reconnect_storm_agent_s; do
	if ! grep -Eq "^BENCH $name -?[0-9]+(\.[0-9]+)? [^ ]+$" "$out"; then
		echo "FAIL: no well-formed 'BENCH $name <value> <unit>' line" >&2
		missing=1
	fi
done
if [ $missing -ne 0 ]; then
	cat "$out"
	exit 1
fi
grep -q '^# QUICK MODE' "$out" || { cat "$out"; echo "FAIL: quick mode not announced" >&2; exit 1; }
echo "ok - every benchmark ran and printed its figures ($(grep -c '^BENCH ' "$out") BENCH lines)"
