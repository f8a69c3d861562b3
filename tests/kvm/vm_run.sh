#!/usr/bin/env bash
# The test guest runs and heartbeats on 1 and on 4 vCPUs under ferry-vm.
# san: yes
. "$(dirname "$0")/../lib/common.sh"
need_kvm
for n in 1 4; do
	note "test guest, $n vCPU(s)"
	bg "$FERRY_BIN/ferry-vm" --name t$n --kernel "$FERRY_GUEST" --memory 128M --vcpus $n \
		--cmdline "ws=16M rate=16 cpus=$n" --serial "$T/s$n.log" --control "$T/c$n.sock"
	pid=$!
	wait_for "$T/s$n.log" 'FERRY-GUEST ready' 60 || fail "guest on $n vCPUs never got ready"
	grep -q "cpus=$n" "$T/s$n.log" || fail "guest did not see $n vCPUs"
	wait_for "$T/s$n.log" 'FERRY-GUEST hb n=2 ' 30 || fail "no heartbeats on $n vCPUs"
	vmctl "$T/c$n.sock" '{"cmd":"status"}' | grep -q '"state":"running"' || fail "status not running"
	vmctl "$T/c$n.sock" '{"cmd":"verify"}' | tee "$T/v$n" | grep -q '"verified":true' || { cat "$T/v$n"; fail "page check failed"; }
	vmctl "$T/c$n.sock" '{"cmd":"stop"}' >/dev/null
	wait $pid; rc=$?
	[ $rc -eq 0 ] || fail "ferry-vm exited $rc after stop"
done
echo "ok"
