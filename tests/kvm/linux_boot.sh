#!/usr/bin/env bash
# Debian's distribution kernel starts under ferry-vm with the project's
# initramfs: it prints its banner, the e820 map ferry built (checked line by
# line against src/vmm/x86/layout.h) and the initrd at the address ferry's
# bzImage loader chose. On hosts without VMX/SVM (PVM) the kernel gets no
# further than that in reasonable time, so reaching user space ("FERRY-LINUX
# ready") is reported but only required with LINUX_BOOT_FULL=1.
#   LINUX_BOOT_TIMEOUT  seconds to wait for the RAMDISK line (default 20)
# On a host whose CPU shows neither vmx nor svm (a PVM machine), guest CPL0
# code is emulated and the kernel's XZ decompressor alone runs for minutes
# (measured: no banner after 240 s, with QEMU as with ferry), so the test
# skips there unless LINUX_BOOT_TIMEOUT is set explicitly.
# san: no
. "$(dirname "$0")/../lib/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
layout=$root/src/vmm/x86/layout.h
mem_mib=512
timeout=${LINUX_BOOT_TIMEOUT:-20}

[ -e /dev/kvm ] || skip "no /dev/kvm on this machine: the Linux boot test cannot run"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not accessible to $(id -un)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
[ -n "$kernel" ] || skip "no /boot/vmlinuz-*: install linux-image-amd64 to run the Linux boot test"
[ -r "$kernel" ] || skip "$kernel is not readable by $(id -un)"
[ -x /bin/busybox ] || skip "no /bin/busybox: install busybox-static to build the initramfs"
[ -x "$FERRY_BIN/ferry-vm" ] || fail "ferry-vm not built at $FERRY_BIN"
if ! grep -qwE 'vmx|svm' /proc/cpuinfo && [ -z "${LINUX_BOOT_TIMEOUT:-}" ]; then
	skip "host CPU has no VMX/SVM (PVM): guest kernel mode is emulated and the" \
		"bzImage decompressor takes minutes; set LINUX_BOOT_TIMEOUT=<s> to run anyway"
fi

note "initramfs for $(basename "$kernel")"
"$root/guest/initramfs/build.sh" "$T/initrd.cpio.gz" 2>"$T/build.log" ||
	{ cat "$T/build.log"; fail "initramfs build failed"; }

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
# The initrd goes at the highest 1 MiB boundary below min(initrd_addr_max+1,
# RAM end); Linux prints [start, PAGE_ALIGN(end) - 1].
initrd_size=$(stat -c %s "$T/initrd.cpio.gz")
addr_max=$(od -An -tu4 -j $((0x22c)) -N4 "$kernel" | tr -d ' ')
limit=$(( addr_max + 1 < mem ? addr_max + 1 : mem ))
rd_start=$(( (limit - initrd_size) & ~0xfffff ))
rd_end=$(( ((rd_start + initrd_size + 4095) & ~4095) - 1 ))
expect_rd=$(printf 'RAMDISK: [mem 0x%08x-0x%08x]' $rd_start $rd_end)

# --- boot ---
note "booting $kernel, ${mem_mib} MiB, waiting up to ${timeout}s"
log=$T/serial.log
bg "$FERRY_BIN/ferry-vm" --name linuxboot --kernel "$kernel" --initrd "$T/initrd.cpio.gz" \
	--cmdline "console=ttyS0 earlyprintk=serial,ttyS0,115200 reboot=k panic=-1" \
	--memory ${mem_mib}M --vcpus 1 --serial "$log" 2>"$T/vm.log"
pid=$!
wait_for "$log" 'RAMDISK: ' "$timeout" >"$T/wait.log"
got_rd=$?
if [ "${LINUX_BOOT_FULL:-0}" = 1 ]; then
	wait_for "$log" 'FERRY-LINUX ready' 600 || fail "Linux did not reach user space"
fi
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null

show() { echo "--- serial log (head):"; head -n 60 "$log" 2>/dev/null; echo "--- ferry-vm:"; cat "$T/vm.log"; }
grep -q 'Linux version' "$log" 2>/dev/null || { show; fail "no 'Linux version' banner within ${timeout}s"; }
n=$(grep -c 'BIOS-e820:' "$log")
[ "$n" -eq ${#expect_e820[@]} ] || { grep 'BIOS-e820:' "$log"; fail "kernel saw $n e820 entries, ferry built ${#expect_e820[@]}"; }
for l in "${expect_e820[@]}"; do
	grep -qF "$l" "$log" || { grep 'BIOS-e820:' "$log"; fail "missing e820 line: $l"; }
done
[ $got_rd -eq 0 ] || { cat "$T/wait.log"; fail "no RAMDISK line within ${timeout}s"; }
grep -qF "$expect_rd" "$log" || { grep 'RAMDISK' "$log"; fail "expected '$expect_rd'"; }
grep -q 'FERRY-LINUX ready' "$log" && note "Linux reached user space"
echo "ok: banner, ${#expect_e820[@]} e820 entries and $expect_rd as ferry placed them"
