#!/usr/bin/env bash
# Fuzz the stream readers (offline checker and the real receive path) for a
# bounded time from the committed seed corpus and the inputs earlier long
# runs found (corpus-found.tar.gz). Any crash, sanitizer report,
# leak or timeout fails the test. Needs clang with libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/fuzz.sh"
fuzz_build stream
# Inputs earlier long runs found that reach new code (libFuzzer -merge over
# ~4.5 M executions, 2026-11-27; merged again with a 1 M-execution run
# after DIGEST, SYNC, ABORT and CPUID joined the harness, and with a
# 1.3 M-execution run after DISK did, 2026-11-28: 299 inputs, 626 edges):
# each short run starts from there.
mkdir -p "$T/corpus"
tar -C "$T/corpus" -xzf "$root/tests/fuzz/corpus-found.tar.gz" || fail "cannot unpack the found corpus"
fuzz_run fuzz_stream 65536 "$root/tests/fuzz/corpus"
