#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12), builds with -Werror and
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs every test with ctest.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LANYARD_TEST_BUILD:-$src/build-test}"

"$src/deploy/install-deps.sh" --test

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DLANYARD_WERROR=ON -DLANYARD_SANITIZE=ON
cmake --build "$build" -j"$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
log="$build/ctest-last.log"
# Two tests at a time (LANYARD_TEST_JOBS): every test has its own directory, ports and sockets,
# and none depends on the machine's speed; serially the suite would take twice as long.
jobs="${LANYARD_TEST_JOBS:-2}"
rc=0
ctest --output-on-failure --timeout 600 -j"$jobs" "$@" 2>&1 | tee "$log" || rc=$?
[ $rc -eq 0 ] || exit $rc
# A test that cannot run exits 77 and ctest reports it as skipped. In CI every test must run:
# a skipped one means a dependency the scripts should have installed is missing.
if [ "${CI:-}" = true ] && grep -q '(Skipped)' "$log"; then
	echo "CI: these tests were skipped, and CI must run every test:" >&2
	grep '(Skipped)' "$log" >&2
	exit 1
fi

# ThreadSanitizer (CI, or LANYARD_TSAN=1): the unit tests and the integration tests of the
# agent and its Workload API, whose four kinds of threads share the SVID cache and the sync state.
# This build also links the daemons with the SP-math wolfSSL and the patched nghttp2 the
# container images use (LANYARD_WOLFSSL=sp, LANYARD_NGHTTP2=patched; each built from Debian's
# source package once, then cached), so CI covers both builds of each.
if [ "${CI:-}" = true ] || [ "${LANYARD_TSAN:-}" = 1 ]; then
	tsan="${LANYARD_TSAN_BUILD:-$src/build-tsan}"
	cmake -S "$src" -B "$tsan" -DCMAKE_BUILD_TYPE=Debug -DLANYARD_WERROR=ON -DLANYARD_SANITIZE=thread \
		-DLANYARD_WOLFSSL=sp -DLANYARD_NGHTTP2=patched
	cmake --build "$tsan" -j"$(nproc)"
	cd "$tsan"
	TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}" \
		ctest --output-on-failure --timeout 600 -j"$jobs" \
		-R 'unit/|integration/test_(agent_svids|agent_outages|agent_errors|workload_python|helper|sds)$'
fi
