#!/bin/bash
# san: yes
# A VM whose move away has sent it (finishing: the source waits for the
# destination's word that it runs the VM) is no longer the source's to
# hold a name for, as docs/api.md says of E_VM_LEAVING: a new VM of that
# name (and a move of it back, whose source then keeps its move queued)
# is refused as still leaving, not as a name taken, which a move back
# took for a final refusal. The destination's answer is held 3 s (a
# failpoint in its vm.status), and the source's old worker 5 s on its way
# out, to keep the source in that state.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

FERRY_FAILPOINTS="worker.release_memory=delay(5000)" start_host A
FERRY_FAILPOINTS="ferryd.vm_status=delay(3000)" start_host B
on A host set --migration-ports 24200-24299 >/dev/null || fail "host set A"
on B host set --migration-ports 24300-24399 >/dev/null || fail "host set B"

note "g1 on A, moved to B; B's answer to A's confirmation held 3 s"
new_vm A g1 64M "ws=8M rate=8"
on A move-vm -n g1 -d "$(port_of B)" --json >"$T/out" 2>&1 &
mv=$!
for i in $(seq 50); do
	[ "$(move_state A g1)" = finishing ] && break
	sleep 0.1
done
[ "$(move_state A g1)" = finishing ] || fail "A's move is $(move_state A g1), not finishing"

note "a new g1 on A meanwhile: refused as still leaving"
on A vm new --name g1 --memory 64M --kernel "$FERRY_GUEST" >"$T/new" 2>&1 && fail "a new g1 was defined on A"
grep -q "has not finished yet (finishing): try again when it has" "$T/new" ||
	fail "unclear refusal: $(cat "$T/new")"
on A --json vm new --name g1 --memory 64M --kernel "$FERRY_GUEST" 2>&1 | grep -q '"code":"E_VM_LEAVING"' ||
	fail "not E_VM_LEAVING: $(on A --json vm new --name g1 --memory 64M --kernel "$FERRY_GUEST" 2>&1)"
wait $mv || { cat "$T/out"; fail "move-vm A->B"; }
wait_move A g1 completed 10 || fail "the move did not complete"
echo "PASS: move_leaving_settling"
