#!/usr/bin/env bash
# san: yes
# Memory verification ("verify_memory"): the source digests all of RAM with
# the guest stopped, the destination checks its own RAM against it before
# it may run the guest.
# 1. A page the VMM wrote just before the last pre-copy sync, and not again
#    before the pause (src.vmm_write: a stand-in for a virtio used ring),
#    reaches the destination: the digest matches. With the pre-copy fault
#    fixed in d042548 back, this case fails every time.
# 2. The same over multichannel with compression, a guest writing its disk.
# 3. A destination whose memory differs (dst.digest_flip) refuses the VM,
#    naming the address; the move fails and the guest runs on at the source.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/migrate.sh"
need_kvm
truncate -s 64M "$T/disk.img"

moved() { # moved SRC DST: completed, verified by the destination, guest runs there
	local res; res=$(wait_mig "$1" 60) || fail "$1 -> $2: move did not end"
	[ "$(field "$res" stage)" = completed ] || fail "$1 -> $2: $(field "$res" stage): $(field "$res" error)"
	[ "$(field "$res" memory_verified)" = True ] || fail "$1 -> $2: memory not verified: $res"
	# the digest's cost is its own part of the downtime
	python3 -c 'import json,sys; p=json.loads(sys.argv[1])["migration"]["downtime_parts"]
assert p["memory_digest_ms"] > 0, p' "$res" || fail "$1 -> $2: no memory digest in the downtime parts"
	grep -q 'memory verified against the source.s digest' "$T/$2.err" ||
		fail "$1 -> $2: the destination did not log its check: $(tail -n3 "$T/$2.err")"
	hb_continues "$T/$2.log" "$(last_hb "$T/$1.log")" || fail "$1 -> $2: heartbeat stopped"
	verify "$2" >/dev/null
	echo "$1 -> $2: $(grep -o 'memory verified[^"]*' "$T/$2.err" | head -n1); down $(field "$res" downtime_ms) ms"
}

FERRY_FAILPOINTS="src.vmm_write=error" start_src a 256M 1 "ws=32M rate=32 blk=1" --disk "$T/disk.img"
wait_for "$T/a.log" 'FERRY-GUEST blk wrote n=2' 30 || fail "guest is not writing its disk"
next_port; start_dst b "$port"
migrate a "$port" ',"transport":"tcp","verify_memory":true' || fail "migrate refused"
moved a b
grep -q 'memory digest of 256 MiB' "$T/a.err" || fail "the source did not log its digest"
vmctl "$T/a.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_a" 4

next_port; start_dst c "$port"
migrate b "$port" ',"transport":"multichannel","compress":true,"channels":3,"verify_memory":true' ||
	fail "migrate refused"
moved b c
vmctl "$T/b.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_b" 4

next_port; FERRY_FAILPOINTS="dst.digest_flip=error" start_dst d "$port"
migrate c "$port" ',"verify_memory":true' || fail "migrate refused"
res=$(wait_mig c 60) || fail "c -> d: move did not end"
[ "$(field "$res" stage)" = failed ] || fail "c -> d: $(field "$res" stage), expected failed"
err=$(field "$res" error)
case "$err" in *"memory differs from the source's"*"at GPA 0x0"*) ;;
	*) fail "c -> d: unclear error: $err" ;; esac
echo "c -> d: failed: $err"
expect_exit "$PID_d" 5
[ "$(state_of c)" = running ] || fail "c is $(state_of c) after the failed move"
hb_continues "$T/c.log" "$(last_hb "$T/c.log")" || fail "c: heartbeat stopped after the failed move"
verify c >/dev/null
vmctl "$T/c.sock" '{"cmd":"stop"}' >/dev/null; expect_exit "$PID_c" 0
echo "ok"
