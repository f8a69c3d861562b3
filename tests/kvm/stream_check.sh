#!/usr/bin/env bash
# ferry-stream check on a real state file, then on corrupted copies: each
# (a flipped bit in a guest page among them) must be rejected with a clear
# message, and ferry-vm --restore of each must
# fail cleanly (non-zero, an error message, no sanitizer report), with both
# the plain and the ASan+UBSan builds of ferry-vm. A byte changed in the
# configuration is caught by its checksum; the same file in the version 2
# layout (an earlier ferry's, no configuration checksum) still restores.
. "$(dirname "$0")/../lib/common.sh"
need_kvm
root=$(cd "$(dirname "$0")/../.." && pwd)
fs="$FERRY_BIN/ferry-stream"
[ -x "$fs" ] || fail "ferry-stream not built at $fs"
asan_vm="$root/build/asan/bin/ferry-vm"

bg "$FERRY_BIN/ferry-vm" --name sc --kernel "$FERRY_GUEST" --memory 32M \
	--cmdline "ws=4M rate=8" --serial "$T/a.log" --control "$T/a.sock"
a=$!
wait_for "$T/a.log" 'FERRY-GUEST hb n=1 ' 60 || fail "guest not heartbeating"
vmctl "$T/a.sock" '{"cmd":"save","path":"'"$T"'/state"}' | grep -q '"ok":true' || fail "save failed"
vmctl "$T/a.sock" '{"cmd":"stop"}' >/dev/null; wait $a

"$fs" check "$T/state" >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "check rejects a fresh state file"; }
cat "$T/check.out"
"$fs" dump --limit 5 "$T/state" >"$T/dump.out" || fail "dump failed"
grep -q ' config ' "$T/dump.out" || fail "dump lacks the config line"
# the configuration's checksum shown as one, then the JSON (it was printed
# as escaped bytes in front of the text)
grep -qE ' config +[0-9]+  sum=[0-9a-f]{16} \{"name":"sc",' "$T/dump.out" ||
	{ cat "$T/dump.out"; fail "dump's config line: checksum, then the JSON"; }
"$fs" check - <"$T/state" >/dev/null || fail "check from stdin fails"

# Offsets of interest from the dump: first memory record, first section.
"$fs" dump "$T/state" >"$T/full.dump"
mem_off=$(awk '$2 == "memory" { print $1; exit }' "$T/full.dump")
sec_off=$(awk '$2 == "section" { print $1; exit }' "$T/full.dump")
cpu_off=$(awk '$2 == "section" && $4 ~ /name=cpu.0/ { print $1; exit }' "$T/full.dump")
size=$(stat -c %s "$T/state")
raw_off=$(awk '$2 == "memory" && / enc=raw$/ { print $1; exit }' "$T/full.dump")
[ -n "$mem_off" ] && [ -n "$sec_off" ] && [ -n "$cpu_off" ] && [ -n "$raw_off" ] ||
	fail "could not find records in the dump"

patch() { # FILE x HEXBYTES OFFSET: overwrite bytes in place
	printf "$(echo "$3" | sed "s/../\\\\x&/g")" | dd of="$1" bs=1 seek="$4" conv=notrunc status=none
}
mk() { cp "$T/state" "$T/bad.$1"; }
n=0
mk trunc-header; truncate -s 10 "$T/bad.trunc-header"
mk trunc-config; truncate -s 100 "$T/bad.trunc-config"
mk trunc-memory; truncate -s $((mem_off + 20)) "$T/bad.trunc-memory"
mk trunc-section; truncate -s $((sec_off + 10)) "$T/bad.trunc-section"
mk trunc-end; truncate -s $((size - 8)) "$T/bad.trunc-end"
mk type; patch "$T/bad.type" x 63000000 "$mem_off"          # record type 99
mk length; patch "$T/bad.length" x ffffff7f $((mem_off + 4))  # record length 2 GiB
mk magic; patch "$T/bad.magic" x 58 7                          # FERRYMIX
mk gpa; patch "$T/bad.gpa" x 0000000010000000 $((mem_off + 8))  # gpa 0x1000000000
mk npages; patch "$T/bad.npages" x 00100000 $((mem_off + 16))  # 4096 pages
mk payload; patch "$T/bad.payload" x ffffffff $((cpu_off + 8 + 2 + 5 + 4))  # cpu.0 MP state
mk secname; patch "$T/bad.secname" x 01 $((sec_off + 10))      # a control byte in the name
# one bit of a guest page: only the run's checksum can tell
mk page; python3 -c 'import sys
f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1)[0]
f.seek(o); f.write(bytes([b ^ 0x20]))' "$T/bad.page" $((raw_off + 8 + 24 + 100))
# ws=4M -> ws=5M: still a valid configuration, caught only by its checksum
ws_off=$(grep -abo 'ws=4M' "$T/state" | head -n1 | cut -d: -f1)
[ -n "$ws_off" ] || fail "the configuration's cmdline is not in the state file"
mk config; patch "$T/bad.config" x 35 $((ws_off + 3))
mk trailing; printf 'junk' >>"$T/bad.trailing"                   # bytes after the end record
mk eos-payload; patch "$T/bad.eos-payload" x 0600000004000000 $((size - 8)); printf 'abcd' >>"$T/bad.eos-payload"

