#!/usr/bin/env bash
# Fuzz what ferryd reads from clients and peer hosts (request lines through
# the loop's reader and every verb, the TCP authentication line, sealed
# frames, peers' greetings and replies) for a bounded time from the
# committed seeds (tests/fuzz/corpus-request). Any crash, sanitizer
# report, leak, timeout or malformed reply fails the test. Needs clang
# with libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-60}
bash "$root/tests/fuzz/build.sh" >"$T/build.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
	cat "$T/build.log"
	skip "clang libFuzzer unavailable: the request fuzz harness was NOT run"
fi
[ $rc -eq 0 ] || { cat "$T/build.log"; fail "fuzz harness does not build"; }
mkdir -p "$T/corpus" "$T/artifacts"
# New inputs go to $T/corpus: the committed seeds stay as they are.
# -max_len: a request line is at most 64 KiB; a little more reaches the
# over-long line rule.
"$root/build/fuzz/fuzz_request" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 \
	-max_len=70000 -artifact_prefix="$T/artifacts/" -print_final_stats=1 \
	"$T/corpus" "$root/tests/fuzz/corpus-request" >"$T/fuzz.log" 2>&1
rc=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$T/fuzz.log"
if [ $rc -ne 0 ] || ls "$T/artifacts" | grep -q .; then
	grep -E 'ERROR|SUMMARY|runtime error|fuzz_request:' "$T/fuzz.log" | head -20
	mkdir -p "$root/build/fuzz/crashes"
	cp "$T"/artifacts/* "$root/build/fuzz/crashes/" 2>/dev/null
	fail "fuzzer found a problem (rc $rc); reproducer(s) copied to build/fuzz/crashes/"
fi
echo "ok: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$T/fuzz.log"), corpus $(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]+' "$T/fuzz.log" | tail -1)"
