#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian 12), builds with -Werror and
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs every test with ctest.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LANYARD_TEST_BUILD:-$src/build-test}"

"$src/deploy/install-deps.sh"
# Test-only: promtool (Debian's prometheus package) lints both daemons' /metrics
# (tests/integration/test_metrics_promtool.sh).
if ! command -v promtool >/dev/null; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends prometheus ||
		{ $sudo apt-get update -q &&
		  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends prometheus; }
fi

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DLANYARD_WERROR=ON -DLANYARD_SANITIZE=ON
cmake --build "$build" -j"$(nproc)"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
