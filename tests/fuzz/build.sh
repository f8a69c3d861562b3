#!/usr/bin/env bash
# Build the fuzz harnesses with clang's libFuzzer + ASan + UBSan into
# build/fuzz/: fuzz_stream (the migration stream's readers) and
# fuzz_request (what ferryd reads from clients and peers). Library sources
# are compiled straight from src/ with coverage instrumentation and
# archived, so each link pulls in only the objects its harness needs
# (fuzz_request includes daemon/loop.c itself for its static reader, so
# the archive's loop.o is never pulled). Exit 77 if clang or libFuzzer is
# missing.
set -u
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
out=build/fuzz
command -v "$CC" >/dev/null || { echo "SKIP: $CC not installed: cannot build the fuzz harness"; exit 77; }
mkdir -p "$out/obj"
probe="$out/probe.c"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe"
"$CC" -fsanitize=fuzzer "$probe" -o "$out/probe" 2>/dev/null ||
	{ echo "SKIP: $CC has no libFuzzer (-fsanitize=fuzzer does not link)"; exit 77; }

flags="-std=c17 -D_GNU_SOURCE -Isrc -Iguest -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
# stale OBJ: older than its source, this script or any header it read
# (clang's -MMD list: a struct grown in a header and an object built
# with the old layout would pass for a heap overflow)
stale() {
	local o=$1 src=$2 dep
	[ -f "$o" ] && [ -f "$o.d" ] && [ ! "$src" -nt "$o" ] && [ ! "$0" -nt "$o" ] || return 0
	for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$o.d"); do
		[ "$dep" -nt "$o" ] && return 0
	done
	return 1
}
objs=()
for src in $(find src -name '*.c' ! -name main.c | sort); do
	o="$out/obj/$(echo "${src%.c}" | tr / _).o"
	if stale "$o" "$src"; then
		# A file another module is mid-way through may not compile: skip it;
		# the link below fails loudly if the harness needed it.
		"$CC" $flags -fsanitize=fuzzer-no-link -MMD -MF "$o.d" -c "$src" -o "$o" 2>"$o.log" ||
			{ echo "warning: $src does not compile with $CC (see $o.log); skipped"; rm -f "$o"; continue; }
	fi
	objs+=("$o")
done
rm -f "$out/libferry-fuzz.a"
ar rcs "$out/libferry-fuzz.a" "${objs[@]}" || exit 1
for h in fuzz_stream fuzz_request fuzz_devices; do
	"$CC" $flags -fsanitize=fuzzer "tests/fuzz/$h.c" "$out/libferry-fuzz.a" \
		-o "$out/$h" -pthread -ljson-c -lzstd -llz4 -lxxhash -lcrypto -lm || exit 1
	echo "built $out/$h"
done
