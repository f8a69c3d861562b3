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

note "the console log and the worker's own log are cut at their size limits, nothing lost at the cut"
bg "$FERRY_BIN/ferry-vm" --name tl --kernel "$FERRY_GUEST" --memory 64M \
	--cmdline "ws=4M rate=0" --serial "$T/sl.log" --serial-max 256 --control "$T/cl.sock" \
	--log "$T/wl.log" --log-max 100
pid=$!
wait_for "$T/sl.log" 'FERRY-GUEST hb n=3 ' 60 || fail "no heartbeats with a small log limit"
# a signal makes the worker log a second line: past 100 bytes, a new file
kill -TERM $pid
wait $pid
grep -q 'VM tl running' "$T/wl.log.1" && grep -q 'signal 15: stopping' "$T/wl.log" ||
	fail "worker log not cut at its limit: $(head -c 600 "$T"/wl.log*)"
[ -f "$T/sl.log.1" ] || fail "no sl.log.1 after more than 256 bytes"
[ "$(stat -c %s "$T/sl.log")" -le 256 ] && [ "$(stat -c %s "$T/sl.log.1")" -le 256 ] ||
	fail "a log file grew past the limit: $(stat -c '%n %s' "$T"/sl.log*)"
# the two files end to end: heartbeats counted without a gap since the cut
cat "$T/sl.log.1" "$T/sl.log" | grep -ao 'hb n=[0-9]*' | awk -F= '
	NR > 1 && $2 != prev + 1 { print "gap after hb " prev; bad = 1 } { prev = $2 }
	END { exit bad }' || fail "a line was lost at the cut"
echo "console log: $(stat -c '%n %s bytes' "$T"/sl.log*); worker log: $(stat -c '%n %s bytes' "$T"/wl.log*)"
echo "ok"
