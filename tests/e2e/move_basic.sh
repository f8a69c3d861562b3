#!/bin/bash
# san: yes
# Live migration through the whole system: two ferryd hosts on loopback,
# a running test guest moved A -> B with `ferry move-vm` (JSON events),
# then back B -> A on a pseudo-terminal (progress bar and summary). After
# each move: the guest checker proves every page intact on the new host,
# the heartbeat counter continues there, the definition moved, and both
# hosts' histories record it. The first move forces the zstd codec (the
# source worker must report it) onto a host that pre-allocates incoming
# memory (host set --prealloc on): only the memory the guest uses. A third
# move, multichannel with a codec given, must compress, once B's CPU
# baseline refused it and was cleared.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm

two_hosts 21100

note "start g1 on A (128 MiB, dirtying 16 MiB at 16 MiB/s)"
new_vm A g1 128M "ws=16M rate=16"
HB0=$(last_hb "$(serial_of A g1)")

note "a codec that does not exist is a usage error"
on A move-vm -n g1 -d "$(port_of B)" --codec lzma 2>"$T/err" && fail "--codec lzma accepted"
grep -q "use auto, lz4 or zstd" "$T/err" || fail "unclear --codec error: $(cat "$T/err")"

note "B reserves incoming VMs' memory up front (host set --prealloc on)"
on B host set --prealloc on >/dev/null || fail "host set --prealloc on"
on B host info | grep -qE "Pre-allocate: +on" || fail "host info does not show prealloc on"

note "move g1 A -> B (JSON events), zstd forced"
on A move-vm -n g1 -d "$(port_of B)" --json --codec zstd >"$T/events" 2>"$T/err" ||
	{ cat "$T/events" "$T/err" "$T/A.ferryd.log" "$T/B.ferryd.log"; fail "move-vm A->B"; }
cat "$T/events"
tail -n1 "$T/events" | grep -q '"event":"done","completed":1,"failed":0' || fail "no done event"
grep -q '"event":"completed"' "$T/events" || fail "no completed event"
grep -q '"stage":"precopy"\|"stage":"completed"' "$T/events" || fail "no stage in events"

# Only what the guest uses (its 16 MiB working set and a little more), as
# the source's worker listed it in migration.prepare, not all 128 MiB.
res=$(grep -oE "reserved [0-9]+ MiB for the incoming VM .*\(the memory its source uses\)" "$T/B/logs/g1.log") ||
	fail "B's incoming worker did not reserve the source's memory: $(cat "$T/B/logs/g1.log")"
echo "B: $res"
mib=$(echo "$res" | awk '{print $2}')
[ "$mib" -ge 16 ] && [ "$mib" -lt 64 ] || fail "B reserved $mib MiB, expected the ~16-20 MiB the guest uses"
on B host set --prealloc off >/dev/null || fail "host set --prealloc off"

note "g1 now on B only, intact, heartbeat continuing"
[ "$(vm_state B g1)" = running ] || fail "g1 not running on B"
[ "$(vm_state A g1)" = absent ] || fail "g1 still defined on A"
[ -f "$T/B/vms/g1.json" ] || fail "definition not on B"
[ -e "$T/B/run/g1.incoming" ] && fail "incoming marker left on B"
[ -e "$T/A/vms/g1.json" ] && fail "definition left on A"
verify_vm B g1 || fail "page check on B"
wait_for "$(serial_of B g1)" "FERRY-GUEST hb" 10 || fail "no heartbeat on B"
HB1=$(last_hb "$(serial_of B g1)")
[ "$HB1" -ge "$HB0" ] || fail "heartbeat went back: $HB0 on A, $HB1 on B"
sleep 2
HB2=$(last_hb "$(serial_of B g1)")
[ "$HB2" -gt "$HB1" ] || fail "heartbeat stopped on B at $HB1"
echo "heartbeat: $HB0 on A before, $HB1 -> $HB2 on B"
# A keeps the logs of the VM that left it (its worker's log and its serial
# console); laid end to end with B's, the consoles read as one
[ -s "$T/A/logs/g1.log" ] || fail "A removed the worker log of the VM that moved away"
python3 "$(dirname "$0")/../lib/console_seams.py" "$(serial_of A g1)" "$(serial_of B g1)" ||
	fail "g1's console is broken at the switch-over"

note "history on both hosts"
on A migration history | tee "$T/histA"
grep -qE 'g1 +out +completed' "$T/histA" || fail "A's history lacks the move"
on B migration history | tee "$T/histB" | grep -qE 'g1 +in +completed' || fail "B's history lacks the move"
# both ends name a move's hosts alike, by their ferryds' addresses (two
# ferryds on one machine share its host name)
grep -qE "g1 +out +completed .* $(port_of B) " "$T/histA" || fail "A's history does not name B by its address"
grep -qE "g1 +in +completed .* $(port_of A) " "$T/histB" || fail "B's history does not name A by its address"
[ "$(on B --json migration history | json_get moves.0.source)" = "$(port_of A)" ] &&
	[ "$(on B --json migration history | json_get moves.0.destination)" = "$(port_of B)" ] ||
	fail "B's record of the move: $(on B --json migration history | json_get moves.0)"
