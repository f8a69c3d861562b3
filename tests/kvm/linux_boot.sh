#!/usr/bin/env bash
# Debian's distribution kernel starts under ferry-vm with the project's
# initramfs: it prints its banner, the e820 map ferry built (checked line by
# line against src/vmm/x86/layout.h) and the initrd at the address ferry's
# loader chose (ferry-vm logs it; the kernel's RAMDISK line must match).
#
# Two ways in, each a separate boot:
# - vmlinux: the kernel decompressed on the host (scripts/extract-vmlinux.sh,
#   cached under build/linux/) and entered at startup_64. Runs everywhere,
#   including hosts without VMX/SVM (PVM), where guest kernel mode is
#   emulated and the bzImage's own XZ decompressor alone takes minutes.
# - bzImage: /boot/vmlinuz-* as it is, through its decompressor. Only on
#   hosts whose CPU shows vmx or svm (or with LINUX_BOOT_BZIMAGE=1).
# Each VM is stopped as soon as its RAMDISK line is out. The time each line
# took to appear is printed (not asserted).
#   LINUX_BOOT_TIMEOUT  seconds to wait for the RAMDISK line (default 60)
#   LINUX_BOOT_FULL=1   also require user space ("FERRY-LINUX ready")
# san: no
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
layout=$root/src/vmm/x86/layout.h
mem_mib=512
timeout=${LINUX_BOOT_TIMEOUT:-60}
# No nokaslr: KASLR is the decompressor's work, so a vmlinux runs where it
# was linked anyway, and the kernel itself calls the parameter unknown.
cmdline="console=ttyS0 earlyprintk=serial,ttyS0,115200 noapic acpi=off pci=conf1 reboot=k panic=-1"

[ -e /dev/kvm ] || skip "no /dev/kvm on this machine: the Linux boot test cannot run"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not accessible to $(id -un)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
[ -n "$kernel" ] || skip "no /boot/vmlinuz-*: install linux-image-amd64 to run the Linux boot test"
[ -r "$kernel" ] || skip "$kernel is not readable by $(id -un)"
[ -x /bin/busybox ] || skip "no /bin/busybox: install busybox-static to build the initramfs"
[ -x "$FERRY_BIN/ferry-vm" ] || fail "ferry-vm not built at $FERRY_BIN"

note "initramfs for $(basename "$kernel")"
initrd=$T/initrd.cpio.gz
"$root/guest/initramfs/build.sh" "$initrd" 2>"$T/build.log" ||
	{ cat "$T/build.log"; fail "initramfs build failed"; }

# The vmlinux is 60+ MiB and takes a second to extract: keep it across
# runs, keyed by the image's name, redone when the image is newer.
cache=$root/build/linux
vmlinux=$cache/vmlinux-$(basename "$kernel" | sed 's/^vmlinuz-//')
if [ ! -s "$vmlinux" ] || [ "$kernel" -nt "$vmlinux" ]; then
	mkdir -p "$cache"
	"$root/scripts/extract-vmlinux.sh" "$kernel" "$vmlinux" || fail "cannot extract vmlinux from $kernel"
fi

# --- what ferry must have told the kernel ---
hexdef() { sed -n "s/^#define $1 *\(0x[0-9a-fA-F]*\)ULL.*/\1/p" "$layout"; }
lowmem_end=$(( $(hexdef LAYOUT_LOWMEM_END) ))
ebda=$(( $(hexdef LAYOUT_EBDA_START) ))
himem=$(( $(hexdef LAYOUT_HIMEM_START) ))
[ $lowmem_end -gt 0 ] && [ $ebda -gt 0 ] && [ $himem -gt 0 ] || fail "cannot read $layout"
mem=$(( mem_mib << 20 ))
e820_line() { printf 'BIOS-e820: [mem 0x%016x-0x%016x] %s' "$1" $(( $2 - 1 )) "$3"; }
expect_e820=(
	"$(e820_line 0 $lowmem_end usable)"
	"$(e820_line $ebda $himem reserved)"
	"$(e820_line $himem $mem usable)"
)
initrd_size=$(stat -c %s "$initrd")

