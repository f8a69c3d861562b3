#!/usr/bin/env bash
# virtio-blk during migration: the guest writes a record to its disk every
# second (and flushes); the VM moves while it writes; afterwards every record
# is intact with no gap across the move, and the disk lock moved with it.
# Also: data the guest writes is in the image file after stop.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
check=$(dirname "$FERRY_BIN")/tests/tools/blkcheck
[ -x "$check" ] || fail "blkcheck not built"
truncate -s 64M "$T/disk.img"
start_src s 256M 1 "ws=32M rate=32 blk=1" --disk "$T/disk.img"
wait_for "$T/s.log" 'FERRY-GUEST blk wrote n=3' 30 || fail "guest is not writing its disk"
note "a second VM cannot open the same disk"
"$FERRY_BIN/ferry-vm" --name other --kernel "$FERRY_GUEST" --memory 64M --disk "$T/disk.img" \
	--serial "$T/o.log" >"$T/o.err" 2>&1 && fail "second VM started on a locked disk"
grep -q "in use" "$T/o.err" || fail "unclear lock error: $(cat "$T/o.err")"
echo "locked: $(tail -n1 "$T/o.err")"
next_port; start_dst d "$port"
migrate s "$port" || fail "migrate refused"
res=$(wait_mig s 60); [ "$(field "$res" stage)" = completed ] || fail "move: $res"
n0=$(last_blk "$T/s.log")
wait_for "$T/d.log" "FERRY-GUEST blk wrote n=$((n0 + 3))\$" 30 || fail "destination does not write the disk"
vmctl "$T/s.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_s" 4
verify d >/dev/null
vmctl "$T/d.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_d" 0
last=$(last_blk "$T/d.log")
"$check" "$T/disk.img" "$last" || fail "disk records damaged"
echo "ok: moved at record $n0, last record $last"
