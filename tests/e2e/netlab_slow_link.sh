#!/usr/bin/env bash
# A move over a slow physical link, not ferry's own bandwidth limit: in the
# test lab, host a's uplink is shaped to 200 Mbit/s (tc tbf; the kernel
# here has no netem) and a 256 MiB guest moves to host b across the
# switch with the default transport. Checks, in turn:
#  - random pages, dirtied faster than the link drains them: the move
#    measures the link (the throughput it reports is that of the shaped
#    link, not of memory or loopback), throttles the vCPUs to converge,
#    undoes the throttle, and every page arrives;
#  - compressible pages: the adaptive codec compresses (most pages go
#    compressed, the wire carries under 3/4 of their size; lz4 makes
#    ~0.55 of this guest's text). With the send queue as deep as on a fast
#    link, writes returned at memory speed and the codec, timing those,
#    sent every page raw here;
#  - no pass reports an impossible link rate (a short pass used to count
#    the last pass's queued bytes against its own and came out negative).
# Only outcomes are checked, never times.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
. "$(dirname "$0")/../lib/netlab.sh"
need_kvm
need_root
need_netlab tc
P=fs$$
lab_up $P
trap 'cleanup; lab_down' EXIT
LINK_MIBPS=23.8 # 200 Mbit/s
ip netns exec ${P}a tc qdisc add dev ${P}ua root tbf rate 200mbit burst 256kb latency 50ms ||
	skip "cannot shape a link here (tc tbf)"

# move TAG CMDLINE: boot a guest on a, move it to b over the shaped link;
# leaves the final status in $res.
move() {
	local tag=$1 cmd=$2 r hb
	ip netns exec ${P}a "$FERRY_BIN/ferry-vm" --name $tag --kernel "$FERRY_GUEST" --memory 256M \
		--cmdline "$cmd" --serial "$T/$tag-a.log" --control "$T/$tag-a.sock" 2>"$T/$tag-a.err" &
	_pids+=($!)
	# By the third heartbeat the guest has written its whole working set.
	wait_for "$T/$tag-a.log" 'FERRY-GUEST hb n=3 ' 60 || fail "$tag: no heartbeat"
	next_port
	ip netns exec ${P}b "$FERRY_BIN/ferry-vm" --incoming 10.77.0.2:$port --serial "$T/$tag-b.log" \
		--control "$T/$tag-b.sock" 2>"$T/$tag-b.err" &
	_pids+=($!)
	for _ in $(seq 50); do [ -S "$T/$tag-b.sock" ] && break; sleep 0.1; done
	r=$(vmctl "$T/$tag-a.sock" '{"cmd":"migrate","uri":"10.77.0.2:'$port'"}')
	echo "$r" | grep -q '"ok":true' || fail "$tag: migrate: $r"
	res=$(wait_mig $tag-a 120) || fail "$tag: the move did not end: $res"
	[ "$(field "$res" stage)" = completed ] || fail "$tag: $(field "$res" error)"
	verify $tag-b
	# The move takes seconds: the source's heartbeats went on during it.
	hb=$(last_hb "$T/$tag-a.log")
	hb_continues "$T/$tag-b.log" "$hb" || fail "$tag: heartbeat did not continue on b"
	# Every pass's link figure is a rate this link can carry (with room
	# for the shaper's burst): none is the underflow's 10^15 MiB/s.
	grep -oE 'pass [0-9]+ sent, [0-9]+ pages dirty, [0-9]+ MiB/s link' "$T/$tag-a.err" |
		awk -v max=$LINK_MIBPS '{ if ($(NF-2) + 0 > 4 * max) { print; bad = 1 } } END { exit bad }' ||
		fail "$tag: a pass reported more than 4x the link's rate"
	echo "$tag: $(field "$res" elapsed_ms) ms, $(field "$res" pass) passes," \
		"link $(field "$res" throughput_mibps | cut -c1-5) MiB/s, $(field "$res" bytes_on_wire) bytes on the wire," \
		"pages raw $(field "$res" pages_raw) / compressed $(field "$res" pages_compressed)"
	vmctl "$T/$tag-a.sock" '{"cmd":"stop"}' >/dev/null
	vmctl "$T/$tag-b.sock" '{"cmd":"stop"}' >/dev/null
}

# within F X: X is within a factor F of the shaped link's rate
within() { python3 -c 'import sys; f, x, l = map(float, sys.argv[1:]); sys.exit(0 if l / f <= x <= l * f else 1)' "$1" "$2" $LINK_MIBPS; }

note "random pages, 32 MiB dirtied at 48 MiB/s: faster than the link"
move rnd "ws=32M rate=48"
within 2 "$(field "$res" pass1_mibps)" || fail "pass 1 measured $(field "$res" pass1_mibps) MiB/s on a $LINK_MIBPS MiB/s link"
grep -q 'not converging.*vCPUs throttled to' "$T/rnd-a.err" || fail "the throttle never engaged: $(grep 'pass' "$T/rnd-a.err")"
[ "$(field "$res" throttle_pct)" = 0 ] || fail "throttle left at $(field "$res" throttle_pct)% after the move"

note "compressible pages, the same working set and rate"
move txt "ws=32M rate=48 data=text"
python3 -c 'import json, sys
m = json.loads(sys.argv[1])["migration"]
pages = m["pages_raw"] + m["pages_compressed"]
sys.exit(0 if m["pages_compressed"] > pages // 2 and m["bytes_on_wire"] < pages * 4096 * 3 // 4 else 1)' "$res" ||
	fail "compressible pages were not compressed over a slow link: $res"
echo ok
