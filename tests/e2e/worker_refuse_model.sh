#!/usr/bin/env bash
# A destination that cannot run the guest's vCPU model refuses at setup,
# before any memory moves, with the reason; the source keeps running. The
# case: a guest whose TSC runs 1% faster than this host's (the source's
# failpoint says so in its CPU_MODEL record) on a KVM without TSC scaling,
# such as kvm_pvm. Without the record that was found only when the state
# was applied, after all memory had moved. On a KVM that scales the TSC the
# rate is no reason to refuse: there the move must go through.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

# KVM_CHECK_EXTENSION (0xae03) of KVM_CAP_TSC_CONTROL (60) on /dev/kvm
scales=$(python3 -c 'import fcntl,os; fd=os.open("/dev/kvm", os.O_RDWR); print(1 if fcntl.ioctl(fd, 0xae03, 60) > 0 else 0)') ||
	fail "cannot ask /dev/kvm about TSC scaling"

note "the source describes a guest whose TSC runs 1% faster than this host's"
FERRY_FAILPOINTS="src.model_tsc_fast=error" start_src s 512M 1 "ws=128M rate=16"
wait_for "$T/s.log" 'FERRY-GUEST hb n=2 ' 30 || fail "no heartbeat"
next_port; start_dst d "$port"
migrate s "$port" || fail "migrate refused"
res=$(wait_mig s 120) || fail "move did not end: $res"
echo "$res"
if [ "$scales" = 1 ]; then
	[ "$(field "$res" stage)" = completed ] ||
		fail "this KVM scales the TSC, yet the move failed: $(field "$res" error)"
	echo "this KVM scales the TSC (KVM_CAP_TSC_CONTROL): the faster rate was accepted"
	echo ok
	exit 0
fi
[ "$(field "$res" stage)" = failed ] || fail "a guest with a 1% faster TSC was taken: $res"
why=$(field "$res" error)
echo "refused: $why"
# at setup (the SETUP reply), not when the state was loaded (READY)
echo "$why" | grep -q "the destination refused the VM: incompatible host: the guest's TSC runs at" ||
	fail "not refused at setup with the reason: $why"
echo "$why" | grep -q "KVM_CAP_TSC_CONTROL" || fail "the refusal does not say why the rate matters: $why"
# both rates named: the guest's is this host's plus 1% (both ends on this host)
guest=$(echo "$why" | grep -oE "runs at [0-9]+ kHz" | grep -oE "[0-9]+")
host=$(echo "$why" | grep -oE "this host's at [0-9]+ kHz" | grep -oE "[0-9]+")
[ -n "$guest" ] && [ -n "$host" ] || fail "the rates are not both named: $why"
[ "$guest" -eq $((host + host / 100)) ] || fail "rates $guest and $host kHz are not 1% apart"
# nothing of the guest's memory went: setup records only (a few KiB)
[ "$(field "$res" bytes_on_wire)" -lt 1000000 ] ||
	fail "$(field "$res" bytes_on_wire) bytes went before the refusal"
[ "$(field "$res" sent_pages)" -eq 0 ] || fail "$(field "$res" sent_pages) pages went before the refusal"
# the destination said why, and left
expect_exit "$PID_d" 5
grep -q "incompatible host: the guest's TSC runs at" "$T/d.err" || fail "destination log lacks the reason: $(cat "$T/d.err")"
# the guest runs on where it was
[ "$(state_of s)" = running ] || fail "source not running"
hb=$(last_hb "$T/s.log")
hb_continues "$T/s.log" "$hb" || fail "the source's guest stopped"
vmctl "$T/s.sock" '{"cmd":"stop"}' >/dev/null
echo ok
