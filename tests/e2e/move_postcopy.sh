#!/bin/bash
# san: yes
# Post-copy through ferryd: `ferry move-vm --post-copy` moves a guest that
# outruns its 64 MiB/s limit (pre-copy alone would throttle it), the move
# completes with the VM running on B, every page intact, and `migration
# status` says how many pages followed the switch-over. --post-copy with
# --verify-memory is a bad command line. Then a post-copy that breaks: B's
# worker killed while pages are still on A. The move fails with
# E_MIGRATE_LOST, A drops its stale copy (never resumes it), and B keeps
# the VM's definition, stopped, to be started again there.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

hosts_up 25500 A B

note "bad usage"
rc=0; on A move-vm -n x -d "$(port_of B)" --post-copy --verify-memory 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "do not go together" "$T/err" || fail "--post-copy --verify-memory: rc $rc, $(cat "$T/err")"

note "a busy VM moved with --post-copy"
new_vm A p 256M "ws=64M rate=max"
on A move-vm -n p -d "$(port_of B)" --post-copy --bandwidth 64 --json >"$T/mv" 2>&1 ||
	{ cat "$T/mv"; fail "move-vm --post-copy"; }
tail -n1 "$T/mv" | grep -q '"event":"done","completed":1,"failed":0' || fail "move: $(tail -n1 "$T/mv")"
[ "$(vm_state B p)" = running ] || fail "p not running on B"
[ "$(vm_state A p)" = absent ] || fail "p still on A"
verify_vm B p || fail "page check of p on B"
on A migration status p >"$T/st" || fail "migration status"
grep -E "Post-copy: +[0-9]+ pages sent after the VM ran there" "$T/st" || { cat "$T/st"; fail "no post-copy line"; }

note "post-copy breaks: B's worker dies with pages still on A"
on B vm stop p >/dev/null || fail "stop p on B"
on B vm delete p >/dev/null || fail "delete p on B"
new_vm A q 256M "ws=32M rate=8"
on A move-vm -n q -d "$(port_of B)" --post-copy --bandwidth 8 --no-wait >/dev/null || fail "move-vm q"
for _ in $(seq 200); do
	stage=$(on A --json migration status q 2>/dev/null | json_get move.stage)
	[ "$stage" = postcopy ] && break
	sleep 0.1
done
[ "$stage" = postcopy ] || fail "q's move never reached post-copy: '$stage'"
pid=$(pgrep -f "ferry-vm .*$(vm_sock B q)") || fail "no worker for q on B"
kill -9 "$pid"
wait_move A q failed 30 || fail "the move did not fail"
on A --json migration status q | json_get move.code | grep -qx E_MIGRATE_LOST ||
	fail "code: $(on A --json migration status q)"
on A migration status q | grep -q "post-copy broke" || fail "reason: $(on A migration status q)"
wait_state A q absent 20 || fail "A keeps its stale copy of q"
st=$(vm_state B q)
case "$st" in stopped|crashed) ;; *) fail "q on B is '$st', expected stopped or crashed" ;; esac
echo "q on B: $st; A: $(on A migration status q | grep Error)"
echo ok
