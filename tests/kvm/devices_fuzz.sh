#!/usr/bin/env bash
# Fuzz the device models as a guest drives them (tests/fuzz/fuzz_devices.c:
# port I/O, rings and buffers in guest RAM, frames, console input, device
# state restored from the network) for a bounded time from the committed
# seed corpus. Any crash, sanitizer report, failed check (a page changed
# but not marked dirty, a saved state that does not restore, a read-only
# disk written), leak or timeout fails the test. Needs clang with
# libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-60}
bash "$root/tests/fuzz/build.sh" >"$T/build.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
	cat "$T/build.log"
	skip "clang libFuzzer unavailable: the device fuzz harness was NOT run"
fi
[ $rc -eq 0 ] || { cat "$T/build.log"; fail "fuzz harness does not build"; }
mkdir -p "$T/corpus" "$T/artifacts"
# Inputs earlier runs found that reach new code (libFuzzer -merge over
# ~1.5 M executions, 2026-11-28): each short run starts from there.
tar -C "$T/corpus" -xzf "$root/tests/fuzz/corpus-devices-found.tar.gz" || fail "cannot unpack the found corpus"
# New inputs go to $T/corpus: the committed seeds stay as they are. The
# devices log every guest error; -close_fd_mask=2 keeps that out of the
# log while libFuzzer's and the sanitizers' reports still reach it.
"$root/build/fuzz/fuzz_devices" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 \
	-max_len=4096 -close_fd_mask=2 -artifact_prefix="$T/artifacts/" -print_final_stats=1 \
	"$T/corpus" "$root/tests/fuzz/corpus-devices" >"$T/fuzz.log" 2>&1
rc=$?
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$T/fuzz.log"
if [ $rc -ne 0 ] || ls "$T/artifacts" | grep -q .; then
	grep -E 'ERROR|SUMMARY|runtime error|fuzz_devices:' "$T/fuzz.log" | head -20
	mkdir -p "$root/build/fuzz/crashes"
	cp "$T"/artifacts/* "$root/build/fuzz/crashes/" 2>/dev/null
	fail "fuzzer found a problem (rc $rc); reproducer(s) copied to build/fuzz/crashes/"
fi
echo "ok: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$T/fuzz.log")"
