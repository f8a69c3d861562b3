#!/bin/bash
# A maximum duration with a chosen action: a move that cannot converge in
# time (a busy guest behind a 16 MiB/s cap) is cancelled by policy (the VM
# stays on A, intact) or switched over anyway (it completes, intact, and
# its status says the downtime went over the 50 ms target, and which part
# took most of it).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm
start_host A
start_host B
new_vm A t1 256M "ws=64M rate=max"

note "limit 2 s, action cancel"
on A move-vm -n t1 -d "$(port_of B)" --bandwidth 16 --max-duration 2 --on-timeout cancel >"$T/out" 2>&1 &&
	fail "the move should not have completed"
cat "$T/out" | tail -n 3
grep -q "did not converge within 2 s" "$T/out" || fail "no clear reason"
[ "$(vm_state A t1)" = running ] || fail "t1 is not running on A"
[ "$(vm_state B t1)" = absent ] || fail "t1 left a trace on B"
verify_vm A t1 || fail "pages on A"

note "limit 2 s, action switchover"
on A move-vm -n t1 -d "$(port_of B)" --bandwidth 16 --max-duration 2 --on-timeout switchover >"$T/out2" 2>&1 ||
	{ cat "$T/out2"; fail "the move should have switched over"; }
tail -n 4 "$T/out2"
wait_state B t1 running 30 || fail "t1 not running on B"
verify_vm B t1 || fail "pages on B"

note "the forced switch-over's downtime is reported as over its target, with its largest part"
id=$(grep -o '"id":"mv-[0-9a-f]*"' "$T/out2" | head -n1 | cut -d'"' -f4)
[ -n "$id" ] || fail "no move id in the events"
on A migration status "$id" >"$T/status" || fail "migration status $id"
cat "$T/status"
grep -qE '^Downtime: +over the 50 ms target: most of it the last pages \([0-9.]+ ms\)' "$T/status" ||
	fail "status does not say the downtime went over the target, and why"
echo ok
