#!/usr/bin/env bash
# Fuzz the stream readers (offline checker and the real receive path) for a
# bounded time from the committed seed corpus and the inputs earlier long
# runs found (corpus-found.tar.gz). Any crash, sanitizer report,
# leak or timeout fails the test. Needs clang with libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-60}
bash "$root/tests/fuzz/build.sh" >"$T/build.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
	cat "$T/build.log"
	skip "clang libFuzzer unavailable: the stream fuzz harness was NOT run"
fi
[ $rc -eq 0 ] || { cat "$T/build.log"; fail "fuzz harness does not build"; }
mkdir -p "$T/corpus" "$T/artifacts"
# Inputs earlier long runs found that reach new code (libFuzzer -merge over
# ~4.5 M executions, 2026-11-27; merged again with a 1 M-execution run
# after DIGEST, SYNC, ABORT and CPUID joined the harness): each short run
# starts from there.
tar -C "$T/corpus" -xzf "$root/tests/fuzz/corpus-found.tar.gz" || fail "cannot unpack the found corpus"
# New inputs go to $T/corpus: the committed seeds stay as they are.
"$root/build/fuzz/fuzz_stream" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 \
	-max_len=65536 -artifact_prefix="$T/artifacts/" -print_final_stats=1 \
	"$T/corpus" "$root/tests/fuzz/corpus" >"$T/fuzz.log" 2>&1
rc=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$T/fuzz.log"
if [ $rc -ne 0 ] || ls "$T/artifacts" | grep -q .; then
	grep -E 'ERROR|SUMMARY|runtime error' "$T/fuzz.log" | head -20
	mkdir -p "$root/build/fuzz/crashes"
	cp "$T"/artifacts/* "$root/build/fuzz/crashes/" 2>/dev/null
	fail "fuzzer found a problem (rc $rc); reproducer(s) copied to build/fuzz/crashes/"
fi
echo "ok: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$T/fuzz.log")"
