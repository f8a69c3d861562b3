#!/usr/bin/env bash
# san: yes
# Every transport moves a busy guest intact: tcp, compression (lz4 and
# zstd), multichannel, multichannel + compression. Throttling starts
# during a long pass 1 and is undone after a move and after a cancel. A
# corrupted or truncated stream —
# compressed, multichannel, or raw with per-page sums — ends the move with a clear error on both
# sides, the destination never runs, the source keeps running. migrate-set
# changes a running move's bandwidth limit (as migrate-status reports it).
# A move that switches over while the throttle holds the vCPUs lands
# intact: the throttle stops before the real pause (left running, it
# resumed the guest in the middle of the stop-and-copy). A bandwidth limit
# holds for a multichannel move's channels together.
# The serial logs of the hosts the guest ran on read as one console.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
proxy=$(dirname "$0")/../tools/mangle_proxy.py
cur=s0
start_src s0 512M 2 "ws=256M rate=128 cpus=2"
wait_for "$T/s0.log" 'FERRY-GUEST hb n=2 ' 30 || fail "guest not heartbeating"
vmctl "$T/s0.sock" '{"cmd":"migrate-set","bandwidth_mibps":5}' | grep -q '"ok":false' ||
	fail "migrate-set accepted with no migration"
i=0
move() { # move EXTRA-JSON: one move of the current VM to a new destination
	i=$((i + 1)); next_port; start_dst d$i "$port"
	migrate $cur "$port" "$1" || fail "migrate $1 refused"
	res=$(wait_mig $cur 90) || fail "move $1 did not end"
	[ "$(field "$res" stage)" = completed ] || fail "move $1: $res"
	verify d$i >/dev/null
	[ "$(field "$res" throttle_pct)" = 0 ] || fail "throttle not undone after the move"
	vmctl "$T/$cur.sock" '{"cmd":"stop"}' >/dev/null
	echo "$1: $(field "$res" transport), $(field "$res" elapsed_ms) ms, $(field "$res" downtime_ms) ms down, raw $(field "$res" pages_raw) zero $(field "$res" pages_zero) compressed $(field "$res" pages_compressed)"
	cur=d$i
}
move ',"transport":"tcp"'
move ',"transport":"compression","codec":"lz4"'
move ',"transport":"compression","codec":"zstd"'
move ',"transport":"multichannel","channels":4'
move ',"transport":"multichannel","channels":3,"compress":true'
# A destination from before per-page sums: the source copies raw runs
# before sending them (one sum per run), and the move is as good.
note "destination without per-page sums"
prev=$cur
export FERRY_FAILPOINTS="dst.setup_pre_page_sums=error"
move ',"transport":"tcp"'
unset FERRY_FAILPOINTS
grep -q "predates per-page sums" "$T/$prev.err" || fail "the source did not fall back to copying runs"
! grep -q "predates per-page sums" "$T/s0.err" || fail "a current destination was taken for an old one"
# every transport hands the console over byte for byte
wait_for "$T/$cur.log" 'FERRY-GUEST hb n=[0-9]+ ' 10 || fail "no heartbeat after the last move"
python3 "$(dirname "$0")/../lib/console_seams.py" "$T/s0.log" $(for k in $(seq 1 $i); do echo "$T/d$k.log"; done) ||
	fail "the console is broken at a switch-over"

note "throttling is undone after a cancel"
next_port; start_dst c1 "$port"
migrate $cur "$port" ',"transport":"tcp","bandwidth_mibps":24,"max_passes":100' || fail "migrate refused"
bw_now() { field "$(vmctl "$T/$cur.sock" '{"cmd":"migrate-status"}')" bandwidth_mibps; }
[ "$(bw_now)" = 24 ] || fail "limit 24 not reported: $(bw_now)"
vmctl "$T/$cur.sock" '{"cmd":"migrate-set","bandwidth_mibps":12}' | grep -q '"ok":true' || fail "migrate-set refused"
[ "$(bw_now)" = 12 ] || fail "migrate-set 12 not applied: $(bw_now)"
for bad in '"bandwidth_mibps":-1' '"bandwidth_mibps":"8"' '"bandwith_mibps":8' ''; do
	vmctl "$T/$cur.sock" "{\"cmd\":\"migrate-set\"${bad:+,$bad}}" | grep -q '"ok":false' ||
		fail "migrate-set accepted {$bad}"
done
[ "$(bw_now)" = 12 ] || fail "a refused migrate-set changed the limit: $(bw_now)"
echo "migrate-set: limit 24 -> 12 MiB/s while moving"
for _ in $(seq 200); do
	st=$(vmctl "$T/$cur.sock" '{"cmd":"migrate-status"}')
	t=$(field "$st" throttle_pct)
	[ "${t:-0}" -gt 0 ] && break; sleep 0.2
done
[ "${t:-0}" -gt 0 ] || fail "the move never throttled the guest"
# Pass 1 alone takes ~10 s at 24 MiB/s: the throttle must not wait for its end.
[ "$(field "$st" pass)" = 1 ] || fail "throttled only in pass $(field "$st" pass), not during pass 1"
echo "throttled to $t% during pass 1 while not converging"
vmctl "$T/$cur.sock" '{"cmd":"migrate-cancel"}' | grep -q '"ok":true' || fail "cancel refused"
res=$(wait_mig $cur 30); [ "$(field "$res" stage)" = cancelled ] || fail "cancel: $res"
[ "$(field "$res" throttle_pct)" = 0 ] || fail "throttle not undone after cancel"
# Back at full pace: 128 MiB/s again within a few seconds.
sleep 3
m1=$(grep -oE 'hb n=[0-9]+ mib=[0-9]+' "$T/$cur.log" | tail -n1 | grep -oE '[0-9]+$'); sleep 2
m2=$(grep -oE 'hb n=[0-9]+ mib=[0-9]+' "$T/$cur.log" | tail -n1 | grep -oE '[0-9]+$')
[ $((m2 - m1)) -ge 200 ] || fail "guest still slow after cancel: $((m2 - m1)) MiB in 2 s"
echo "after cancel: $((m2 - m1)) MiB dirtied in 2 s"

