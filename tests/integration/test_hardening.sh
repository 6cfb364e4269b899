#!/usr/bin/env bash
# Both daemons (and liblanyard) are hardened binaries: position independent, full RELRO with
# BIND_NOW, stack protector, CET landing pads, and, in an optimised build, _FORTIFY_SOURCE
# checks. The test build is unoptimised and sanitized, where FORTIFY cannot apply, so the test
# also configures a small Release tree of its own and checks what an operator would install.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v readelf >/dev/null && command -v objdump >/dev/null ||
	skip "readelf and objdump (binutils) are not installed"

# check_elf FILE [fortify]: every property, each failure named.
check_elf() {
	local f=$1 fortify=${2:-} hdr dyn syms
	[ -f "$f" ] || fail "$f was not built"
	hdr=$(readelf -hW "$f")
	grep -qE 'Type:[[:space:]]+DYN' <<<"$hdr" || fail "$f is not position independent (ELF type)"
	readelf -lW "$f" | grep -q GNU_RELRO || fail "$f has no GNU_RELRO segment"
	dyn=$(readelf -dW "$f")
	grep -qE 'BIND_NOW|FLAGS_1.*NOW' <<<"$dyn" || fail "$f is not linked with -z now"
	if [[ "$f" != *.so* ]]; then
		grep -qE 'FLAGS_1.*PIE' <<<"$dyn" || fail "$f is not a PIE executable"
	fi
	syms=$(readelf --dyn-syms -W "$f")
	grep -q '__stack_chk_fail' <<<"$syms" || fail "$f has no stack protector"
	# Debian's crt objects carry no CET property, so the linker drops the note whatever we do:
	# -fcf-protection shows as ENDBR64 landing pads in our own functions.
	# (grep -c reads all its input: an early exit would SIGPIPE objdump under pipefail.)
	[ "$(objdump -d --no-show-raw-insn "$f" | grep -c endbr64)" -gt 0 ] ||
		fail "$f has no CET landing pads (built without -fcf-protection)"
	if [ "$fortify" = fortify ]; then
		grep -qE '__[a-z_]+_chk@' <<<"$syms" || fail "$f has no _FORTIFY_SOURCE checks"
	fi
	ok "$(basename "$f"): PIE, full RELRO, BIND_NOW, stack protector, CET${fortify:+, FORTIFY}"
}

for d in server agent; do
	check_elf "$BIN/lanyard-$d"
done

# The Release build an operator installs, from this source tree, into the test's directory.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S "$SRC" -B "$T/rel" -DCMAKE_BUILD_TYPE=Release -DLANYARD_WERROR=ON "${launcher[@]}" \
	>"$T/cmake.log" 2>&1 || { cat "$T/cmake.log"; fail "cmake of a Release tree"; }
cmake --build "$T/rel" -j2 --target lanyard-server lanyard-agent lanyard >"$T/build.log" 2>&1 ||
	{ tail -40 "$T/build.log"; fail "Release build"; }
for d in server agent; do
	check_elf "$T/rel/bin/lanyard-$d" fortify
done
check_elf "$(ls "$T"/rel/lib/liblanyard.so.*.*.* | head -1)" fortify
