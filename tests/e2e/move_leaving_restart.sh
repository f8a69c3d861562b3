#!/bin/bash
# san: yes
# A move waiting in its source's queue for the destination's old copy of
# the VM to end (E_VM_LEAVING: asked again every second after the first
# half second) is queued, and a restarted source ferryd keeps it queued:
# it completes once that copy has ended. Its record on disk said
# 'preparing' (the state each retry saves as it asks) while it waited, so
# a restart took it for a move cut off during setup and cancelled it.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

FERRY_FAILPOINTS="worker.release_memory=delay(6000)" start_host A
start_host B
on A host set --migration-ports 24000-24099 >/dev/null || fail "host set A"
on B host set --migration-ports 24100-24199 >/dev/null || fail "host set B"

note "g1 on A, moved to B: A's old worker still ends for 6 s"
new_vm A g1 64M "ws=8M rate=8"
on A move-vm -n g1 -d "$(port_of B)" >/dev/null 2>&1 || fail "move-vm A->B"

note "move back B -> A: queued until A's old copy ends"
on B move-vm -n g1 -d "$(port_of A)" --json >"$T/back" 2>&1 &
wait_for "$T/B.ferryd.log" "VM g1 is still ending on .*; asking every 1000 ms" 10 ||
	fail "B's move back did not wait for A's old copy"
[ "$(move_state B g1)" = queued ] || fail "B's move back is $(move_state B g1), not queued"

note "B's ferryd killed and started again while its move waits"
kill -9 "${HOST_PID[B]}"
wait "${HOST_PID[B]}" 2>/dev/null
start_host B
st=$(move_state B g1) # queued, or asking again already
[ "$st" != cancelled ] && [ "$st" != failed ] && [ -n "$st" ] ||
	fail "the waiting move did not survive B's restart: $st: $(on B --json migration status g1 | json_get move.error)"
wait_move B g1 completed 20 || fail "the move back did not complete"
[ "$(vm_state A g1)" = running ] || fail "g1 not running on A"
verify_vm A g1 || fail "page check on A after the round trip"
echo "PASS: move_leaving_restart"
