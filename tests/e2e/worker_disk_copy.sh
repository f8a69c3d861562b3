#!/usr/bin/env bash
# san: yes
# A move between hosts that share no storage: the disk image is copied with
# the memory. The guest writes a record to its disk every second while the
# copy runs (a bandwidth limit stretches it over seconds), so blocks it
# already sent are written again and must be sent again. Afterwards the
# copy holds every record without a gap and the source's bulk data byte
# for byte, stays sparse where the source was, and the source's image was
# left alone after the switch-over. The VM then moves on from its copy to a
# third image over four encrypted connections, with the same checks, and
# on again without a copy (its image handed over, as on shared storage); a
# disk attached read-only is copied too. A
# copy never overwrites a file; a move cancelled while the disk goes
# removes the partial copy; the VM runs on where it was.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
check=$(dirname "$FERRY_BIN")/tests/tools/blkcheck
[ -x "$check" ] || fail "blkcheck not built"
mkdir -p "$T/src" "$T/dst"
# 64 MiB: the guest's records in its first sectors, 24 MiB of data at 8 MiB
# (allocated), holes elsewhere
truncate -s 64M "$T/src/disk.img"
head -c 24M /dev/urandom | dd of="$T/src/disk.img" bs=1M seek=8 conv=notrunc status=none
start_src s 256M 1 "ws=16M rate=16 blk=1" --disk "$T/src/disk.img"
wait_for "$T/s.log" 'FERRY-GUEST blk wrote n=3' 30 || fail "guest is not writing its disk"
copy_to() { echo ",\"disk_copy_path\":\"$1\"${2:-}"; }

note "a copy never overwrites a file"
echo keep >"$T/dst/taken.img"
next_port; start_dst x "$port"
migrate s "$port" "$(copy_to "$T/dst/taken.img")" || fail "migrate refused"
res=$(wait_mig s 30) || fail "taken: move did not end"
[ "$(field "$res" stage)" = failed ] || fail "taken: expected failed: $res"
field "$res" error | grep -q "already exists" || fail "taken: unclear error: $(field "$res" error)"
[ "$(cat "$T/dst/taken.img")" = keep ] || fail "taken: the file there was changed"
[ "$(state_of s)" = running ] || fail "taken: source not running"
echo "taken: $(field "$res" error)"

note "cancelled while the disk goes: the partial copy is removed"
next_port; start_dst c "$port"
migrate s "$port" "$(copy_to "$T/dst/c.img" ',"bandwidth_mibps":4')" || fail "migrate refused"
for _ in $(seq 100); do [ -e "$T/dst/c.img" ] && break; sleep 0.05; done
[ -e "$T/dst/c.img" ] || fail "cancel: the destination never created the copy"
sleep 0.5
vmctl "$T/s.sock" '{"cmd":"migrate-cancel"}' | grep -q '"ok":true' || fail "cancel refused"
res=$(wait_mig s 30) || fail "cancel: move did not end"
[ "$(field "$res" stage)" = cancelled ] || fail "cancel: expected cancelled: $res"
for _ in $(seq 100); do [ -e "$T/dst/c.img" ] || break; sleep 0.05; done
[ -e "$T/dst/c.img" ] && fail "cancel: the partial copy was left on the destination"
[ "$(state_of s)" = running ] || fail "cancel: source not running"
echo "cancelled: copy removed, VM running on the source"

note "the move: the disk is copied while the guest writes it"
next_port; start_dst d "$port"
migrate s "$port" "$(copy_to "$T/dst/disk.img" ',"bandwidth_mibps":16')" || fail "migrate refused"
res=$(wait_mig s 60) || fail "move did not end"
[ "$(field "$res" stage)" = completed ] || fail "move: $res"
sent=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["migration"]["disk_copy"]["sent_bytes"])' "$res")
[ "$sent" -ge $((24 << 20)) ] || fail "move: only $sent bytes of the disk were sent"
n0=$(last_blk "$T/s.log")
wait_for "$T/d.log" "FERRY-GUEST blk wrote n=$((n0 + 2))\$" 30 || fail "the destination does not write its copy"
vmctl "$T/s.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_s" 4
verify d >/dev/null
passes=$(field "$res" pass)

note "and on: from the copy to a third image, over 4 encrypted connections"
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; echo "$KEY" >"$T/mkey") # the worker removes it once read
next_port; start_dst e "$port" --migration-key-file "$T/mkey"
migrate d "$port" "$(copy_to "$T/dst/third.img" ",\"key\":\"$KEY\",\"encrypt\":true,\"transport\":\"multichannel\",\"channels\":4,\"bandwidth_mibps\":32")" ||
	fail "migrate refused"
res=$(wait_mig d 60) || fail "encrypted move did not end"
[ "$(field "$res" stage)" = completed ] || fail "encrypted move: $res"
[ "$(field "$res" encrypted)" = True ] || fail "encrypted move: not encrypted: $res"
n1=$(last_blk "$T/d.log")
wait_for "$T/e.log" "FERRY-GUEST blk wrote n=$((n1 + 2))\$" 30 || fail "the third image is not written"
vmctl "$T/d.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_d" 4
verify e >/dev/null
rx_matches e "$res" # four sealed connections, and the disk's records

note "and on without a copy: the image it arrived on handed over (shared storage)"
next_port; start_dst h "$port"
migrate e "$port" || fail "migrate refused"
res=$(wait_mig e 60) || fail "handover move did not end"
[ "$(field "$res" stage)" = completed ] || fail "a VM that arrived on a copy could not move on without one: $res"
n2=$(last_blk "$T/e.log")
wait_for "$T/h.log" "FERRY-GUEST blk wrote n=$((n2 + 2))\$" 30 || fail "the third image is not written after the handover"
vmctl "$T/e.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_e" 4
verify h >/dev/null
vmctl "$T/h.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_h" 0
last=$(last_blk "$T/h.log")
"$check" "$T/dst/third.img" "$last" || fail "the third image's records are damaged"
"$check" "$T/dst/disk.img" "$n1" || fail "the first copy's records are damaged"
"$check" "$T/src/disk.img" "$n0" || fail "the source's records are damaged"
# everything past the records' first 64 KiB block: the source's bytes
for img in disk third; do
	cmp <(tail -c +65537 "$T/src/disk.img") <(tail -c +65537 "$T/dst/$img.img") ||
		fail "the copy $img.img differs from the source's image"
	[ "$(stat -c %s "$T/dst/$img.img")" = $((64 << 20)) ] || fail "the copy $img.img has the wrong size"
done

note "a disk attached read-only is copied too"
truncate -s 8M "$T/src/ro.img"
head -c 2M /dev/urandom | dd of="$T/src/ro.img" bs=1M seek=3 conv=notrunc status=none
start_src r 64M 1 "ws=4M rate=0" --disk "$T/src/ro.img" --disk-readonly
next_port; start_dst rd "$port"
migrate r "$port" "$(copy_to "$T/dst/ro.img")" || fail "migrate refused"
res=$(wait_mig r 30) || fail "read-only: move did not end"
[ "$(field "$res" stage)" = completed ] || fail "read-only: $res"
cmp "$T/src/ro.img" "$T/dst/ro.img" || fail "read-only: the copy differs"
verify rd >/dev/null
alloc=$(du -k "$T/dst/disk.img" | cut -f1)
[ "$alloc" -lt $((40 << 10)) ] || fail "the copy is not sparse: $alloc KiB allocated"
echo "ok: $((sent >> 10)) KiB of disk sent in $passes passes, moved at record $n0, then" \
	"encrypted over 4 channels at record $n1, last record $last; copy $alloc KiB allocated of 64 MiB"
