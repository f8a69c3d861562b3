#!/bin/bash
# san: yes
# Moves between hosts of different ferry builds, as during a rolling
# upgrade. Three earlier builds are built from this repository's history:
# the last that wrote stream version 2 (the oldest this build still reads),
# the last that wrote version 5, and the last that wrote 6 (the one before
# this build's 7). For
# each, a busy VM started on a host of that build moves live to a host of
# this build, through both ferryds, and arrives with every page intact,
# its heartbeat going on. The way back, this build's stream to a host of
# the earlier build, is refused before anything moves (E_VERSION, naming
# the upgrade to make) and the VM runs on where it was, unharmed, with
# nothing of it left on the earlier host: what the README promises
# ("upgrade destinations first"). A host of the earlier build upgraded in
# place (its ferryd restarted on this build, its VMs' workers running on,
# as a package upgrade leaves them) takes its worker back and moves that
# VM away with it (a --check through its worker, which knows no checks,
# is called off before anything moves; a --copy-disk through the worker of
# the build before disk copies is refused by the destination, which gets
# a stream that copies no disk). A state file the earlier build saved
# checks with this build's ferry-stream and restores with its ferry-vm.
# This build's CLI lists VMs and host info on an earlier host.
# Needs the repository's git history (skips loudly in a shallow clone).
# Exit: 0 pass, 77 skip (no /dev/kvm, not root, no history), else fail.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/hosts.inc"
need_root
need_kvm
need_ferryd

root=$(cd "$(dirname "$0")/../.." && pwd)
# name, commit (the last commit whose stream had that version), stream version
OLD=("v2 6fc3d53120456af7d82f009ef9dccca062759bdd 2"
     "v5 aec8eefac2c159cd7f9cf5935620f4c9f09e3cf3 5"
     "v6 189859c3bf659bd4042bde9e8f528a2f095f4ce0 6")

command -v git >/dev/null || skip "git is not installed: cannot build the earlier ferry builds"
for o in "${OLD[@]}"; do
	set -- $o
	git -C "$root" cat-file -e "$2^{commit}" 2>/dev/null ||
		skip "commit $2 (ferry with stream version $3) is not in this clone's history (a shallow clone?): cannot build it"
done

# build_old COMMIT: its programs under $OLD_BIN, built once (a commit's
# build never changes: the ASan run and later runs reuse it)
build_old() {
	local dir=$root/build/cross/$1
	OLD_BIN=$dir/build/bin
	[ -x "$OLD_BIN/ferryd" ] && [ -x "$OLD_BIN/ferry" ] && [ -x "$OLD_BIN/ferry-vm" ] && return 0
	rm -rf "$dir" && mkdir -p "$dir" || fail "cannot make $dir"
	git -C "$root" archive "$1" | tar -x -C "$dir" || fail "cannot unpack commit $1"
	make -C "$dir" -s -j2 build/bin/ferryd build/bin/ferry build/bin/ferry-vm \
		>"$T/${1:0:7}.build.log" 2>&1 || { tail -20 "$T/${1:0:7}.build.log"; fail "cannot build commit $1"; }
}

hb_goes_on() { # VM: N's serial log shows a later heartbeat within 10 s
	local f n i
	f=$(serial_of N "$1")
	n=$(last_hb "$f")
	for i in $(seq 100); do
		[ "$(last_hb "$f")" -gt "${n:-0}" ] 2>/dev/null && return 0
		sleep 0.1
	done
	echo "no heartbeat after n=${n:-none} in $f"
	return 1
}

