#!/usr/bin/env bash
# san: yes
# A destination that reserves the guest's memory up front (--prealloc):
# the move works and every page verifies; the pages the source never
# touched are given back, so the next move from there still skips the
# guest's idle memory; a reservation of the wrong size refuses the VM at
# setup (the source keeps running); with --prealloc-extents (the source
# worker's `extents` reply) only the memory the source uses is reserved and
# the move still verifies; a range outside the VM is refused before
# listening; --prealloc without --incoming/--memory, and --prealloc-extents
# without --prealloc, are usage errors.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

"$FERRY_BIN/ferry-vm" --prealloc --memory 256M --kernel "$FERRY_GUEST" 2>"$T/usage.err"
[ $? -eq 2 ] || fail "--prealloc without --incoming is not a usage error"
grep -q -- "--prealloc needs --incoming" "$T/usage.err" || fail "unclear usage error: $(cat "$T/usage.err")"
"$FERRY_BIN/ferry-vm" --incoming 127.0.0.1:1 --memory 256M --prealloc-extents /dev/null 2>"$T/usage.err"
[ $? -eq 2 ] || fail "--prealloc-extents without --prealloc is not a usage error"
grep -q -- "--prealloc-extents goes with --prealloc" "$T/usage.err" || fail "unclear usage error: $(cat "$T/usage.err")"

start_src s 512M 1 "ws=32M rate=32"
note "move to a destination with its memory reserved"
next_port; start_dst d1 "$port" --memory 512M --prealloc
grep -q "reserved 512 MiB for the incoming VM" "$T/d1.err" || fail "no reservation logged: $(cat "$T/d1.err")"
migrate s "$port" || fail "migrate refused"
res=$(wait_mig s 60) || fail "move 1 did not end"
[ "$(field "$res" stage)" = completed ] || fail "move 1: $res"
t1=$(field "$res" total_pages)
verify d1
expect_exit "$PID_s" 4

note "the next move from there still skips idle memory"
next_port; start_dst d2 "$port"
migrate d1 "$port" || fail "migrate refused"
res=$(wait_mig d1 60) || fail "move 2 did not end"
[ "$(field "$res" stage)" = completed ] || fail "move 2: $res"
t2=$(field "$res" total_pages)
echo "populated pages: $t1 on the source, $t2 on the pre-allocated destination (of 131072)"
# The guest touches its 32 MiB working set (8192 pages) and a little more;
# had the reservation stayed, all 131072 pages would count.
[ "$t2" -le 12288 ] || fail "the reserved destination sent $t2 populated pages: idle memory was not given back"
verify d2

note "a reservation of the wrong size refuses the VM (the size it was prepared for)"
next_port; start_dst d3 "$port" --memory 256M --prealloc
migrate d2 "$port" || fail "migrate refused"
res=$(wait_mig d2 30) || fail "move 3 did not end"
[ "$(field "$res" stage)" = failed ] || fail "move 3 should fail: $res"
field "$res" error | grep -q "prepared for a VM of 256 MiB and 1 vCPU(s), the stream carries 512 MiB" ||
	fail "unclear error: $(field "$res" error)"
[ "$(state_of d2)" = running ] || fail "source not running after the refusal"
expect_exit "$PID_d3" 5
verify d2

note "reserving only the memory the source uses (--prealloc-extents)"
vmctl "$T/d2.sock" '{"cmd":"extents"}' | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["ok"], r
for first, n in r["extents"]:
    print(first, n)
print("pages", r["pages"], file=sys.stderr)' >"$T/ext" 2>"$T/ext.pages" || fail "extents: $(cat "$T/ext.pages")"
pages=$(awk '{print $2}' "$T/ext.pages")
echo "the source uses $pages pages in $(wc -l <"$T/ext") ranges"
[ "$pages" -ge 8192 ] && [ "$pages" -le 12288 ] || fail "extents cover $pages pages, expected the ~8192 the guest touched"
echo "131072 1" >"$T/bad"
next_port
"$FERRY_BIN/ferry-vm" --incoming "127.0.0.1:$port" --memory 512M --prealloc --prealloc-extents "$T/bad" 2>"$T/bad.err"
[ $? -eq 1 ] || fail "a range outside the VM was accepted"
grep -q "not 'FIRST NPAGES' inside the VM's 131072 pages" "$T/bad.err" || fail "unclear error: $(cat "$T/bad.err")"
next_port; start_dst d4 "$port" --memory 512M --prealloc --prealloc-extents "$T/ext"
grep -qE "reserved (3[2-9]|4[0-8]) MiB for the incoming VM .*\(the memory its source uses\)" "$T/d4.err" ||
	fail "not a reservation of the source's memory: $(cat "$T/d4.err")"
migrate d2 "$port" || fail "migrate refused"
res=$(wait_mig d2 60) || fail "move 4 did not end"
[ "$(field "$res" stage)" = completed ] || fail "move 4: $res"
verify d4
vmctl "$T/d4.sock" '{"cmd":"stop"}' >/dev/null
echo "ok"
