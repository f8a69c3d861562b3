#!/usr/bin/env bash
# Live migration between two workers (the engine under ferryd): a 1 GiB,
# 2-vCPU test guest idle, dirtying 512 MiB at 256 MiB/s, and at full speed.
# After each move every page verifies on the destination, the heartbeat
# counter continues, the source exits "migrated away" (4).
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
	hb=$(last_hb "$T/a$name.log")
	migrate a$name "$port" || fail "migrate refused"
	res=$(wait_mig a$name 120) || fail "move did not end: $res"
	echo "$res"
	[ "$(field "$res" stage)" = completed ] || fail "move $name: $(field "$res" error)"
	[ "$(state_of b$name)" = running ] || fail "destination not running"
	verify b$name
	hb_continues "$T/b$name.log" "$hb" || fail "heartbeat did not continue on the destination"
	vmctl "$T/a$name.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_a$name 4
	vmctl "$T/b$name.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_b$name 0
	echo "ok $name: total $(field "$res" elapsed_ms) ms, downtime $(field "$res" downtime_ms) ms, passes $(field "$res" pass), $(field "$res" bytes_on_wire) bytes"
done