on A --json migration history | json_get moves.0.progress.bytes_on_wire | grep -qE '^[1-9]' ||
	fail "no figures in the history"
# the worker itself reports the codec it ran with (not only ferryd's record)
[ "$(on A --json migration history | json_get moves.0.progress.codec)" = zstd ] ||
	fail "the source worker did not run with the zstd codec asked for"
# a finished move says where its downtime went
on A migration status "$(on A --json migration history | json_get moves.0.id)" | tee "$T/statA" |
	grep -qE 'Downtime parts: +stop vCPUs [0-9.]+, last pages' || { cat "$T/statA"; fail "no downtime parts in the status"; }
grep -qE 'Progress: +100.0% of memory sent, pass [0-9]+, nothing left' "$T/statA" ||
	fail "a finished move does not show all memory sent"

note "move g1 back B -> A on a terminal (progress display), memory verified (B's setting)"
on B host set --verify-memory on >/dev/null || fail "host set --verify-memory on"
on B host info | grep -qE "^Verify memory: +on" || fail "host info does not show verify-memory on"
if command -v script >/dev/null; then
	script -qec "$FERRY_BIN/ferry -c $(port_of B) move-vm -n g1 -d $(port_of A)" \
		"$T/tty" >/dev/null || { cat "$T/tty"; fail "move-vm B->A"; }
	tr -d '\r' <"$T/tty" | sed 's/\x1b\[[0-9]*[AK]//g' | tail -n 5
	grep -q "moved to" "$T/tty" || fail "no summary on the terminal"
	grep -q "total time" "$T/tty" || fail "no figures in the summary"
	grep -q "memory verified" "$T/tty" || fail "no memory check in the summary"
else
	on B move-vm -n g1 -d "$(port_of A)" || fail "move-vm B->A"
fi
on B host set --verify-memory off >/dev/null || fail "host set --verify-memory off"
out=$(on B --json migration history | python3 -c 'import json,sys
print(next(m["id"] for m in json.load(sys.stdin)["moves"] if m["direction"] == "outgoing"))') ||
	fail "no outgoing move in B's history"
on B migration status "$out" | tee "$T/statB" | grep -qE "Memory check: +verified" ||
	fail "B's status does not show the memory check: $(cat "$T/statB")"
grep -qE "Downtime parts: .*last pages [0-9.]+, memory digest [0-9.]+, device state" "$T/statB" ||
	fail "B's status does not show the digest's part of the downtime: $(cat "$T/statB")"
grep -q "memory verified against the source's digest" "$T/A/logs/g1.log" ||
	fail "A's incoming worker did not check the digest"
[ "$(vm_state A g1)" = running ] || fail "g1 not back on A"
[ "$(vm_state B g1)" = absent ] || fail "g1 still on B"
verify_vm A g1 || fail "page check on A after the round trip"

note "a host's CPU baseline (host set --cpu-baseline) refuses a guest that sees more"
on B host set --cpu-baseline -x2apic >/dev/null || fail "host set --cpu-baseline"
on B host info | grep -qE "^CPU baseline: +-x2apic" || fail "host info does not show the baseline"
on A move-vm -n g1 -d "$(port_of B)" >"$T/base" 2>&1 && fail "a guest seeing x2apic moved to a -x2apic host"
grep -q "incompatible CPU.*x2apic" "$T/base" || fail "unclear refusal: $(cat "$T/base")"
[ "$(vm_state A g1)" = running ] || fail "g1 not running on A after the refusal"
on B host set --cpu-baseline '' >/dev/null || fail "host set --cpu-baseline ''"
on B host info | grep -qE "^CPU baseline: +none" || fail "the baseline was not cleared"
on B host set --cpu-baseline -nosuchfeature >"$T/base" 2>&1 && fail "an unknown feature was accepted"
cat "$T/base"

note "multichannel with a codec given compresses (it sends raw otherwise)"
on A move-vm -n g1 -d "$(port_of B)" --json --transport multichannel --codec zstd >"$T/events3" 2>&1 ||
	{ cat "$T/events3"; fail "move-vm A->B multichannel"; }
on A --json migration status g1 >"$T/st3" || fail "no status of the multichannel move"
pc=$(json_get move.progress.pages_compressed <"$T/st3")
[ "$(json_get move.progress.codec <"$T/st3")" = zstd ] && [ "${pc:-0}" -gt 0 ] ||
	fail "multichannel --codec zstd compressed nothing: $(cat "$T/st3")"
echo "multichannel + zstd: $pc pages compressed"
verify_vm B g1 || fail "page check on B after the multichannel move"
# a move that completed is news, not a warning, on either host
grep -E " warn: move .*(completed|checked)" "$T/A.ferryd.log" "$T/B.ferryd.log" &&
	fail "a completed move logged as a warning"

echo "PASS: move_basic"
