#!/usr/bin/env bash
# san: yes
# Post-copy: a guest rewriting 64 MiB as fast as it can behind a 64 MiB/s
# limit never converges; with "postcopy" the move switches over after
# pass 1 and the dirty pages follow while the guest runs on the
# destination, which faults on the ones it touches first (userfaultfd) and
# asks for them. Every page must verify there, on one stream and on
# multichannel with compression: the first with the destination's stale
# copies mapped out and pages mapped in whole (minor faults), the second as
# on a kernel without them (freed, copied in; failpoint). A guest that
# converges moves as before.
# Then what post-copy costs when it breaks: the source killed midway (the
# destination stops the guest and exits 5, never running on zeros), the
# destination killed midway (the source's copy is stale: "lost", and it
# refuses to resume). Last, the refusals: verify_memory with postcopy, and
# a destination that cannot take post-copy (failpoint), where the VM stays.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

# busy TAG PORT: a guest that outruns a 64 MiB/s link, and its destination
busy() {
	start_src "$1" 256M 1 "ws=64M rate=max"
	wait_for "$T/$1.log" 'FERRY-GUEST hb n=2 ' 30 || fail "guest $1 not heartbeating"
}

i=0
for opts in ',"transport":"tcp"' ',"transport":"multichannel","compress":true,"channels":4'; do
	i=$((i + 1))
	busy s$i
	[ $i = 2 ] && export FERRY_FAILPOINTS="dst.postcopy_no_minor=error"
	next_port; start_dst d$i "$port"
	unset FERRY_FAILPOINTS
	note "post-copy, ${opts#,}"
	migrate s$i "$port" "$opts"',"bandwidth_mibps":64,"postcopy":true' || fail "migrate refused"
	res=$(wait_mig s$i 60) || fail "the move did not end: $res"
	[ "$(field "$res" stage)" = completed ] || fail "move: $res"
	pc=$(python3 -c 'import json,sys; p=json.loads(sys.argv[1])["migration"]["postcopy"]; print(p["used"], p["pages"], p["left"], p["requested"], p["ms"])' "$res")
	read -r used pages left asked ms <<<"$pc"
	[ "$used" = True ] && [ "$pages" -gt 1000 ] && [ "$left" -eq 0 ] ||
		fail "post-copy not used as expected: $pc"
	grep -q "switching to post-copy after pass 1" "$T/s$i.err" ||
		fail "no switch to post-copy in the source's log: $(grep -o 'switching[^;]*' "$T/s$i.err")"
	grep -q "post-copy: $pages pages came" "$T/d$i.err" || fail "destination log: $(tail -3 "$T/d$i.err")"
	way="mapped out"; [ $i = 2 ] && way=dropped
	grep -o "their stale copies $way in [0-9.]* ms" "$T/d$i.err" || fail "stale copies not $way: $(grep 'stale copies' "$T/d$i.err")"
	echo "post-copy: $pages pages in $ms ms after the switch, $asked asked for; downtime $(field "$res" downtime_ms) ms"
	rx_matches d$i "$res"
	verify d$i
	hb_continues "$T/d$i.log" "$(last_hb "$T/s$i.log")" || fail "d$i: heartbeat stopped after the move"
	vmctl "$T/d$i.sock" '{"cmd":"stop"}' >/dev/null
done

note "a guest that converges moves without post-copy"
start_src q 128M 1 "ws=8M rate=1"
wait_for "$T/q.log" 'FERRY-GUEST hb n=2 ' 30 || fail "guest q not heartbeating"
next_port; start_dst qd "$port"
migrate q "$port" ',"transport":"tcp","postcopy":true' || fail "migrate refused"
res=$(wait_mig q 60) || fail "the move did not end"
[ "$(field "$res" stage)" = completed ] || fail "move: $res"
echo "$res" | grep -q '"postcopy":{"used":false' || fail "post-copy used for a converging guest: $res"
verify qd
vmctl "$T/qd.sock" '{"cmd":"stop"}' >/dev/null

# midway TAG: a busy guest moved with a slow post-copy sweep (200 ms a
# chunk), to destination TAGd, half a second into its post-copy
midway() {
	export FERRY_FAILPOINTS="src.postcopy_chunk=delay(200)"
	busy "$1"
	unset FERRY_FAILPOINTS
	next_port; start_dst "$1d" "$port"
	migrate "$1" "$port" ',"transport":"tcp","bandwidth_mibps":64,"postcopy":true' || fail "migrate refused"
	for _ in $(seq 100); do [ "$(stage_of "$1")" = postcopy ] && break; sleep 0.1; done
	[ "$(stage_of "$1")" = postcopy ] || fail "never in post-copy: $(stage_of "$1")"
	sleep 0.5
}

note "the source dies in post-copy: the destination stops the guest"
midway k
left=$(field "$(vmctl "$T/kd.sock" '{"cmd":"status"}')" postcopy_left)
[ "${left:-0}" -gt 0 ] || fail "the destination owes no pages mid post-copy: $left"
kill -9 "$PID_k"
expect_exit "$PID_kd" 5
grep -q "post-copy broke with [0-9]* of [0-9]* pages still on the source" "$T/kd.err" ||
	fail "no reason in the destination's log: $(tail -3 "$T/kd.err")"
echo "destination: $(grep -o 'post-copy broke with [0-9]* of [0-9]* pages' "$T/kd.err")"

note "the destination dies in post-copy: the source's copy is lost, never resumed"
midway l
kill -9 "$PID_ld"
res=$(wait_mig l 30) || fail "the move did not end after its destination died: $res"
[ "$(field "$res" stage)" = lost ] || fail "expected stage lost: $res"
field "$res" error | grep -q "post-copy broke with" || fail "no reason: $res"
r=$(vmctl "$T/l.sock" '{"cmd":"resume"}')
echo "$r" | grep -q '"ok":false' || fail "a lost VM's stale copy resumed: $r"
[ "$(state_of l)" != running ] || fail "the source runs its stale copy"
vmctl "$T/l.sock" '{"cmd":"stop"}' >/dev/null
expect_exit "$PID_l" 0

note "refusals"
start_src v 128M 1 "ws=8M rate=1"
wait_for "$T/v.log" 'FERRY-GUEST hb n=2 ' 30 || fail "guest v not heartbeating"
r=$(vmctl "$T/v.sock" '{"cmd":"migrate","uri":"127.0.0.1:1","postcopy":true,"verify_memory":true}')
echo "$r" | grep -q "verify_memory and postcopy do not go together" || fail "verify_memory + postcopy: $r"
export FERRY_FAILPOINTS="dst.setup_no_postcopy=error"
next_port; start_dst vd "$port"
unset FERRY_FAILPOINTS
migrate v "$port" ',"postcopy":true' || fail "migrate refused"
res=$(wait_mig v 30) || fail "the move did not end"
[ "$(field "$res" stage)" = failed ] || fail "expected failed: $res"
field "$res" error | grep -q "cannot take a post-copy move" || fail "reason: $res"
[ "$(state_of v)" = running ] || fail "the VM does not run on after the refusal"
vmctl "$T/v.sock" '{"cmd":"stop"}' >/dev/null
echo ok
