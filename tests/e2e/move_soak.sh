#!/bin/bash
# san: yes
# Soak: one busy VM moved A -> B -> A ... through both ferryds, 20 moves.
# ferryd is a long-lived daemon, so what one move costs it must be given
# back: after the warm-up round trips its open file descriptors are the
# same after every round trip, its memory (RSS) grows by less than 2 MiB
# over the rest (it keeps its last 64 finished moves in memory, a few KiB
# each), and no worker is left behind (one ferry-vm, the VM's own, on the
# whole machine for this test). Under ASan both ferryds are stopped at the
# end and must exit cleanly: LeakSanitizer finds no leak. The guest is verified page by page
# after every round trip and its heartbeat never goes back.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

ROUNDS=10 # round trips
WARM=2    # round trips before the baseline (first-use allocations)

two_hosts 22900
new_vm A g1 64M "ws=8M rate=16"

fds() { ls "/proc/${HOST_PID[$1]}/fd" | wc -l; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/${HOST_PID[$1]}/status"; }
workers() { pgrep -f "ferry-vm .*$T/" | wc -l; }

move() { # FROM TO
	on "$1" move-vm -n g1 -d "$(port_of "$2")" --json >"$T/move.out" 2>&1 ||
		{ cat "$T/move.out"; fail "move $1 -> $2 failed"; }
	wait_state "$2" g1 running 30 || fail "g1 not running on $2"
	# The source's worker exits once the destination confirmed; give it
	# a moment before counting.
	for _ in $(seq 50); do [ "$(workers)" = 1 ] && break; sleep 0.1; done
	[ "$(workers)" = 1 ] || { pgrep -af ferry-vm; fail "after $1 -> $2: $(workers) workers, want 1"; }
}

hb_prev=0
for i in $(seq 1 $ROUNDS); do
	move A B
	move B A
	# the guest's own counter, read from its memory by the page checker
	out=$(vmctl "$(vm_sock A g1)" '{"cmd":"verify"}')
	echo "$out" | grep -q '"verified":true' || { echo "$out"; fail "round $i: page check"; }
	hb=$(echo "$out" | json_get heartbeat)
	[ "$hb" -ge "$hb_prev" ] || fail "round $i: heartbeat went back from $hb_prev to $hb"
	hb_prev=$hb
	line="round $i: A fds $(fds A) rss $(rss_kib A) KiB, B fds $(fds B) rss $(rss_kib B) KiB, heartbeat $hb"
	echo "$line"
	if [ "$i" = "$WARM" ]; then
		FD0_A=$(fds A) FD0_B=$(fds B) RSS0_A=$(rss_kib A) RSS0_B=$(rss_kib B)
	elif [ "$i" -gt "$WARM" ]; then
		[ "$(fds A)" = "$FD0_A" ] || fail "round $i: A's ferryd holds $(fds A) fds, $FD0_A after round $WARM"
		[ "$(fds B)" = "$FD0_B" ] || fail "round $i: B's ferryd holds $(fds B) fds, $FD0_B after round $WARM"
	fi
done
for h in A B; do
	eval "r0=\$RSS0_$h"
	grow=$(($(rss_kib $h) - r0))
	echo "ferryd $h: RSS grew $grow KiB over rounds $((WARM + 1))..$ROUNDS"
	# ASan's own allocator and quarantine make RSS meaningless there;
	# its leak check below stands in
	[ -n "${ASAN_OPTIONS:-}" ] || [ "$grow" -lt 2048 ] ||
		fail "ferryd $h grew $grow KiB over $((2 * (ROUNDS - WARM))) moves"
done
on A migration history | grep -c "g1 .*out .*completed" | grep -qx "$ROUNDS" || {
	on A migration history
	fail "A's history does not list $ROUNDS completed outgoing moves"
}
for h in A B; do
	stop_host $h
	rc=$?
	[ "$rc" = 0 ] || { tail -30 "$T/$h.ferryd.log"; fail "ferryd $h exited $rc on SIGTERM (a sanitizer report?)"; }
done
echo "PASS: $((2 * ROUNDS)) moves; ferryd fds flat, RSS growth within 2 MiB, no worker left, clean exits"
