#!/bin/bash
# san: yes
# `ferry move-vm --check`: would the destination take the VM? The move's own
# setup runs (the destination's ferryd and worker check the name, memory,
# CPU model, disk and NIC, both hosts prove the cluster key) and is then
# called off: the VM never pauses, no memory moves, nothing stays on the
# destination, and both histories say so. A destination that would refuse
# says why, with the exit status of a failed move; a VM a check found fit
# then moves as usual. Checks of several VMs, and of a host's evacuation,
# go through the same queue.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

two_hosts 25000
new_vm A k1 128M "ws=16M rate=16"
new_vm A k2 64M "ws=4M rate=4"

note "check k1 and k2: B would take both"
on A move-vm -n k1,k2 -d "$(port_of B)" --check --json >"$T/out" 2>"$T/err" ||
	{ cat "$T/out" "$T/err"; fail "move-vm --check"; }
tail -n1 "$T/out" | grep -q '"event":"done","completed":0,"checked":2,"failed":0' ||
	fail "no done event with 2 checked: $(tail -n1 "$T/out")"
grep -q '"event":"checked".*"error":"a check only: 127.0.0.1:[0-9]* can take VM k1' "$T/out" ||
	fail "no checked event for k1: $(cat "$T/out")"
for vm in k1 k2; do
	[ "$(vm_state A $vm)" = running ] || fail "$vm not running on A after its check"
	[ "$(vm_state B $vm)" = absent ] || fail "$vm left on B after its check"
done
# the workers' own word: set up, called off, next to nothing sent
st=$(vmctl "$(vm_sock A k1)" '{"cmd":"migrate-status"}')
echo "$st" | grep -q '"stage":"checked"' || fail "k1's worker is not at 'checked': $st"
wire=$(echo "$st" | json_get migration.bytes_on_wire)
[ "$wire" -lt 1000000 ] || fail "a check sent $wire bytes"
on A migration history | tee "$T/histA"
grep -qE 'k1 +out +checked' "$T/histA" || fail "A's history lacks the check"
on B migration history | tee "$T/histB"
grep -qE 'k1 +in +cancelled' "$T/histB" || fail "B's history lacks the called-off arrival"
on B --json migration history --name k1 | grep -q 'a check only' || fail "B's history does not say it was a check"
verify_vm A k1 || fail "page check on A after the check"

note "on a terminal: the summary says the VM can move"
script -qec "$FERRY_BIN/ferry -c $(port_of A) move-vm -n k2 -d $(port_of B) --check" "$T/tty" \
	>/dev/null 2>&1 || fail "move-vm --check on a terminal: $(cat "$T/tty")"
grep -q "VM k2 can move to $(port_of B) (check mv-" "$T/tty" || fail "no summary line: $(cat "$T/tty")"

note "B's CPU baseline would refuse k1: the check says why, exit 1"
on B host set --cpu-baseline -x2apic >/dev/null || fail "host set --cpu-baseline"
rc=0; on A move-vm -n k1 -d "$(port_of B)" --check >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "incompatible CPU.*x2apic" "$T/out" || fail "refused check: rc $rc, $(cat "$T/out")"
[ "$(vm_state A k1)" = running ] || fail "k1 not running on A after the refused check"
on B host set --cpu-baseline '' >/dev/null || fail "host set --cpu-baseline ''"

note "an evacuation checked: every running VM, nothing moves"
rc=0; on A host evacuate -d "$(port_of B)" --check --json >"$T/out" 2>&1 || rc=$?
[ "$rc" = 0 ] && tail -n1 "$T/out" | grep -q '"checked":2,"failed":0' || fail "evacuate --check: rc $rc, $(tail -n3 "$T/out")"
[ "$(vm_state A k1)" = running ] && [ "$(vm_state A k2)" = running ] || fail "VMs left A on a check"

note "k1, found fit, moves as usual"
on A move-vm -n k1 -d "$(port_of B)" >/dev/null 2>&1 || fail "the move after the check"
[ "$(vm_state B k1)" = running ] || fail "k1 not running on B"
verify_vm B k1 || fail "page check on B"
echo "ok: checks of 2 VMs, a refusal and an evacuation, then k1 moved"
