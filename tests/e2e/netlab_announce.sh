#!/usr/bin/env bash
# The test lab: two hosts and a client in network namespaces behind a
# bridge that plays the switch. A VM with a virtio-net NIC on a tap moves
# from host a to host b. Checks: frames reach the tap and come back (the
# guest echoes the client's frames); after the move the destination's RARP
# announce reaches the switch through b's port and moves the switch's MAC
# entry there; the client's frames reach the guest at its new home without
# the guest sending anything first.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
. "$(dirname "$0")/../lib/netlab.sh"
need_kvm
need_root
need_netlab bridge tcpdump
P=fl$$
lab_up $P
trap 'cleanup; lab_down' EXIT
MAC=52:54:00:12:34:56


note "VM on host a, NIC on tap0 behind a's bridge"
ip netns exec ${P}a "$FERRY_BIN/ferry-vm" --name net1 --kernel "$FERRY_GUEST" --memory 128M \
	--cmdline "ws=8M rate=8 net=1" --tap tap0 --mac $MAC --serial "$T/a.log" --control "$T/a.sock" \
	2>"$T/a.err" & PID_a=$!; _pids+=($PID_a)
wait_for "$T/a.log" 'FERRY-GUEST ready' 60 || fail "guest not ready"
wait_for "$T/a.log" 'FERRY-GUEST hb n=2 ' 30 || fail "no heartbeat"
out=$(ip netns exec ${P}c python3 "$LAB_PING" ${P}uc $MAC 3) || fail "client frame did not come back from the guest on a: $out"
echo "on a: $out"
[ "$(fdb_port $MAC)" = ${P}pa ] || fail "switch has the VM's MAC on '$(fdb_port $MAC)', expected ${P}pa"

note "move to host b, watching b's switch port for the announce"
ip netns exec ${P}sw tcpdump -i ${P}pb -c 1 -nn -e "ether proto 0x8035 and ether src $MAC" >"$T/rarp.txt" 2>/dev/null &
TD=$!; _pids+=($TD)
sleep 0.5
next_port
# The destination holds its later announce rounds back 1.5 s: the round it
# sends before confirming the resume must be enough on its own.
FERRY_FAILPOINTS='dst.after_resumed=delay(1500)' \
ip netns exec ${P}b "$FERRY_BIN/ferry-vm" --incoming 10.77.0.2:$port --tap tap0 --serial "$T/b.log" \
	--control "$T/b.sock" 2>"$T/b.err" & PID_b=$!; _pids+=($PID_b)
for _ in $(seq 50); do [ -S "$T/b.sock" ] && break; sleep 0.1; done
r=$(vmctl "$T/a.sock" '{"cmd":"migrate","uri":"10.77.0.2:'$port'"}')
echo "$r" | grep -q '"ok":true' || fail "migrate: $r"
res=$(wait_mig a 60); [ "$(field "$res" stage)" = completed ] || fail "move: $res"
# Right away: the client reaches the guest at b before the guest sends anything.
out=$(ip netns exec ${P}c python3 "$LAB_PING" ${P}uc $MAC 2) || fail "client frame lost after the move: $out"
echo "after the move: $out"
for _ in $(seq 30); do kill -0 $TD 2>/dev/null || break; sleep 0.1; done
grep -q "Reverse ARP" "$T/rarp.txt" || fail "no RARP from the VM's MAC on b's switch port: $(cat "$T/rarp.txt")"
echo "announce seen on ${P}pb: $(head -n1 "$T/rarp.txt" | cut -c1-100)"
[ "$(fdb_port $MAC)" = ${P}pb ] || fail "switch still has the VM's MAC on '$(fdb_port $MAC)'"
wait_for "$T/b.err" "announced the NIC" 10 || fail "destination did not log the announce"
vmctl "$T/b.sock" '{"cmd":"verify"}' | grep -q '"verified":true' || fail "pages after the move"
vmctl "$T/a.sock" '{"cmd":"stop"}' >/dev/null
vmctl "$T/b.sock" '{"cmd":"stop"}' >/dev/null
echo ok