for f in "$T"/bad.*; do
	what=${f##*/bad.}
	"$fs" check "$f" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq 1 ] || { cat "$T/out" "$T/err"; fail "$what: check exit $rc, expected 1"; }
	grep -qE 'INVALID: .+' "$T/err" || { cat "$T/err"; fail "$what: no clear error"; }
	note "$what: $(cat "$T/err")"
	n=$((n + 1))
	for vm in "$FERRY_BIN/ferry-vm" "$asan_vm"; do
		[ -x "$vm" ] || continue
		ASAN_OPTIONS=detect_leaks=1 timeout 30 "$vm" --restore "$f" --control "$T/r.sock" \
			--serial "$T/r.log" >"$T/r.out" 2>&1
		rc=$?
		[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -lt 128 ] || { cat "$T/r.out"; fail "$what: $vm --restore exit $rc"; }
		grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$T/r.out" &&
			{ cat "$T/r.out"; fail "$what: sanitizer report from $vm"; }
		[ -s "$T/r.out" ] || fail "$what: $vm --restore failed silently"
		rm -f "$T/r.sock"
	done
	note "$what: restore: $(tail -n1 "$T/r.out")"
done
"$fs" check "$T/bad.config" 2>&1 | grep -q "configuration's checksum does not match" ||
	fail "a changed configuration was not caught by its checksum"

note "the version 2 layout (no configuration checksum) still checks and restores"
python3 - "$T/state" "$T/state.v2" <<'PY' || fail "cannot write the version 2 copy"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[8:12] == struct.pack("<I", 7)
typ, ln = struct.unpack_from("<II", b, 16)
assert typ == 1
# header with version 2; CONFIG without its 8-byte sum; the rest as it is
out = b[:8] + struct.pack("<I", 2) + b[12:16] + struct.pack("<II", 1, ln - 8) + b[32:]
open(sys.argv[2], "wb").write(out)
PY
"$fs" check "$T/state.v2" >"$T/v2.out" 2>&1 || { cat "$T/v2.out"; fail "check rejects a version 2 file"; }
grep -q "valid, version 2" "$T/v2.out" || { cat "$T/v2.out"; fail "check does not name version 2"; }
"$fs" dump --limit 2 "$T/state.v2" | grep -qE ' config +[0-9]+  \{"name":"sc",' ||
	fail "dump of a version 2 file: the config line is not the JSON alone"
bg "$FERRY_BIN/ferry-vm" --restore "$T/state.v2" --serial "$T/v2.log" --control "$T/v2.sock"
v2=$!
wait_for "$T/v2.log" 'FERRY-GUEST hb n=' 60 || { cat "$T/v2.log"; fail "the version 2 file did not restore to a running guest"; }
vmctl "$T/v2.sock" '{"cmd":"verify"}' | grep -q '"ok":true' || fail "page check after the version 2 restore"
vmctl "$T/v2.sock" '{"cmd":"stop"}' >/dev/null; wait $v2
echo "ok: $n corrupted files rejected by ferry-stream, and by ferry-vm --restore; version 2 restored"
