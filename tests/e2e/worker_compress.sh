#!/usr/bin/env bash
# san: yes (tests/run.sh looks for this in the first 5 lines)
# Compression on compressible memory: a guest writing data=text pages (about
# 2x with lz4) moves with transport compression, then with multichannel +
# compression. Each time every page verifies on the destination against the
# text fill, pages went compressed, and the bytes on the wire stay well below
# the populated memory. This checks the codec path end to end, not its speed.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm

# mib_written LOG: the MiB counter of the last heartbeat in LOG (0 if none)
mib_written() { grep -oE 'hb n=[0-9]+ mib=[0-9]+' "$1" | tail -n1 | grep -oE '[0-9]+$' || echo 0; }

start_src s0 256M 1 "ws=128M rate=64 data=text"
grep -q 'FERRY-GUEST boot .* data=text' "$T/s0.log" ||
	fail "boot line does not say data=text: $(grep -m1 'FERRY-GUEST boot' "$T/s0.log")"
# Move only once the whole working set holds text pages.
for _ in $(seq 60); do [ "$(mib_written "$T/s0.log")" -ge 128 ] && break; sleep 0.5; done
[ "$(mib_written "$T/s0.log")" -ge 128 ] || fail "guest did not write its working set in 30 s"

cur=s0 i=0
move() { # move EXTRA-JSON CODEC: the current VM to a new destination, then the checks
	local res v total wire comp
	i=$((i + 1)); next_port; start_dst d$i "$port"
	migrate $cur "$port" "$1" || fail "migrate $1 refused"
	res=$(wait_mig $cur 90) || fail "move $1 did not end"
	[ "$(field "$res" stage)" = completed ] || fail "move $1: $res"
	verify d$i
	v=$(vmctl "$T/d$i.sock" '{"cmd":"verify"}')
	[ "$(field "$v" data)" = text ] || fail "checker did not use the text fill: $v"
	total=$(field "$res" total_pages) wire=$(field "$res" bytes_on_wire) comp=$(field "$res" pages_compressed)
	[ "${comp:-0}" -gt 0 ] || fail "move $1: no page went compressed: $res"
	[ "$(field "$res" codec)" = "$2" ] || fail "move $1: codec $(field "$res" codec), expected $2"
	# generous: lz4 makes ~0.47 of these pages; re-sent dirty pages and
	# device state come on top
	[ $((wire * 10)) -lt $((total * 4096 * 8)) ] ||
		fail "move $1: $wire bytes on the wire for $((total * 4096)) populated bytes"
	echo "$1: $(field "$res" transport), $(field "$res" elapsed_ms) ms, compressed $comp of $total pages," \
		"$((wire >> 20)) MiB on the wire for $((total >> 8)) MiB populated ($((wire * 100 / (total * 4096)))%)"
	vmctl "$T/$cur.sock" '{"cmd":"stop"}' >/dev/null
	cur=d$i
}
# An explicit codec is always tried; the default (auto) may send raw where
# that is faster, e.g. over an uncapped loopback on a busy machine — that
# choice is unit-tested with a fake clock (test_format: codec_adaptive).
move ',"transport":"compression","codec":"zstd"' zstd
move ',"transport":"multichannel","channels":3,"compress":true,"codec":"lz4"' lz4
echo ok
