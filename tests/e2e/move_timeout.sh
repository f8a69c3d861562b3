#!/bin/bash
# A maximum duration with a chosen action: a move that cannot converge in
# time (a busy guest behind a 16 MiB/s cap) is cancelled by policy during
# its first pass, at the limit (the VM stays on A, intact) or switched over
# anyway there (the rest of the pass goes with the guest stopped; it
# completes, intact, and
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
# Pass 1 alone (64 MiB at 16 MiB/s) takes 4 s: the limit is checked within
# a pass, so the move ends in pass 1, not at its end.
grep '"event":"cancelled"' "$T/out" | python3 -c 'import json,sys; p=json.load(sys.stdin)["progress"]
print("cancelled in pass %d with %d of %d pages sent" % (p["pass"], p["sent_pages"], p["total_pages"]))
sys.exit(0 if p["pass"] == 1 and p["sent_pages"] < p["total_pages"] else 1)' ||
	fail "the cancel did not come during pass 1"
[ "$(vm_state A t1)" = running ] || fail "t1 is not running on A"
[ "$(vm_state B t1)" = absent ] || fail "t1 left a trace on B"
verify_vm A t1 || fail "pages on A"

note "limit 2 s, action switchover (on a terminal: the summary)"
mv=(-n t1 -d "$(port_of B)" --bandwidth 16 --max-duration 2 --on-timeout switchover)
if command -v script >/dev/null; then
	script -qec "$FERRY_BIN/ferry -c $(port_of A) move-vm ${mv[*]}" "$T/tty" >/dev/null ||
		{ cat "$T/tty"; fail "the move should have switched over"; }
	tr -d '\r' <"$T/tty" | sed 's/\x1b\[[0-9]*[AK]//g' >"$T/out2"
	grep -A4 "moved to" "$T/out2"
	grep -qE '^  downtime over the 50 ms target: most of it the last pages \([0-9.]+ ms\)' "$T/out2" ||
		fail "the summary does not say the downtime went over the target"
	id=$(grep -oE '\(move mv-[0-9a-f]+\)' "$T/out2" | tr -d '()' | cut -d' ' -f2)
else
	on A move-vm "${mv[@]}" >"$T/out2" 2>&1 || { cat "$T/out2"; fail "the move should have switched over"; }
	id=$(grep -o '"id":"mv-[0-9a-f]*"' "$T/out2" | head -n1 | cut -d'"' -f4)
fi
wait_state B t1 running 30 || fail "t1 not running on B"
verify_vm B t1 || fail "pages on B"

note "the forced switch-over's downtime is reported as over its target, with its largest part"
[ -n "$id" ] || fail "no move id"
on A migration status "$id" >"$T/status" || fail "migration status $id"
cat "$T/status"
grep -qE '^Downtime: +over the 50 ms target: most of it the last pages \([0-9.]+ ms\)' "$T/status" ||
	fail "status does not say the downtime went over the target, and why"

echo ok
