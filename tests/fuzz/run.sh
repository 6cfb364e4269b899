#!/usr/bin/env bash
# Runs the fuzz harnesses (tests/fuzz/fuzz_*.c) under libFuzzer with AddressSanitizer and
# UndefinedBehaviorSanitizer, in a build directory of its own (clang; Debian: clang and
# libclang-rt-14-dev).
#
#   tests/fuzz/run.sh                  every harness for 60 s
#   tests/fuzz/run.sh -t 600 jwt x509  those two for 10 minutes each
#   tests/fuzz/run.sh -j 2 -t 3600     every harness for an hour, two libFuzzer jobs each
#   tests/fuzz/run.sh -l               list the harnesses
#
# Longer runs: raise -t (seconds per harness); -j N runs N libFuzzer workers per harness (use at
# most the number of cores). New inputs that libFuzzer finds are kept in
# $LANYARD_FUZZ_BUILD/work/<harness>/ and reused by the next run, so successive runs build on
# each other; the checked-in seeds in tests/fuzz/corpus/<harness>/ are read but never written.
# To merge the useful ones into the seeds (keep the corpus small):
#   $LANYARD_FUZZ_BUILD/fuzz/fuzz_<h> -merge=1 tests/fuzz/corpus/<h> $LANYARD_FUZZ_BUILD/work/<h>
#
# A crash is saved as $LANYARD_FUZZ_BUILD/artifacts/<harness>/crash-<sha1> (or leak-, timeout-,
# oom-); replay it with `$LANYARD_FUZZ_BUILD/fuzz/fuzz_<h> <file>`, minimise it with
# `-minimize_crash=1 -runs=10000 <file>`, and once fixed add it to tests/fuzz/corpus/<h>/ as
# regress-<what> so that every ctest run replays it. The script exits 1 when a harness failed.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${LANYARD_FUZZ_BUILD:-$src/build-libfuzzer}"
seconds=60
jobs=1
list=0

usage() {
	sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
}

while getopts "t:j:lh" opt; do
	case "$opt" in
	t) seconds="$OPTARG" ;;
	j) jobs="$OPTARG" ;;
	l) list=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))

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
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for w in "${want[@]}"; do
	work="$build/work/$w"
	art="$build/artifacts/$w"
	mkdir -p "$work" "$art"
	dict=()
	[ -f "$src/tests/fuzz/dict/$w.dict" ] && dict=(-dict="$src/tests/fuzz/dict/$w.dict")
	echo "=== fuzz_$w: $seconds s, $jobs job(s)"
	log="$build/fuzz_$w.log"
	args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536
	      -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$work"
	      "$src/tests/fuzz/corpus/$w")
	if [ "$jobs" -gt 1 ]; then
		args=(-jobs="$jobs" -workers="$jobs" "${args[@]}")
	fi
	if (cd "$build" && "$build/fuzz/fuzz_$w" "${args[@]}") >"$log" 2>&1; then
		grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^Done" "$log" | tr '\n' ' ' || true
		echo
	else
		echo "!!! fuzz_$w FAILED: see $log and $art/"
		grep -E "^==[0-9]+==ERROR|runtime error|invariant failed|SUMMARY" "$log" | head -5 || true
		failed+=("$w")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "failed: ${failed[*]}"
	exit 1
fi
echo "all ${#want[@]} harnesses ran $seconds s without a failure"
