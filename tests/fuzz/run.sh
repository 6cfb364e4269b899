#!/usr/bin/env bash
# Runs the fuzz harnesses (tests/fuzz/fuzz_*.c) under libFuzzer with AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of its own (clang; Debian: clang and
# libclang-rt-14-dev), and prints one summary line per harness and a final table.
#
#   tests/fuzz/run.sh                      every harness for 60 s (or 10 million executions)
#   tests/fuzz/run.sh -t 600 jwt x509      those two for 10 minutes each
#   nice -n 19 tests/fuzz/run.sh -p 2 -t 600   every harness 10 min, two harnesses at a time
#   tests/fuzz/run.sh -j 2 -t 3600 jwt     one harness for an hour with two libFuzzer workers
#   tests/fuzz/run.sh -r 1000000 persist   stop after a million executions instead
#   tests/fuzz/run.sh -l                   list the harnesses
#
# A harness stops at -t seconds or -r executions (default 10,000,000), whichever comes first.
# -p N runs N harnesses at once, -j N runs N libFuzzer workers per harness: keep N*M at most the
# number of idle cores. New inputs that libFuzzer finds are kept in $LANYARD_FUZZ_BUILD/work/<h>/
# and reused by the next run, so successive runs build on each other; the checked-in seeds in
# tests/fuzz/corpus/<h>/ are read but never written. To merge the useful ones into the seeds
# (keep the corpus small), merge both into a fresh directory and replace the seeds with it:
#   $LANYARD_FUZZ_BUILD/fuzz/fuzz_<h> -merge=1 NEW tests/fuzz/corpus/<h> $LANYARD_FUZZ_BUILD/work/<h>
#
# Summary line per harness: executions, executions per second, libFuzzer's final coverage (cov:
# edges, ft: features), the work corpus (files / bytes), and crashes: the artifacts (crash-,
# leak-, timeout-, oom-, slow-unit-) written by this run into $LANYARD_FUZZ_BUILD/artifacts/<h>/,
# then wall-clock and CPU seconds (on a busy machine, or under nice, CPU is the smaller).
# Replay one with `$LANYARD_FUZZ_BUILD/fuzz/fuzz_<h> <file>`, minimise it with
# `-minimize_crash=1 -runs=10000 <file>`, and once fixed add it to tests/fuzz/corpus/<h>/ as
# regress-<what> so that every ctest run replays it. Logs: $LANYARD_FUZZ_BUILD/fuzz_<h>.log.
# The script exits 1 when a harness crashed or failed.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${LANYARD_FUZZ_BUILD:-$src/build-libfuzzer}"
seconds=60
runs=10000000
jobs=1
par=1
list=0

usage() {
	sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}

while getopts "t:r:j:p:lh" opt; do
	case "$opt" in
	t) seconds="$OPTARG" ;;
	r) runs="$OPTARG" ;;
	j) jobs="$OPTARG" ;;
	p) par="$OPTARG" ;;
	l) list=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
for n in "$seconds" "$runs" "$jobs" "$par"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $n is not a positive number" >&2; exit 2; }
done

all=()
for f in "$src"/tests/fuzz/fuzz_*.c; do
	n="$(basename "$f" .c)"
	all+=("${n#fuzz_}")
done
if [ "$list" = 1 ]; then
	printf '%s\n' "${all[@]}"
	exit 0
fi
want=("$@")
[ ${#want[@]} -eq 0 ] && want=("${all[@]}")
for w in "${want[@]}"; do
	[ -f "$src/tests/fuzz/fuzz_$w.c" ] || { echo "no harness named $w (see -l)" >&2; exit 2; }
done

# libFuzzer comes with clang's runtime: install both on a fresh Debian 12 machine.
if [ -z "${CC:-}" ] && ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "ok installed"; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev ||
		{ echo "run.sh: cannot install clang and libclang-rt-14-dev" >&2; exit 2; }
fi
cc="${CC:-}"
if [ -z "$cc" ]; then
	for c in clang clang-14 clang-15 clang-16; do
		if command -v "$c" >/dev/null; then cc="$c"; break; fi
	done
fi
if [ -z "$cc" ]; then
	echo "run.sh: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2
	exit 2
fi

# LANYARD_SANITIZE adds ASan + UBSan (fatal), LANYARD_LIBFUZZER coverage instrumentation and the
# libFuzzer main. Optimised but without NDEBUG, so that assert() still fires. Warnings are not
# errors here: clang has other warnings than the gcc of CI.
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
	-DLANYARD_SANITIZE=ON -DLANYARD_LIBFUZZER=ON -DLANYARD_WERROR=OFF >/dev/null
targets=()
for w in "${want[@]}"; do targets+=("fuzz_$w"); done
cores="$(nproc)"
[ "$cores" -gt 2 ] && cores=2
cmake --build "$build" -j"$cores" --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# The value of "stat::<name>: N" in the logs, summed over the workers.
stat_sum() {
	awk -v k="stat::$1:" '$1 == k { s += $2 } END { print s + 0 }' "${@:2}"
}

# The last "cov: N ft: M" libFuzzer printed, the highest over the workers.
last_cov() {
	local f best_cov=0 best_ft=0 line cov ft
	for f in "$@"; do
		line="$(grep -E '^#[0-9]+.* cov: [0-9]+ ft: [0-9]+' "$f" | tail -1)" || continue
		cov="$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$line")"
		ft="$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$line")"
		[ "$cov" -gt "$best_cov" ] && best_cov="$cov"
		[ "$ft" -gt "$best_ft" ] && best_ft="$ft"
	done
	echo "$best_cov $best_ft"
}

