#!/bin/bash
# san: yes
# `ferry move-vm --copy-disk` between two ferryd hosts that share no
# storage: the VM's disk image goes with its memory, while the guest writes
# a record to it every second. Refused at setup, with the VM running on, when
# the copy's path is taken on the destination; a move cancelled while the
# disk goes leaves no partial copy there, and neither does a --check of
# such a move. After the move the destination's
# definition names the copy, the guest's records run on without a gap in
# it, its bulk data equals the source's image, and the source's image
# stays where it was. When the destination's worker dies mid-copy, its
# ferryd removes the copy. An evacuation with --disk-dir copies each VM's
# disk into that directory on the destination under its own name, and
# moves a VM without a disk as usual; with --remove-source-disk the images
# go from the source once the VMs run on their copies (a cancelled move
# keeps its image).
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm
check=$(dirname "$FERRY_BIN")/tests/tools/blkcheck
[ -x "$check" ] || fail "blkcheck not built"

two_hosts 24800
mkdir -p "$T/A/images" "$T/B/images"
truncate -s 64M "$T/A/images/d1.img"
head -c 16M /dev/urandom | dd of="$T/A/images/d1.img" bs=1M seek=8 conv=notrunc status=none
new_vm A d1 128M "ws=8M rate=8 blk=1" 1 --disk "$T/A/images/d1.img"
wait_for "$(serial_of A d1)" "FERRY-GUEST blk wrote n=2" 30 || fail "d1 is not writing its disk"

note "usage: --disk-path needs --copy-disk and an absolute path"
rc=0; on A move-vm -n d1 -d "$(port_of B)" --disk-path "$T/B/images/x.img" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "give --copy-disk too" "$T/err" || fail "--disk-path alone: rc $rc, $(cat "$T/err")"
rc=0; on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path images/x.img 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "absolute path" "$T/err" || fail "relative --disk-path: rc $rc, $(cat "$T/err")"

note "the copy's path is taken on B: refused at setup, d1 runs on on A"
echo keep >"$T/B/images/taken.img"
rc=0; on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path "$T/B/images/taken.img" \
	>"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "already exists on this host" "$T/out" ||
	fail "taken path: rc $rc, $(cat "$T/out")"
[ "$(cat "$T/B/images/taken.img")" = keep ] || fail "the file at the taken path was changed"
[ "$(vm_state A d1)" = running ] || fail "d1 not running on A after the refusal"
[ "$(vm_state B d1)" = absent ] || fail "d1 left defined on B"
echo "refused: $(grep -m1 'already exists' "$T/out")"

note "a check of a copying move: checked, and no copy left on B (the image made at setup goes)"
on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path "$T/B/images/chk.img" --check \
	>"$T/out" 2>&1 || { cat "$T/out"; fail "move-vm --check --copy-disk"; }
grep -q '"event":"checked"' "$T/out" || fail "the check did not say d1 can move: $(cat "$T/out")"
for _ in $(seq 50); do [ -e "$T/B/images/chk.img" ] || break; sleep 0.1; done
[ -e "$T/B/images/chk.img" ] && fail "a check left a copy on B"
wait_state B d1 absent 10 || fail "d1 left defined on B by the check"
[ "$(vm_state A d1)" = running ] || fail "d1 not running on A after the check"

note "cancelled while the disk goes: no partial copy left on B, A's image kept"
on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path "$T/B/images/c.img" --bandwidth 2 \
	--remove-source-disk --no-wait >/dev/null || fail "move-vm --no-wait"
wait_precopy A d1 20 || fail "the move never reached pre-copy"
[ -e "$T/B/images/c.img" ] || fail "B never created the copy"
# its pass 1 sends the disk first: what is left counts the disk's bytes
sleep 0.5
left=$(on A --json migration status d1 | json_get move.progress.remaining_bytes)
[ -n "$left" ] && [ "$left" -gt $((8 << 20)) ] || fail "pass 1 shows $left bytes left, not the disk's"
on A migration status d1 >"$T/st" || fail "migration status"
grep -q "Disk copy: *to $T/B/images/c.img" "$T/st" || fail "status shows no disk copy: $(cat "$T/st")"
grep -q "Source image: *$T/A/images/d1.img removed once the VM runs on its copy" "$T/st" ||
	fail "status does not say the image goes: $(cat "$T/st")"
on A migration cancel d1 >/dev/null || fail "migration cancel"
wait_move A d1 cancelled 30 || fail "the move was not cancelled"
for _ in $(seq 100); do [ -e "$T/B/images/c.img" ] || break; sleep 0.1; done
[ -e "$T/B/images/c.img" ] && fail "the partial copy was left on B"
wait_state B d1 absent 10 || fail "d1 left defined on B"
[ "$(vm_state A d1)" = running ] || fail "d1 not running on A after the cancel"
[ -f "$T/A/images/d1.img" ] || fail "--remove-source-disk removed the image of a cancelled move"
on A migration status d1 | grep -q "Source image: *$T/A/images/d1.img kept: the VM runs on it here" ||
	fail "status of the cancelled move: $(on A migration status d1)"

note "B's worker killed while the disk goes: B's ferryd removes the partial copy"
on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path "$T/B/images/k.img" --bandwidth 2 \
	--no-wait >/dev/null || fail "move-vm --no-wait"