corrupt() { # corrupt NAME EXTRA-JSON MODE OFFSET CONN REGEX
	local name=$1 extra=$2 mode=$3 off=$4 conn=$5 re=$6 pp
	next_port; start_dst x$name "$port"; pp=$port; next_port
	python3 "$proxy" "$port" "$pp" "$mode" "$off" "$conn" >"$T/proxy.$name" 2>&1 & _pids+=($!)
	wait_for "$T/proxy.$name" ready 10 || fail "proxy did not start"
	migrate $cur "$port" "$extra" || fail "migrate refused"
	res=$(wait_mig $cur 60) || fail "$name: move did not end"
	[ "$(field "$res" stage)" = failed ] || fail "$name: expected failed, got $res"
	eval "dpid=\$PID_x$name"
	for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$dpid" 2>/dev/null && fail "$name: destination still alive"
	wait "$dpid"; rc=$?
	[ $rc -eq 5 ] || fail "$name: destination exited $rc (a crash?), expected 5"
	grep -qE "$re" "$T/x$name.err" || fail "$name: unclear destination error: $(tail -n2 "$T/x$name.err")"
	[ "$(state_of $cur)" = running ] || fail "$name: source not running"
	echo "$name: source says '$(field "$res" error)'; destination: $(grep -m1 -oE 'incoming migration failed: .*' "$T/x$name.err" | cut -c1-150)"
}
note "corrupted and truncated streams"
corrupt flipmem ',"transport":"compression","codec":"zstd"' flip 3000000 0 "corrupt stream|does not decode|protocol error"
corrupt cutmc ',"transport":"multichannel","channels":3' cut 1500000 2 "truncated|memory channel"
corrupt cutmain ',"transport":"compression"' cut 5000000 0 "truncated|closed"
verify $cur >/dev/null
# Raw runs from a running guest carry a sum per page, and a page failing
# it is held as torn until its logged re-send: damage to a page the busy
# guest writes again is repaired by that copy (a move that completes with
# every page verified is right then). To see the damage caught, a guest
# whose working set was written once and is now still (incompressible:
# compression sends it raw too); the move fails when the state ends.
busy=$cur
start_src f0 256M 1 "ws=64M rate=once"
wait_for "$T/f0.log" 'FERRY-GUEST hb n=[0-9]+ mib=64 ' 30 || fail "guest f0 did not fill its working set"
cur=f0
corrupt flipraw ',"transport":"tcp"' flip 40000000 0 "corrupt stream"
grep -qE "torn|page sums" "$T/xflipraw.err" || fail "flipraw: the damage was not found by the page sums"
corrupt flipmc ',"transport":"multichannel","channels":3,"compress":true' flip 10000000 1 "corrupt stream|does not decode|memory channel|protocol error"
verify f0 >/dev/null
cur=$busy

note "a throttled move switches over and lands intact"
vmctl "$T/f0.sock" '{"cmd":"stop"}' >/dev/null
start_src t0 128M 1 "ws=32M rate=max"
wait_for "$T/t0.log" 'FERRY-GUEST hb n=2 ' 30 || fail "guest t0 not heartbeating"
next_port; start_dst t1 "$port"
# 32 MiB rewritten all the time behind 32 MiB/s: throttled from pass 1 on,
# switched over after pass 3 with the throttle still on
migrate t0 "$port" ',"transport":"tcp","bandwidth_mibps":32,"max_passes":3,"verify_memory":true' ||
	fail "migrate refused"
res=$(wait_mig t0 60) || fail "throttled move did not end"
grep -q 'vCPUs throttled to' "$T/t0.err" || fail "the move never throttled t0"
[ "$(field "$res" stage)" = completed ] || fail "throttled move: $(field "$res" stage): $(field "$res" error)"
[ "$(field "$res" memory_verified)" = True ] || fail "throttled move: memory not verified"
verify t1
echo "throttled move: $(grep -o 'vCPUs throttled to [0-9]*%' "$T/t0.err" | tail -n1), $(field "$res" elapsed_ms) ms, $(field "$res" downtime_ms) ms down"

note "a bandwidth limit holds for all channels together"
# the limit is the move's, shared by its 4 channels (each taking the whole
# of it sent 4 times as fast)
next_port; start_dst t2 "$port"
migrate t1 "$port" ',"transport":"multichannel","channels":4,"bandwidth_mibps":24,"max_passes":2' ||
	fail "migrate refused"
res=$(wait_mig t1 60) || fail "capped multichannel move did not end"
[ "$(field "$res" stage)" = completed ] || fail "capped multichannel move: $res"
r1=$(field "$res" pass1_mibps)
python3 -c 'import sys; r = float(sys.argv[1]); sys.exit(not 0 < r <= 30)' "$r1" ||
	fail "pass 1 ran at $r1 MiB/s under a 24 MiB/s limit over 4 channels"
verify t2
echo "capped multichannel move: pass 1 at $r1 MiB/s (limit 24)"
echo ok
