#!/usr/bin/env bash
# Build the stream fuzz harness with clang's libFuzzer + ASan + UBSan into
# build/fuzz/. Library sources are compiled straight from src/ with
# coverage instrumentation and archived, so the link pulls in only the
# objects the harness needs. Exit 77 if clang or libFuzzer is missing.
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
objs=()
for src in $(find src -name '*.c' ! -name main.c | sort); do
	o="$out/obj/$(echo "${src%.c}" | tr / _).o"
	if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ "$0" -nt "$o" ]; then
		# A file another module is mid-way through may not compile: skip it;
		# the link below fails loudly if the harness needed it.
		"$CC" $flags -fsanitize=fuzzer-no-link -c "$src" -o "$o" 2>"$o.log" ||
			{ echo "warning: $src does not compile with $CC (see $o.log); skipped"; rm -f "$o"; continue; }
	fi
	objs+=("$o")
done
rm -f "$out/libferry-fuzz.a"
ar rcs "$out/libferry-fuzz.a" "${objs[@]}" || exit 1
"$CC" $flags -fsanitize=fuzzer tests/fuzz/fuzz_stream.c "$out/libferry-fuzz.a" \
	-o "$out/fuzz_stream" -pthread -ljson-c -lzstd -llz4 -lxxhash -lcrypto -lm || exit 1
echo "built $out/fuzz_stream"
# The device models as a guest drives them (tests/kvm/devices_fuzz.sh).
"$CC" $flags -Wall -Wextra -Werror -fsanitize=fuzzer tests/fuzz/fuzz_devices.c "$out/libferry-fuzz.a" \
	-o "$out/fuzz_devices" -pthread -ljson-c -lzstd -llz4 -lxxhash -lcrypto -lm || exit 1
echo "built $out/fuzz_devices"
