#!/bin/bash
# A host whose disk is full (ENOSPC), lab-made with small tmpfs mounts:
# - a worker's `save` to a full file system fails with the path and the
#   reason, leaves no partial file, and the guest runs on;
# - a guest's disk write that hits ENOSPC reaches the guest as an I/O error
#   status, the VM runs on, and its writes succeed again once there is room;
# - an incoming worker whose arrival mark (--resumed-file) cannot be
#   written refuses the move at setup, before the commit point: the source
#   runs on and no mark claims the VM arrived (it used to fail after the
#   commit point, leaving both copies stopped and an empty mark behind);
# - ferryd's state directory full: `vm new` and `host set` fail naming the
#   file and ENOSPC, nothing half-written, and after a restart the state is
#   what it was; `vm delete` still works;
# - a move to a host whose state directory is full is refused at prepare,
#   the VM running on at the source;
# - a move whose source cannot append to its history completes, is
#   reported completed, and the failed write is logged.
# Exit: 0 pass, 77 skip (no /dev/kvm or not root), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm
need_ferryd
command -v fallocate >/dev/null || skip "fallocate (util-linux) is not installed"

MOUNTS=()
disk_full_cleanup() {
	for f in "$T"/*/run/*.pid; do
		[ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
	done
	for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
	cleanup
}
trap disk_full_cleanup EXIT

small_fs() { # DIR SIZE: a tmpfs of SIZE on DIR
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2" tmpfs "$1" || skip "cannot mount a tmpfs on $1"
	MOUNTS+=("$1")
}
fill() { # DIR: no byte left on its file system
	local avail
	avail=$(df -B1 --output=avail "$1" | tail -n1)
	[ "$avail" -gt 0 ] && { fallocate -l "$avail" "$1/.fill" || fail "cannot fill $1"; }
	dd if=/dev/zero of="$1/.probe" bs=4k count=1 2>/dev/null && fail "$1 is not full"
	rm -f "$1/.probe"
}
unfill() { rm -f "$1/.fill"; }
nospace() { grep -q "No space left on device" "$1" || fail "$2: no ENOSPC in: $(cat "$1")"; }

note "worker: save to a full file system"
small_fs "$T/img" 4M
truncate -s 16M "$T/img/disk.img" # sparse: each new page of it needs room
small_fs "$T/sv" 4M
start_src s 64M 1 "ws=8M rate=8 blk=1" --disk "$T/img/disk.img"
wait_for "$T/s.log" 'FERRY-GUEST blk wrote n=2' 30 || fail "guest is not writing its disk"
fill "$T/sv"
r=$(vmctl "$T/s.sock" '{"cmd":"save","path":"'"$T"'/sv/s.state"}')
echo "$r"
echo "$r" >"$T/r"
grep -q '"ok":false' "$T/r" || fail "save to a full file system succeeded"
grep -q "$T/sv/s.state.tmp" "$T/r" || fail "the save error does not name the file"
nospace "$T/r" "save"
ls -a "$T/sv" | grep -q 's.state' && fail "the failed save left a file: $(ls -a "$T/sv")"
[ "$(state_of s)" = running ] || fail "the VM is $(state_of s) after a failed save, not running"
hb=$(last_hb "$T/s.log")
hb_continues "$T/s.log" "$hb" || fail "the guest stopped after a failed save"

note "worker: the guest's disk fills up"
fill "$T/img"
wait_for "$T/s.log" 'FERRY-GUEST error blk write n=[0-9]+ failed \(status\)' 30 ||
	fail "the guest saw no I/O error on a full disk"
grep -q "write at sector .*No space left on device" "$T/s.err" ||
	fail "the worker did not log the failed write: $(tail -3 "$T/s.err")"
[ "$(state_of s)" = running ] || fail "the VM is $(state_of s) on a full disk, not running"
unfill "$T/img"
lasterr=$(grep -oE 'error blk write n=[0-9]+' "$T/s.log" | tail -n1 | grep -oE '[0-9]+')
for _ in $(seq 100); do
	lastw=$(last_blk "$T/s.log")
	[ "$lastw" -gt "$lasterr" ] && break
	sleep 0.2
done
[ "$lastw" -gt "$lasterr" ] || fail "the guest's writes did not recover with room again (last error n=$lasterr)"
echo "guest write errors up to n=$lasterr, writes again at n=$lastw"

note "worker: an arrival mark that cannot be written refuses the move before the commit point"
small_fs "$T/mark" 1M
next_port; start_dst d "$port" --resumed-file "$T/mark/d.resumed" --disk "$T/img/disk.img"
fill "$T/mark"
migrate s "$port" || fail "migrate refused at once"
res=$(wait_mig s 60) || fail "the move did not end: $res"
echo "$res"
[ "$(field "$res" stage)" = failed ] || fail "the move ended $(field "$res" stage), not failed"
[ "$(field "$res" committed)" = False ] || fail "the move failed after the commit point"
echo "$res" >"$T/r"
nospace "$T/r" "arrival mark"
[ -e "$T/mark/d.resumed" ] && fail "a mark claims the VM arrived"
ls -a "$T/mark" | grep -q resumed && fail "the mark's temporary file was left: $(ls -a "$T/mark")"
[ "$(state_of s)" = running ] || fail "the source is $(state_of s), not running"
vmctl "$T/s.sock" '{"cmd":"stop"}' >/dev/null
expect_exit "$PID_s" 0

note "ferryd: a full state directory"
small_fs "$T/A" 2M
small_fs "$T/B" 2M
two_hosts 23300
new_vm A g1 64M "ws=8M rate=8"
on A vm new --name g2 --memory 64M --vcpus 1 --kernel "$FERRY_GUEST" >/dev/null || fail "vm new g2"
on A host set --max-migrations 3 >/dev/null || fail "host set"
cp "$T/A/settings.json" "$T/settings.before"
fill "$T/A"
on A vm new --name g3 --memory 64M --vcpus 1 --kernel "$FERRY_GUEST" 2>"$T/err" && fail "vm new on a full disk"
cat "$T/err"
grep -q "$T/A/vms/" "$T/err" || fail "vm new: the error does not name the file"
nospace "$T/err" "vm new"
on A host set --max-migrations 1 2>"$T/err" && fail "host set on a full disk"
cat "$T/err"
grep -q "$T/A/settings.json" "$T/err" || fail "host set: the error does not name the file"
nospace "$T/err" "host set"
ls -a "$T/A" "$T/A/vms" | grep -q '\.tmp' && fail "a temporary file was left: $(ls -a "$T/A" "$T/A/vms")"
stop_host A
start_host A
cmp -s "$T/A/settings.json" "$T/settings.before" || fail "settings changed by a failed host set"
on A host info | grep -qE "Migrations: +3 at once" || fail "the settings did not survive: $(on A host info)"
on A vm list >"$T/list"
grep -qE '^g1 ' "$T/list" && grep -qE '^g2 ' "$T/list" || fail "definitions lost: $(cat "$T/list")"
grep -qE '^g3 ' "$T/list" && fail "the failed vm new left a VM"
[ "$(vm_state A g1)" = running ] || fail "g1 is $(vm_state A g1) after the restart"
on A vm delete g2 >/dev/null || fail "vm delete on a full disk"
[ -e "$T/A/vms/g2.json" ] && fail "vm delete left the definition"

note "ferryd: a move to a host whose state directory is full"
fill "$T/B"
on A move-vm -n g1 -d "$(port_of B)" >"$T/out" 2>&1 && fail "move to a full host succeeded"
cat "$T/out"
nospace "$T/out" "move to a full host"
[ "$(vm_state A g1)" = running ] || fail "g1 is $(vm_state A g1) on A after the refused move"
[ "$(vm_state B g1)" = absent ] || fail "g1 is $(vm_state B g1) on B after the refused move"
ls -a "$T/B/vms" "$T/B/run" | grep -q 'g1' && fail "B kept files of g1: $(ls -a "$T/B/vms" "$T/B/run")"
unfill "$T/B"

note "ferryd: a move whose source cannot record it in its history"
# only the history on a full file system: the space the move frees on A
# (g1's definition) must not make room for its line
unfill "$T/A"
small_fs "$T/hist" 1M
fill "$T/hist"
rm -f "$T/A/migration-history.jsonl"
ln -s "$T/hist/migration-history.jsonl" "$T/A/migration-history.jsonl"
on A move-vm -n g1 -d "$(port_of B)" --json >"$T/out" 2>&1 || { cat "$T/out"; fail "the move failed"; }
tail -n2 "$T/out" | cut -c1-160
tail -n1 "$T/out" | grep -q '"event":"done","completed":1,"failed":0' || fail "the move was not reported completed"
id=$(grep -m1 -oE '"id":"mv-[0-9a-f]+"' "$T/out" | cut -d'"' -f4)
wait_state B g1 running 10 || fail "g1 does not run on B"
[ "$(vm_state A g1)" = absent ] || fail "g1 is still on A: $(vm_state A g1)"
for _ in $(seq 20); do grep -q "recording move $id" "$T/A.ferryd.log" && break; sleep 0.1; done
grep "recording move $id" "$T/A.ferryd.log" || fail "the failed history append was not logged: $(tail -5 "$T/A.ferryd.log")"
grep -q "recording move $id in the history: .*migration-history.jsonl: No space left on device" "$T/A.ferryd.log" ||
	fail "the history failure does not say where and why"
[ -s "$T/hist/migration-history.jsonl" ] && fail "a failed append left part of a line"
on B migration history | grep -q g1 || fail "B has no record of the move"
echo "ok"
