#!/bin/bash
# san: yes
# Moves to several destinations: `ferry host evacuate -d B,C` places the
# source's running VMs on B and C, biggest first, each where the most
# memory is left (free memory less the host's reserve, as each
# destination's ferryd reports it), says where each goes, and follows all
# the moves to the end (a --check first moves nothing): every VM runs on
# the host it was placed on, every
# page intact, and both destinations took some. With C's reserve raised
# past its free memory, everything goes to B. `move-vm -n ... -d B,C` places
# the named VMs the same way. A destination in the list that does not
# answer stops the command before any move starts (exit 3), and so does a
# named VM the source lacks or that does not run (exit 1). A list with a
# hole in it, or naming a host twice, is a bad command line. A host drained
# for maintenance (host set --accept-moves off) refuses moves to it with
# E_NOT_ACCEPTING, a spread passes it by, and it takes moves again once on.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

hosts_up 25200 A B C

note "on A: s1 (256 MiB), s2 (128 MiB), s3 (64 MiB), idle; s4 stopped"
new_vm A s1 256M "ws=8M rate=8"
new_vm A s2 128M "ws=4M rate=0"
new_vm A s3 64M "ws=1M rate=0"
on A vm new --name s4 --memory 64M --kernel "$FERRY_GUEST" >/dev/null || fail "vm new s4"

note "usage: a list with a hole, a destination that does not answer"
rc=0; on A host evacuate -d "$(port_of B)," 2>"$T/err" || rc=$?
[ "$rc" = 2 ] || fail "-d 'B,': rc $rc, $(cat "$T/err")"
rc=0; on A host evacuate -d "$(port_of B),$(port_of B)" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "named twice" "$T/err" || fail "-d 'B,B': rc $rc, $(cat "$T/err")"
rc=0; on A host evacuate -d "$(port_of B),127.0.0.1:$(free_port)" --json >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 3 ] && grep -q "did not answer host.info: cannot place VMs on it" "$T/err" ||
	fail "unreachable destination: rc $rc, $(cat "$T/err")"
rc=0; on A move-vm -n s1,nosuch -d "$(port_of B),$(port_of C)" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "no VM named 'nosuch' on the source host" "$T/err" || fail "an unknown VM: rc $rc, $(cat "$T/err")"
rc=0; on A move-vm -n s2,s4 -d "$(port_of B),$(port_of C)" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "VM s4 is stopped: only a running VM" "$T/err" || fail "a stopped VM: rc $rc, $(cat "$T/err")"
for v in s1 s2 s3; do [ "$(vm_state A $v)" = running ] || fail "$v moved or stopped after a refused evacuation"; done

note "checked first: each VM where it would go, nothing moves"
on A host evacuate -d "$(port_of B),$(port_of C)" --check --json >"$T/chk" 2>&1 ||
	{ cat "$T/chk"; fail "host evacuate -d B,C --check"; }
[ "$(grep -c '"event":"placed"' "$T/chk")" = 3 ] || fail "the check placed $(grep -c '"event":"placed"' "$T/chk") VMs"
tail -n1 "$T/chk" | grep -q '"checked":3,"failed":0' || fail "evacuate --check: $(tail -n1 "$T/chk")"
for v in s1 s2 s3; do [ "$(vm_state A $v)" = running ] || fail "$v moved in a check"; done

note "evacuate A to B and C"
on A host evacuate -d "$(port_of B),$(port_of C)" --json >"$T/evac" 2>&1 ||
	{ cat "$T/evac"; fail "host evacuate -d B,C"; }
grep '"event":"placed"' "$T/evac"
tail -n1 "$T/evac" | grep -q '"event":"done","completed":3,"failed":0' || fail "evacuation: $(tail -n1 "$T/evac")"
declare -A count=([B]=0 [C]=0)
for v in s1 s2 s3; do
	to=$(grep "\"event\":\"placed\",\"name\":\"$v\"" "$T/evac" | json_get destination)
	case "$to" in "$(port_of B)") h=B ;; "$(port_of C)") h=C ;; *) fail "$v placed on '$to'" ;; esac
	count[$h]=$((count[$h] + 1))
	[ "$(vm_state $h $v)" = running ] || fail "$v not running on $h, where it was placed"
	[ "$(vm_state A $v)" = absent ] || fail "$v still on A"
	verify_vm $h $v || fail "page check of $v on $h"
done
[ "${count[B]}" -ge 1 ] && [ "${count[C]}" -ge 1 ] || fail "not spread: B ${count[B]}, C ${count[C]}"
[ "$(vm_state A s4)" = stopped ] || fail "the stopped s4 was touched"
echo "spread: B ${count[B]}, C ${count[C]}"

note "move-vm back to A... and on: C's reserve past its free memory sends all to B"
for v in s1 s2 s3; do
	h=B; [ "$(vm_state C $v)" = running ] && h=C
	on $h move-vm -n $v -d "$(port_of A)" --json >"$T/back" 2>&1 || { cat "$T/back"; fail "move $v back"; }
done
on C host set --memory-reserve 100000 >/dev/null || fail "host set C --memory-reserve"
on A move-vm -n s3,s2 -d "$(port_of C),$(port_of B)" --json >"$T/mv" 2>&1 || { cat "$T/mv"; fail "move-vm -d C,B"; }
[ "$(grep -c '"event":"placed".*"destination":"'"$(port_of B)"'"' "$T/mv")" = 2 ] ||
	fail "not both placed on B: $(grep placed "$T/mv")"
for v in s2 s3; do [ "$(vm_state B $v)" = running ] || fail "$v not on B"; done
[ "$(vm_state A s1)" = running ] || fail "s1, not named, moved"

note "B drained for maintenance (--accept-moves off): a move to it is refused, a spread passes it by"
on C host set --memory-reserve 0 >/dev/null || fail "host set C --memory-reserve 0"
on B host set --accept-moves off >/dev/null || fail "host set B --accept-moves off"
on B host info | grep -qE "^Accept moves: +off" || fail "host info does not show B refusing moves"
rc=0; on A move-vm -n s1 -d "$(port_of B)" >"$T/refused" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "takes no incoming moves" "$T/refused" || fail "a move to the drained B: rc $rc, $(cat "$T/refused")"
[ "$(vm_state A s1)" = running ] && [ "$(vm_state B s1)" = absent ] || fail "s1 moved to the drained B"
on A host evacuate -d "$(port_of B),$(port_of C)" --json >"$T/evac2" 2>"$T/evac2.err" ||
	{ cat "$T/evac2" "$T/evac2.err"; fail "evacuate past the drained B"; }
grep -q "takes no moves (host set --accept-moves off): none placed on it" "$T/evac2.err" ||
	fail "the spread does not say it passed B by: $(cat "$T/evac2.err")"
[ "$(vm_state C s1)" = running ] || fail "s1 not on C"
rc=0; on C host evacuate -d "$(port_of B)" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "an evacuation to the drained B alone did not fail: rc $rc"
[ "$(vm_state C s1)" = running ] || fail "s1 left C for the drained B"
on B host set --accept-moves on >/dev/null || fail "host set B --accept-moves on"
on C move-vm -n s1 -d "$(port_of B)" >/dev/null 2>&1 || fail "a move to B once it takes moves again"
echo "PASS: move_spread"
