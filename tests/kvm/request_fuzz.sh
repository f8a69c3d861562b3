#!/usr/bin/env bash
# Fuzz what ferryd reads from clients and peer hosts (request lines through
# the loop's reader and every verb, the TCP authentication line, sealed
# frames, the console, peers' greetings and replies) for a bounded time
# from the committed seeds (tests/fuzz/corpus-request) and what earlier
# runs found (corpus-request-found.tar.gz). Any crash,
# sanitizer report, leak, timeout or malformed reply fails the test. Needs
# clang with libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/fuzz.sh"
fuzz_build request
# What ~290 k executions found (2026-11-28, 22 minutes, merged with
# libFuzzer -merge to 686 inputs): each short run starts from there.
mkdir -p "$T/corpus"
tar -C "$T/corpus" -xzf "$root/tests/fuzz/corpus-request-found.tar.gz" || fail "cannot unpack the found corpus"
# a request line is at most 64 KiB: a little more reaches the over-long line rule
fuzz_run fuzz_request 70000 "$root/tests/fuzz/corpus-request"
