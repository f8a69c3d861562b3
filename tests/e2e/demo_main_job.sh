#!/usr/bin/env bash
# san: no
# The README's main job, as a newcomer runs it (scripts/demo.sh, which
# ./run-demo.sh runs after setup and build): two hosts on this machine, a
# busy VM moved live there and back. Here (no VMX/SVM) that is the test
# guest with a disk: the first move copies the disk into hostB's image
# directory and removes hostA's image, the way back is encrypted. Every
# guest page is verified after each move, and the disk's records are
# checked at the end; the demo's own exit status must be 0.
# Exit: 0 pass, 77 skip (no /dev/kvm), else fail.
. "$(dirname "$0")/../lib/common.sh"
need_kvm
need_ferryd
root=$(cd "$(dirname "$0")/../.." && pwd)
grep -qwE 'vmx|svm' /proc/cpuinfo && ls /boot/vmlinuz-* >/dev/null 2>&1 &&
	skip "this host has VMX/SVM and a kernel: the demo boots Linux here, which tests/kvm/linux_boot.sh covers"

note "scripts/demo.sh"
rc=0; "$root/scripts/demo.sh" >"$T/out" 2>&1 || rc=$?
sed 's/\r/\n/g' "$T/out" | grep -vE '"event":"progress"' | tail -n 30
[ "$rc" = 0 ] || fail "the demo exited $rc"
[ "$(grep -c '"event":"completed"' "$T/out")" = 2 ] || fail "the demo did not complete two moves"
[ "$(grep -c 'every page verified' "$T/out")" = 2 ] || fail "the demo did not verify every page after each move"
grep -q '"source_disk_removed":true' "$T/out" || fail "the first move did not remove hostA's image"
grep -q "hostA's image: removed after the first move" "$T/out" || fail "hostA's image is still there"
grep -q '^blkcheck: ok' "$T/out" || fail "the disk's records are not intact"
grep -q '^demo done.$' "$T/out" || fail "the demo did not finish"
echo "PASS: demo_main_job"