HOST_PORT[N]=$(free_port)
start_host N
on N host set --migration-ports 24400-24499 >/dev/null || fail "host set N"
base=24500
for o in "${OLD[@]}"; do
	set -- $o
	name=$1 commit=$2 ver=$3 h=O$1 vm=g$1
	note "ferry at ${commit:0:7} (stream version $ver)"
	build_old "$commit"
	HOST_BIN[$h]=$OLD_BIN
	start_host "$h"
	on "$h" host set --migration-ports "$base-$((base + 99))" >/dev/null || fail "host set $h"
	base=$((base + 100))

	note "$vm on the ${commit:0:7} host (64 MiB, dirtying 8 MiB at 16 MiB/s) moves to this build's host"
	new_vm "$h" "$vm" 64M "ws=8M rate=16"
	# this build's CLI speaks to the earlier ferryd
	FERRY_KEY_FILE=$T/cluster.key "$FERRY_BIN/ferry" -c "$(port_of "$h")" vm list >"$T/$vm.list" 2>&1 &&
		grep -q "^$vm *running" "$T/$vm.list" || { cat "$T/$vm.list"; fail "this build's vm list on the ${commit:0:7} host"; }
	FERRY_KEY_FILE=$T/cluster.key "$FERRY_BIN/ferry" -c "$(port_of "$h")" host info >"$T/$vm.info" 2>&1 ||
		{ cat "$T/$vm.info"; fail "this build's host info on the ${commit:0:7} host"; }
	# a state file of the earlier build, for this build's --restore below
	vmctl "$(vm_sock "$h" "$vm")" '{"cmd":"save","path":"'"$T/$vm.state"'"}' | grep -q '"ok":true' ||
		fail "the ${commit:0:7} worker did not save $vm"
	vmctl "$(vm_sock "$h" "$vm")" '{"cmd":"resume"}' | grep -q '"ok":true' || fail "resume of $vm after its save"
	on "$h" move-vm -n "$vm" -d "$(port_of N)" --json >"$T/$vm.out" 2>&1 ||
		{ cat "$T/$vm.out"; tail -n 5 "$T/$h/logs/$vm.log" "$T/N/logs/$vm.log"; fail "move $h -> N of $vm"; }
	wait_state N "$vm" running 10 || fail "$vm does not run on this build's host"
	[ "$(vm_state "$h" "$vm")" = absent ] || fail "the ${commit:0:7} host still has $vm"
	grep -q "incoming migration: stream version $ver (from an earlier ferry)" "$T/N/logs/$vm.log" ||
		fail "N's worker did not read a version $ver stream: $(grep -m1 'stream version' "$T/N/logs/$vm.log")"
	verify_vm N "$vm" || fail "pages of $vm after the move from stream version $ver"
	hb_goes_on "$vm" || fail "$vm's heartbeat stopped on N"

	note "and back: refused by the ${commit:0:7} host before anything moves"
	on N move-vm -n "$vm" -d "$(port_of "$h")" >"$T/$vm.back" 2>&1 &&
		{ cat "$T/$vm.back"; fail "this build's stream was sent to a host of stream version $ver"; }
	cat "$T/$vm.back"
	grep -q "E_VERSION" "$T/$vm.back" && grep -q "upgrade the destination" "$T/$vm.back" ||
		fail "the refusal does not say to upgrade the destination"
	[ "$(vm_state N "$vm")" = running ] || fail "$vm does not run on N after the refused move"
	[ "$(vm_state "$h" "$vm")" = absent ] || fail "the refused move left $vm on the ${commit:0:7} host"
	verify_vm N "$vm" || fail "pages of $vm after the refused move"
	hb_goes_on "$vm" || fail "$vm's heartbeat stopped on N"

	note "the ${commit:0:7} host upgraded in place: its ferryd restarted on this build, its VM's worker running on"
	disk=()
	if [ "$ver" = 6 ]; then # the last build before disk copies: its VM has a disk
		truncate -s 16M "$T/u$vm.img"
		disk=(1 --disk "$T/u$vm.img")
	fi
	new_vm "$h" "u$vm" 64M "ws=8M rate=16" "${disk[@]}"
	stop_host "$h"
	unset "HOST_BIN[$h]"
	start_host "$h"
	[ "$(vm_state "$h" "u$vm")" = running ] || fail "the upgraded ferryd did not take u$vm's worker back"
	# a check through a worker that knows none: called off before anything moves
	rc=0; on "$h" move-vm -n "u$vm" -d "$(port_of N)" --check >"$T/u$vm.check" 2>&1 || rc=$?
	[ "$rc" = 1 ] && grep -q "predates checks" "$T/u$vm.check" ||
		fail "a check through the ${commit:0:7} worker: rc $rc, $(cat "$T/u$vm.check")"
	for _ in $(seq 100); do
		vmctl "$(vm_sock "$h" "u$vm")" '{"cmd":"migrate-status"}' | grep -q '"stage":"cancelled"' && break
		sleep 0.1
	done
	[ "$(vm_state "$h" "u$vm")" = running ] && [ "$(vm_state N "u$vm")" = absent ] ||
		fail "the check through the ${commit:0:7} worker moved u$vm"
	if [ "$ver" = 6 ]; then
		# a disk copy through a worker that knows none: it sends no disk,
		# and the destination refuses the stream before anything moves
		rc=0; on "$h" move-vm -n "u$vm" -d "$(port_of N)" --copy-disk --disk-path "$T/u$vm.copy" \
			>"$T/u$vm.copy.out" 2>&1 || rc=$?
		[ "$rc" = 1 ] && grep -q "copies no disk" "$T/u$vm.copy.out" ||
			fail "a disk copy through the ${commit:0:7} worker: rc $rc, $(cat "$T/u$vm.copy.out")"
		[ -e "$T/u$vm.copy" ] && fail "a copy was left on N"
		wait_state N "u$vm" absent 10 || fail "the refused copy left u$vm on N"
		[ "$(vm_state "$h" "u$vm")" = running ] || fail "u$vm does not run on after the refused copy"
		echo "disk copy through the ${commit:0:7} worker: $(grep -m1 -o 'copies no disk.*' "$T/u$vm.copy.out")"
	fi
	on "$h" move-vm -n "u$vm" -d "$(port_of N)" --json >"$T/u$vm.out" 2>&1 ||
		{ grep -v progress "$T/u$vm.out"; tail -n 5 "$T/$h/logs/u$vm.log" "$T/N/logs/u$vm.log"; fail "move of u$vm after the upgrade"; }
	wait_state N "u$vm" running 10 || fail "u$vm does not run on N"
	grep -q "incoming migration: stream version $ver (from an earlier ferry)" "$T/N/logs/u$vm.log" ||
		fail "u$vm's stream was not the earlier worker's"
	verify_vm N "u$vm" || fail "pages of u$vm after its move from the upgraded host"

	note "its state file, saved by the ${commit:0:7} worker, checked and restored by this build"
	"$FERRY_BIN/ferry-stream" check "$T/$vm.state" >"$T/$vm.check" 2>&1 ||
		{ cat "$T/$vm.check"; fail "ferry-stream check rejects a version $ver state file"; }
	grep -q "valid, version $ver" "$T/$vm.check" || fail "check does not name version $ver: $(cat "$T/$vm.check")"
	bg "$FERRY_BIN/ferry-vm" --restore "$T/$vm.state" --serial "$T/$vm.restored" \
		--control "$T/$vm.sock" --paused
	for i in $(seq 50); do [ -S "$T/$vm.sock" ] && break; sleep 0.1; done
	vmctl "$T/$vm.sock" '{"cmd":"verify"}' | grep -q '"verified":true' ||
		fail "pages of $vm restored from a version $ver state file"
	vmctl "$T/$vm.sock" '{"cmd":"stop"}' >/dev/null
done
echo "PASS: move_cross_version"
