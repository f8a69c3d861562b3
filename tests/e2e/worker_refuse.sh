#!/usr/bin/env bash
# A destination that cannot host the VM refuses at setup, before any memory
# moves, with the specific reason; the source keeps running. Cases: CPU
# feature the destination lacks (host CPU mask), not enough memory, disk not
# reachable from the destination, a destination prepared for another
# size, unreachable destination, an option the worker does not know, and a
# VM that is not running.
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

note "the same over keyed, encrypted channels: the destination's reason, not a channel's reset"
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; echo "$KEY" >"$T/mkey") # the worker removes it once read
next_port; start_dst c1k "$port" --host-cpu-mask "-x2apic" --migration-key-file "$T/mkey"
migrate s "$port" ",\"key\":\"$KEY\",\"encrypt\":true,\"transport\":\"multichannel\",\"channels\":4" ||
	fail "migrate refused"
refused s "cpu over 4 channels" "incompatible CPU.*x2apic"

note "a vCPU whose own CPUID offers what the record does not: refused before it runs"
# The source hides x2apic, so its CPUID record passes the destination's
# mask; the failpoint makes the last vCPU's section show it all the same.
FERRY_FAILPOINTS="src.vcpu_cpuid_x2apic=error" start_src v2 128M 2 "ws=8M rate=16 cpus=2" --cpu-mask -x2apic
next_port; start_dst c4 "$port" --host-cpu-mask "-x2apic"
migrate v2 "$port" || fail "migrate refused"
res=$(wait_mig v2 30) || fail "vcpu cpuid: move did not end"
[ "$(field "$res" stage)" = failed ] || fail "vcpu cpuid: a vCPU offering a masked feature was accepted: $res"
why=$(field "$res" error)
echo "$why" | grep -qE "vCPU 1.*incompatible CPU.*x2apic" || fail "vcpu cpuid: unclear error: $why"
[ "$(state_of v2)" = running ] || fail "vcpu cpuid: source not running"
echo "vcpu cpuid: $why"
vmctl "$T/v2.sock" '{"cmd":"stop"}' >/dev/null

note "a state file whose guest sees a feature this host's mask hides is not restored"
start_src r 64M 1 "ws=4M rate=0"
vmctl "$T/r.sock" '{"cmd":"save","path":"'"$T"'/r.state"}' | grep -q '"ok":true' || fail "save"
vmctl "$T/r.sock" '{"cmd":"stop"}' >/dev/null
rc=0; timeout 30 "$FERRY_BIN/ferry-vm" --restore "$T/r.state" --serial "$T/r2.log" --control "$T/r2.sock" \
	--host-cpu-mask "-x2apic" 2>"$T/r2.err" || rc=$?
[ "$rc" -ne 0 ] || fail "restore: a guest that sees x2apic was restored under -x2apic"
grep -qE "vCPU 0.*incompatible CPU.*x2apic" "$T/r2.err" || fail "restore: unclear error: $(cat "$T/r2.err")"
echo "restore: $(grep -E "incompatible" "$T/r2.err" | head -1)"
bg "$FERRY_BIN/ferry-vm" --restore "$T/r.state" --serial "$T/r3.log" --control "$T/r3.sock" 2>"$T/r3.err"
wait_for "$T/r3.log" "FERRY-GUEST hb" 30 || fail "restore without the mask failed: $(cat "$T/r3.err")"
vmctl "$T/r3.sock" '{"cmd":"stop"}' >/dev/null

note "a destination admitted for another size (its ferryd counted that memory)"
next_port; start_dst c5 "$port" --memory 128M --vcpus 1
migrate s "$port" || fail "migrate refused"
refused s "size" "prepared for a VM of 128 MiB and 1 vCPU\(s\), the stream carries 256 MiB and 1 vCPU"

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

note "an option this ferry-vm does not know is refused, never ignored"
r=$(vmctl "$T/s.sock" '{"cmd":"migrate","uri":"127.0.0.1:1","post_copy":true}')
echo "$r" | grep -q "no such option.*unknown field 'post_copy'" || fail "unknown option: $r"
[ "$(stage_of s)" != migrating ] || fail "unknown option: a move started"
echo "unknown option: $(field "$r" error)"

note "a VM that is not running cannot be live-migrated"
vmctl "$T/s.sock" '{"cmd":"pause"}' >/dev/null
r=$(vmctl "$T/s.sock" '{"cmd":"migrate","uri":"127.0.0.1:1"}')
echo "$r" | grep -q 'only a running VM' || fail "paused VM: $r"
echo "paused VM: $(field "$r" error)"
echo ok
