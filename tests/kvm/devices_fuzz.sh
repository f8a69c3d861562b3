#!/usr/bin/env bash
# Fuzz the device models as a guest drives them (tests/fuzz/fuzz_devices.c:
# port I/O, rings and buffers in guest RAM, frames, console input, device
# state restored from the network) for a bounded time from the committed
# seed corpus. Any crash, sanitizer report, failed check (a page changed
# but not marked dirty, a saved state that does not restore, a read-only
# disk written), leak or timeout fails the test. Needs clang with
# libFuzzer, not KVM.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/fuzz.sh"
fuzz_build devices
# Inputs earlier runs found that reach new code (libFuzzer -merge over
# ~1.5 M executions, 2026-11-28): each short run starts from there.
mkdir -p "$T/corpus"
tar -C "$T/corpus" -xzf "$root/tests/fuzz/corpus-devices-found.tar.gz" || fail "cannot unpack the found corpus"
# The devices log every guest error; -close_fd_mask=2 keeps that out of the
# log while libFuzzer's and the sanitizers' reports still reach it.
FUZZ_FLAGS=-close_fd_mask=2 fuzz_run fuzz_devices 4096 "$root/tests/fuzz/corpus-devices"