# Runs one harness and writes its summary to $summary/<h>: "name status execs exec/s cov
# ft files bytes crashes seconds cpu-seconds".
run_one() {
	local w="$1" work="$build/work/$1" art="$build/artifacts/$1" dir="$build/run/$1"
	local log="$build/fuzz_$1.log" dict=() status=ok start end
	mkdir -p "$work" "$art" "$dir"
	rm -f "$dir"/fuzz-*.log
	[ -f "$src/tests/fuzz/dict/$w.dict" ] && dict=(-dict="$src/tests/fuzz/dict/$w.dict")
	local args=(-max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=4096
		    -max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}"
		    "$work" "$src/tests/fuzz/corpus/$w")
	[ "$jobs" -gt 1 ] && args=(-jobs="$jobs" -workers="$jobs" "${args[@]}")
	touch "$dir/.start"
	start="$(date +%s)"
	local TIMEFORMAT='%U %S'
	{ time (cd "$dir" && "$build/fuzz/fuzz_$w" "${args[@]}" >"$log" 2>&1); } 2>"$dir/.cpu" ||
		status=FAILED
	end="$(date +%s)"
	local cpu
	cpu="$(awk '{ printf "%d", $1 + $2 }' "$dir/.cpu")"
	local logs=("$log")
	[ "$jobs" -gt 1 ] && logs=("$dir"/fuzz-*.log)
	local execs rate cov crashes files bytes
	execs="$(stat_sum number_of_executed_units "${logs[@]}")"
	rate=0
	[ "$end" -gt "$start" ] && rate=$((execs / (end - start)))
	cov="$(last_cov "${logs[@]}")"
	crashes="$(find "$art" -maxdepth 1 -type f -newer "$dir/.start" | wc -l)"
	[ "$crashes" -gt 0 ] && status=FAILED
	files="$(find "$work" -type f | wc -l)"
	bytes="$(du -sb "$work" | cut -f1)"
	echo "$w $status $execs $rate $cov $files $bytes $crashes $((end - start)) $cpu" >"$summary/$w"
	if [ "$status" != ok ]; then
		grep -hE "^==[0-9]+==ERROR|runtime error|invariant failed|SUMMARY" "${logs[@]}" |
			head -5 >"$summary/$w.why" || true
	fi
}

line() {
	printf '%-14s %-6s %12s %8s %7s %8s %14s %9s %6s %6s\n' "$@"
}

print_summary() {
	local w="$1" name status execs rate cov ft files bytes crashes secs cpu
	read -r name status execs rate cov ft files bytes crashes secs cpu <"$summary/$w"
	line "$name" "$status" "$execs" "$rate" "$cov" "$ft" "$files/$bytes" "$crashes" "$secs" "$cpu"
}

# Per invocation, so that several runs (other harnesses) can share the build directory.
summary="$(mktemp -d "$build/summary.XXXXXX")"
trap 'rm -rf "$summary"' EXIT
echo "=== ${#want[@]} harness(es), $seconds s or $runs executions each, $par at a time, $jobs worker(s) each"
line harness status executions exec/s cov ft corpus crashes wall-s cpu-s
running=0
for w in "${want[@]}"; do
	if [ "$running" -ge "$par" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	(run_one "$w"; print_summary "$w") &
	running=$((running + 1))
done
wait || true

echo
echo "=== summary (corpus: files/bytes in $build/work/<h>; crashes: artifacts of this run)"
line harness status executions exec/s cov ft corpus crashes wall-s cpu-s
failed=()
for w in "${want[@]}"; do
	if [ ! -f "$summary/$w" ]; then
		line "$w" FAILED - - - - - - - -
		failed+=("$w")
		continue
	fi
	print_summary "$w"
	grep -q " FAILED " "$summary/$w" && failed+=("$w")
done
for w in "${failed[@]}"; do
	echo "!!! fuzz_$w FAILED: see $build/fuzz_$w.log and $build/artifacts/$w/"
	[ -f "$summary/$w.why" ] && sed 's/^/    /' "$summary/$w.why"
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "failed: ${failed[*]}"
	exit 1
fi
echo "all ${#want[@]} harnesses ran without a crash"
