#!/bin/bash
# san: yes
# A move is done when the destination runs the VM, not when the source's
# old worker has given the guest's memory back (~0.12 s per GiB touched
# here). With that worker held 8 s on its way out (a failpoint), the move
# completes while it still runs; meanwhile the name is no VM of the source
# host's (list, status, no definition on disk), a new VM of that name is
# refused as still leaving, and a move back waits in the queue, saying
# why (its watch not woken by each retry; asked every second after the
# first half second), until the old copy has ended,
# then completes with every page intact (one asked to take at most 1 s,
# --max-duration 1, gives up with E_VM_LEAVING, the VM running on); nothing of the old copy is left
# behind. A move to another host (C) queued after the waiting one goes
# past it. A's ferryd is killed and started again meanwhile: it takes the
# old worker back (by its pid file, renamed run/g1.departed, the one file
# left), so the name stays held until that worker ends, whose exit would
# otherwise remove the sockets of the VM that has come back.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

FERRY_FAILPOINTS="worker.release_memory=delay(8000)" start_host A
hosts_up 23500 A B C

note "g1 on A (64 MiB, dirtying 8 MiB at 8 MiB/s), g2 on B (32 MiB, idle)"
new_vm A g1 64M "ws=8M rate=8"
new_vm B g2 32M "ws=1M rate=0"
wait_for "$(serial_of A g1)" "FERRY-GUEST hb" 10 || fail "no heartbeat on A"
old=$(cat "$T/A/run/g1.pid")

note "move A -> B: completed while A's old worker still ends"
on A move-vm -n g1 -d "$(port_of B)" --json >"$T/out" 2>&1 || { cat "$T/out"; fail "move-vm A->B"; }
alive "$old" ||
	fail "A's old worker had ended before the move completed (the failpoint did not hold it)"
[ "$(ls "$T/A/run")" = g1.departed ] || fail "A's run directory holds more than the old worker's g1.departed: $(ls "$T/A/run")"

note "A's ferryd killed and started again: it takes the old worker back"
kill -9 "${HOST_PID[A]}"
wait "${HOST_PID[A]}" 2>/dev/null
start_host A
grep -q "VM g1: re-adopted the worker (pid $old) it left here" "$T/A.ferryd.log" ||
	fail "A's restarted ferryd did not take the old worker back: $(grep g1 "$T/A.ferryd.log" | tail -3)"
[ "$(vm_state B g1)" = running ] || fail "g1 not running on B"
[ "$(vm_state A g1)" = absent ] || fail "A still lists g1"
on A vm status g1 >"$T/st" 2>&1 && fail "A answers for g1"
grep -q "it moved away (the copy it left here is ending)" "$T/st" || fail "unclear status: $(cat "$T/st")"
[ -e "$T/A/vms/g1.json" ] && fail "g1's definition is still on A"
on A vm list | grep -q "g1" && fail "A's list shows g1"
on A vm new --name g1 --memory 64M --kernel "$FERRY_GUEST" >"$T/new" 2>&1 && fail "a new g1 was defined on A"
grep -q "still ending: try again in a moment" "$T/new" || fail "unclear refusal: $(cat "$T/new")"

note "a move back that may take at most 1 s gives up on the old copy, saying why"
on B move-vm -n g1 -d "$(port_of A)" --max-duration 1 --json >"$T/short" 2>&1 &&
	fail "a move back within 1 s completed while A's old copy still ends"
grep -q '"code":"E_VM_LEAVING"' "$T/short" &&
	grep -q 'gave up after 1 s (the move.s --max-duration) waiting for .*still ending' "$T/short" ||
	fail "unclear give-up: $(tail -2 "$T/short")"
[ "$(vm_state B g1)" = running ] || fail "g1 not running on B after the give-up"
alive "$old" || fail "A's old worker had ended before the give-up (no proof it gave up waiting)"

note "move back B -> A at once: it waits for A's old copy to end"
on B move-vm -n g1 -d "$(port_of A)" --json >"$T/back" 2>&1 &
back=$!
# past the first half second it asks every second, not 50 times
wait_for "$T/B.ferryd.log" "VM g1 is still ending on .*; asking every 1000 ms" 10 ||
	fail "B did not slow its asking: $(grep g1 "$T/B.ferryd.log" | tail -3)"
note "meanwhile B -> C of g2, queued after it, is not held up by it"
on B move-vm -n g2 -d "$(port_of C)" --json >"$T/g2" 2>&1 || { cat "$T/g2"; fail "move-vm g2 B->C"; }
alive "$old" || fail "A's old worker had ended before g2 moved (no proof g2 did not wait behind g1)"
grep "queued before it" "$T/g2" && fail "g2 waited behind g1's move to another host"
[ "$(vm_state C g2)" = running ] || fail "g2 not running on C"
wait $back || { cat "$T/back"; fail "move-vm B->A"; }
grep -q '"state":"queued".*still ending' "$T/back" ||
	fail "the move back did not wait for the old copy: $(grep -m3 event "$T/back")"
# Its retries (every 20 ms) are no news to the watch's held status: it
# is answered at most every 250 ms while waiting, not at each retry.
n=$(grep -c '"event"' "$T/back")
echo "$n events while the move back waited"
[ "$n" -lt 40 ] || fail "the watch of the waiting move was answered at each retry ($n events)"
# its worker walked the guest's memory for the extents once per move (the
# one that gave up, this one), not at each ask
n=$(grep -c "extents: .* MiB in use" "$T/B/logs/g1.log")
[ "$n" = 2 ] || fail "B's worker was asked for its extents $n times for two moves"
alive "$old" && fail "A's old worker still runs after the move back"
grep -q "VM g1: the copy it left here has ended" "$T/A.ferryd.log" || fail "A did not log the old copy's end"
[ "$(vm_state A g1)" = running ] || fail "g1 not running on A"
[ "$(vm_state B g1)" = absent ] || fail "g1 still on B"
verify_vm A g1 || fail "page check on A after the round trip"
[ "$(cat "$T/A/run/g1.pid")" != "$old" ] || fail "A's pid file names the old worker"
ls "$T/A/run" | grep -v "^g1\.\(pid\|sock\|console\|exit\)$" && fail "files left in A's run directory"
echo "PASS: move_leaving"
