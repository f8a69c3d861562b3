#!/usr/bin/env bash
# The dirty-ring tracker under live migration: a 1 GiB, 2-vCPU test guest
# dirtying 512 MiB at 256 MiB/s and at full speed moves with
# --dirty-tracker ring; every page verifies on the destination and the
# heartbeat goes on. The destination builds the ring too (the tracker
# travels in the configuration): a second move from it is tracked by its
# ring, over multichannel with compression, and verifies as well; each
# move's memory is also checked whole by digest (verify_memory). A bad
# tracker name is refused at the start.
# (The ring once lost pages here, and was refused on kvm_pvm for it. Not
# KVM's fault: pre-copy dropped the bits of its last sync when it switched
# over right after it, and a ring hands out each write once; fixed in
# d042548.)
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

out=$("$FERRY_BIN/ferry-vm" --kernel "$FERRY_GUEST" --dirty-tracker rings 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--dirty-tracker rings: exit $rc, expected 2"
echo "$out" | grep -q 'use bitmap or ring' || fail "--dirty-tracker rings: unclear refusal: $out"

# move SRC DST [JSON]: live-migrate SRC to a fresh destination DST (extra
# migrate options in JSON) and check it.
move() {
	local src=$1 dst=$2 hb res
	next_port
	start_dst "$dst" "$port"
	migrate "$src" "$port" ',"verify_memory":true'"${3:-}" || fail "migrate $src refused"
	res=$(wait_mig "$src" 120) || fail "move $src did not end: $res"
	# the source's last heartbeat, read once it has stopped: the next two
	# must come from the destination (read before the move, one the source
	# printed during a long move made this fail when nothing was wrong)
	hb=$(last_hb "$T/$src.log")
	echo "$res"
	MOVE_RES=$res
	[ "$(field "$res" stage)" = completed ] || fail "move $src: $(field "$res" error)"
	[ "$(field "$res" memory_verified)" = True ] || fail "move $src: memory not verified"
	[ "$(state_of "$dst")" = running ] || fail "destination $dst not running"
	verify "$dst"
	hb_continues "$T/$dst.log" "$hb" || fail "heartbeat did not continue on $dst"
	# The source's log names the ring it harvested: the ring really tracked.
	grep -q 'dirty ring: [0-9]* entries harvested' "$T/$src.err" ||
		fail "$src did not track with the dirty ring: $(tail -n 5 "$T/$src.err")"
	vmctl "$T/$src.sock" '{"cmd":"stop"}' >/dev/null
	eval expect_exit \$PID_$src 4
	echo "ok $src -> $dst: total $(field "$res" elapsed_ms) ms, downtime $(field "$res" downtime_ms) ms," \
		"passes $(field "$res" pass), $(grep -o 'dirty ring: .*' "$T/$src.err" | tail -n1)"
}

for wl in "256:ws=512M rate=256" "max:ws=512M rate=max"; do
	name=${wl%%:*}; cmd=${wl#*:}
	note "workload $name ($cmd), ring tracker"
	start_src a$name 1G 2 "$cmd cpus=2" --dirty-tracker ring
	wait_for "$T/a$name.log" 'FERRY-GUEST hb n=3 ' 30 || fail "no heartbeat"
	move a$name b$name
	if [ "$name" = max ]; then
		note "second move, from the destination's own ring, over multichannel"
		move b$name c$name ',"transport":"multichannel","compress":true'
		[ "$(field "$MOVE_RES" transport)" = multichannel+compression ] ||
			fail "the second move did not use multichannel: $(field "$MOVE_RES" transport)"
		vmctl "$T/c$name.sock" '{"cmd":"stop"}' >/dev/null
		eval expect_exit \$PID_c$name 0
	else
		vmctl "$T/b$name.sock" '{"cmd":"stop"}' >/dev/null
		eval expect_exit \$PID_b$name 0
	fi
done