wait_precopy A d1 20 || fail "the move never reached pre-copy"
[ -e "$T/B/images/k.img" ] || fail "B never created the copy"
kill -9 "$(cat "$T/B/run/d1.pid")" || fail "no incoming worker on B"
wait_move A d1 failed 30 || fail "the move did not fail"
wait_state B d1 absent 10 || fail "d1 left defined on B"
[ -e "$T/B/images/k.img" ] && fail "the partial copy was left on B after its worker died"
grep -q "removed the copy of its disk" "$T/B.ferryd.log" || fail "B's ferryd does not say it removed the copy"
[ "$(vm_state A d1)" = running ] || fail "d1 not running on A after B's worker died"

note "move d1 to B, copying its disk while the guest writes it"
on A move-vm -n d1 -d "$(port_of B)" --copy-disk --disk-path "$T/B/images/d1.img" --bandwidth 16 \
	>"$T/out" 2>&1 || { cat "$T/out" "$T/A.ferryd.log"; fail "move-vm --copy-disk"; }
tail -n2 "$T/out"
sent=$(grep '"event":"completed"' "$T/out" | json_get progress.disk_copy.sent_bytes)
[ -n "$sent" ] && [ "$sent" -ge $((16 << 20)) ] || fail "the move reports $sent bytes of the disk sent"
[ "$(vm_state B d1)" = running ] || fail "d1 not running on B"
[ "$(vm_state A d1)" = absent ] || fail "d1 still defined on A"
grep -q "\"disk\": *\"$T/B/images/d1.img\"" "$T/B/vms/d1.json" ||
	fail "B's definition does not name the copy: $(cat "$T/B/vms/d1.json")"
grep -q "runs on its copy of the disk" "$T/A.ferryd.log" || fail "A's log does not say where the disk went"
verify_vm B d1 || fail "page check on B"
n0=$(last_blk "$(serial_of A d1)")
wait_for "$(serial_of B d1)" "FERRY-GUEST blk wrote n=$((n0 + 2))\$" 30 || fail "d1 does not write its copy on B"
on B vm stop d1 >/dev/null || fail "vm stop on B"
wait_state B d1 stopped 30 || fail "d1 did not stop on B"
last=$(last_blk "$(serial_of B d1)")
"$check" "$T/B/images/d1.img" "$last" || fail "the copy's records are damaged"
cmp <(tail -c +65537 "$T/A/images/d1.img") <(tail -c +65537 "$T/B/images/d1.img") ||
	fail "the copy's data differs from the source's image"
[ -f "$T/A/images/d1.img" ] || fail "the source's image is gone"
echo "ok: $((sent >> 10)) KiB of the disk sent, moved at record $n0, last record $last on B's copy"

note "evacuate B to A with --copy-disk --disk-dir --remove-source-disk: each disk to A's"
note "directory under its name, and B's images removed once the VMs run on A"
rc=0; on B host evacuate -d "$(port_of A)" --disk-dir "$T/A/back" 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "give --copy-disk too" "$T/err" || fail "--disk-dir alone: rc $rc, $(cat "$T/err")"
mkdir -p "$T/A/back"
on B vm start d1 >/dev/null || fail "vm start d1 on B"
truncate -s 16M "$T/B/images/e2.img"
new_vm B e2 64M "ws=4M rate=4 blk=1" 1 --disk "$T/B/images/e2.img"
new_vm B n3 32M "ws=1M rate=0" # no disk: moves as usual
wait_for "$(serial_of B e2)" "FERRY-GUEST blk wrote n=2" 30 || fail "e2 is not writing its disk"
rc=0; on B host evacuate -d "$(port_of A)" --remove-source-disk 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q "give --copy-disk too" "$T/err" || fail "--remove-source-disk alone: rc $rc, $(cat "$T/err")"
on B host evacuate -d "$(port_of A)" --copy-disk --disk-dir "$T/A/back/" --remove-source-disk \
	--json >"$T/evac" 2>&1 ||
	{ cat "$T/evac"; fail "host evacuate --copy-disk --disk-dir"; }
grep -q '"event":"done","completed":3,"failed":0' "$T/evac" || fail "evacuation: $(tail -1 "$T/evac")"
for v in d1 e2 n3; do
	[ "$(vm_state A $v)" = running ] || fail "$v not running on A"
	[ "$(vm_state B $v)" = absent ] || fail "$v still defined on B"
	verify_vm A $v || fail "page check of $v on A"
done
for v in d1 e2; do
	grep -q "\"disk\": *\"$T/A/back/$v.img\"" "$T/A/vms/$v.json" ||
		fail "A's definition of $v does not name its copy: $(cat "$T/A/vms/$v.json")"
done
grep -q '"disk": *"/' "$T/A/vms/n3.json" && fail "n3 gained a disk on A: $(cat "$T/A/vms/n3.json")"
[ "$(grep -c '"event":"completed".*"source_disk_removed":true' "$T/evac")" = 2 ] ||
	fail "the evacuation does not report two images removed: $(grep completed "$T/evac")"
for img in d1 e2; do
	[ -e "$T/B/images/$img.img" ] && fail "B's image $img.img was kept"
	grep -q "its image here, $T/B/images/$img.img, was removed" "$T/B.ferryd.log" ||
		fail "B's ferryd does not say it removed $img.img"
done
n0=$(last_blk "$(serial_of B e2)")
wait_for "$(serial_of A e2)" "FERRY-GUEST blk wrote n=$((n0 + 2))\$" 30 || fail "e2 does not write its copy on A"
on A vm stop e2 >/dev/null || fail "vm stop e2 on A"
wait_state A e2 stopped 30 || fail "e2 did not stop on A"
"$check" "$T/A/back/e2.img" "$(last_blk "$(serial_of A e2)")" || fail "e2's copy's records are damaged"
echo "ok: evacuated d1, e2 (disks to $T/A/back) and n3 (no disk) to A"
