#!/usr/bin/env bash
# san: yes
# A VM whose NIC names a bridge, not a tap, moves between two ferryd hosts
# in the test lab (each host its own network namespace, tests/lib/netlab.sh;
# each has a bridge "vbr" joined to the lab's switch). Checks: the worker
# makes its own tap on the bridge (ferry vm status names it), the client's
# frames reach the guest; a move to a host without the VM's bridge is
# refused at prepare with the reason, the VM running on; a move to a host
# with it lands the NIC on that host's bridge (a new tap there, the old one
# gone with the source's worker), the switch learns the MAC on the new
# host's port and the client reaches the guest there; --tap and --bridge
# together are refused.
# Exit: 0 pass, 77 skip (no /dev/kvm, not root, no namespaces), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/netlab.sh"
. "$(dirname "$0")/hosts.inc"
need_kvm
need_root
need_ferryd
need_netlab bridge
P=fb$$
lab_up $P
trap 'kill_all_workers; lab_down' EXIT

HOST_NS[A]=${P}a HOST_IP[A]=10.77.0.1 HOST_PORT[A]=7450
HOST_NS[B]=${P}b HOST_IP[B]=10.77.0.2 HOST_PORT[B]=7450
two_hosts 23100

# taps_on NS: the fyN taps on that namespace's bridge vbr
taps_on() { ip -n "$1" -o link show master vbr | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^fy' | sort; }

note "--tap and --bridge together: a usage error"
on A vm new --name bad --kernel "$FERRY_GUEST" --tap tap0 --bridge vbr >"$T/bad.out" 2>&1 &&
	fail "vm new with --tap and --bridge accepted"
grep -q "exclude each other" "$T/bad.out" || fail "unclear refusal: $(cat "$T/bad.out")"

note "n1 on A, its NIC on bridge vbr (no tap made by hand, no MAC given)"
new_vm A n1 128M "ws=8M rate=8 net=1" 1 --bridge vbr
on A --json vm status n1 >"$T/st1" || fail "vm status n1"
[ "$(json_get bridge <"$T/st1")" = vbr ] || fail "status does not name the bridge: $(cat "$T/st1")"
TAP_A=$(json_get nic_tap <"$T/st1")
case "$TAP_A" in fy*) ;; *) fail "status names no tap of the VM's own: $(cat "$T/st1")" ;; esac
[ "$(taps_on ${P}a)" = "$TAP_A" ] || fail "tap $TAP_A is not on A's bridge: $(ip -n ${P}a -o link show master vbr)"
on A vm status n1 | grep -qE "NIC tap: +$TAP_A" || fail "the table does not show the tap: $(on A vm status n1)"
MAC=$(grep -oE 'virtio-net.0: fy[0-9]+, mac ([0-9a-f:]{17})' "$T/A/logs/n1.log" | awk '{print $4}')
[ -n "$MAC" ] || fail "no MAC in the worker's log: $(cat "$T/A/logs/n1.log")"
out=$(ip netns exec ${P}c python3 "$LAB_PING" ${P}uc "$MAC" 3) ||
	fail "client frame did not come back from the guest on A: $out"
echo "on A: $TAP_A, mac $MAC, $out"

note "n2 on a bridge B lacks: its move is refused at prepare, it runs on"
ip -n ${P}a link add vbr2 type bridge && ip -n ${P}a link set vbr2 up || fail "making vbr2 on A"
# what each host offers, as `host info` lists it
[ "$(on A --json host info | json_get bridges)" = '["vbr", "vbr2"]' ] &&
	[ "$(on B --json host info | json_get bridges)" = '["vbr"]' ] ||
	fail "host info bridges: A $(on A --json host info | json_get bridges), B $(on B --json host info | json_get bridges)"
on B host info | grep -qE "^Bridges: +vbr$" || fail "host info table: $(on B host info)"
new_vm A n2 64M "ws=4M rate=4" 1 --bridge vbr2
on A move-vm -n n2 -d "$(port_of B)" >"$T/n2.out" 2>&1 && fail "n2 moved to a host without its bridge"
grep -q "bridge 'vbr2' does not exist on this host" "$T/n2.out" ||
	fail "refusal does not name the bridge: $(cat "$T/n2.out")"
[ "$(vm_state A n2)" = running ] || fail "n2 not running on A after the refusal"
[ "$(vm_state B n2)" = absent ] || fail "n2 left on B: $(vm_state B n2)"
echo "refused: $(grep -o "bridge 'vbr2'[^;]*" "$T/n2.out" | head -n1)"

note "n1 moves to B: a tap of its own on B's vbr, A's gone, the client reaches it there"
on A move-vm -n n1 -d "$(port_of B)" >"$T/n1.out" 2>&1 || { cat "$T/n1.out"; fail "move of n1"; }
wait_state B n1 running 10 || fail "n1 not running on B"
on B --json vm status n1 >"$T/st2" || fail "vm status n1 on B"
[ "$(json_get bridge <"$T/st2")" = vbr ] || fail "B's definition lost the bridge: $(cat "$T/st2")"
TAP_B=$(json_get nic_tap <"$T/st2")
[ -n "$TAP_B" ] && [ "$(taps_on ${P}b)" = "$TAP_B" ] ||
	fail "n1's tap on B ($TAP_B) is not on B's bridge: $(ip -n ${P}b -o link show master vbr)"
out=$(ip netns exec ${P}c python3 "$LAB_PING" ${P}uc "$MAC" 3) || fail "client frame lost after the move: $out"
echo "on B: $TAP_B, $out"
[ "$(fdb_port "$MAC")" = ${P}pb ] || fail "switch has the VM's MAC on '$(fdb_port "$MAC")', expected ${P}pb"
for _ in $(seq 50); do [ -z "$(taps_on ${P}a)" ] && break; sleep 0.1; done
[ -z "$(taps_on ${P}a)" ] || fail "A still has a VM tap on its bridge: $(taps_on ${P}a)"
verify_vm B n1 || fail "page check of n1 on B"
echo "ok"
