#!/usr/bin/env bash
# Live migration between two workers (the engine under ferryd): a 1 GiB,
# 2-vCPU test guest idle, dirtying 512 MiB at 256 MiB/s, and at full speed.
# After each move every page verifies on the destination, the heartbeat
# counter continues, the source exits "migrated away" (4), progress ends at
# exactly the pages it counted, and the downtime's parts fit in it. The
# idle move is also followed the way ferryd follows it: a status held by
# each worker (wait_ms) is answered when the move ends, not at its limit.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
for wl in "idle:ws=512M rate=0" "256:ws=512M rate=256" "max:ws=512M rate=max"; do
	name=${wl%%:*}; cmd=${wl#*:}
	note "workload $name ($cmd)"
	start_src a$name 1G 2 "$cmd cpus=2"
	wait_for "$T/a$name.log" 'FERRY-GUEST hb n=3 ' 30 || fail "no heartbeat"
	next_port
	start_dst b$name "$port"
	if [ $name = idle ]; then
		r=$(vmctl "$T/a$name.sock" '{"cmd":"migrate-status","wait_ms":99999}')
		echo "$r" | grep -q "wait_ms" || fail "a wait past the limit was not refused: $r"
		# held: the destination's until the VM runs there, the source's until the move ends
		( SECONDS=0; vmctl "$T/b$name.sock" '{"cmd":"status","wait_ms":5000}' >"$T/held_b"
		  echo "$SECONDS" >>"$T/held_b" ) & held=$!
		sleep 0.2
	fi
	migrate a$name "$port" || fail "migrate refused"
	if [ $name = idle ]; then
		SECONDS=0
		r=$(vmctl "$T/a$name.sock" '{"cmd":"migrate-status","wait_ms":5000}')
		[ "$(field "$r" stage)" = completed ] && [ $SECONDS -lt 4 ] ||
			fail "the held migrate-status answered after ${SECONDS}s with: $r"
		wait $held
		grep -q '"state":"running"' "$T/held_b" && [ "$(tail -n1 "$T/held_b")" -lt 4 ] ||
			fail "the destination's held status: $(cat "$T/held_b")"
	fi
	res=$(wait_mig a$name 120) || fail "move did not end: $res"
	hb=$(last_hb "$T/a$name.log")   # the source's last heartbeat before the switch-over
	echo "$res"
	[ "$(field "$res" stage)" = completed ] || fail "move $name: $(field "$res" error)"
	# pass 1's progress counts the populated pages it sent, holes inside a
	# chunk not included: it ends exactly at the total, at 100%
	[ "$(field "$res" sent_pages)" = "$(field "$res" total_pages)" ] &&
		[ "$(field "$res" percent)" = 100.0 ] ||
		fail "progress ended at $(field "$res" sent_pages) of $(field "$res" total_pages) pages ($(field "$res" percent)%)"
	# the last pages went with the guest stopped: nothing is left or due
	[ "$(field "$res" remaining_pages)" = 0 ] && [ "$(field "$res" eta_ms)" = 0 ] ||
		fail "a completed move shows $(field "$res" remaining_pages) pages left, ETA $(field "$res" eta_ms) ms"
	# an idle guest's passes are too short to time: it still switches over
	# at once instead of running to the pass limit
	[ "$name" != idle ] || [ "$(field "$res" pass)" -le 3 ] ||
		fail "idle guest took $(field "$res" pass) passes"
	# where the downtime went: every step there, none negative; the steps
	# up to READY, timed on the source's clock, fit in the downtime taken
	# from its pause to the destination's resume
	python3 - "$res" <<'PY' || fail "downtime parts do not fit the downtime"
import json, sys
m = json.loads(sys.argv[1]).get("migration")
p = m["downtime_parts"]
keys = ["stop_vcpus_ms", "last_pages_ms", "memory_digest_ms", "device_state_ms", "destination_ready_ms"]
assert all(p[k] >= 0 for k in keys + ["destination_load_ms", "commit_resume_ms"]), p
assert p["destination_load_ms"] <= p["destination_ready_ms"] + 1, p
assert sum(p[k] for k in keys) <= m["downtime_ms"] + 1, (m["downtime_ms"], p)
PY
	[ "$(state_of b$name)" = running ] || fail "destination not running"
	verify b$name
	rx_matches b$name "$res"
	# The destination's first whole heartbeat line follows the source's last:
	# no reset, no jump (a line cut by the pause may show the same n on both).
	wait_for "$T/b$name.log" "FERRY-GUEST hb n=[0-9]+ " 10 || fail "no heartbeat on the destination"
	first=$(grep -oE 'FERRY-GUEST hb n=[0-9]+' "$T/b$name.log" | head -n1 | grep -oE '[0-9]+$')
	[ "$first" -ge "$hb" ] && [ "$first" -le $((hb + 2)) ] || fail "heartbeat went from $hb on the source to $first on the destination"
	# and byte for byte: the two logs end to end are one unbroken console
	python3 "$(dirname "$0")/../lib/console_seams.py" "$T/a$name.log" "$T/b$name.log" ||
		fail "the console is broken at the switch-over"
	# The source's copy is gone: nothing may run, save or move it again
	# (a second copy of the guest).
	for req in '{"cmd":"resume"}' '{"cmd":"save","path":"'"$T"'/husk.state"}' \
		'{"cmd":"migrate","uri":"127.0.0.1:1"}' '{"cmd":"verify"}'; do
		r=$(vmctl "$T/a$name.sock" "$req")
		echo "$r" | grep -q 'now runs on the destination' || fail "the moved-away source accepted $req: $r"
	done
	[ -e "$T/husk.state" ] && fail "a state file of the moved-away source was written"
	vmctl "$T/a$name.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_a$name 4
	vmctl "$T/b$name.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_b$name 0
	echo "ok $name: total $(field "$res" elapsed_ms) ms, downtime $(field "$res" downtime_ms) ms, passes $(field "$res" pass), $(field "$res" bytes_on_wire) bytes"
done
