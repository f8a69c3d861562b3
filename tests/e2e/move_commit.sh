#!/bin/bash
# The commit-point rule end to end: the destination's worker dies right
# after COMMIT, before it can confirm. The source worker cannot know whether
# the VM runs there, so it stays paused (stage "unknown"); the source ferryd
# asks the destination ferryd, learns the VM is not there, and resumes it
# on the source (the disk lock proves no other copy writes its disk). At no
# moment do two copies run; afterwards the VM runs on A, intact, and a new
# move to a healthy B succeeds.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

start_host A
# Workers inherit ferryd's environment: B's incoming worker crashes right after COMMIT.
FERRY_FAILPOINTS="dst.after_commit=crash" start_host B
truncate -s 32M "$T/c1.img"
on A vm new --name c1 --memory 128M --vcpus 1 --kernel "$FERRY_GUEST" --cmdline "ws=16M rate=16 blk=1" \
	--disk "$T/c1.img" >/dev/null || fail "vm new"
on A vm start c1 >/dev/null || fail "vm start"
wait_for "$(serial_of A c1)" "FERRY-GUEST blk wrote n=2" 30 || fail "c1 not writing its disk"

note "move with the destination dying after the commit point"
on A move-vm -n c1 -d "$(port_of B)" --json >"$T/move.json" 2>&1 && fail "the move cannot have completed"
tail -n 3 "$T/move.json"
[ "$(vm_state A c1)" = running ] || fail "c1 is $(vm_state A c1) on A, expected running (resumed by the rule)"
[ "$(vm_state B c1)" = absent ] || fail "c1 left a trace on B: $(vm_state B c1)"
grep -q '"unknown"' "$T/move.json" || grep -qi 'unknown\|resum' "$T/move.json" || fail "the events never showed the unknown outcome"
verify_vm A c1 || fail "pages after resuming"
on A vm verify c1 | grep -q "every page verified" || fail "ferry vm verify disagrees"
n=$(grep -oE 'blk wrote n=[0-9]+' "$(serial_of A c1)" | tail -n1 | grep -oE '[0-9]+$')
wait_for "$(serial_of A c1)" "FERRY-GUEST blk wrote n=$((n + 2))\$" 30 || fail "c1 does not write its disk after resuming"
on A migration history | tee "$T/hist"
grep -q "c1" "$T/hist" || fail "no history entry"

note "a healthy destination takes it"
stop_host B
start_host B2
on A move-vm -n c1 -d "$(port_of B2)" >/dev/null || fail "second move failed"
[ "$(vm_state B2 c1)" = running ] || fail "c1 not running on B2"
[ "$(vm_state A c1)" = absent ] || fail "c1 still on A"
verify_vm B2 c1 || fail "pages on B2"
echo ok
