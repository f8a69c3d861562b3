#!/usr/bin/env bash
# The demo: two ferry hosts on this machine (two ferryd, each with its own
# state directory and port), a busy VM on the first, moved live to the
# second and back (the way back encrypted) with the progress display, then
# the figures and the integrity verdict (every guest page checked,
# heartbeat continuity). Both hosts hold one cluster key made here.
# Where the CPU has VMX/SVM the VM is Debian's Linux kernel with the
# project's initramfs; here (no VMX/SVM: guest kernel code would be
# emulated) it is the project's test guest, dirtying memory at 256 MiB/s
# and writing a record to its disk every second. Its disk goes with it as
# between hosts that share no storage: copied into hostB's image
# directory while the guest writes it, hostA's image removed once the VM
# runs on the copy; and the records checked after the way back.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/build/bin
D=$(mktemp -d /tmp/ferry-demo.XXXXXX)
PA=$((17000 + RANDOM % 1000)); PB=$((PA + 1000))
cleanup() {
	for f in "$D"/*/run/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
	kill "${FA:-}" "${FB:-}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ -e /dev/kvm ] || { echo "demo: this machine has no /dev/kvm; ferry needs KVM" >&2; exit 1; }
if grep -qwE 'vmx|svm' /proc/cpuinfo && ls /boot/vmlinuz-* >/dev/null 2>&1; then
	kver=$(ls /boot/vmlinuz-* | sort -V | tail -n1)
	guest="Linux ($(basename "$kver")) with the project's initramfs"
	guest/initramfs/build.sh "$D/initrd.cpio.gz" >/dev/null
	vmargs=(--kernel "$kver" --initrd "$D/initrd.cpio.gz" --memory 1G --vcpus 2
		--cmdline "console=ttyS0 reboot=k panic=-1 pci=conf1")
	ready='FERRY-LINUX ready'
else
	guest="the ferry test guest (no VMX/SVM here: see README), with a 256 MiB disk"
	mkdir -p "$D/a/images" "$D/b/images"
	truncate -s 256M "$D/a/images/demo.img"
	head -c 64M /dev/urandom | dd of="$D/a/images/demo.img" bs=1M seek=64 conv=notrunc status=none
	vmargs=(--kernel "$PWD/build/guest/testguest.elf" --memory 1G --vcpus 2
		--disk "$D/a/images/demo.img" --cmdline "ws=512M rate=256 pattern=random cpus=2 blk=1")
	copy=(--copy-disk --disk-dir "$D/b/images" --remove-source-disk)
	ready='FERRY-GUEST hb n=3 '
fi

say "two hosts on this machine: hostA = ferryd on 127.0.0.1:$PA, hostB = ferryd on 127.0.0.1:$PB"
mkdir -p "$D/a" "$D/b"
# One cluster key for both hosts (on real hosts: copy the file to each):
# the hosts, and this script as their client, prove it on every connection.
"$B/ferry" host new-key "$D/cluster.key"
export FERRY_KEY_FILE=$D/cluster.key
"$B/ferryd" --state-dir "$D/a" --listen 127.0.0.1:$PA --key-file "$D/cluster.key" 2>"$D/a.log" & FA=$!
"$B/ferryd" --state-dir "$D/b" --listen 127.0.0.1:$PB --key-file "$D/cluster.key" 2>"$D/b.log" & FB=$!
for _ in $(seq 50); do "$B/ferry" -c 127.0.0.1:$PA host info >/dev/null 2>&1 && "$B/ferry" -c 127.0.0.1:$PB host info >/dev/null 2>&1 && break; sleep 0.1; done
"$B/ferry" -c 127.0.0.1:$PA host info

say "a busy VM on hostA: $guest"
"$B/ferry" -c 127.0.0.1:$PA vm new --name demo "${vmargs[@]}"
"$B/ferry" -c 127.0.0.1:$PA vm start demo
for _ in $(seq 600); do grep -q "$ready" "$D/a/logs/demo.serial" 2>/dev/null && break; sleep 0.1; done
tail -n 2 "$D/a/logs/demo.serial"


if [ -n "${copy:-}" ]; then
	say "move demo live: hostA -> hostB, its disk too (as if the hosts shared no storage)"
	echo "ferry move-vm --name demo --destination-host 127.0.0.1:$PB ${copy[*]}"
else
	say "move demo live: hostA -> hostB"
fi
"$B/ferry" -c 127.0.0.1:$PA move-vm --name demo --destination-host 127.0.0.1:$PB ${copy[@]+"${copy[@]}"}
say "on hostB now"
"$B/ferry" -c 127.0.0.1:$PB vm list
sleep 2; tail -n 2 "$D/b/logs/demo.serial"
[ -z "${kver:-}" ] && { printf 'integrity on hostB: '; "$B/ferry" -c 127.0.0.1:$PB vm verify demo; }

say "and back: hostB -> hostA, encrypted (AES-256-GCM; both moves authenticated with the cluster key)"
"$B/ferry" -c 127.0.0.1:$PB move-vm --name demo --destination-host 127.0.0.1:$PA --encrypt on
sleep 2; tail -n 2 "$D/a/logs/demo.serial"
[ -z "${kver:-}" ] && { printf 'integrity on hostA: '; "$B/ferry" -c 127.0.0.1:$PA vm verify demo; }
if [ -n "${copy:-}" ]; then
	[ -e "$D/a/images/demo.img" ] && echo "hostA's image: still there" || echo "hostA's image: removed after the first move"
fi

say "migration history on hostA and hostB"
"$B/ferry" -c 127.0.0.1:$PA migration history
"$B/ferry" -c 127.0.0.1:$PB migration history
say "the first move in full: figures, and where its downtime went"
first=$("$B/ferry" -c 127.0.0.1:$PA --json migration history |
	python3 -c 'import json,sys; m=[x for x in json.load(sys.stdin)["moves"] if x["direction"]=="outgoing"]; print(m[0]["id"] if m else "")')
[ -n "$first" ] && "$B/ferry" -c 127.0.0.1:$PA migration status "$first"
"$B/ferry" -c 127.0.0.1:$PA vm stop demo >/dev/null
if [ -n "${copy:-}" ]; then
	# every record the guest wrote, across both moves, on the copy it ends on
	for _ in $(seq 100); do "$B/ferry" -c 127.0.0.1:$PA vm status demo 2>/dev/null | grep -q stopped && break; sleep 0.1; done
	n=$(grep -oE 'FERRY-GUEST blk wrote n=[0-9]+' "$D/a/logs/demo.serial" | tail -n1 | grep -oE '[0-9]+$')
	say "the disk: its copy on hostB, $D/b/images/demo.img, after both moves"
	build/tests/tools/blkcheck "$D/b/images/demo.img" "${n:-0}"
fi
echo; echo "demo done."
