#!/usr/bin/env bash
# Ping-pong: the same busy VM moves A->B->A... 20 times; every page is
# verified after every move and the heartbeat never goes back; the 21
# serial logs end to end are one unbroken console (tests/lib/console_seams.py).
# san: yes
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
start_src h0 256M 2 "ws=64M rate=64 cpus=2"
cur=h0
for i in $(seq 1 20); do
	next_port; nxt=h$i
	start_dst $nxt "$port"
	hb=$(last_hb "$T/$cur.log")
	migrate $cur "$port" || fail "move $i refused"
	res=$(wait_mig $cur 60) || fail "move $i did not end"
	[ "$(field "$res" stage)" = completed ] || fail "move $i: $(field "$res" error)"
	verify $nxt >/dev/null
	hb2=$(vmctl "$T/$nxt.sock" '{"cmd":"verify"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["heartbeat"])')
	[ "$hb2" -ge "${hb:-0}" ] || fail "move $i: heartbeat went back from $hb to $hb2"
	vmctl "$T/$cur.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_$cur 4
	echo "move $i: $(field "$res" elapsed_ms) ms total, $(field "$res" downtime_ms) ms down, heartbeat $hb -> $hb2"
	cur=$nxt
done
verify $cur
wait_for "$T/$cur.log" 'FERRY-GUEST hb n=[0-9]+ ' 10 || fail "no heartbeat after the last move"
python3 "$(dirname "$0")/../lib/console_seams.py" $(for i in $(seq 0 20); do echo "$T/h$i.log"; done) ||
	fail "the console is broken at a switch-over"
vmctl "$T/$cur.sock" '{"cmd":"stop"}' >/dev/null
