#!/usr/bin/env bash
# A destination that cannot host the VM refuses at setup, before any memory
# moves, with the specific reason; the source keeps running. Cases: CPU
# feature the destination lacks (host CPU mask), not enough memory, disk not
# reachable from the destination, unreachable destination, and a VM that is
# not running.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

refused() { # refused SRC CASE REGEX
	local res; res=$(wait_mig "$1" 30) || fail "$2: move did not end"
	[ "$(field "$res" stage)" = failed ] || fail "$2: expected failed: $res"
	local why; why=$(field "$res" error)
	echo "$why" | grep -qiE "$3" || fail "$2: unclear error: $why"
	[ "$(field "$res" bytes_on_wire)" -lt 1000000 ] || fail "$2: memory moved before the refusal"
	[ "$(state_of "$1")" = running ] || fail "$2: source not running"
	echo "$2: $why"
}

start_src s 256M 1 "ws=16M rate=16"
note "CPU feature the destination lacks"
next_port; start_dst c1 "$port" --host-cpu-mask "-x2apic"
migrate s "$port" || fail "migrate refused"
refused s "cpu" "incompatible CPU.*x2apic"

note "not enough memory on the destination"
start_src big 32G 1 "ws=16M rate=0"
next_port; start_dst c2 "$port"
migrate big "$port" || fail "migrate refused"
refused big "memory" "not enough memory"
vmctl "$T/big.sock" '{"cmd":"stop"}' >/dev/null

note "disk not reachable from the destination"
truncate -s 16M "$T/disk.img"
start_src dk 128M 1 "ws=8M rate=0 blk=1" --disk "$T/disk.img"
mv "$T/disk.img" "$T/disk-moved.img"   # the source keeps its open file; the path is gone
next_port; start_dst c3 "$port"
migrate dk "$port" || fail "migrate refused"
refused dk "disk" "disk .*not reachable"
vmctl "$T/dk.sock" '{"cmd":"stop"}' >/dev/null

note "unreachable destination"
next_port
migrate s "$port" || fail "migrate refused"
refused s "unreachable" "connect|refused"

note "a VM that is not running cannot be live-migrated"
vmctl "$T/s.sock" '{"cmd":"pause"}' >/dev/null
r=$(vmctl "$T/s.sock" '{"cmd":"migrate","uri":"127.0.0.1:1"}')
echo "$r" | grep -q 'only a running VM' || fail "paused VM: $r"
echo "paused VM: $(field "$r" error)"
echo ok