# boot NAME KERNEL ADDR_MAX: boot, time the lines, stop at RAMDISK, check.
# ADDR_MAX is the initrd_addr_max the loader works with; the initrd must
# sit at the highest 1 MiB boundary below min(ADDR_MAX + 1, RAM end).
boot() {
	local name=$1 k=$2 addr_max=$3
	local log=$T/$name.serial vmlog=$T/$name.vm t0 now dt pid
	local t_banner= t_e820= t_rd= limit rd_start rd_end expect_rd logged n l

	note "$name: booting $k, ${mem_mib} MiB, waiting up to ${timeout}s"
	t0=$(date +%s%N)
	bg "$FERRY_BIN/ferry-vm" --name "lx-$name" --kernel "$k" --initrd "$initrd" \
		--cmdline "$cmdline" --memory ${mem_mib}M --vcpus 1 --serial "$log" 2>"$vmlog"
	pid=$!
	while :; do
		now=$(date +%s%N)
		dt=$(( (now - t0) / 1000000 ))
		if [ -f "$log" ]; then
			[ -z "$t_banner" ] && grep -q 'Linux version' "$log" && t_banner=$dt
			[ -z "$t_e820" ] && grep -q 'BIOS-e820:' "$log" && t_e820=$dt
			[ -z "$t_rd" ] && grep -q 'RAMDISK: ' "$log" && t_rd=$dt
		fi
		[ -n "$t_rd" ] && break
		kill -0 "$pid" 2>/dev/null || break
		[ $dt -ge $((timeout * 1000)) ] && break
		sleep 0.1
	done
	if [ "${LINUX_BOOT_FULL:-0}" = 1 ] && [ -n "$t_rd" ]; then
		wait_for "$log" 'FERRY-LINUX ready' 600 || fail "$name: Linux did not reach user space"
		note "$name: user space after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	fi
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	ms() { [ -n "$1" ] && printf '%d.%03d s' $(($1 / 1000)) $(($1 % 1000)) || echo never; }
	note "$name: 'Linux version' after $(ms "$t_banner"), 'BIOS-e820:' after $(ms "$t_e820"), 'RAMDISK:' after $(ms "$t_rd")"

	show() { echo "--- serial log (head):"; head -n 60 "$log" 2>/dev/null; echo "--- ferry-vm:"; cat "$vmlog"; }
	[ -n "$t_banner" ] || { show; fail "$name: no 'Linux version' banner within ${timeout}s"; }
	grep -m1 'Linux version' "$log"
	n=$(grep -c 'BIOS-e820:' "$log")
	[ "$n" -eq ${#expect_e820[@]} ] || { grep 'BIOS-e820:' "$log"; fail "$name: kernel saw $n e820 entries, ferry built ${#expect_e820[@]}"; }
	for l in "${expect_e820[@]}"; do
		grep -qF "$l" "$log" || { grep 'BIOS-e820:' "$log"; fail "$name: missing e820 line: $l"; }
	done
	grep 'BIOS-e820:' "$log"
	[ -n "$t_rd" ] || { show; fail "$name: no RAMDISK line within ${timeout}s"; }

	# Where the loader says it put the initrd (its info log) ...
	logged=$(sed -n 's/.*linux: initrd at \[\(0x[0-9a-f]*\)-\(0x[0-9a-f]*\)\].*/\1 \2/p' "$vmlog")
	[ -n "$logged" ] || { cat "$vmlog"; fail "$name: ferry-vm did not log the initrd placement"; }
	set -- $logged
	rd_start=$(( $1 )); rd_end=$(( $2 ))
	[ $((rd_end - rd_start + 1)) -eq "$initrd_size" ] ||
		fail "$name: loader logged [$1-$2], not $initrd_size bytes"
	# ... is where the placement rule puts it ...
	limit=$(( addr_max + 1 < mem ? addr_max + 1 : mem ))
	[ $rd_start -eq $(( (limit - initrd_size) & ~0xfffff )) ] ||
		fail "$name: initrd at $1, expected the highest 1 MiB boundary below $(printf 0x%x $limit)"
	# ... and where the kernel found it: [start, PAGE_ALIGN(end) - 1].
	expect_rd=$(printf 'RAMDISK: [mem 0x%08x-0x%08x]' $rd_start $(( ((rd_end + 1 + 4095) & ~4095) - 1 )))
	grep -qF "$expect_rd" "$log" || { grep 'RAMDISK' "$log"; fail "$name: expected '$expect_rd'"; }
	grep -F 'RAMDISK' "$log"
	grep -q 'FERRY-LINUX ready' "$log" && note "$name: Linux reached user space"
	echo "ok: $name: banner, ${#expect_e820[@]} e820 entries and $expect_rd as ferry placed them"
}

# 0x7fffffff: the vmlinux loader's initrd_addr_max (vmlinux.h).
boot vmlinux "$vmlinux" $((0x7fffffff))

if grep -qwE 'vmx|svm' /proc/cpuinfo || [ "${LINUX_BOOT_BZIMAGE:-0}" = 1 ]; then
	boot bzimage "$kernel" "$(od -An -tu4 -j $((0x22c)) -N4 "$kernel" | tr -d ' ')"
else
	note "bzImage boot not run: no VMX/SVM, its decompressor would take minutes (LINUX_BOOT_BZIMAGE=1 forces it)"
fi
