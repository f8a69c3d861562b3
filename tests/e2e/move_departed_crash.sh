#!/bin/bash
# san: yes
# A move away completes in two steps on the source: the old worker's pid
# file becomes run/NAME.departed, then the VM's definition goes. A ferryd
# killed between the two (a failpoint crashes it there) finds at its next
# start a definition with no pid file beside a .departed whose worker
# still ends: that worker is the copy of the VM that moved away (the file
# is renamed only once the destination runs it), taken back as such, so
# the name stays held until it ends. Not taken back, the name was free at
# once, and the old worker's exit removed the sockets of the VM that had
# moved back meanwhile.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

FERRY_FAILPOINTS="worker.release_memory=delay(4000);ferryd.departed=crash" start_host A
start_host B
on A host set --migration-ports 23800-23899 >/dev/null || fail "host set A"
on B host set --migration-ports 23900-23999 >/dev/null || fail "host set B"

note "g1 on A (64 MiB)"
new_vm A g1 64M "ws=8M rate=8"
old=$(cat "$T/A/run/g1.pid")

note "move A -> B: A's ferryd killed between the .departed rename and the definition's removal"
on A move-vm -n g1 -d "$(port_of B)" --json >"$T/out" 2>&1 && fail "A's ferryd did not crash at the failpoint"
wait "${HOST_PID[A]}" 2>/dev/null
grep -q "failpoint ferryd.departed" "$T/A.ferryd.log" || fail "the failpoint was not reached: $(tail -3 "$T/A.ferryd.log")"
[ -e "$T/A/run/g1.departed" ] || fail "no g1.departed on A"
[ -e "$T/A/vms/g1.json" ] || fail "g1's definition already gone on A (not the window this test is for)"
alive "$old" || fail "A's old worker had ended already (the failpoint did not hold it)"

note "A's ferryd started again: the old worker is the moved VM's copy"
start_host A
grep -q "VM g1: re-adopted the worker (pid $old) it left here" "$T/A.ferryd.log" ||
	fail "A's restarted ferryd did not take the old worker back: $(grep g1 "$T/A.ferryd.log" | tail -3)"
[ -e "$T/A/vms/g1.json" ] && fail "g1's definition is still on A"
# its start line counts it as such, not as a VM of A's
grep -q "0 VM(s) defined, 0 re-adopted; 1 worker(s) of VMs that moved away, still ending" "$T/A.ferryd.log" ||
	fail "A's start line: $(grep 'VM(s) defined' "$T/A.ferryd.log" | tail -1)"
[ "$(vm_state A g1)" = absent ] || fail "A still has g1: $(vm_state A g1)"
wait_move A g1 completed 10 || fail "the move did not complete on A"
[ "$(vm_state B g1)" = running ] || fail "g1 not running on B"

note "move back B -> A at once: it waits for A's old copy to end"
on B move-vm -n g1 -d "$(port_of A)" --json >"$T/back" 2>&1 || { cat "$T/back"; fail "move-vm B->A"; }
grep -q '"state":"queued".*still ending' "$T/back" ||
	fail "the move back did not wait for the old copy: $(grep -m3 event "$T/back")"
alive "$old" && fail "A's old worker still runs after the move back"
[ "$(vm_state A g1)" = running ] || fail "g1 not running on A"
[ -S "$T/A/run/g1.sock" ] || fail "A's g1 has no control socket (removed by the old worker's exit)"
verify_vm A g1 || fail "page check on A after the round trip"
[ -e "$T/A/run/g1.departed" ] && fail "g1.departed left on A"
echo "PASS: move_departed_crash"
